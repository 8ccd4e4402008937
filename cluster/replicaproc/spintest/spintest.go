// Package spintest lets a test binary stand in for a replica process in
// tests of pausing and killing: run under Main, the binary started with
// EnvKey set keeps several OS threads busy until it is killed (the case in
// which a SIGSTOP that reached one thread has not reached the others yet),
// or exits at once with status 3 when EnvKey is "exit3".
package spintest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hacommit/committer/cluster/replicaproc"
)

// EnvKey selects the child mode: "spin" or "exit3".
const EnvKey = "REPLICAPROC_SPINTEST_CHILD"

// spinners is how many OS threads the child keeps busy: more than the
// machine's cores, so some are always running and others runnable.
const spinners = 6

// Main runs the tests, or the child when the binary was started as one.
// Call it from TestMain.
func Main(m *testing.M) {
	switch os.Getenv(EnvKey) {
	case "":
		os.Exit(m.Run())
	case "exit3":
		os.Exit(3)
	default:
		for range spinners {
			go func() {
				runtime.LockOSThread()
				for {
				}
			}()
		}
		select {}
	}
}

// Replica returns a replica whose process is this test binary in the given
// child mode, killed when the test ends.
func Replica(t testing.TB, mode string, onCrash func(error)) *replicaproc.Replica {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvKey+"=") {
			env = append(env, kv)
		}
	}
	r := replicaproc.New(replicaproc.Options{
		Binary:  os.Args[0],
		LogPath: filepath.Join(t.TempDir(), "child.log"),
		Env:     append(env, EnvKey+"="+mode),
		OnCrash: onCrash,
	})
	t.Cleanup(func() { _ = r.Kill(context.Background()) })
	return r
}

// ThreadStates reads the state letter of every thread of pid from /proc,
// independently of package replicaproc's own reading.
func ThreadStates(t testing.TB, pid int) []string {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads of %d in /proc: %v", pid, err)
	}
	var states []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		states = append(states, strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0])
	}
	return states
}

// Stopped reports whether every thread of pid is stopped, and the states.
func Stopped(t testing.TB, pid int) (bool, []string) {
	t.Helper()
	states := ThreadStates(t, pid)
	for _, s := range states {
		if s != "T" && s != "t" {
			return false, states
		}
	}
	return true, states
}
