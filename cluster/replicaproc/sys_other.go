//go:build !linux

package replicaproc

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// sysProcAttr has no parent-death signal outside Linux; callers kill their
// replicas when they end normally.
func sysProcAttr(ownGroup bool) *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: ownGroup} }

// waitStopped cannot see thread states without /proc; it gives the stop a
// moment to reach every thread.
func waitStopped(ctx context.Context, _ int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

// RunningThreads needs /proc.
func RunningThreads(int) (int, error) { return 0, errors.New("thread states need /proc") }
