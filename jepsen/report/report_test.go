package report_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/jepsen/report"
)

// synthetic is a generated run with the counts its generator expects.
type synthetic struct {
	events []history.Event
	ops    map[string]report.Outcomes
	total  report.Outcomes
	end    int64 // time of the last event
}

const (
	killStart, killEnd           = 3 * time.Second, 5 * time.Second
	partitionStart, partitionEnd = 6 * time.Second, 8 * time.Second
	pauseStart                   = 9 * time.Second // never ends
	runFor                       = 10 * time.Second
)

// syntheticRun records three clients, each alternating cas and head on its
// own key for ten seconds. During the kill window every third cas times out
// (without effect) and its client moves to a new process; during the
// partition every other head fails; both windows slow everything down.
// Final reads follow, then an operation left unfinished.
func syntheticRun() synthetic {
	type stamped struct {
		t int64
		e history.Event
	}
	var evs []stamped
	s := synthetic{ops: make(map[string]report.Outcomes)}
	count := func(f string, typ history.Type) {
		o := s.ops[f]
		switch typ {
		case history.OK:
			o.OK++
			s.total.OK++
		case history.Fail:
			o.Fail++
			s.total.Fail++
		case history.Info:
			o.Info++
			s.total.Info++
		}
		s.ops[f] = o
	}
	for c := range 3 {
		key := fmt.Sprintf("k%d", c)
		process := c
		var seqno uint64
		var last *history.Version
		t := time.Duration(c) * 7 * time.Millisecond
		for n := 0; t < runFor; n++ {
			slow := (t >= killStart && t < killEnd) || (t >= partitionStart && t < partitionEnd)
			latency := time.Duration(5+c) * time.Millisecond
			if slow {
				latency = 300 * time.Millisecond
			}
			inv := history.Event{Process: process, Type: history.Invoke, Node: "n1"}
			if n%2 == 0 {
				inv.F = history.FCAS
				inv.CAS = &history.CASOp{Key: key, SeqNo: seqno, Data: fmt.Sprintf("%s-%d", key, n)}
			} else {
				inv.F, inv.Key = history.FHead, key
			}
			done := inv
			done.Type = history.OK
			switch {
			case inv.F == history.FCAS && t >= killStart && t < killEnd && n%3 == 0:
				done.Type, done.Error = history.Info, "indeterminate: deadline exceeded"
			case inv.F == history.FHead && t >= partitionStart && t < partitionEnd && n%4 == 1:
				done.Type, done.Error = history.Fail, "determinate: no leader"
			case inv.F == history.FCAS:
				done.Committed = true
				last = &history.Version{SeqNo: seqno, Data: inv.CAS.Data}
				seqno++
			default:
				done.Head = last
			}
			evs = append(evs, stamped{int64(t), inv}, stamped{int64(t + latency), done})
			count(inv.F, done.Type)
			if done.Type == history.Info {
				process += 10
			}
			t += latency + 20*time.Millisecond
		}
	}
	nemesis := func(at time.Duration, typ history.Type, kind string, targets ...string) {
		evs = append(evs, stamped{int64(at), history.Event{Process: history.NemesisProcess, Type: typ, F: history.FNemesis, Fault: kind, Targets: targets}})
	}
	nemesis(killStart, history.Invoke, "kill", "n1")
	nemesis(killEnd, history.OK, "kill", "n1")
	nemesis(partitionStart, history.Invoke, "partition", "n2")
	nemesis(partitionEnd, history.OK, "partition", "n2")
	nemesis(pauseStart, history.Invoke, "pause", "n3")
	slices.SortStableFunc(evs, func(a, b stamped) int { return int(a.t - b.t) })
	out := make([]history.Event, len(evs))
	for i, st := range evs {
		st.e.Index, st.e.Time = i, st.t
		out[i] = st.e
	}
	s.events = out
	return s
}

// finalReads appends, after healing, a full scan and a head of every key,
// then one head that never completes.
func (s *synthetic) finalReads() {
	last := s.events[len(s.events)-1].Time
	at := last + int64(100*time.Millisecond)
	add := func(e history.Event) {
		e.Index, e.Time = len(s.events), at
		s.events = append(s.events, e)
		at += int64(time.Millisecond)
	}
	heads := make(map[string]*history.Version)
	scans := make(map[string][]history.Version)
	for _, e := range s.events {
		switch {
		case e.Type == history.OK && e.F == history.FCAS && e.Committed:
			v := history.Version{SeqNo: e.CAS.SeqNo, Data: e.CAS.Data}
			heads[e.CAS.Key] = &v
			scans[e.CAS.Key] = append(scans[e.CAS.Key], v)
		}
	}
	for c := range 3 {
		key := fmt.Sprintf("k%d", c)
		p := 1000 + c
		add(history.Event{Process: p, Type: history.Invoke, F: history.FScan, Key: key, Limit: math.MaxUint64})
		add(history.Event{Process: p, Type: history.OK, F: history.FScan, Key: key, Limit: math.MaxUint64, Versions: scans[key]})
		add(history.Event{Process: p, Type: history.Invoke, F: history.FHead, Key: key})
		add(history.Event{Process: p, Type: history.OK, F: history.FHead, Key: key, Head: heads[key]})
		count := s.ops[history.FScan]
		count.OK++
		s.ops[history.FScan] = count
		count = s.ops[history.FHead]
		count.OK++
		s.ops[history.FHead] = count
		s.total.OK += 2
	}
	add(history.Event{Process: 2000, Type: history.Invoke, F: history.FHead, Key: "k0"})
	count := s.ops[history.FHead]
	count.Unfinished++
	s.ops[history.FHead] = count
	s.total.Unfinished++
	s.end = s.events[len(s.events)-1].Time
}

func TestWriteProducesEveryArtifact(t *testing.T) {
	syn := syntheticRun()
	syn.finalReads()
	res := checker.Check(syn.events, checker.Options{})
	if res.Verdict != checker.Pass {
		t.Fatalf("synthetic run: %s: %q", res.Verdict, res.Problems)
	}
	run := report.Run{
		Seed: 42, Nodes: 3, Duration: runFor, Nemeses: []string{"kill", "partition", "pause"},
		ReadConsistency: "linearizable", Isolation: "read-committed", Elections: 2, CommitterArgs: []string{"--heartbeat-timeout=500ms"},
	}
	dir := filepath.Join(t.TempDir(), "run-42")
	sum, err := report.Write(dir, run, syn.events, &res)
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{report.HistoryFile, report.SummaryJSONFile, report.SummaryTextFile, report.TimelineFile, report.LinearizabilityFile, report.IndexFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Fatalf("%s is empty", name)
		}
	}

	// history.jsonl reads back as the same history
	f, err := os.Open(filepath.Join(dir, report.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	back, err := history.Read(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, syn.events) {
		t.Fatalf("history.jsonl holds %d events that differ from the %d written", len(back), len(syn.events))
	}

	// summary.json decodes to the returned summary, with the generator's counts
	raw, err := os.ReadFile(filepath.Join(dir, report.SummaryJSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var decoded report.Summary
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(decoded, sum) {
		t.Fatalf("summary.json\n%+v\ndiffers from the returned summary\n%+v", decoded, sum)
	}
	if !reflect.DeepEqual(decoded.Run, run) || decoded.Verdict != checker.Pass || decoded.Events != len(syn.events) {
		t.Fatalf("run %+v verdict %s events %d", decoded.Run, decoded.Verdict, decoded.Events)
	}
	if !reflect.DeepEqual(decoded.Ops, syn.ops) || decoded.Total != syn.total {
		t.Fatalf("ops %+v total %+v; want %+v total %+v", decoded.Ops, decoded.Total, syn.ops, syn.total)
	}
	if syn.total.Info == 0 || syn.total.Fail == 0 {
		t.Fatalf("the synthetic run has no info (%d) or fail (%d) operations", syn.total.Info, syn.total.Fail)
	}
	wantFaults := map[string]report.FaultStats{
		"kill":      {Count: 1, Total: killEnd - killStart},
		"partition": {Count: 1, Total: partitionEnd - partitionStart},
		"pause":     {Count: 1, Total: time.Duration(syn.end+1) - pauseStart, Unended: 1},
	}
	if !reflect.DeepEqual(decoded.Faults, wantFaults) {
		t.Fatalf("faults %+v; want %+v", decoded.Faults, wantFaults)
	}
	if decoded.Span != time.Duration(syn.end) {
		t.Fatalf("span %s; want %s", decoded.Span, time.Duration(syn.end))
	}
	c := decoded.Checker
	if c.Keys != 3 || c.Ops != res.Ops || c.Linearizable != "Ok" || c.DurabilityKeys != 3 || c.Duration != res.Duration || len(decoded.Problems) != 0 || decoded.Anomalies != nil {
		t.Fatalf("checker stats %+v, problems %q, anomalies %v", c, decoded.Problems, decoded.Anomalies)
	}
	if l := decoded.Latency[history.FCAS]; l.Count != syn.ops[history.FCAS].OK || l.P50 != 6*time.Millisecond || l.Max != 300*time.Millisecond {
		t.Fatalf("cas latency %+v; want %d samples, p50 6ms, max 300ms", l, syn.ops[history.FCAS].OK)
	}

	// the PNG decodes at the documented size
	f, err = os.Open(filepath.Join(dir, report.TimelineFile))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != report.TimelineWidth || b.Dy() != report.TimelineHeight {
		t.Fatalf("timeline is %dx%d; want %dx%d", b.Dx(), b.Dy(), report.TimelineWidth, report.TimelineHeight)
	}

	text, err := os.ReadFile(filepath.Join(dir, report.SummaryTextFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	if last := lines[len(lines)-1]; last != "VERDICT: PASS" {
		t.Fatalf("summary.txt ends with %q", last)
	}
	for _, want := range []string{
		"seed 42, 3 nodes, 10s, read consistency linearizable, fencing on, isolation read-committed",
		"nemeses: kill, partition, pause",
		"replica flags: --heartbeat-timeout=500ms",
		"leader changes observed: 2",
		fmt.Sprintf("total %d %d %d 1", syn.total.OK, syn.total.Fail, syn.total.Info),
		fmt.Sprintf("cas %d 0 4 0 6ms 300ms 300ms", syn.ops[history.FCAS].OK),
		"kill 1 2s 0",
		"partition 1 2s 0",
		"pause 1 " + (time.Duration(syn.end+1) - pauseStart).Round(time.Millisecond).String() + " 1",
	} {
		if !containsLine(string(text), want) {
			t.Errorf("summary.txt lacks a line containing %q:\n%s", want, text)
		}
	}

	index, err := os.ReadFile(filepath.Join(dir, report.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<h1 class="PASS">VERDICT: PASS</h1>`,
		`<p class="run">seed 42 · 3 nodes · 10s · isolation <b>read-committed</b> · nemeses kill, partition, pause</p>`, `<img src="timeline.png"`, `<a href="linearizability.html">`, "leader changes observed: 2"} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}

	page, err := os.ReadFile(filepath.Join(dir, report.LinearizabilityFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("fault: kill")) || !bytes.Contains(page, []byte(`head() -\u003e`)) {
		t.Fatalf("linearizability.html lacks the fault annotations or operations")
	}
}

// containsLine reports whether a line of text contains want, with runs of
// spaces (table alignment) read as one.
func containsLine(text, want string) bool {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if strings.Contains(strings.Join(strings.Fields(sc.Text()), " "), want) {
			return true
		}
	}
	return false
}

func TestWriteOfAFailingRunListsProblems(t *testing.T) {
	events := []history.Event{
		{Index: 0, Process: 0, Type: history.Invoke, F: history.FCAS, Time: 0, CAS: &history.CASOp{Key: "k", SeqNo: 0, Data: "a"}},
		{Index: 1, Process: 0, Type: history.OK, F: history.FCAS, Time: 1e6, CAS: &history.CASOp{Key: "k", SeqNo: 0, Data: "a"}, Committed: true},
		{Index: 2, Process: 1, Type: history.Invoke, F: history.FHead, Time: 2e6, Key: "k"},
		{Index: 3, Process: 1, Type: history.OK, F: history.FHead, Time: 3e6, Key: "k"},
	}
	res := checker.Check(events, checker.Options{})
	dir := t.TempDir()
	sum, err := report.Write(dir, report.Run{Seed: 7, Nodes: 3, ReadConsistency: "leader"}, events, &res)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Verdict != checker.Fail || len(sum.Problems) != 2 || !reflect.DeepEqual(sum.Checker.IllegalKeys, []string{"k"}) {
		t.Fatalf("verdict %s, problems %q, illegal keys %q", sum.Verdict, sum.Problems, sum.Checker.IllegalKeys)
	}
	if want := map[report.AnomalyKind]int{report.NotLinearizable: 1, report.LostWrite: 1}; !reflect.DeepEqual(sum.Anomalies, want) {
		t.Fatalf("anomalies %v, want %v (problems %q)", sum.Anomalies, want, sum.Problems)
	}
	text, err := os.ReadFile(filepath.Join(dir, report.SummaryTextFile))
	if err != nil {
		t.Fatal(err)
	}
	want := "\nproblems (2):\n  - " + res.Problems[0] + "\n  - " + res.Problems[1] + "\n\nnotes:\n  - " + res.Notes[0] + "\n\nVERDICT: FAIL\n"
	if !strings.HasSuffix(string(text), want) {
		t.Fatalf("summary.txt:\n%s\nwant it to end with:\n%s", text, want)
	}
	if !containsLine(string(text), "faults: none") || !containsLine(string(text), "not linearizable: k") ||
		!containsLine(string(text), "anomalies: lost-write 1, not-linearizable 1") {
		t.Fatalf("summary.txt:\n%s", text)
	}
}

func TestWriteWithoutResultFails(t *testing.T) {
	if _, err := report.Write(t.TempDir(), report.Run{}, nil, nil); err == nil || err.Error() != "report: no checker result" {
		t.Fatalf("err = %v; want report: no checker result", err)
	}
}

func TestVerdictLineAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		verdict checker.Verdict
		line    string
		code    int
	}{
		{checker.Pass, "VERDICT: PASS", 0},
		{checker.Fail, "VERDICT: FAIL", 1},
		{checker.Unknown, "VERDICT: UNKNOWN", 2},
		{checker.Verdict(""), "VERDICT: ", 1},
	} {
		if got := report.VerdictLine(tc.verdict); got != tc.line {
			t.Errorf("VerdictLine(%q) = %q; want %q", tc.verdict, got, tc.line)
		}
		if got := report.ExitCode(tc.verdict); got != tc.code {
			t.Errorf("ExitCode(%q) = %d; want %d", tc.verdict, got, tc.code)
		}
	}
}
