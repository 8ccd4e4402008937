package proctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/rpc/adminpb"
)

// Replica is one replica of a Cluster: fixed id, addresses, data dir and
// cluster-forming flags, and at most one running process at a time (package
// replicaproc runs it).
type Replica struct {
	c        *Cluster
	id       string
	dataDir  string
	grpcAddr string
	raftAddr string
	httpAddr string
	proc     *replicaproc.Replica

	admin   adminpb.AdminClient
	adminCC *grpc.ClientConn
}

func (c *Cluster) newReplica(id, dataDir, grpcAddr, raftAddr, httpAddr string, formation replicaproc.ServeArgs) (*Replica, error) {
	args := formation
	args.Backend = c.opts.Backend
	args.DataDir = dataDir
	args.GRPCAddr, args.RaftAddr, args.HTTPAddr = grpcAddr, raftAddr, httpAddr
	args.LogFormat, args.LogLevel = "json", c.opts.LogLevel
	// Stop waits for SIGTERM's drain; keep it shorter than a test.
	args.ShutdownTimeout = 10 * time.Second
	args.Extra = c.opts.Args
	if c.tls != nil {
		flags, err := c.tls.replicaFlags(id)
		if err != nil {
			return nil, err
		}
		args.Extra = append(slices.Clone(c.opts.Args), flags...)
	}
	cc, err := c.dialReplica(grpcAddr)
	if err != nil {
		return nil, err
	}
	return &Replica{
		c: c, id: id, dataDir: dataDir, grpcAddr: grpcAddr, raftAddr: raftAddr, httpAddr: httpAddr,
		proc:  replicaproc.New(replicaproc.Options{Binary: c.opts.Binary, Args: args, LogPath: filepath.Join(c.root, id+".log"), HTTP: c.http, HTTPS: c.tls != nil}),
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
func (r *Replica) LogPath() string { return r.proc.LogPath() }

// Admin returns an Admin client of this replica. Its connection reconnects
// within half a second after a restart and is closed when the test ends.
func (r *Replica) Admin() adminpb.AdminClient { return r.admin }

func (r *Replica) closeAdmin() { r.adminCC.Close() }

// Running reports whether the replica's process runs (paused or not).
func (r *Replica) Running() bool { return r.proc.Running() }

// Paused reports whether the process is stopped by Pause.
func (r *Replica) Paused() bool { return r.proc.Paused() }

// PID returns the process id of the latest run, or 0.
func (r *Replica) PID() int { return r.proc.PID() }

// Start runs the replica's process and waits until it answers /healthz, at
// most Options.StartTimeout. If the process exits first, the error quotes
// its log.
func (r *Replica) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.c.opts.StartTimeout)
	defer cancel()
	if err := r.proc.Start(ctx); err != nil {
		return fmt.Errorf("proctest: %s: %w", r.id, err)
	}
	return nil
}

// Restart starts the replica again on the same data dir, addresses and
// flags. A running process is killed first. A port lost in the meantime
// (the replica's own, held by nothing else normally) is retried for a
// while.
func (r *Replica) Restart(ctx context.Context) error {
	r.kill()
	var err error
	for range 5 * bindRetries {
		if err = r.Start(ctx); !errors.Is(err, replicaproc.ErrAddrInUse) {
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

// Kill sends SIGKILL and waits until the process is gone.
func (r *Replica) Kill() error {
	if err := r.proc.Kill(context.Background()); err != nil {
		return fmt.Errorf("proctest: kill %s: %w", r.id, err)
	}
	return nil
}

// kill ends the process, if any, without complaint.
func (r *Replica) kill() { _ = r.proc.Kill(context.Background()) }

// Stop sends SIGTERM (resuming a paused process so it can act on it) and
// waits for the exit until ctx ends, then kills. It returns the exit error:
// nil only for a clean exit.
func (r *Replica) Stop(ctx context.Context) error {
	grace := time.Hour
	if deadline, ok := ctx.Deadline(); ok {
		grace = time.Until(deadline)
	}
	if err := r.proc.Stop(ctx, grace); err != nil {
		return fmt.Errorf("proctest: stopping %s: %w", r.id, err)
	}
	return nil
}

// Pause stops the process with SIGSTOP and returns once every thread of it
// is stopped, so that nothing sent afterwards is served before Resume. The
// process keeps its sockets, and the kernel keeps accepting connections and
// queueing requests for it.
func (r *Replica) Pause() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.proc.Pause(ctx)
}

// Resume continues a paused process with SIGCONT.
func (r *Replica) Resume() error { return r.proc.Resume() }

// WipeDataDir deletes the replica's Raft state; the process must not run.
func (r *Replica) WipeDataDir() error {
	if r.Running() {
		return fmt.Errorf("proctest: %s runs; stop it before wiping its data dir", r.id)
	}
	return os.RemoveAll(r.dataDir)
}

// ExitErr returns how the latest process ended: nil while it runs or after
// a clean exit.
func (r *Replica) ExitErr() error { return r.proc.ExitErr() }

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

// Readyz returns what /readyz says; its status code (200 or 503) matches
// Ready, which this checks.
func (r *Replica) Readyz(ctx context.Context) (opshttp.Readiness, error) { return r.proc.Readyz(ctx) }

// Metrics returns the Prometheus text exposition of /metrics.
func (r *Replica) Metrics(ctx context.Context) (string, error) {
	code, body, err := r.proc.Get(ctx, "/metrics")
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
	f, err := os.Open(r.LogPath())
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
	f, err := os.Open(r.LogPath())
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
				return fmt.Sprintf("%q at %s:%d", line, r.LogPath(), n)
			}
		}
	}
	return ""
}
