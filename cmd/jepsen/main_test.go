package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/nemesis"
)

func TestRotation(t *testing.T) {
	if got, want := rotation(nemesis.Families()), []string{"all", "kill,pause", "partition,loss", "slow,membership", "transfer,backend"}; !slices.Equal(got, want) {
		t.Errorf("rotation(all) = %v, want %v", got, want)
	}
	ci := []string{"kill", "pause", "partition", "membership"}
	if got, want := rotation(ci), []string{"kill,pause,partition,membership", "kill,pause", "partition,membership"}; !slices.Equal(got, want) {
		t.Errorf("rotation(%v) = %v, want %v", ci, got, want)
	}
	if got := rotation([]string{"kill", "pause", "loss"}); !slices.Equal(got, []string{"kill,pause,loss", "kill,pause", "loss"}) {
		t.Errorf("rotation of three = %v", got)
	}
	if got := rotation([]string{"pause-leader"}); !slices.Equal(got, []string{"pause-leader"}) {
		t.Errorf("rotation of one = %v", got)
	}
}

func TestCampaignOK(t *testing.T) {
	pass := campaignResult{OK: true, Verdict: checker.Pass}
	failed := campaignResult{OK: false, Verdict: checker.Fail}
	canary := func(name string, caught bool) campaignResult {
		return campaignResult{plannedRun: plannedRun{Canary: name}, OK: caught}
	}
	for _, tc := range []struct {
		name string
		rs   []campaignResult
		want bool
	}{
		{"all passed, canaries caught", []campaignResult{pass, pass, canary("a", true), canary("b", true)}, true},
		{"a canary caught on its second attempt", []campaignResult{pass, canary("a", false), canary("a", true)}, true},
		{"a regular run failed", []campaignResult{pass, failed, canary("a", true)}, false},
		{"a canary never caught", []campaignResult{pass, canary("a", false), canary("a", false), canary("b", true)}, false},
		{"no canaries", []campaignResult{pass}, true},
	} {
		if got := campaignOK(tc.rs); got != tc.want {
			t.Errorf("%s: campaignOK = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCanaryRunsExpectFailureModes(t *testing.T) {
	cs := canaryRuns(5, 90*time.Second)
	if len(cs) != 2 {
		t.Fatalf("%d canaries", len(cs))
	}
	joined := strings.Join(cs[0].Args, " ") + " | " + strings.Join(cs[1].Args, " ")
	if cs[0].Nemesis != string(nemesis.PauseLeader) || !slices.Contains(cs[0].Args, "leader") ||
		cs[1].Nemesis != string(nemesis.BackendStallLeader) || !slices.Contains(cs[1].Args, "--unsafe-skip-fence") ||
		!strings.Contains(joined, "1m30s") {
		t.Fatalf("canaries: %+v", cs)
	}
}

func TestValidate(t *testing.T) {
	good := runFlags{Nodes: 3, Time: time.Minute, Nemesis: "all", Concurrency: 12, OpTimeout: 5 * time.Second}
	if err := good.validate(); err != nil {
		t.Fatalf("valid flags: %v", err)
	}
	for _, mutate := range []func(*runFlags){
		func(f *runFlags) { f.Nodes = 0 },
		func(f *runFlags) { f.Time = 0 },
		func(f *runFlags) { f.Nemesis = "chaos" },
		func(f *runFlags) { f.Concurrency = 0 },
		func(f *runFlags) { f.OpTimeout = 0 },
		func(f *runFlags) { f.ReadConsistency = "eventual" },
	} {
		f := good
		mutate(&f)
		if err := f.validate(); err == nil {
			t.Errorf("flags %+v validated", f)
		}
	}
}

func TestPrepareOutRefusesAnEarlierRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	got, err := prepareOut(dir)
	if err != nil || got != dir {
		t.Fatalf("prepareOut(%s) = %s, %v", dir, got, err)
	}
	if _, err := prepareOut(dir); err != nil {
		t.Fatalf("an empty directory was refused: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.jsonl"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prepareOut(dir); err == nil || !strings.Contains(err.Error(), "earlier run") {
		t.Fatalf("a directory with a history was accepted: %v", err)
	}
}
