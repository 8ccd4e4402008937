package report_test

import (
	"image/color"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/jepsen/report"
)

// TestFaultKindsHaveOneColorInTimelineAndVisualization writes a run's
// artifacts and checks that each fault kind's annotation colour in the
// linearizability page is the light tint of the colour the timeline draws
// the kind with (checker.FaultColors, the timeline's only source of fault
// colours), with exact values from the one table.
func TestFaultKindsHaveOneColorInTimelineAndVisualization(t *testing.T) {
	var events []history.Event
	add := func(ms int64, e history.Event) {
		e.Index, e.Time = len(events), ms*int64(time.Millisecond)
		events = append(events, e)
	}
	fault := func(ms int64, typ history.Type, kind string) {
		add(ms, history.Event{Process: history.NemesisProcess, Type: typ, F: history.FNemesis, Fault: kind, Targets: []string{"n1"}})
	}
	// A kind outside the table first, so that a view assigning colours by
	// order of appearance alone would give it the first table colour.
	fault(100, history.Invoke, "disk-full")
	fault(200, history.OK, "disk-full")
	fault(300, history.Invoke, "partition-halves")
	fault(400, history.Invoke, "kill-leader")
	fault(500, history.OK, "kill-leader")
	fault(600, history.OK, "partition-halves")
	fault(700, history.Invoke, "kill-leader")
	fault(800, history.OK, "kill-leader")
	add(900, history.Event{Process: 0, Type: history.Invoke, F: history.FHead, Key: "k", Node: "n1"})
	add(901, history.Event{Process: 0, Type: history.OK, F: history.FHead, Key: "k", Node: "n1"})

	res := checker.Check(events, checker.Options{})
	if res.Verdict != checker.Pass || len(res.Faults) != 4 {
		t.Fatalf("verdict %s with %d faults, want PASS with 4: %q", res.Verdict, len(res.Faults), res.Problems)
	}
	dir := t.TempDir()
	if _, err := report.Write(dir, report.Run{Seed: 1, Nodes: 3, Duration: time.Second}, events, &res); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, report.LinearizabilityFile))
	if err != nil {
		t.Fatal(err)
	}
	// porcupine embeds its annotations as JSON objects without nesting.
	re := regexp.MustCompile(`"Tag":"fault: ([^"]+)"[^}]*"BackgroundColor":"([^"]*)"`)
	html := map[string][]string{}
	for _, m := range re.FindAllStringSubmatch(string(page), -1) {
		html[m[1]] = append(html[m[1]], m[2])
	}

	_, timeline := checker.FaultColors(res.Faults)
	for kind, want := range map[string]struct {
		timeline color.NRGBA
		html     string
		windows  int
	}{
		"kill-leader":      {color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, "#f2bebe", 2},
		"partition-halves": {color.NRGBA{R: 0x6b, G: 0xae, B: 0xd6, A: 0xff}, "#d2e6f2", 1},
		"disk-full":        {color.NRGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, "#f6d6ec", 1}, // first spare
	} {
		if timeline[kind] != want.timeline {
			t.Errorf("%s: timeline colour %v, want %v", kind, timeline[kind], want.timeline)
		}
		if len(html[kind]) != want.windows {
			t.Errorf("%s: %d annotations in the page, want %d", kind, len(html[kind]), want.windows)
		}
		for _, got := range html[kind] {
			if got != want.html {
				t.Errorf("%s: page colour %s, want %s (the tint of %v)", kind, got, want.html, want.timeline)
			}
		}
	}
	if len(html) != 3 {
		t.Errorf("annotated kinds %v, want exactly 3", html)
	}
}
