//go:build !linux

package proctest

import (
	"context"
	"syscall"
	"time"
)

// sysProcAttr has no parent-death signal outside Linux; Cluster's cleanup
// still kills every replica when the test ends normally.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

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
