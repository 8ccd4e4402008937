package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hacommit/committer/jepsen/history"
)

// progressPrefix starts every progress line, so that the campaign can pick
// them out of a run's output.
const progressPrefix = "jepsen: progress "

// progressRecorder is the recorder the workload and the nemesis write to
// during a run. It passes every event on to the run's history and keeps,
// under its own lock, what a progress line needs: completions since the
// last line and the faults in effect. Printing progress so never copies the
// history (Recorder.Events would copy all of it, every few seconds).
type progressRecorder struct {
	history *history.Recorder

	mu     sync.Mutex
	window outcomeCounts // completions since the last take
	active []activeFault // faults started and not yet ended, oldest first
}

// outcomeCounts counts client operations by how they completed.
type outcomeCounts struct{ OK, Fail, Info int }

func (c outcomeCounts) total() int { return c.OK + c.Fail + c.Info }

// activeFault is a fault between its nemesis invoke and ok events.
type activeFault struct {
	Kind    string
	Targets []string
	// Since is when it started, from the start of the run.
	Since time.Duration
}

func newProgressRecorder(h *history.Recorder) *progressRecorder {
	return &progressRecorder{history: h}
}

// Add records e in the history and counts it.
func (p *progressRecorder) Add(e history.Event) history.Event {
	e = p.history.Add(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observe(e)
	return e
}

// observe counts one stamped event; p.mu is held.
func (p *progressRecorder) observe(e history.Event) {
	if e.F == history.FNemesis {
		p.observeFault(e)
		return
	}
	switch e.Type {
	case history.OK:
		p.window.OK++
	case history.Fail:
		p.window.Fail++
	case history.Info:
		p.window.Info++
	}
}

// observeFault opens a fault at its invoke and closes it at its end: the
// oldest open fault of the same kind on the same targets, or failing that
// of the same kind, as jepsen/checker pairs them (a nemesis may name the
// replicas it healed differently from those it broke).
func (p *progressRecorder) observeFault(e history.Event) {
	if e.Type == history.Invoke {
		p.active = append(p.active, activeFault{Kind: e.Fault, Targets: slices.Clone(e.Targets), Since: time.Duration(e.Time)})
		return
	}
	match := slices.IndexFunc(p.active, func(f activeFault) bool { return f.Kind == e.Fault && slices.Equal(f.Targets, e.Targets) })
	if match < 0 {
		match = slices.IndexFunc(p.active, func(f activeFault) bool { return f.Kind == e.Fault })
	}
	if match >= 0 {
		p.active = slices.Delete(p.active, match, match+1)
	}
}

// take returns the completions since the previous take, resetting them,
// and the faults in effect now.
func (p *progressRecorder) take() (outcomeCounts, []activeFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	counts := p.window
	p.window = outcomeCounts{}
	return counts, slices.Clone(p.active)
}

// reportProgress prints a progress line to w every interval until ctx
// ends. It returns once it has stopped writing.
func reportProgress(ctx context.Context, p *progressRecorder, start time.Time, interval time.Duration, w io.Writer) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			counts, active := p.take()
			fmt.Fprintln(w, progressLine(now.Sub(start), now.Sub(last), counts, active))
			last = now
		}
	}
}

// progressLine is one progress line, e.g.
//
//	jepsen: progress 35s: 3412 ops/s over 5.0s (17020 ok, 3 fail, 2 info); faults: pause-leader on n1 for 2.1s
func progressLine(elapsed, interval time.Duration, counts outcomeCounts, active []activeFault) string {
	rate := 0.0
	if interval > 0 {
		rate = float64(counts.total()) / interval.Seconds()
	}
	faults := "none"
	if len(active) > 0 {
		parts := make([]string, len(active))
		for i, f := range active {
			parts[i] = f.Kind
			if len(f.Targets) > 0 {
				parts[i] += " on " + strings.Join(f.Targets, ",")
			}
			parts[i] += fmt.Sprintf(" for %.1fs", max(0, elapsed-f.Since).Seconds())
		}
		faults = strings.Join(parts, "; ")
	}
	return fmt.Sprintf("%s%s: %.0f ops/s over %.1fs (%d ok, %d fail, %d info); faults: %s",
		progressPrefix, elapsed.Round(time.Second), rate, interval.Seconds(), counts.OK, counts.Fail, counts.Info, faults)
}
