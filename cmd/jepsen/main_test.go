package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/nemesis"
	"github.com/hacommit/committer/jepsen/report"
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

func TestCanaryTable(t *testing.T) {
	table := canaries()
	if len(table) < 2 {
		t.Fatalf("%d canaries, want at least the stale-read and fencing ones", len(table))
	}
	names := map[string]bool{}
	for _, c := range table {
		if c.Name == "" || names[c.Name] || c.Description == "" || len(c.ServeFlags) == 0 || len(c.Expect) == 0 {
			t.Errorf("canary %+v: want a unique name, a description, serve flags and expected anomalies", c)
		}
		names[c.Name] = true
		if _, err := nemesis.ParseFamilies(c.Nemesis); err != nil {
			t.Errorf("canary %s: nemesis %q: %v", c.Name, c.Nemesis, err)
		}
		if c.Isolation != "" && !slices.Contains(isolationLevels(), c.Isolation) {
			t.Errorf("canary %s: isolation %q", c.Name, c.Isolation)
		}
		concurrency := 12
		if c.Concurrency > 0 {
			concurrency = c.Concurrency
		}
		f := runFlags{Nodes: 3, Time: time.Minute, Nemesis: c.Nemesis, Concurrency: concurrency, OpTimeout: 5 * time.Second,
			ReadTimeout: 2 * time.Second, Isolation: isolationSerializable, ServeArgs: append(slices.Clone(c.ServeFlags), c.FaultDelays...)}
		if err := f.validate(); err != nil {
			t.Errorf("canary %s: its serve flags are not a valid run: %v", c.Name, err)
		}
		var delays []string
		for _, d := range c.FaultDelays {
			spec, ok := strings.CutPrefix(d, "--fault-delay=")
			if !ok {
				t.Errorf("canary %s: fault delay %q is not a --fault-delay flag", c.Name, d)
			}
			delays = append(delays, spec)
		}
		if _, err := faultdelay.Parse(delays); err != nil {
			t.Errorf("canary %s: %v", c.Name, err)
		}
	}
	byName := map[string]canary{}
	for _, c := range table {
		byName[c.Name] = c
	}
	stale, fence, join := table[0], byName["no-fencing"], byName["join-inflight-reads"]
	if !slices.Equal(join.ServeFlags, []string{"--unsafe-join-inflight-reads"}) || join.Nemesis != string(nemesis.PauseLeader) ||
		len(join.FaultDelays) != 2 || !slices.Equal(join.Expect, []report.AnomalyKind{report.NotLinearizable}) {
		t.Errorf("in-flight join canary: %+v", join)
	}
	if stale.Name != "stale-reads" || !slices.Equal(stale.ServeFlags, []string{"--read-consistency=leader"}) ||
		stale.Nemesis != string(nemesis.PauseLeader) || !slices.Equal(stale.Expect, []report.AnomalyKind{report.NotLinearizable}) {
		t.Errorf("stale-read canary: %+v", stale)
	}
	if fence.Name != "no-fencing" || !slices.Equal(fence.ServeFlags, []string{"--unsafe-skip-fence"}) ||
		fence.Nemesis != string(nemesis.BackendStallLeader) ||
		!slices.Equal(fence.Expect, []report.AnomalyKind{report.NotLinearizable, report.LostWrite}) {
		t.Errorf("fencing canary: %+v", fence)
	}
}

func TestCanaryRunPlansAttempts(t *testing.T) {
	c := canary{Name: "stale-reads", ServeFlags: []string{"--read-consistency=leader"}, Nemesis: "pause-leader",
		Expect: []report.AnomalyKind{report.NotLinearizable}}
	levels := []string{isolationReadCommitted, isolationSerializable}
	got := canaryRun(c, 1, 5, levels, 90*time.Second)
	want := plannedRun{Name: "canary-stale-reads-seed2005", Args: []string{"--time", "1m30s"}, Nodes: 3, Nemesis: "pause-leader",
		Seed: 2005, Isolation: isolationReadCommitted, Canary: "stale-reads", ServeFlags: c.ServeFlags, Expect: c.Expect, Attempt: 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("canaryRun = %+v\nwant %+v", got, want)
	}
	c.Isolation = isolationSerializable
	if got := canaryRun(c, 0, 5, levels, time.Minute); got.Isolation != isolationSerializable || got.Seed != 1005 {
		t.Errorf("a canary's own isolation: got isolation %s seed %d, want serializable 1005", got.Isolation, got.Seed)
	}
	c.Concurrency = 24
	if got, want := canaryRun(c, 0, 5, levels, time.Minute).Args, []string{"--time", "1m0s", "--concurrency", "24"}; !slices.Equal(got, want) {
		t.Errorf("a canary's own concurrency: args %q, want %q", got, want)
	}
	if _, ok := controlRun(c, 5, levels, time.Minute); ok {
		t.Error("a canary without fault delays got a control run")
	}

	// A canary with fault delays: its attempts carry the delays after its
	// flags, and its control carries the delays alone and must PASS.
	c = canary{Name: "join", ServeFlags: []string{"--unsafe-join-inflight-reads"}, FaultDelays: []string{"--fault-delay=leadership-lost=1s"},
		Nemesis: "pause-leader", Expect: []report.AnomalyKind{report.NotLinearizable}}
	if got, want := canaryRun(c, 0, 5, levels, time.Minute).ServeFlags, []string{"--unsafe-join-inflight-reads", "--fault-delay=leadership-lost=1s"}; !slices.Equal(got, want) {
		t.Errorf("attempt serve flags %q, want %q", got, want)
	}
	ctl, ok := controlRun(c, 5, levels, time.Minute)
	want = plannedRun{Name: "control-join-seed1005", Args: []string{"--time", "1m0s"}, Nodes: 3, Nemesis: "pause-leader",
		Seed: 1005, Isolation: isolationReadCommitted, Control: "join", ServeFlags: c.FaultDelays}
	if !ok || !reflect.DeepEqual(ctl, want) {
		t.Errorf("controlRun = %+v, %v\nwant %+v", ctl, ok, want)
	}
	if !slices.Equal(c.ServeFlags, []string{"--unsafe-join-inflight-reads"}) {
		t.Errorf("planning changed the canary's flags: %q", c.ServeFlags)
	}
}

func TestJudgeCanary(t *testing.T) {
	expect := []report.AnomalyKind{report.NotLinearizable, report.LostWrite}
	summary := func(v checker.Verdict, anomalies map[report.AnomalyKind]int) *report.Summary {
		s := &report.Summary{Verdict: v, Anomalies: anomalies}
		if v == checker.Unknown {
			s.Checker.UnknownKeys = []string{"k1", "k2"}
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		r       campaignResult
		caught  bool
		outcome string
	}{
		{"the expected anomaly",
			campaignResult{ExitCode: exitFail, Summary: summary(checker.Fail, map[report.AnomalyKind]int{report.NotLinearizable: 12})},
			true, "caught: not-linearizable 12"},
		{"the other expected anomaly, with an unexpected one",
			campaignResult{ExitCode: exitFail, Summary: summary(checker.Fail, map[report.AnomalyKind]int{report.LostWrite: 1, report.ListKeys: 2})},
			true, "caught: list-keys 2, lost-write 1"},
		{"only an unexpected anomaly",
			campaignResult{ExitCode: exitFail, Summary: summary(checker.Fail, map[report.AnomalyKind]int{report.ListKeys: 2})},
			false, "FAIL without the expected anomaly (not-linearizable or lost-write): found list-keys 2"},
		{"a malformed history",
			campaignResult{ExitCode: exitFail, Summary: summary(checker.Fail, map[report.AnomalyKind]int{report.MalformedHistory: 1})},
			false, "FAIL without the expected anomaly (not-linearizable or lost-write): found malformed-history 1"},
		{"a pass",
			campaignResult{ExitCode: exitPass, Summary: summary(checker.Pass, nil)},
			false, "PASS: the checker found nothing"},
		{"a search that timed out",
			campaignResult{ExitCode: exitOther, Summary: summary(checker.Unknown, nil)},
			false, "UNKNOWN: the linearizability search ran out of time on 2 keys; anomalies: none"},
		{"a crash before the summary",
			campaignResult{ExitCode: exitOther, Verdict: checker.Unknown},
			false, "no summary: the run crashed or could not be carried out (exit status 2)"},
		{"a harness error after the check",
			campaignResult{ExitCode: exitOther, Summary: summary(checker.Fail, map[report.AnomalyKind]int{report.NotLinearizable: 3})},
			false, "FAIL in the summary, but the run exited with status 2: the harness failed after checking"},
	} {
		caught, outcome := judgeCanary(expect, tc.r)
		if caught != tc.caught || outcome != tc.outcome {
			t.Errorf("%s: judgeCanary = %v, %q; want %v, %q", tc.name, caught, outcome, tc.caught, tc.outcome)
		}
	}
}

func TestJudgeRegular(t *testing.T) {
	for _, tc := range []struct {
		r       campaignResult
		ok      bool
		outcome string
	}{
		{campaignResult{Verdict: checker.Pass, ExitCode: exitPass, Summary: &report.Summary{Verdict: checker.Pass}}, true, "passed"},
		{campaignResult{Verdict: checker.Pass, ExitCode: exitOther, Summary: &report.Summary{Verdict: checker.Pass}}, false, "PASS in the summary, but the run exited with status 2"},
		{campaignResult{Verdict: checker.Fail, ExitCode: exitFail, Summary: &report.Summary{Verdict: checker.Fail,
			Anomalies: map[report.AnomalyKind]int{report.NotLinearizable: 1}}}, false, "FAIL: not-linearizable 1"},
		{campaignResult{Verdict: checker.Unknown, ExitCode: exitOther, Summary: &report.Summary{Verdict: checker.Unknown}}, false, "UNKNOWN"},
		{campaignResult{Verdict: checker.Unknown, ExitCode: exitOther}, false, "no summary: the run crashed or could not be carried out (exit status 2)"},
	} {
		if ok, outcome := judgeRegular(tc.r); ok != tc.ok || outcome != tc.outcome {
			t.Errorf("judgeRegular(%s, exit %d) = %v, %q; want %v, %q", tc.r.Verdict, tc.r.ExitCode, ok, outcome, tc.ok, tc.outcome)
		}
	}
}

func TestCanarySummaryAndLine(t *testing.T) {
	table := []canary{
		{Name: "stale-reads", Description: "d1", ServeFlags: []string{"--read-consistency=leader"}, Nemesis: "pause-leader",
			Expect: []report.AnomalyKind{report.NotLinearizable}},
		{Name: "no-fencing", Description: "d2", ServeFlags: []string{"--unsafe-skip-fence"}, Nemesis: "backend-stall-leader",
			Expect: []report.AnomalyKind{report.NotLinearizable, report.LostWrite}},
		{Name: "never-ran", Expect: []report.AnomalyKind{report.LostWrite}},
		{Name: "join", Description: "d3", ServeFlags: []string{"--unsafe-join-inflight-reads"}, FaultDelays: []string{"--fault-delay=leadership-lost=1s"},
			Nemesis: "pause-leader", Expect: []report.AnomalyKind{report.NotLinearizable}},
	}
	attempt := func(name, run string, ok bool, outcome string, anomalies map[report.AnomalyKind]int) campaignResult {
		return campaignResult{plannedRun: plannedRun{Name: run, Canary: name, Seed: 7, Isolation: isolationSerializable},
			Verdict: checker.Fail, OK: ok, Outcome: outcome, Summary: &report.Summary{Anomalies: anomalies}}
	}
	results := []campaignResult{
		{plannedRun: plannedRun{Name: "run01"}, OK: true},
		attempt("stale-reads", "a1", false, "PASS: the checker found nothing", nil),
		attempt("stale-reads", "a2", true, "caught: not-linearizable 7", map[report.AnomalyKind]int{report.NotLinearizable: 7}),
		attempt("no-fencing", "b1", false, "no summary", nil),
		attempt("no-fencing", "b2", false, "UNKNOWN", nil),
		{plannedRun: plannedRun{Name: "c0", Control: "join", Seed: 8, Isolation: isolationSerializable}, Verdict: checker.Pass, OK: true,
			Outcome: "PASS", Summary: &report.Summary{}},
		attempt("join", "c1", true, "caught: not-linearizable 2", map[report.AnomalyKind]int{report.NotLinearizable: 2}),
	}
	got := summarizeCanaries(table, results)
	if len(got) != 3 || got[2].Control == nil || got[2].Control.Run != "c0" || got[2].Control.Verdict != checker.Pass ||
		len(got[2].Attempts) != 1 || !got[2].Caught {
		t.Fatalf("the join canary's summary = %+v", got[2])
	}
	if line, want := canaryLine(got[2]), "canary join: caught on attempt 1 (not-linearizable 2); its control, with the same fault delays and no unsafe flag: PASS"; line != want {
		t.Errorf("canaryLine = %q, want %q", line, want)
	}
	if len(got) != 3 || got[0].Name != "stale-reads" || !got[0].Caught || len(got[0].Attempts) != 2 ||
		got[1].Name != "no-fencing" || got[1].Caught || len(got[1].Attempts) != 2 || got[0].Isolation != isolationSerializable {
		t.Fatalf("summarizeCanaries = %+v", got)
	}
	if a := got[0].Attempts[1]; a.Run != "a2" || a.Anomalies[report.NotLinearizable] != 7 || a.Outcome != "caught: not-linearizable 7" {
		t.Errorf("stale-reads attempt 2 = %+v", a)
	}
	if line, want := canaryLine(got[0]), "canary stale-reads: caught on attempt 2 (not-linearizable 7)"; line != want {
		t.Errorf("canaryLine = %q, want %q", line, want)
	}
	if line, want := canaryLine(got[1]), "canary no-fencing: NOT caught in 2 attempts, want not-linearizable or lost-write; attempt 1: no summary; attempt 2: UNKNOWN"; line != want {
		t.Errorf("canaryLine = %q, want %q", line, want)
	}
	if campaignOK(results) {
		t.Error("campaignOK with an uncaught canary")
	}
	md := campaignMarkdown(campaignFlags{Nodes: "3"}, []string{isolationSerializable}, results, got, time.Minute)
	for _, want := range []string{
		"| stale-reads | `--read-consistency=leader` | - | pause-leader | serializable | not-linearizable | 2 | yes (attempt 2) | 1: PASS: the checker found nothing; 2: caught: not-linearizable 7 | - |",
		"| no-fencing | `--unsafe-skip-fence` | - | backend-stall-leader | serializable | not-linearizable or lost-write | 2 | **no** | 1: no summary; 2: UNKNOWN | - |",
		"| join | `--unsafe-join-inflight-reads` | `--fault-delay=leadership-lost=1s` | pause-leader | serializable | not-linearizable | 1 | yes (attempt 1) | 1: caught: not-linearizable 2 | PASS |",
		"| c0 | 0 |  | serializable | 8 | PASS | PASS (control of join) | PASS |",
		"- stale-reads: d1\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("campaign.md lacks %q:\n%s", want, md)
		}
	}
}

func TestRegularRunsSpreadOverIsolationLevels(t *testing.T) {
	rot := rotation([]string{"kill", "pause", "partition", "membership"})
	levels := []string{isolationSerializable, isolationReadCommitted}
	var got []string
	for i := range 6 {
		pr := regularRun(i, 10, []int{3, 5}, rot, levels, 45*time.Second)
		if !slices.Equal(pr.Args, []string{"--time", "45s"}) {
			t.Fatalf("run %d args %q", i, pr.Args)
		}
		got = append(got, pr.Name)
	}
	want := []string{
		"run01-n3-kill+pause+partition+membership-serializable-seed10",
		"run02-n5-kill+pause-serializable-seed11",
		"run03-n3-partition+membership-read-committed-seed12",
		"run04-n5-kill+pause+partition+membership-read-committed-seed13",
		"run05-n3-kill+pause-serializable-seed14",
		"run06-n5-partition+membership-serializable-seed15",
	}
	if !slices.Equal(got, want) {
		t.Errorf("regular runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if pr := regularRun(1, 0, []int{3}, []string{"all"}, levels, time.Minute); pr.Isolation != isolationReadCommitted || pr.Nodes != 3 {
		t.Errorf("one size: run 2 is %s on %d nodes, want read-committed on 3", pr.Isolation, pr.Nodes)
	}
}

func TestParseIsolationList(t *testing.T) {
	got, err := parseIsolationList("serializable, read-committed")
	if err != nil || !slices.Equal(got, []string{"serializable", "read-committed"}) {
		t.Errorf("parseIsolationList = %q, %v", got, err)
	}
	for list, want := range map[string]string{
		"serializable,snapshot":         `--isolation "serializable,snapshot": "snapshot" is not an isolation level; want a comma-separated list of serializable, read-committed`,
		"":                              `--isolation "": "" is not an isolation level; want a comma-separated list of serializable, read-committed`,
		"read-committed,read-committed": `--isolation "read-committed,read-committed": read-committed is listed twice`,
	} {
		if _, err := parseIsolationList(list); err == nil || err.Error() != want {
			t.Errorf("parseIsolationList(%q) = %v, want %s", list, err, want)
		}
	}
}

func TestProgressForwarderPassesOnlyProgressLines(t *testing.T) {
	var out strings.Builder
	p := &progressForwarder{prefix: "campaign: run01: ", w: &out}
	for _, chunk := range []string{"jepsen: seed 1\njepsen: prog", "ress 5s: 10 ops/s\nnoise\n", "jepsen: progress 10s: 20 ops/s\n"} {
		if n, err := p.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if want := "campaign: run01: progress 5s: 10 ops/s\ncampaign: run01: progress 10s: 20 ops/s\n"; out.String() != want {
		t.Errorf("forwarded %q, want %q", out.String(), want)
	}
}

func TestReplicaFlagsAndTheirEffect(t *testing.T) {
	f := runFlags{Isolation: isolationReadCommitted, ReadConsistency: "linearizable", ServeArgs: []string{"--read-consistency=leader", "--unsafe-skip-fence"}}
	if got, want := f.replicaFlags(), []string{"--isolation=read-committed", "--read-consistency=linearizable", "--read-consistency=leader", "--unsafe-skip-fence"}; !slices.Equal(got, want) {
		t.Errorf("replicaFlags = %q, want %q", got, want)
	}
	if rc, fence := f.effectiveReadConsistency(), f.effectiveSkipFence(); rc != "leader" || !fence {
		t.Errorf("effective read consistency %q, skip fence %v; want leader, true", rc, fence)
	}
	f = runFlags{Isolation: isolationSerializable, UnsafeSkipFence: true, ServeArgs: []string{"--unsafe-skip-fence=false"}}
	if rc, fence := f.effectiveReadConsistency(), f.effectiveSkipFence(); rc != "" || fence {
		t.Errorf("effective read consistency %q, skip fence %v; want empty, false", rc, fence)
	}
}

func TestValidate(t *testing.T) {
	good := runFlags{Nodes: 3, Time: time.Minute, Nemesis: "all", Concurrency: 12, OpTimeout: 5 * time.Second, ReadTimeout: 2 * time.Second,
		Isolation: isolationSerializable, ProgressInterval: 5 * time.Second, ServeArgs: []string{"--unsafe-skip-fence", "--raft-heartbeat-timeout=300ms"}}
	if err := good.validate(); err != nil {
		t.Fatalf("valid flags: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*runFlags)
		want   string
	}{
		{func(f *runFlags) { f.Nodes = 0 }, "--nodes 0: want 1 to 9 (3 or 5 in practice)"},
		{func(f *runFlags) { f.Time = 0 }, "--time 0s: must be positive"},
		{func(f *runFlags) { f.Nemesis = "chaos" }, "--nemesis: "},
		{func(f *runFlags) { f.Concurrency = 0 }, "--concurrency 0: must be at least 1"},
		{func(f *runFlags) { f.OpTimeout = 0 }, "--op-timeout 0s: must be positive"},
		{func(f *runFlags) { f.ReadTimeout = -time.Second }, "--read-timeout -1s: must be positive"},
		{func(f *runFlags) { f.ReadConsistency = "eventual" }, `--read-consistency "eventual": want linearizable or leader`},
		{func(f *runFlags) { f.ServeArgs = []string{"--read-consistency=eventual"} }, `--read-consistency "eventual": want linearizable or leader`},
		{func(f *runFlags) { f.Isolation = "snapshot" }, `--isolation "snapshot": want serializable or read-committed`},
		{func(f *runFlags) { f.Isolation = "" }, `--isolation "": want serializable or read-committed`},
		{func(f *runFlags) { f.ServeArgs = []string{"unsafe"} }, `--serve-arg "unsafe": want one word, --name or --name=value`},
		{func(f *runFlags) { f.ServeArgs = []string{"--isolation=read-committed"} }, `--serve-arg "--isolation=read-committed": use --isolation, which the report records`},
		{func(f *runFlags) { f.ServeArgs = []string{"--data-dir=/tmp"} }, `--serve-arg "--data-dir=/tmp": the harness sets --data-dir itself`},
		{func(f *runFlags) { f.ProgressInterval = -time.Second }, "--progress-interval -1s: must not be negative (0 turns progress lines off)"},
	} {
		f := good
		tc.mutate(&f)
		if err := f.validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("flags %+v: validate = %v, want %s", f, err, tc.want)
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

// fakeRun is a stand-in for this program's `run`: it prints two progress
// lines and other output, writes summary.json into --out, and exits with
// the given status, so that campaignRun can be tested without root.
const fakeRun = `#!/bin/sh
out=""
while [ $# -gt 0 ]; do
	if [ "$1" = "--out" ]; then out="$2"; fi
	shift
done
echo "jepsen: seed 1"
echo "jepsen: progress 5s: 100 ops/s over 5.0s (500 ok, 0 fail, 0 info); faults: pause-leader on n1 for 1.0s"
echo "a warning on stderr" >&2
echo "jepsen: progress 10s: 90 ops/s over 5.0s (450 ok, 0 fail, 0 info); faults: none"
printf '%s' "$SUMMARY" > "$out/summary.json"
echo "VERDICT: FAIL"
exit $STATUS
`

func TestCampaignRunJudgesTheChildAndForwardsProgress(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake-jepsen")
	if err := os.WriteFile(exe, []byte(fakeRun), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SUMMARY", `{"verdict": "FAIL", "anomalies": {"not-linearizable": 2}, "total": {"ok": 950}}`)
	t.Setenv("STATUS", "1")
	c := canaries()[0]
	pr := canaryRun(c, 0, 5, []string{isolationReadCommitted}, 40*time.Second)
	var stdout strings.Builder
	say := func(format string, args ...any) {
		stdout.WriteString("campaign: " + fmt.Sprintf(format, args...) + "\n")
	}
	r := campaignRun(t.Context(), exe, "/bin/committer", dir, pr, 5*time.Second, &stdout, say)

	if !r.OK || r.Outcome != "caught: not-linearizable 2" || r.ExitCode != exitFail || r.Verdict != checker.Fail {
		t.Errorf("result: ok %v, outcome %q, exit %d, verdict %s; want caught: not-linearizable 2, exit 1, FAIL", r.OK, r.Outcome, r.ExitCode, r.Verdict)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	want := []string{
		"campaign: canary canary-stale-reads-seed1005: jepsen run --nodes 3 --nemesis pause-leader --seed 1005 --out " + filepath.Join(dir, pr.Name) +
			" --committer-bin /bin/committer --isolation read-committed --progress-interval 5s --serve-arg=--read-consistency=leader --serve-arg=--fault-delay=leadership-lost=500ms --time 40s",
		"campaign: canary-stale-reads-seed1005: progress 5s: 100 ops/s over 5.0s (500 ok, 0 fail, 0 info); faults: pause-leader on n1 for 1.0s",
		"campaign: canary-stale-reads-seed1005: progress 10s: 90 ops/s over 5.0s (450 ok, 0 fail, 0 info); faults: none",
	}
	if len(lines) != 4 || !slices.Equal(lines[:3], want) || !strings.HasPrefix(lines[3], "campaign:   FAIL (caught: not-linearizable 2, as expected): 950 operations, 0 faults, ") {
		t.Errorf("campaign output:\n%s\nwant:\n%s\n<the verdict line>", stdout.String(), strings.Join(want, "\n"))
	}
	logged, err := os.ReadFile(filepath.Join(dir, pr.Name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "a warning on stderr\n") || !strings.HasSuffix(string(logged), "VERDICT: FAIL\n") {
		t.Errorf("%s.out holds %q, want the whole output", pr.Name, logged)
	}

	// The same child exiting 2 (a harness error after the check) is not caught.
	t.Setenv("STATUS", "2")
	pr.Name += "-again"
	if r := campaignRun(t.Context(), exe, "/bin/committer", dir, pr, 5*time.Second, io.Discard, func(string, ...any) {}); r.OK ||
		r.Outcome != "FAIL in the summary, but the run exited with status 2: the harness failed after checking" {
		t.Errorf("exit 2: ok %v, outcome %q; want not caught", r.OK, r.Outcome)
	}
}
