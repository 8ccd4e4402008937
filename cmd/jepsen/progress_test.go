package main

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/jepsen/history"
)

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		elapsed  time.Duration
		interval time.Duration
		counts   outcomeCounts
		active   []activeFault
		want     string
	}{
		{
			"quiet", 5*time.Second + 2*time.Millisecond, 5 * time.Second, outcomeCounts{OK: 17020, Fail: 3, Info: 2}, nil,
			"jepsen: progress 5s: 3405 ops/s over 5.0s (17020 ok, 3 fail, 2 info); faults: none",
		},
		{
			"two faults, one without targets", 95*time.Second + 600*time.Millisecond, 4900 * time.Millisecond, outcomeCounts{OK: 49, Info: 1},
			[]activeFault{
				{Kind: "pause-leader", Targets: []string{"n1"}, Since: 93500 * time.Millisecond},
				{Kind: "slow", Since: 95 * time.Second},
			},
			"jepsen: progress 1m36s: 10 ops/s over 4.9s (49 ok, 0 fail, 1 info); faults: pause-leader on n1 for 2.1s; slow for 0.6s",
		},
		{
			"a partition of two", 10 * time.Second, 5 * time.Second, outcomeCounts{},
			[]activeFault{{Kind: "partition-halves", Targets: []string{"n2", "n3"}, Since: 9 * time.Second}},
			"jepsen: progress 10s: 0 ops/s over 5.0s (0 ok, 0 fail, 0 info); faults: partition-halves on n2,n3 for 1.0s",
		},
	} {
		if got := progressLine(tc.elapsed, tc.interval, tc.counts, tc.active); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestProgressRecorderCountsAndTracksFaults(t *testing.T) {
	h := history.NewRecorder()
	p := newProgressRecorder(h)
	nemesisEvent := func(typ history.Type, kind string, targets ...string) history.Event {
		return history.Event{Process: history.NemesisProcess, Type: typ, F: history.FNemesis, Fault: kind, Targets: targets}
	}
	op := func(process int, typ history.Type) history.Event {
		return history.Event{Process: process, Type: typ, F: history.FHead, Key: "k"}
	}
	p.Add(op(0, history.Invoke))
	p.Add(op(0, history.OK))
	p.Add(op(1, history.Invoke))
	p.Add(op(1, history.Fail))
	p.Add(op(2, history.Invoke))
	p.Add(op(2, history.Info))
	p.Add(op(3, history.Invoke)) // in flight: not counted
	kill := p.Add(nemesisEvent(history.Invoke, "kill-leader", "n1"))
	pause := p.Add(nemesisEvent(history.Invoke, "pause-follower", "n2"))

	counts, active := p.take()
	if want := (outcomeCounts{OK: 1, Fail: 1, Info: 1}); counts != want {
		t.Errorf("first window %+v, want %+v", counts, want)
	}
	wantActive := []activeFault{
		{Kind: "kill-leader", Targets: []string{"n1"}, Since: time.Duration(kill.Time)},
		{Kind: "pause-follower", Targets: []string{"n2"}, Since: time.Duration(pause.Time)},
	}
	if !reflect.DeepEqual(active, wantActive) {
		t.Errorf("active %+v, want %+v", active, wantActive)
	}

	// A fault ends at its ok event, even when the nemesis names its targets
	// differently then (a restarted replica, say).
	p.Add(nemesisEvent(history.OK, "kill-leader", "n1-r1"))
	p.Add(op(3, history.OK))
	counts, active = p.take()
	if want := (outcomeCounts{OK: 1}); counts != want {
		t.Errorf("second window %+v, want %+v (the first must have been reset)", counts, want)
	}
	if !reflect.DeepEqual(active, wantActive[1:]) {
		t.Errorf("active after the kill healed %+v, want %+v", active, wantActive[1:])
	}
	p.Add(nemesisEvent(history.OK, "pause-follower", "n2"))
	p.Add(nemesisEvent(history.OK, "partition-leader", "n3")) // ends nothing that started
	if counts, active := p.take(); counts != (outcomeCounts{}) || len(active) != 0 {
		t.Errorf("after every fault healed: %+v, active %+v; want nothing", counts, active)
	}
	if got := len(h.Events()); got != 13 {
		t.Errorf("the history holds %d events, want all 13 passed on", got)
	}
}

// Run with -race: the workload's workers and the nemesis add events while
// the progress loop takes its windows.
func TestProgressRecorderIsSafeForConcurrentUse(t *testing.T) {
	p := newProgressRecorder(history.NewRecorder())
	const workers, ops = 4, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range ops {
				p.Add(history.Event{Process: w, Type: history.Invoke, F: history.FHead})
				p.Add(history.Event{Process: w, Type: history.OK, F: history.FHead})
			}
		})
	}
	total := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		counts, _ := p.take()
		total += counts.total()
	}
	if total != workers*ops {
		t.Errorf("windows added up to %d completions, want %d", total, workers*ops)
	}
}

func TestReportProgressStopsWithItsContext(t *testing.T) {
	p := newProgressRecorder(history.NewRecorder())
	var out syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		reportProgress(ctx, p, time.Now(), 10*time.Millisecond, &out)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("%d progress lines in 5s at a 10ms interval: %q", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, progressPrefix) || !strings.HasSuffix(l, "(0 ok, 0 fail, 0 info); faults: none") {
			t.Errorf("progress line %q", l)
		}
	}
	after := out.String()
	time.Sleep(30 * time.Millisecond)
	if out.String() != after {
		t.Error("reportProgress wrote after it returned")
	}
}

func TestReportProgressOffAtZeroInterval(t *testing.T) {
	var out syncBuffer
	// Returns at once: with a live context, it would otherwise never return.
	reportProgress(t.Context(), newProgressRecorder(history.NewRecorder()), time.Now(), 0, &out)
	if out.String() != "" {
		t.Errorf("wrote %q at interval 0", out.String())
	}
}

// syncBuffer is a strings.Builder the test reads while reportProgress
// writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
