package faultdelay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Point names a place in the replica that can be delayed.
type Point string

// ReadRoundDecided is the moment a leadership confirmation round has
// decided, just before the reads waiting for it are answered. A delay here
// stands for a leader that is descheduled at that moment: reads that arrive
// meanwhile must not be answered by the round that was decided before them.
const ReadRoundDecided Point = "read-round-decided"

// LeadershipLost is the moment Raft has told the replica that it no longer
// leads, before the replica stops serving as the leader of that term. A
// delay here stands for a replica slow to notice: until it does, its reads
// and writes must still be refused by the read confirmation and the backend
// fence, not by its own view of Raft. Later leadership notifications wait
// behind it, as they would for a replica slow to notice.
const LeadershipLost Point = "leadership-lost"

// ForwardedWriteDone is the moment the leader has finished a write a
// follower forwarded to it, before the answer goes back. A delay here
// stands for a leader that dies, or is descheduled, between committing a
// forwarded write and answering it: the follower that sent it must then
// report the write as indeterminate, never as not done.
const ForwardedWriteDone Point = "forwarded-write-done"

// Points lists every point, in the order the flag's help names them.
func Points() []Point { return []Point{ReadRoundDecided, LeadershipLost, ForwardedWriteDone} }

// Delays maps points to how long a replica waits there. The zero value
// delays nothing.
type Delays map[Point]time.Duration

// Parse reads specs of the form POINT=DURATION, as the flag is given, with a
// positive duration and each point at most once.
func Parse(specs []string) (Delays, error) {
	d := Delays{}
	for _, spec := range specs {
		name, value, ok := strings.Cut(spec, "=")
		p := Point(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("fault delay %q: want POINT=DURATION", spec)
		case !slices.Contains(Points(), p):
			return nil, fmt.Errorf("fault delay %q: unknown point %q (known: %s)", spec, name, strings.Join(Names(), ", "))
		}
		dur, err := time.ParseDuration(value)
		if err != nil {
			return nil, fmt.Errorf("fault delay %q: %w", spec, err)
		}
		if dur <= 0 {
			return nil, fmt.Errorf("fault delay %q: the duration must be positive", spec)
		}
		if _, dup := d[p]; dup {
			return nil, fmt.Errorf("fault delay %q: point %s given twice", spec, name)
		}
		d[p] = dur
	}
	return d, nil
}

// step is the slice in which Wait spends its delay.
const step = 10 * time.Millisecond

// Wait holds the caller at p for its delay, or until ctx ends. The delay is
// spent in short slices, so it counts the time the process runs, not wall
// time: a process paused (SIGSTOP) in the middle still waits out the rest
// after it resumes, as it would still have to finish work it had left.
func (d Delays) Wait(ctx context.Context, p Point) {
	left := d[p]
	if left <= 0 {
		return
	}
	t := time.NewTimer(min(step, left))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		left -= step
		if left <= 0 {
			return
		}
		t.Reset(min(step, left))
	}
}

// String renders d as the flag's values, sorted by point.
func (d Delays) String() string {
	var out []string
	for _, p := range Points() {
		if dur, ok := d[p]; ok {
			out = append(out, fmt.Sprintf("%s=%s", p, dur))
		}
	}
	return strings.Join(out, ",")
}

// Names lists the points' names, for help texts and errors.
func Names() []string {
	var names []string
	for _, p := range Points() {
		names = append(names, string(p))
	}
	return names
}
