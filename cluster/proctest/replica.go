package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/rpc/adminpb"
)

// Replica is one replica of a Cluster: fixed id, addresses, data dir and
// cluster-forming flags, and at most one running process at a time.
type Replica struct {
	c        *Cluster
	id       string
	dataDir  string
	logPath  string
	grpcAddr string
	raftAddr string
	httpAddr string
	args     []string // the full `serve` command line, the same for every run

	admin   adminpb.AdminClient
	adminCC *grpc.ClientConn

	mu     sync.Mutex
	proc   *process // the latest process; nil before the first start
	paused bool
}

func (c *Cluster) newReplica(id, dataDir, grpcAddr, raftAddr, httpAddr string, formation []string) (*Replica, error) {
	args := []string{
		"serve",
		"--backend", c.opts.Backend,
		"--data-dir", dataDir,
		"--grpc-addr", grpcAddr,
		"--raft-addr", raftAddr,
		"--http-addr", httpAddr,
		"--log-format", "json",
		"--log-level", c.opts.LogLevel,
		// Stop waits for SIGTERM's drain; keep it shorter than a test.
		"--shutdown-timeout", "10s",
	}
	args = append(append(args, formation...), c.opts.Args...)
	cc, err := dialReplica(grpcAddr)
	if err != nil {
		return nil, err
	}
	return &Replica{
		c: c, id: id, dataDir: dataDir, logPath: filepath.Join(c.root, id+".log"),
		grpcAddr: grpcAddr, raftAddr: raftAddr, httpAddr: httpAddr, args: args,
		admin: adminpb.NewAdminClient(cc), adminCC: cc,
	}, nil
}

// ID returns the replica id.
func (r *Replica) ID() string { return r.id }

// GRPCAddr returns the client (and admin) address.
func (r *Replica) GRPCAddr() string { return r.grpcAddr }

// RaftAddr returns the Raft address.
func (r *Replica) RaftAddr() string { return r.raftAddr }

// HTTPAddr returns the address of /healthz, /readyz and /metrics.
func (r *Replica) HTTPAddr() string { return r.httpAddr }

// DataDir returns the replica's --data-dir.
func (r *Replica) DataDir() string { return r.dataDir }

// LogPath returns the file that collects every run's output.
func (r *Replica) LogPath() string { return r.logPath }

// Admin returns an Admin client of this replica. Its connection reconnects
// within half a second after a restart and is closed when the test ends.
func (r *Replica) Admin() adminpb.AdminClient { return r.admin }

func (r *Replica) closeAdmin() { r.adminCC.Close() }

func (r *Replica) current() (*process, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc, r.paused
}

// Running reports whether the replica's process runs (paused or not).
func (r *Replica) Running() bool {
	p, _ := r.current()
	return p != nil && !p.exited()
}

// Paused reports whether the process is stopped by Pause.
func (r *Replica) Paused() bool {
	p, paused := r.current()
	return paused && p != nil && !p.exited()
}

// PID returns the process id of the latest run, or 0.
func (r *Replica) PID() int {
	if p, _ := r.current(); p != nil {
		return p.pid()
	}
	return 0
}

// Start runs the replica's process and waits until it answers /healthz, at
// most Options.StartTimeout. If the process exits first, the error quotes
// its log.
func (r *Replica) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.proc != nil && !r.proc.exited() {
		r.mu.Unlock()
		return fmt.Errorf("proctest: %s already runs (pid %d)", r.id, r.proc.pid())
	}
	p, err := spawn(r.c.opts.Binary, r.args, r.c.env, r.logPath)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.proc, r.paused = p, false
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, r.c.opts.StartTimeout)
	defer cancel()
	for {
		if err := r.healthz(ctx); err == nil {
			return nil
		}
		select {
		case <-p.done:
			tail := tailFile(r.logPath, 4<<10)
			err := fmt.Errorf("exited before serving (%v):\n%s", p.err, tail)
			if strings.Contains(tail, "address already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("no /healthz answer: %w; killed:\n%s", ctx.Err(), tailFile(r.logPath, 4<<10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart starts the replica again on the same data dir, addresses and
// flags. A running process is killed first. A port lost in the meantime
// (the replica's own, held by nothing else normally) is retried for a
// while.
func (r *Replica) Restart(ctx context.Context) error {
	r.kill()
	var err error
	for range 5 * bindRetries {
		if err = r.Start(ctx); !errors.Is(err, errAddrInUse) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

func (r *Replica) running() (*process, error) {
	p, _ := r.current()
	if p == nil || p.exited() {
		return nil, fmt.Errorf("proctest: %s is not running", r.id)
	}
	return p, nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (r *Replica) Kill() error {
	p, err := r.running()
	if err != nil {
		return err
	}
	p.kill()
	r.setPaused(false)
	return nil
}

// kill ends the process, if any, without complaint.
func (r *Replica) kill() {
	if p, _ := r.current(); p != nil {
		p.kill()
	}
	r.setPaused(false)
}

// Stop sends SIGTERM (resuming a paused process so it can act on it) and
// waits for the exit until ctx ends, then kills. It returns the exit error:
// nil only for a clean exit.
func (r *Replica) Stop(ctx context.Context) error {
	p, err := r.running()
	if err != nil {
		return err
	}
	err = p.terminate(ctx)
	r.setPaused(false)
	if err != nil {
		return fmt.Errorf("proctest: stopping %s: %w", r.id, err)
	}
	return nil
}

// Pause stops the process with SIGSTOP and returns once every thread of it
// is stopped, so that nothing sent afterwards is served before Resume. The
// process keeps its sockets, and the kernel keeps accepting connections and
// queueing requests for it.
func (r *Replica) Pause() error {
	p, err := r.running()
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	r.setPaused(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return waitStopped(ctx, p.pid())
}

// Resume continues a paused process with SIGCONT.
func (r *Replica) Resume() error {
	p, err := r.running()
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	r.setPaused(false)
	return nil
}

func (r *Replica) setPaused(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paused = v
}

// WipeDataDir deletes the replica's Raft state; the process must not run.
func (r *Replica) WipeDataDir() error {
	if r.Running() {
		return fmt.Errorf("proctest: %s runs; stop it before wiping its data dir", r.id)
	}
	return os.RemoveAll(r.dataDir)
}

// ExitErr returns how the latest process ended: nil while it runs or after
// a clean exit.
func (r *Replica) ExitErr() error {
	p, _ := r.current()
	if p == nil || !p.exited() {
		return nil
	}
	return p.err
}

// Status calls Admin.Status on this replica.
func (r *Replica) Status(ctx context.Context) (*adminpb.StatusResponse, error) {
	return r.admin.Status(ctx, &adminpb.StatusRequest{})
}

// WaitStatus polls Status until cond holds and returns that status, or the
// last status (or error) seen when ctx ends.
func (r *Replica) WaitStatus(ctx context.Context, cond func(*adminpb.StatusResponse) bool) (*adminpb.StatusResponse, error) {
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := r.Status(cctx)
		cancel()
		if err == nil && cond(st) {
			return st, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = st.String()
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("%s: status never matched (last: %s): %w", r.id, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready       bool `json:"ready"`
	Leader      bool `json:"leader"`
	LeaderKnown bool `json:"leader_known"`
}

// Readyz returns what /readyz says; its status code (200 or 503) matches
// Ready, which this checks.
func (r *Replica) Readyz(ctx context.Context) (Readiness, error) {
	var rd Readiness
	code, body, err := r.get(ctx, "/readyz")
	if err != nil {
		return rd, err
	}
	if err := json.Unmarshal(body, &rd); err != nil {
		return rd, fmt.Errorf("/readyz body %q: %w", body, err)
	}
	if (code == http.StatusOK) != rd.Ready {
		return rd, fmt.Errorf("/readyz answered %d with %s", code, body)
	}
	return rd, nil
}

func (r *Replica) healthz(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	code, _, err := r.get(hctx, "/healthz")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/healthz answered %d", code)
	}
	return err
}

// Metrics returns the Prometheus text exposition of /metrics.
func (r *Replica) Metrics(ctx context.Context) (string, error) {
	code, body, err := r.get(ctx, "/metrics")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("/metrics answered %d", code)
	}
	return string(body), nil
}

// Metric returns the sum of the samples of the named metric whose labels
// include labels, and how many samples matched.
func (r *Replica) Metric(ctx context.Context, name string, labels map[string]string) (float64, int, error) {
	text, err := r.Metrics(ctx)
	if err != nil {
		return 0, 0, err
	}
	sum, n := MetricValue(text, name, labels)
	return sum, n, nil
}

func (r *Replica) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.httpAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := r.c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// LogRecord is one JSON log line of a replica.
type LogRecord struct {
	Time   time.Time
	Msg    string
	Fields map[string]any
}

// LogRecords returns the replica's JSON log records whose message is msg,
// from every run, oldest first. Lines that are not JSON (Raft's own log,
// the harness's run headers) are skipped.
func (r *Replica) LogRecords(msg string) ([]LogRecord, error) {
	f, err := os.Open(r.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []LogRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	needle := []byte(`"msg":` + quote(msg))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, needle) {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(line, &fields) != nil {
			continue
		}
		rec := LogRecord{Msg: msg, Fields: fields}
		if s, ok := fields["time"].(string); ok {
			rec.Time, _ = time.Parse(time.RFC3339Nano, s)
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// scanLog returns a description of the first data race report or Go panic
// in the replica's log, or "".
func (r *Replica) scanLog() string {
	f, err := os.Open(r.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if strings.HasPrefix(line, bad) {
				return fmt.Sprintf("%q at %s:%d", line, r.logPath, n)
			}
		}
	}
	return ""
}
