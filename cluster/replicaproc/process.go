package replicaproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one run of the binary. Its output goes straight to a log file
// (the child holds the descriptor), so nothing in this process has to copy
// it and a stopped child can never block on a full pipe.
type process struct {
	cmd *exec.Cmd
	// done is closed once the process has exited and been reaped; err is
	// Wait's result and may be read only after that.
	done chan struct{}
	err  error
	// intended is set before this package signals the process to end, so
	// that its exit is not reported as a crash.
	intended atomic.Bool
}

// spawnSpec is what spawn needs.
type spawnSpec struct {
	binary   string
	args     []string
	env      []string
	logPath  string
	ownGroup bool
	// onExit runs in the goroutine that reaps the process, after done is
	// closed.
	onExit func(*process)
}

// spawn starts the binary, appending its output to the log after a header
// line that names the run.
func spawn(s spawnSpec) (*process, error) {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("replica log: %w", err)
	}
	// The header separates runs of the same replica in its log.
	fmt.Fprintf(f, "=== replicaproc %s: %s %s\n", time.Now().Format(time.RFC3339Nano), s.binary, strings.Join(s.args, " "))
	cmd := exec.Command(s.binary, s.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = s.env
	cmd.SysProcAttr = sysProcAttr(s.ownGroup)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", s.binary, err)
	}
	// The child has its own copy of the descriptor.
	f.Close()
	p := &process{cmd: cmd, done: make(chan struct{})}
	// This goroutine ends when the process does; every process dies with
	// its parent at the latest.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		if s.onExit != nil {
			s.onExit(p)
		}
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid(), err)
	}
	return nil
}

// kill sends SIGKILL (which also ends a stopped process) and waits until
// the process is reaped or ctx ends.
func (p *process) kill(ctx context.Context) error {
	p.intended.Store(true)
	if err := p.signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for pid %d to exit: %w", p.pid(), ctx.Err())
	}
}

// ErrKilled: a process did not exit within its grace period after SIGTERM
// and was killed.
var ErrKilled = errors.New("did not exit after SIGTERM; killed")

// terminate sends SIGTERM (and SIGCONT, so a paused process can act on it)
// and waits for the exit for grace or until ctx ends, then kills. It returns
// the exit error: nil for a clean exit, an *exec.ExitError for another exit
// status, ErrKilled after the kill.
func (p *process) terminate(ctx context.Context, grace time.Duration) error {
	p.intended.Store(true)
	if err := p.signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	_ = p.signal(syscall.SIGCONT) // fails only if already gone
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
	case <-ctx.Done():
	}
	if err := p.kill(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	return fmt.Errorf("pid %d %w", p.pid(), ErrKilled)
}

// pause stops the process with SIGSTOP and returns once every thread of it
// is stopped.
func (p *process) pause(ctx context.Context) error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(ctx, p.pid())
}

// childEnv is this process's environment without COMMITTER_* variables,
// which would configure every replica behind its caller's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COMMITTER_") {
			env = append(env, kv)
		}
	}
	return env
}

// tailFile returns about the last limit bytes of path, starting at a line.
func tailFile(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	off := max(0, st.Size()-limit)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(log: %v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
