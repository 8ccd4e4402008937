package proctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr makes a replica die with the test binary: the kernel sends it
// SIGKILL when its parent goes, however the parent ends.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until every thread of pid is stopped. kill(SIGSTOP)
// returns before that: the stop begins when one thread of the target takes
// the signal, and its other threads run on until told. On a busy machine
// that lasts milliseconds, long enough for a "paused" replica to serve a
// request sent after the signal.
func waitStopped(ctx context.Context, pid int) error {
	for {
		running, err := runningThreads(pid)
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

// runningThreads counts the threads of pid that are not stopped.
func runningThreads(pid int) (int, error) {
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
