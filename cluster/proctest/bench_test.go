package proctest_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/proctest"
)

// BenchmarkFailover measures, b.N times, how long a 3-replica cluster under
// CaS load is unable to commit after its leader is SIGKILLed: from the kill
// (t0) to the first acknowledged CaS that was sent after it (t1), by a
// client that dials the two survivors (it also follows leader hints, as any
// client does). Each trial restarts the killed replica and waits for it to
// follow before the next. Run it as
//
//	go test -run '^$' -bench Failover -benchtime 10x ./cluster/proctest/
//
// It reports the median and maximum in milliseconds and logs every trial
// with a breakdown read from the replicas' logs: detection (the first
// survivor's Raft heartbeat timeout), the new leader's barrier and fence,
// and what remains until the client's first acknowledgement.
func BenchmarkFailover(b *testing.B) {
	c := startCluster(b, proctest.Options{Args: strings.Fields(os.Getenv(failoverFlagsEnv))})
	var trials []time.Duration
	spurious := 0
	for i := range b.N {
		d, n := failoverTrial(b, c, i)
		trials = append(trials, d)
		spurious += n
	}
	sorted := slices.Clone(trials)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	var all []string
	for _, d := range trials {
		all = append(all, fmt.Sprint(d.Milliseconds()))
	}
	b.Logf("failover over %d trials (ms): %s; median %v, max %v", len(trials), strings.Join(all, " "), median.Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	b.ReportMetric(float64(median.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(sorted[len(sorted)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(spurious), "spurious-elections")
	b.ReportMetric(0, "ns/op")
}

// failoverFlagsEnv holds extra `serve` flags for BenchmarkFailover, to
// compare Raft timeouts, e.g. "--raft-heartbeat-timeout=300ms".
const failoverFlagsEnv = "COMMITTER_FAILOVER_FLAGS"

// steadyWindow is how long each trial watches the loaded cluster before the
// kill, counting elections nothing caused (a starved heartbeat).
const steadyWindow = 2 * time.Second

// failoverTrial kills the leader under load and returns the time until the
// first acknowledged CaS sent after the kill, and how many elections
// happened during the steady window before it.
func failoverTrial(b *testing.B, c *proctest.Cluster, trial int) (time.Duration, int) {
	old := leader(b, c)
	survivors := c.Others(old)
	cl := anyClient(b, c, survivors...)
	ld := startLoad(b, fmt.Sprintf("failover-%d", trial), 5*time.Second, clientsOf(cl, cl, cl, cl)...)
	ld.quiet = true
	ld.waitProgress(b, 5, 20*time.Second)

	before, err := old.Status(timeout(b, 5*time.Second))
	must(b, err)
	time.Sleep(steadyWindow)
	ld.waitProgress(b, 1, 20*time.Second)
	old = leader(b, c)
	after, err := old.Status(timeout(b, 5*time.Second))
	must(b, err)
	spurious := int(after.GetTerm() - before.GetTerm())
	if spurious > 0 {
		b.Logf("trial %d: %d elections during %v of steady load", trial, spurious, steadyWindow)
		survivors = c.Others(old)
	}

	t0 := time.Now()
	must(b, old.Kill())
	var t1 time.Time
	deadline := time.Now().Add(20 * time.Second)
	for t1.IsZero() {
		if time.Now().After(deadline) {
			b.Fatalf("trial %d: no CaS committed within 20s of killing %s", trial, old.ID())
		}
		time.Sleep(5 * time.Millisecond)
		for _, w := range ld.writers {
			for _, a := range w.snapshot() {
				if a.outcome == committed && a.invoked.After(t0) && (t1.IsZero() || a.returned.Before(t1)) {
					t1 = a.returned
				}
			}
		}
	}
	next := leader(b, c, survivors...)
	ld.verify(b, cl)

	// Where the time went, from the logs.
	detect := firstRaftEvent(b, survivors, "heartbeat timeout reached", t0)
	var ready time.Time
	var took time.Duration
	recs, err := next.LogRecords("ready leader")
	must(b, err)
	for _, r := range recs {
		if r.Time.After(t0) {
			ready = r.Time
			if ns, ok := r.Fields["took"].(float64); ok {
				took = time.Duration(ns)
			}
			break
		}
	}
	d := t1.Sub(t0)
	b.Logf("trial %d: killed %s, %s leads: failover %v = detection %v + election %v + barrier/fence %v + first ack %v",
		trial, old.ID(), next.ID(), d.Round(time.Millisecond),
		detect.Sub(t0).Round(time.Millisecond), ready.Add(-took).Sub(detect).Round(time.Millisecond),
		took.Round(time.Millisecond), t1.Sub(ready).Round(time.Millisecond))

	must(b, old.Restart(timeout(b, 20*time.Second)))
	waitFollowerOf(b, old, next)
	return d, spurious
}

// firstRaftEvent returns the earliest time after t0 at which one of rs
// logged a Raft (hclog) line containing event.
func firstRaftEvent(b *testing.B, rs []*proctest.Replica, event string, t0 time.Time) time.Time {
	var first time.Time
	for _, r := range rs {
		f, err := os.Open(r.LogPath())
		must(b, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, event) {
				continue
			}
			at, err := logLineTime(line)
			// Text logs stamp to the millisecond: allow for the truncation.
			if err == nil && at.After(t0.Add(-time.Millisecond)) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		f.Close()
	}
	return first
}

// logLineTime reads the time of one replica log line, JSON
// ({"time":"..."}) or text (time=...).
func logLineTime(line string) (time.Time, error) {
	var rec struct {
		Time time.Time `json:"time"`
	}
	if strings.HasPrefix(line, "{") {
		err := json.Unmarshal([]byte(line), &rec)
		return rec.Time, err
	}
	stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
	return time.Parse(time.RFC3339Nano, stamp)
}
