package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// runLogged serves a one-replica cluster with the given log flags, makes a
// CaS and a Head through it, stops it with SIGTERM and returns every line
// it wrote to stderr.
func runLogged(t *testing.T, bin string, logFlags ...string) [][]byte {
	t.Helper()
	addr := freeLoopbackAddr(t)
	args := append([]string{"serve", "--backend", "bolt://" + filepath.Join(t.TempDir(), "c.db"), "--grpc-addr", addr,
		"--data-dir", t.TempDir(), "--raft-addr", "127.0.0.1:0", "--http-addr", ""}, logFlags...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	casAndHead(t, addr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("committer exited with %v; stderr:\n%s", err, stderr.String())
	}
	var lines [][]byte
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines
}

// Raft's own log lines go through the replica's logger: with JSON logs
// every line on stderr is a JSON object, Raft's included, and the level flag
// governs Raft's lines too.
func TestRaftLogsObeyLogFlags(t *testing.T) {
	bin := buildCommitter(t)

	t.Run("json at info", func(t *testing.T) {
		raftInfo := 0
		for _, line := range runLogged(t, bin, "--log-format", "json", "--log-level", "info") {
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("stderr line is not JSON: %q", line)
			}
			if rec["logger"] == "raft" && rec["level"] == "INFO" {
				raftInfo++
			}
		}
		if raftInfo == 0 {
			t.Fatal("no INFO line from Raft: its lines do not reach the replica's logger")
		}
	})

	t.Run("warn silences info", func(t *testing.T) {
		for _, line := range runLogged(t, bin, "--log-format", "json", "--log-level", "warn") {
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("stderr line is not JSON: %q", line)
			}
			if lvl := rec["level"]; lvl != "WARN" && lvl != "ERROR" {
				t.Errorf("a %v line at --log-level warn: %s", lvl, line)
			}
		}
	})
}
