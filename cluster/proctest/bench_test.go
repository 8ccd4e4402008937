package proctest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
)

// BenchmarkFailover measures, b.N times, how long a 3-replica cluster under
// CaS load is unable to commit after its leader is SIGKILLed: from the kill
// (t0, once the process is gone) to the first acknowledged CaS that was sent
// after it (t1), by a
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
//
// A reader polls the heads of the loaded shards throughout, and the new
// leader's "cache warm-up" log line gives the share of its Head calls the
// cache answered in the first second after it became ready: the median
// over trials is reported as warm-hit-1s. The replicas record their hot
// shards every second (--hot-shard-interval=1s, against 10s by default),
// so that a trial's fresh shards are recorded within its steady window.
func BenchmarkFailover(b *testing.B) {
	args := append([]string{"--hot-shard-interval=1s"}, strings.Fields(os.Getenv(failoverFlagsEnv))...)
	c := startCluster(b, proctest.Options{Args: args})
	var trials []time.Duration
	var hitRatios []float64
	spurious := 0
	for i := range b.N {
		d, n, hit := failoverTrial(b, c, i)
		trials = append(trials, d)
		spurious += n
		if hit >= 0 {
			hitRatios = append(hitRatios, hit)
		}
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
	if len(hitRatios) > 0 {
		slices.Sort(hitRatios)
		b.Logf("head hit ratio in the new leader's first second, per trial (sorted): %v", hitRatios)
		b.ReportMetric(hitRatios[len(hitRatios)/2], "warm-hit-1s")
	}
	b.ReportMetric(0, "ns/op")
}

// failoverFlagsEnv holds extra `serve` flags for BenchmarkFailover, to
// compare Raft timeouts, e.g. "--raft-heartbeat-timeout=300ms".
const failoverFlagsEnv = "COMMITTER_FAILOVER_FLAGS"

// steadyWindow is how long each trial watches the loaded cluster before the
// kill, counting elections nothing caused (a starved heartbeat).
const steadyWindow = 2 * time.Second

// failoverTrial kills the leader under load and returns the time until the
// first acknowledged CaS sent after the kill, how many elections happened
// during the steady window before it, and the new leader's Head hit ratio
// in its first second (-1 if it logged none).
func failoverTrial(b *testing.B, c *proctest.Cluster, trial int) (time.Duration, int, float64) {
	old := leader(b, c)
	survivors := c.Others(old)
	cl := anyClient(b, c, survivors...)
	ld := startLoad(b, fmt.Sprintf("failover-%d", trial), 5*time.Second, clientsOf(cl, cl, cl, cl)...)
	ld.quiet = true
	ld.waitProgress(b, 5, 20*time.Second)
	stopReader := pollHeads(cl, ld)
	defer stopReader()

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

	// Kill returns once the process is gone; until then the old leader may
	// still answer, so the clock starts after it.
	must(b, old.Kill())
	t0 := time.Now()
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
	// The reader goes on until the new leader's first-second figure is in.
	hit := warmupHitRatio(b, next, t0, 10*time.Second)
	stopReader()
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
	return d, spurious, hit
}

// pollHeads reads the heads of the load's shards in a loop, as persist's
// readers do, until the returned stop is called (idempotent).
func pollHeads(cl backend.Consensus, ld *load) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, w := range ld.writers {
				hctx, done := context.WithTimeout(ctx, time.Second)
				_, _ = cl.Head(hctx, w.shard) // failures during the election are expected
				done()
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// warmupHitRatio waits for r's "cache warm-up" record of the first second
// of a term that began after t0 and returns its Head hit ratio, or -1 if
// none came within wait.
func warmupHitRatio(b *testing.B, r *proctest.Replica, t0 time.Time, wait time.Duration) float64 {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		recs, err := r.LogRecords("cache warm-up")
		must(b, err)
		for _, rec := range recs {
			w, _ := rec.Fields["window"].(float64)
			ratio, ok := rec.Fields["head_hit_ratio"].(float64)
			if rec.Time.After(t0) && ok && time.Duration(w) == time.Second {
				return ratio
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Logf("%s logged no cache warm-up figure for its first second", r.ID())
	return -1
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
