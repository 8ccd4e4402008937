package replicaproc_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/cluster/replicaproc/spintest"
)

func TestMain(m *testing.M) { spintest.Main(m) }

// spinning waits until the child has at least two running threads.
func spinning(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := replicaproc.RunningThreads(pid)
		if err == nil && n >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("child never had two running threads (%d, %v)", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pause returns only once every thread of the process is stopped, which is
// what lets the harness record a pause as started at that moment: a request
// sent after Pause returns cannot be served before Resume.
func TestPauseReturnsOnlyWhenEveryThreadIsStopped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread states need /proc")
	}
	r := spintest.Replica(t, "spin", nil)
	if err := r.Spawn(); err != nil {
		t.Fatal(err)
	}
	pid := r.PID()
	spinning(t, pid)
	for i := range 30 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := r.Pause(ctx)
		cancel()
		if err != nil {
			t.Fatalf("pause %d: %v", i, err)
		}
		if stopped, states := spintest.Stopped(t, pid); !stopped {
			t.Fatalf("pause %d returned while a thread still ran (states %v)", i, states)
		}
		if !r.Paused() || !r.Running() {
			t.Fatalf("after pause: Paused %v, Running %v; want both", r.Paused(), r.Running())
		}
		if err := r.Resume(); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
		if r.Paused() {
			t.Fatal("Paused after Resume")
		}
	}
}

// Kill and Stop end the process without reporting a crash; an exit of its
// own is reported, with its status.
func TestExitsThisPackageCausesAreNotCrashes(t *testing.T) {
	var crashes atomic.Int32
	var last atomic.Value
	// The cause is stored before the count, so a reader that sees the
	// count also sees the cause.
	onCrash := func(err error) { last.Store(fmt.Sprint(err)); crashes.Add(1) }

	r := spintest.Replica(t, "spin", onCrash)
	if err := r.Spawn(); err != nil {
		t.Fatal(err)
	}
	if err := r.Spawn(); !errors.Is(err, replicaproc.ErrRunning) {
		t.Fatalf("second Spawn: %v, want replicaproc.ErrRunning", err)
	}
	if err := r.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Kill(t.Context()); err != nil {
		t.Fatalf("kill of a paused process: %v", err)
	}
	if r.Running() || r.Paused() {
		t.Fatalf("after kill: Running %v, Paused %v", r.Running(), r.Paused())
	}
	if err := r.Kill(t.Context()); !errors.Is(err, replicaproc.ErrNotRunning) {
		t.Fatalf("kill of a dead process: %v, want replicaproc.ErrNotRunning", err)
	}

	// The spinner ignores nothing but never exits on SIGTERM within the
	// grace period: Stop kills it and says so.
	if err := r.Spawn(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(t.Context(), 100*time.Millisecond); err != nil && !errors.Is(err, replicaproc.ErrKilled) {
		// SIGTERM's default action ends a Go program that does not catch
		// it: an exit status, not a kill.
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("stop: %v, want an exit error or replicaproc.ErrKilled", err)
		}
	}
	if crashes.Load() != 0 {
		t.Fatalf("%d crashes reported for exits this package caused (last %v)", crashes.Load(), last.Load())
	}

	crasher := spintest.Replica(t, "exit3", onCrash)
	if err := crasher.Start(t.Context()); !errors.Is(err, replicaproc.ErrExited) {
		t.Fatalf("start of a process that exits: %v, want replicaproc.ErrExited", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for crashes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if crashes.Load() != 1 || !strings.Contains(fmt.Sprint(last.Load()), "exit status 3") {
		t.Fatalf("crashes %d (last %v), want one with exit status 3", crashes.Load(), last.Load())
	}
	var exit *exec.ExitError
	if err := crasher.ExitErr(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("ExitErr = %v, want exit status 3", err)
	}
	if !strings.Contains(crasher.LogTail(1<<10), "=== replicaproc ") {
		t.Fatalf("log has no run header: %q", crasher.LogTail(1<<10))
	}
}

func TestServeArgs(t *testing.T) {
	a := replicaproc.ServeArgs{
		Backend: "postgres://db/x", ID: "n1", DataDir: "/d", GRPCAddr: "127.0.0.11:6882", RaftAddr: "127.0.0.11:6883",
		HTTPAddr: "127.0.0.11:6884", BootstrapExpect: 2, Peers: []replicaproc.Peer{{"n1", "127.0.0.11:6883"}, {"n2", "127.0.0.12:6883"}},
		ReadConsistency: "leader", UnsafeSkipFence: true, LogFormat: "json", LogLevel: "debug", ShutdownTimeout: 10 * time.Second,
		Extra: []string{"--raft-heartbeat-timeout=300ms"},
	}
	want := []string{"serve", "--backend", "postgres://db/x", "--id", "n1", "--data-dir", "/d", "--grpc-addr", "127.0.0.11:6882",
		"--raft-addr", "127.0.0.11:6883", "--http-addr", "127.0.0.11:6884", "--bootstrap-expect", "2",
		"--peers", "n1=127.0.0.11:6883,n2=127.0.0.12:6883", "--read-consistency", "leader", "--unsafe-skip-fence",
		"--log-format", "json", "--log-level", "debug", "--shutdown-timeout", "10s", "--raft-heartbeat-timeout=300ms"}
	if got := a.Argv(); !slices.Equal(got, want) {
		t.Errorf("Argv =\n%q\nwant\n%q", got, want)
	}
	join := replicaproc.ServeArgs{Join: []string{"a:1", "b:2"}, NoHTTP: true}
	if got, want := join.Argv(), []string{"serve", "--http-addr=", "--join", "a:1,b:2"}; !slices.Equal(got, want) {
		t.Errorf("Argv = %q, want %q", got, want)
	}
}
