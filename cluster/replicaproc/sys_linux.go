package replicaproc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr makes a replica die with its parent: the kernel sends it
// SIGKILL when the parent goes, however the parent ends. With ownGroup it
// also gets its own process group, so a Ctrl-C on the terminal reaches only
// the parent, which stops its replicas itself.
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: ownGroup}
}

// waitStopped waits until every thread of pid is stopped. kill(SIGSTOP)
// returns before that: the stop begins when one thread of the target takes
// the signal, and its other threads run on until told. On a busy machine
// that lasts milliseconds, long enough for a "paused" replica to serve a
// request sent after the signal.
func waitStopped(ctx context.Context, pid int) error {
	for {
		running, err := RunningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d threads of pid %d still run after SIGSTOP: %w", running, pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// RunningThreads counts the threads of pid that are not stopped, from the
// state field of /proc/<pid>/task/<tid>/stat.
func RunningThreads(pid int) (int, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return 0, err
	}
	if len(stats) == 0 {
		return 0, fmt.Errorf("pid %d has no threads in /proc", pid)
	}
	n := 0
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		// "tid (comm) state ...": comm may contain anything but ends at the
		// last ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) > 0 && f[0] != "T" && f[0] != "t" {
			n++
		}
	}
	return n, nil
}
