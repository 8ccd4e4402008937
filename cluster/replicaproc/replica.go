package replicaproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hacommit/committer/cluster/opshttp"
)

// Errors of a Replica.
var (
	// ErrRunning: the call needs the replica stopped.
	ErrRunning = errors.New("replica is running")
	// ErrNotRunning: the call needs a running process.
	ErrNotRunning = errors.New("replica is not running")
	// ErrExited: the process exited before it served /healthz.
	ErrExited = errors.New("replica exited before serving")
	// ErrAddrInUse: the process exited because one of its ports was taken.
	ErrAddrInUse = errors.New("address already in use")
)

// Options configures a Replica.
type Options struct {
	// Binary is the committer executable (see Build).
	Binary string
	// Args is the serve command line; Args.HTTPAddr is also where the
	// probes go.
	Args ServeArgs
	// LogPath is the file that collects every run's output.
	LogPath string
	// Env is the processes' environment; nil means this process's
	// environment without COMMITTER_* variables.
	Env []string
	// OwnProcessGroup puts each process in a process group of its own.
	OwnProcessGroup bool
	// OnCrash, if set, is called with the exit error of every run that
	// ended without this package ending it. It runs in the goroutine that
	// reaps the process and must not block.
	OnCrash func(err error)
	// HTTP carries the probes, each bounded by its context; nil means a
	// client without keep-alives, so that a paused or killed replica never
	// leaves a probe stuck on an old connection.
	HTTP *http.Client
	// HTTPS makes the probes use https (the replica serves TLS; HTTP
	// then carries the client's certificates and roots).
	HTTPS bool
	// Argv, when set, is the whole command line after the binary's name,
	// run as given instead of Args.Argv(): the deploy tests run the
	// command lines that manifests spell out, flags and all. ProbeAddr is
	// then where /healthz and /readyz answer (Args.HTTPAddr otherwise).
	Argv      []string
	ProbeAddr string
}

// Replica is one replica's slot: its command line and log, and at most one
// running process at a time. Its methods may be called from any goroutine;
// mu is never held across a wait.
type Replica struct {
	opts Options

	mu     sync.Mutex
	args   ServeArgs
	proc   *process // the latest process; nil before the first start
	paused bool
}

// New returns a replica that is not running yet.
func New(opts Options) *Replica {
	if opts.Env == nil {
		opts.Env = childEnv()
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return &Replica{opts: opts, args: opts.Args}
}

// Args returns the serve command line of the next start.
func (r *Replica) Args() ServeArgs {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.args
}

// SetArgs changes the command line of later starts (a replacement replica
// under a new id, say). The replica must not run.
func (r *Replica) SetArgs(a ServeArgs) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && !r.proc.exited() {
		return ErrRunning
	}
	r.args = a
	return nil
}

// LogPath returns the file that collects every run's output.
func (r *Replica) LogPath() string { return r.opts.LogPath }

// LogTail returns about the last limit bytes of the log, from a line start.
func (r *Replica) LogTail(limit int64) string { return tailFile(r.opts.LogPath, limit) }

func (r *Replica) current() (*process, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc, r.paused
}

func (r *Replica) running() (*process, error) {
	p, _ := r.current()
	if p == nil || p.exited() {
		return nil, ErrNotRunning
	}
	return p, nil
}

// Running reports whether the process runs (paused or not).
func (r *Replica) Running() bool {
	_, err := r.running()
	return err == nil
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

// ExitErr returns how the latest run ended: nil while it runs or after a
// clean exit.
func (r *Replica) ExitErr() error {
	p, _ := r.current()
	if p == nil || !p.exited() {
		return nil
	}
	return p.err
}

// Spawn starts a process without waiting for it to serve.
func (r *Replica) Spawn() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && !r.proc.exited() {
		return fmt.Errorf("%w (pid %d)", ErrRunning, r.proc.pid())
	}
	p, err := spawn(spawnSpec{
		binary: r.opts.Binary, args: r.argv(), env: r.opts.Env, logPath: r.opts.LogPath, ownGroup: r.opts.OwnProcessGroup,
		onExit: func(p *process) {
			if !p.intended.Load() && r.opts.OnCrash != nil {
				r.opts.OnCrash(p.err)
			}
		},
	})
	if err != nil {
		return err
	}
	r.proc, r.paused = p, false
	return nil
}

// argv is the next start's command line after the binary's name; r.mu is
// held.
func (r *Replica) argv() []string {
	if r.opts.Argv != nil {
		return r.opts.Argv
	}
	return r.args.Argv()
}

// probeAddr is where the probes go.
func (r *Replica) probeAddr() string {
	if r.opts.ProbeAddr != "" {
		return r.opts.ProbeAddr
	}
	return r.Args().HTTPAddr
}

// Start starts a process and waits until it answers /healthz or ctx ends
// (then it kills the process). If the process exits first, the error
// (ErrExited, and ErrAddrInUse if a port was taken) quotes its log.
func (r *Replica) Start(ctx context.Context) error {
	if err := r.Spawn(); err != nil {
		return err
	}
	p, _ := r.current()
	for {
		if err := r.Healthz(ctx); err == nil {
			return nil
		}
		select {
		case <-p.done:
			tail := r.LogTail(4 << 10)
			err := fmt.Errorf("%w (%v):\n%s", ErrExited, p.err, tail)
			if strings.Contains(tail, "address already in use") {
				err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			_ = p.kill(context.WithoutCancel(ctx))
			return fmt.Errorf("no /healthz answer: %w; killed:\n%s", ctx.Err(), r.LogTail(4<<10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits until the process is gone.
func (r *Replica) Kill(ctx context.Context) error {
	p, err := r.running()
	if err != nil {
		return err
	}
	defer r.setPaused(false)
	return p.kill(ctx)
}

// Stop sends SIGTERM (resuming a paused process so it can act on it) and
// waits for the exit for grace or until ctx ends, then kills. It returns the
// exit error: nil only for a clean exit (see ErrKilled).
func (r *Replica) Stop(ctx context.Context, grace time.Duration) error {
	p, err := r.running()
	if err != nil {
		return err
	}
	defer r.setPaused(false)
	return p.terminate(ctx, grace)
}

// Pause stops the process with SIGSTOP and returns once every thread of it
// is stopped, so that nothing sent afterwards is served before Resume. The
// process keeps its sockets, and the kernel keeps accepting connections and
// queueing requests for it.
func (r *Replica) Pause(ctx context.Context) error {
	p, err := r.running()
	if err != nil {
		return err
	}
	r.setPaused(true)
	return p.pause(ctx)
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

// Healthz asks /healthz; nil means 200.
func (r *Replica) Healthz(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	code, _, err := r.Get(hctx, "/healthz")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/healthz answered %d", code)
	}
	return err
}

// Readyz returns what /readyz says, checking that its status code (200 or
// 503) agrees with the body.
func (r *Replica) Readyz(ctx context.Context) (opshttp.Readiness, error) {
	var rd opshttp.Readiness
	code, body, err := r.Get(ctx, "/readyz")
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

// Get fetches path from the replica's HTTP endpoint.
func (r *Replica) Get(ctx context.Context, path string) (int, []byte, error) {
	scheme := "http://"
	if r.opts.HTTPS {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+r.probeAddr()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := r.opts.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
