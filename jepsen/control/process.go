package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one run of a replica binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, valid after done
	// intended is set before the harness signals the process to end, so
	// that its exit is not reported as a crash.
	intended atomic.Bool
}

// spawn starts argv with stdout and stderr appended to logPath. onExit runs
// in the goroutine that waits for the process, after done is closed.
func spawn(argv []string, logPath, header string, onExit func(*process)) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node log: %w", err)
	}
	if _, err := fmt.Fprintln(logFile, header); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("node log: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a Ctrl-C on the terminal reaches the runner,
		// which stops the replicas itself, instead of every replica at once.
		Setpgid: true,
		// Nothing outlives the runner, even if it is killed.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
		if onExit != nil {
			onExit(p)
		}
	}()
	return p, nil
}

// cleanEnv is the runner's environment without COMMITTER_* variables, which
// would otherwise configure every replica behind the harness's back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COMMITTER_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.cmd.Process.Pid, err)
	}
	return nil
}

// kill sends SIGKILL and waits for the exit.
func (p *process) kill(ctx context.Context) error {
	p.intended.Store(true)
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(ctx)
}

// stop asks for a graceful exit (SIGTERM; SIGCONT first in case the process
// is stopped) and kills the process if it is still there after grace.
func (p *process) stop(ctx context.Context, grace time.Duration) error {
	p.intended.Store(true)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	_ = p.signal(syscall.SIGCONT)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return p.kill(context.WithoutCancel(ctx))
}

func (p *process) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for pid %d to exit: %w", p.cmd.Process.Pid, ctx.Err())
	}
}
