package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacommit/committer/rpc/client"
)

// runRecover runs `committer recover` in this process.
func runRecover(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = execute(t.Context(), append([]string{"recover"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRecoverFlagErrors(t *testing.T) {
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "gone")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"data dir and peers are required", nil, nil, `required flag(s) "data-dir", "peers" not set`},
		{"env satisfies a required flag", map[string]string{"COMMITTER_DATA_DIR": missing}, []string{"--id", "a", "--peers", "a=127.0.0.1:1"},
			"recover " + missing + ": nothing to recover: data dir " + missing + " does not exist"},
		{"malformed peers", nil, []string{"--data-dir", empty, "--id", "a", "--peers", "a=127.0.0.1:1,b"},
			`--peers entry "b": want id=raft-host:port`},
		{"this replica not in peers", nil, []string{"--data-dir", empty, "--id", "c", "--peers", "a=127.0.0.1:1,b=127.0.0.1:2"},
			"recover " + empty + `: invalid new configuration: it does not include this replica ("c")`},
		{"empty data dir", nil, []string{"--data-dir", empty, "--id", "a", "--peers", "a=127.0.0.1:1"},
			"recover " + empty + ": nothing to recover: " + empty + " holds no Raft state (no raft.db)"},
		{"bad min term", nil, []string{"--data-dir", empty, "--peers", "a=127.0.0.1:1", "--min-term", "-1"},
			`invalid argument "-1" for "--min-term" flag`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runRecover(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing and %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

// recover refuses the data dir of a running replica; once it is stopped,
// recover rewrites its configuration (a one-replica cluster's, here, on
// the embedded backend), says what it did, and the replica serves its data
// again.
func TestRecoverAStoppedReplica(t *testing.T) {
	bin := buildCommitter(t)
	db := filepath.Join(t.TempDir(), "consensus.db")
	dir := t.TempDir()
	addr, raftAddr := freeLoopbackAddr(t), freeLoopbackAddr(t)
	serve := []string{"serve", "--backend", "bolt://" + db, "--id", "solo", "--grpc-addr", addr, "--data-dir", dir,
		"--raft-addr", raftAddr, "--http-addr", "127.0.0.1:0"}
	p := start(t, bin, nil, serve...)
	p.waitLog(t, "serving persist consensus API")
	casAndHead(t, addr)

	args := []string{"--data-dir", dir, "--id", "solo", "--peers", "solo=" + raftAddr}
	code, _, stderr := runRecover(t, args...)
	want := "committer: recover " + dir + ": data dir in use: " + filepath.Join(dir, "raft.db") + " is locked (is a replica still running on " + dir + "?)\n"
	if code != 1 || !strings.HasSuffix(stderr, want) {
		t.Fatalf("recover of a running replica: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	p.stop(t, syscall.SIGTERM)

	code, stdout, stderr := runRecover(t, append(args, "--backend", "bolt://"+db, "--log-level", "warn")...)
	if code != 0 {
		t.Fatalf("recover: exit %d, stderr %q", code, stderr)
	}
	for _, line := range []string{
		"recovered " + dir + " as solo",
		"old configuration: solo=" + raftAddr,
		"new configuration: solo=" + raftAddr,
		`last index:        \d+ \(term (\d+)\), now a snapshot of the recovered state`,
		`term:              (\d+) \(kept\)`,
		"cluster id:        [0-9a-f]{32} \\(kept\\)",
		"database fence:    owned by [0-9a-f]{32} at epoch \\d+",
		"forgotten members: -",
	} {
		if !regexp.MustCompile("(?m)^" + line + "$").MatchString(stdout) {
			t.Errorf("recover's output has no line %q:\n%s", line, stdout)
		}
	}
	if strings.Contains(stdout, "WARNING") {
		t.Errorf("recover warns:\n%s", stdout)
	}

	p = start(t, bin, nil, serve...)
	p.waitLog(t, "ready leader")
	wantStoredThrough(t, addr)
	p.stop(t, syscall.SIGTERM)
}

// wantStoredThrough reads the version casAndHead wrote through the replica
// at addr.
func wantStoredThrough(t *testing.T, addr string) {
	t.Helper()
	c, err := client.New([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := c.Head(ctx, "shard")
	if err != nil || got == nil || got.SeqNo != 0 || string(got.Data) != "hello" {
		t.Fatalf("head after recovery = %+v, %v; want {0 hello}", got, err)
	}
}
