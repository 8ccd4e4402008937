package control

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/cluster/replicaproc/spintest"
)

// PauseNode, the harness's one pause, returns only once every thread of the
// replica's process is stopped, so the fault it starts is in effect when the
// nemesis records it.
func TestPauseNodeReturnsOnlyWhenTheProcessIsStopped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread states need /proc")
	}
	proc := spintest.Replica(t, "spin", nil)
	c := &Cluster{log: slog.New(slog.DiscardHandler), nodes: []Node{NodeAt(1)}, replicas: []*replica{{id: "n1", proc: proc}}}
	if err := c.StartNode(1); err != nil {
		t.Fatal(err)
	}
	pid := c.PID(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, err := replicaproc.RunningThreads(pid); err == nil && n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never ran two threads at once")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := c.PauseNode(ctx, 1)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if stopped, states := spintest.Stopped(t, pid); !stopped {
			t.Fatalf("pause %d: PauseNode returned while a thread still ran (states %v)", i, states)
		}
		if !c.Paused(1) {
			t.Fatal("Paused(1) is false after PauseNode")
		}
		if err := c.ResumeNode(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.KillNode(t.Context(), 1); err != nil || c.Running(1) {
		t.Fatalf("KillNode: %v, running %v", err, c.Running(1))
	}
	if len(c.Crashes()) != 0 {
		t.Fatalf("a kill by the harness was reported as a crash: %v", c.Crashes())
	}
}
