package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/proctest"
)

// buildWith compiles this command with -ldflags as the Makefile passes
// them (version and revision linked in), or without when both are empty.
// VCS stamping is off as on this project's machines, so that a build
// without linked values says what it says everywhere.
func buildWith(t *testing.T, version, revision string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "committer")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if version != "" || revision != "" {
		const pkg = "github.com/hacommit/committer/metrics"
		args = append(args, "-ldflags", fmt.Sprintf("-X '%s.linkedVersion=%s' -X '%s.linkedRevision=%s'", pkg, version, pkg, revision))
	}
	cmd := exec.CommandContext(t.Context(), "go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return bin
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("committer %v: %v", args, err)
	}
	return string(out)
}

// `committer version` prints what was linked in, or what a source-tree
// build knows; --json prints the same as one object; a running replica's
// committer_build_info carries the same labels.
func TestVersionCommand(t *testing.T) {
	goVersion := runtime.Version()
	linked := buildWith(t, "v9.8.7-3-gabcdef0-dirty", "abcdef0123456789")
	if got, want := run(t, linked, "version"), "committer v9.8.7-3-gabcdef0-dirty (revision abcdef0123456789, "+goVersion+")\n"; got != want {
		t.Errorf("version = %q, want %q", got, want)
	}
	if got, want := run(t, linked, "version", "--json"),
		`{"version":"v9.8.7-3-gabcdef0-dirty","revision":"abcdef0123456789","go_version":"`+goVersion+`"}`+"\n"; got != want {
		t.Errorf("version --json = %q, want %q", got, want)
	}
	plain := buildWith(t, "", "")
	if got, want := run(t, plain, "version"), "committer (devel) (revision unknown, "+goVersion+")\n"; got != want {
		t.Errorf("version of a plain build = %q, want %q", got, want)
	}
	if code, stderr := runInProcess(t, "version", "extra"); code != 1 || !strings.Contains(stderr, `unknown command "extra"`) {
		t.Errorf("version with an argument: exit %d, %q", code, stderr)
	}

	// The same build serving: its build_info, and its stats log.
	db := filepath.Join(t.TempDir(), "consensus.db")
	addr := freeLoopbackAddr(t)
	p := start(t, linked, []string{"COMMITTER_LOG_FORMAT=json", "COMMITTER_STATS_INTERVAL=100ms"}, "serve", "--backend", "bolt://"+db,
		"--grpc-addr", addr, "--data-dir", t.TempDir(), "--raft-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	httpAddr, _ := p.waitLog(t, "serving persist consensus API")["http_addr"].(string)
	text := scrape(t, httpAddr)
	labels := map[string]string{"version": "v9.8.7-3-gabcdef0-dirty", "revision": "abcdef0123456789", "go_version": goVersion}
	if v, n := proctest.MetricValue(text, "committer_build_info", labels); n != 1 || v != 1 {
		t.Errorf("committer_build_info%v = %v (%d samples), want 1", labels, v, n)
	}
	if _, n := proctest.MetricValue(text, "committer_build_info", nil); n != 1 {
		t.Errorf("%d committer_build_info series, want 1", n)
	}

	// One CaS and one Head, whichever intervals they fall in: the stats
	// lines add up to exactly them.
	casAndHead(t, addr)
	var head, cas, committed float64
	for lines := 0; ; lines++ {
		line := p.waitLog(t, "stats")
		if line["interval"] != "100ms" {
			t.Fatalf("stats line %v: interval %v, want 100ms", line, line["interval"])
		}
		ops, _ := line["ops"].(map[string]any)
		casOut, _ := line["cas"].(map[string]any)
		h, _ := ops["head"].(float64)
		c, _ := ops["compare_and_set"].(float64)
		k, _ := casOut["committed"].(float64)
		head, cas, committed = head+h, cas+c, committed+k
		// One more line after both showed up, so that a double count
		// would be seen.
		if lines > 0 && head >= 1 && cas >= 1 && h == 0 && c == 0 {
			break
		}
	}
	if head != 1 || cas != 1 || committed != 1 {
		t.Errorf("stats lines add up to head %v, compare_and_set %v (committed %v); want 1, 1 (1)", head, cas, committed)
	}
	p.stop(t, syscall.SIGTERM)
}

func scrape(t *testing.T, httpAddr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d, %v", resp.StatusCode, err)
	}
	return string(body)
}

func TestStatsIntervalMustNotBeNegative(t *testing.T) {
	code, stderr := runInProcess(t, "serve", "--backend", "bolt:///x", "--stats-interval", "-1s")
	if want := "--stats-interval must not be negative (0 turns the stats log off), got -1s"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	t.Setenv("COMMITTER_STATS_INTERVAL", "-5m")
	code, stderr = runInProcess(t, "serve", "--backend", "bolt:///x")
	if want := "--stats-interval must not be negative (0 turns the stats log off), got -5m0s"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("from the environment: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}
