package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/rpc/client"
)

// buildCommitter compiles this command into a temporary directory.
func buildCommitter(t *testing.T) string {
	t.Helper()
	bin, err := replicaproc.Build(t.Context(), t.TempDir(), replicaproc.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// freeLoopbackAddr returns 127.0.0.1:port for a port nothing listens on.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

// process is a running committer whose JSON log lines are collected.
type process struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	done  chan error
}

func start(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		// Read every line so the process never blocks on a full pipe; the
		// channel is large enough for a test's worth of lines and drops any
		// beyond that rather than block.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				line = map[string]any{"msg": "unparsable: " + sc.Text()}
			}
			select {
			case p.lines <- line:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLog returns the first log line with message msg.
func (p *process) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("committer exited before logging %q", msg)
			}
			if line["msg"] == msg {
				return line
			}
		case <-timeout:
			t.Fatalf("committer did not log %q", msg)
		}
	}
}

// stop sends sig and asserts a clean exit after a clean shutdown.
func (p *process) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "stopped")
	for range p.lines { // drain to EOF
	}
	if err := <-p.done; err != nil {
		t.Fatalf("committer exited with %v after %v, want status 0", err, sig)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func casAndHead(t *testing.T, addr string) {
	t.Helper()
	c, err := client.New([]string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	committed, err := c.CompareAndSet(ctx, "shard", backend.VersionedData{SeqNo: 0, Data: []byte("hello")})
	if err != nil || !committed {
		t.Fatalf("cas = %v, %v; want committed", committed, err)
	}
	got, err := c.Head(ctx, "shard")
	if err != nil || got == nil || got.SeqNo != 0 || string(got.Data) != "hello" {
		t.Fatalf("head = %+v, %v; want {0 hello}", got, err)
	}
}

// wantStored reopens the bolt file after the process exited and checks that
// the write is there.
func wantStored(t *testing.T, path string) {
	t.Helper()
	b, err := bolt.Open(path, bolt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reopen %s: %v", path, err)
	}
	defer func() { _ = b.Close() }()
	got, err := b.Head(t.Context(), "shard")
	if err != nil || got == nil || string(got.Data) != "hello" {
		t.Fatalf("stored head = %+v, %v; want {0 hello}", got, err)
	}
}

func TestServeWithFlagsAndSIGTERM(t *testing.T) {
	bin := buildCommitter(t)
	db := filepath.Join(t.TempDir(), "consensus.db")
	addr := freeLoopbackAddr(t)
	p := start(t, bin, nil, "serve", "--backend", "bolt://"+db, "--grpc-addr", addr, "--log-level", "info",
		"--data-dir", t.TempDir(), "--raft-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if got := p.waitLog(t, "serving persist consensus API")["grpc_addr"]; got != addr {
		t.Fatalf("serving on %v, want %s", got, addr)
	}
	casAndHead(t, addr)
	p.stop(t, syscall.SIGTERM)
	wantStored(t, db)
}

func TestServeWithEnvironmentAndSIGINT(t *testing.T) {
	bin := buildCommitter(t)
	db := filepath.Join(t.TempDir(), "consensus.db")
	addr := freeLoopbackAddr(t)
	p := start(t, bin, []string{"COMMITTER_BACKEND=bolt://" + db, "COMMITTER_GRPC_ADDR=" + addr, "COMMITTER_LOG_FORMAT=json",
		"COMMITTER_DATA_DIR=" + t.TempDir(), "COMMITTER_RAFT_ADDR=127.0.0.1:0", "COMMITTER_HTTP_ADDR=127.0.0.1:0"}, "serve")
	if got := p.waitLog(t, "serving persist consensus API")["grpc_addr"]; got != addr {
		t.Fatalf("serving on %v, want %s from COMMITTER_GRPC_ADDR", got, addr)
	}
	casAndHead(t, addr)
	p.stop(t, syscall.SIGINT)
	wantStored(t, db)
}

// runInProcess runs the command line and returns its exit code and stderr.
func runInProcess(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	code := execute(t.Context(), args, &stdout, &stderr)
	return code, stderr.String()
}

func TestEnvironmentAndFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"backend is required", nil, []string{"serve"}, `required flag(s) "backend" not set`},
		{"env satisfies a required flag", map[string]string{"COMMITTER_BACKEND": "mysql://root:hunter2@db/x"}, []string{"serve"},
			`open backend: unsupported backend URL: scheme "mysql"`},
		{"flag wins over env", map[string]string{"COMMITTER_BACKEND": "mysql://db/x"}, []string{"serve", "--backend", "sqlite:///x"},
			`scheme "sqlite"`},
		{"bad env value names the variable", map[string]string{"COMMITTER_MAX_DATA_BYTES": "lots"}, []string{"serve", "--backend", "bolt:///x"},
			`invalid environment: COMMITTER_MAX_DATA_BYTES: invalid argument "lots"`},
		{"global flag from env", map[string]string{"COMMITTER_LOG_LEVEL": "chatty"}, []string{"serve", "--backend", "bolt:///x"},
			`--log-level "chatty"`},
		{"isolation is checked", map[string]string{"COMMITTER_ISOLATION": "snapshot"}, []string{"serve", "--backend", "bolt:///x"},
			`--isolation: unknown isolation level "snapshot"`},
		{"positive request timeout", nil, []string{"serve", "--backend", "bolt:///x", "--request-timeout", "0s"},
			"--request-timeout must be positive, got 0s"},
		{"unknown fault delay point", nil, []string{"serve", "--backend", "bolt:///x", "--fault-delay", "apply=1s"},
			`--fault-delay: fault delay "apply=1s": unknown point "apply" (known: read-round-decided, leadership-lost, forwarded-write-done)`},
		{"fault delay without a duration", nil, []string{"serve", "--backend", "bolt:///x", "--fault-delay", "leadership-lost"},
			`--fault-delay: fault delay "leadership-lost": want POINT=DURATION`},
		{"positive batch limits", nil, []string{"serve", "--backend", "bolt:///x", "--batch-max-in-flight", "0"},
			"--batch-max-ops, --batch-max-bytes and --batch-max-in-flight must be positive, got 256, 33554432 and 0"},
		{"bench: unknown scenario", nil, []string{"bench", "--scenarios", "cas,scan-everything"},
			`--scenarios: unknown scenario "scan-everything" (known: cas, cas-contended, head, scan-tail, persist-mix)`},
		{"bench: no target", nil, []string{"bench", "--memory=false"}, "no target: give --cluster, --via, --postgres or --memory"},
		{"bench: backend delay needs postgres", nil, []string{"bench", "--backend-delay", "1ms"}, "--backend-delay must not be negative, and needs --postgres"},
		{"bench: backend delay needs a URL", nil, []string{"bench", "--backend-delay", "1ms", "--postgres", "host=db user=x"},
			"--backend-delay needs --postgres as a postgres://host:port/... URL"},
		{"bench: delay proxy needs addresses", nil, []string{"bench", "delay-proxy", "--listen", "127.0.0.1:0"},
			"--listen and --upstream are required and --delay must not be negative"},
		{"bench: positive workers", nil, []string{"bench", "--workers", "0"}, "--workers, --shards, --rounds and --duration must be positive"},
		{"gc percent not negative", nil, []string{"serve", "--backend", "bolt:///x", "--gc-percent", "-1"},
			"--gc-percent must not be negative, got -1"},
		{"positive data limit", nil, []string{"serve", "--backend", "bolt:///x", "--max-data-bytes", "0"},
			"--max-data-bytes must be positive, got 0"},
		{"bolt cannot back a multi-replica cluster", nil, []string{"serve", "--backend", "bolt:///x", "--bootstrap-expect", "3", "--peers", "a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3"},
			"the embedded bolt backend cannot be shared between processes"},
		{"bolt cannot join a cluster", nil, []string{"serve", "--backend", "bolt:///x", "--join", "127.0.0.1:6882"},
			"the embedded bolt backend cannot be shared between processes"},
		{"malformed peers", nil, []string{"serve", "--backend", "bolt:///x", "--peers", "a=127.0.0.1:1,b"},
			`--peers entry "b": want id=raft-host:port`},
		{"unusable listen address", nil, []string{"serve", "--backend", "bolt://" + filepath.Join(t.TempDir(), "c.db"), "--grpc-addr", "256.0.0.1:1"},
			"listen on gRPC address 256.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stderr := runInProcess(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("stderr shows a password: %q", stderr)
			}
		})
	}
}

func TestHelpNamesEveryVariable(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := execute(t.Context(), []string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help: exit %d, %s", code, stderr.String())
	}
	for _, v := range []string{"COMMITTER_BACKEND", "COMMITTER_GRPC_ADDR", "COMMITTER_MAX_DATA_BYTES", "COMMITTER_ISOLATION",
		"COMMITTER_PG_MAX_CONNS", "COMMITTER_SHUTDOWN_TIMEOUT", "COMMITTER_LOG_LEVEL", "COMMITTER_LOG_FORMAT"} {
		if !strings.Contains(stdout.String(), "[$"+v+"]") {
			t.Errorf("serve --help does not mention %s:\n%s", v, stdout.String())
		}
	}
	if !strings.Contains(stdout.String(), `(default ":6882")`) {
		t.Errorf("serve --help does not show the default gRPC address:\n%s", stdout.String())
	}
}

// TestFlagReferenceIsCurrent keeps docs/flags.md the CLI's own output.
func TestFlagReferenceIsCurrent(t *testing.T) {
	var out strings.Builder
	if err := writeFlagReference(&out, newRootCommand()); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/flags.md")
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if out.String() != string(want) {
		t.Fatal("docs/flags.md differs from `committer docs`: run make docs")
	}
}
