package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one run of the committer binary. Its output goes straight to
// a log file (the child holds the descriptor), so nothing in this process
// has to copy it and a stopped child can never block on a full pipe.
type process struct {
	cmd *exec.Cmd
	// done is closed once the process has exited and been reaped; err is
	// Wait's result and may be read only after that.
	done chan struct{}
	err  error
}

// spawn starts bin with args, appending its output to logPath after a
// header line naming the run.
func spawn(bin string, args, env []string, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The header separates runs of the same replica in its log.
	fmt.Fprintf(f, "=== proctest %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	// The child has its own copy of the descriptor.
	f.Close()
	p := &process{cmd: cmd, done: make(chan struct{})}
	// This goroutine ends when the process does; every process is killed
	// by its Cluster's cleanup at the latest.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
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

// signal sends sig; signalling a process that already exited is an error.
func (p *process) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid(), err)
	}
	return nil
}

// kill sends SIGKILL (which also ends a stopped process) and waits until
// the process is reaped.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // fails only if already gone
	<-p.done
}

// terminate sends SIGTERM and waits for the exit until ctx ends, then kills.
// It returns the exit error (nil for a clean exit).
func (p *process) terminate(ctx context.Context) error {
	if err := p.signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	// A paused process must run to handle SIGTERM.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("pid %d did not exit after SIGTERM: %w; killed", p.pid(), ctx.Err())
	}
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
