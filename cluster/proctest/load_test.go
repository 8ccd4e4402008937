package proctest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
)

// outcome is how one CaS attempt ended, as its caller saw it.
type outcome int

const (
	committed outcome = iota
	mismatch
	failedDeterminate
	failedIndeterminate
)

func (o outcome) String() string {
	return [...]string{"committed", "mismatch", "determinate error", "indeterminate error"}[o]
}

// attempt is one CaS a writer made: unique data, so the final state says
// which attempt (if any) wrote each version.
type attempt struct {
	seqno             uint64
	data              string
	outcome           outcome
	err               error
	invoked, returned time.Time
}

// shardWriter appends to its own shard in a CaS chain and records every
// attempt. Nothing else writes the shard, so each version in the final state
// must come from one of its attempts, every committed attempt must be there,
// and a mismatch is possible only at a seqno where an earlier attempt ended
// indeterminate.
type shardWriter struct {
	shard       string
	cl          backend.Consensus
	callTimeout time.Duration

	mu        sync.Mutex
	attempts  []attempt
	acks      int
	lastErr   error
	anomalies []string
}

func (w *shardWriter) record(a attempt) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts = append(w.attempts, a)
	if a.outcome == committed {
		w.acks++
	}
	if a.err != nil {
		w.lastErr = a.err
	}
}

func (w *shardWriter) anomaly(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.anomalies = append(w.anomalies, fmt.Sprintf(w.shard+": "+format, args...))
}

func (w *shardWriter) ackCount() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks, w.lastErr
}

func (w *shardWriter) snapshot() []attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.attempts)
}

// run writes until stop is closed; it never abandons a call because of stop
// (that would only add indeterminate outcomes), each call ends by its own
// timeout.
func (w *shardWriter) run(stop <-chan struct{}) {
	var next uint64        // the seqno that follows the head as last known
	var lastAck int64 = -1 // the highest seqno acknowledged as committed
	indeterminateAt := map[uint64]bool{}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		a := attempt{seqno: next, data: fmt.Sprintf("%s/%d/%d", w.shard, next, n), invoked: time.Now()}
		ctx, cancel := context.WithTimeout(context.Background(), w.callTimeout)
		ok, err := w.cl.CompareAndSet(ctx, w.shard, backend.VersionedData{SeqNo: a.seqno, Data: []byte(a.data)})
		cancel()
		a.returned, a.err = time.Now(), err
		switch {
		case err == nil && ok:
			a.outcome = committed
		case err == nil:
			a.outcome = mismatch
		case backend.IsDeterminate(err):
			a.outcome = failedDeterminate
		default:
			a.outcome = failedIndeterminate
		}
		w.record(a)
		switch a.outcome {
		case committed:
			lastAck = int64(next)
			next++
		case mismatch:
			if !indeterminateAt[next] {
				w.anomaly("cas at seqno %d sent at %v answered mismatch, but no attempt of this writer can have written it",
					next, a.invoked.Format(time.StampMicro))
			}
			if !w.resync(stop, &next, lastAck) {
				return
			}
		case failedIndeterminate:
			indeterminateAt[next] = true
			if !w.resync(stop, &next, lastAck) {
				return
			}
		case failedDeterminate:
			// Nothing happened; pace retries of a fast failure.
			if !sleep(stop, 20*time.Millisecond) {
				return
			}
		}
	}
}

// resync reads the head after an unknown or unexpected outcome, checking
// that it is not older than the last acknowledged write and that it holds
// data this writer wrote at that seqno.
func (w *shardWriter) resync(stop <-chan struct{}, next *uint64, lastAck int64) bool {
	for {
		invoked := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), w.callTimeout)
		h, err := w.cl.Head(ctx, w.shard)
		cancel()
		if err == nil {
			head := int64(-1)
			if h != nil {
				head = int64(h.SeqNo)
				if want := fmt.Sprintf("%s/%d/", w.shard, h.SeqNo); len(h.Data) < len(want) || string(h.Data[:len(want)]) != want {
					w.anomaly("head read at %v returned {%d %q}, which this writer never wrote", invoked.Format(time.StampMicro), h.SeqNo, h.Data)
				}
			}
			if head < lastAck {
				w.anomaly("head read at %v returned seqno %d, older than acknowledged seqno %d", invoked.Format(time.StampMicro), head, lastAck)
			}
			*next = uint64(head + 1)
			return true
		}
		w.mu.Lock()
		w.lastErr = err
		w.mu.Unlock()
		if !sleep(stop, 20*time.Millisecond) {
			return false
		}
	}
}

func sleep(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}

// load is a set of shardWriters running until stopped.
type load struct {
	// quiet leaves the per-shard summaries out of the test log.
	quiet   bool
	writers []*shardWriter
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// startLoad runs one writer per client on shard prefix-i. The writers stop
// when the test ends at the latest.
func startLoad(t testing.TB, prefix string, callTimeout time.Duration, clients ...backend.Consensus) *load {
	l := &load{stop: make(chan struct{})}
	for i, cl := range clients {
		w := &shardWriter{shard: fmt.Sprintf("%s-%d", prefix, i), cl: cl, callTimeout: callTimeout}
		l.writers = append(l.writers, w)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			w.run(l.stop)
		}()
	}
	t.Cleanup(l.halt)
	return l
}

// halt stops the writers and waits for their calls in flight.
func (l *load) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) ackCounts() []int {
	var out []int
	for _, w := range l.writers {
		n, _ := w.ackCount()
		out = append(out, n)
	}
	return out
}

// waitProgress waits until every writer has had more acknowledged writes
// since the call began.
func (l *load) waitProgress(t testing.TB, more int, within time.Duration) {
	t.Helper()
	base := l.ackCounts()
	deadline := time.Now().Add(within)
	for {
		now := l.ackCounts()
		done := true
		for i := range now {
			done = done && now[i] >= base[i]+more
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			var errs []string
			for _, w := range l.writers {
				_, err := w.ackCount()
				errs = append(errs, fmt.Sprintf("%s: %v", w.shard, err))
			}
			t.Fatalf("load made no progress in %v: acks %v -> %v; last errors %q", within, base, now, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify stops the load and checks every shard against what its writer
// saw, scanning through cl: versions 0..n-1 without gaps, each written by
// an attempt that committed or ended indeterminate, every committed attempt
// present with its exact data, nothing a mismatched or determinately
// failed attempt wrote. It returns the final versions by shard.
func (l *load) verify(t testing.TB, cl backend.Consensus) map[string][]backend.VersionedData {
	t.Helper()
	l.halt()
	out := map[string][]backend.VersionedData{}
	for _, w := range l.writers {
		for _, a := range w.anomalies {
			t.Errorf("anomaly: %s", a)
		}
		vs, err := cl.Scan(timeout(t, 15*time.Second), w.shard, 0, backend.MaxSeqNo)
		if err != nil {
			t.Fatalf("final scan of %s: %v", w.shard, err)
		}
		out[w.shard] = vs
		if summary := checkHistory(t, w.shard, w.snapshot(), vs); !l.quiet {
			t.Log(summary)
		}
	}
	return out
}

// checkHistory checks a shard's final versions against the attempts made
// on it (see load.verify) and returns a summary of the attempts.
func checkHistory(t testing.TB, shard string, attempts []attempt, vs []backend.VersionedData) string {
	t.Helper()
	final := map[uint64]string{}
	for i, v := range vs {
		if v.SeqNo != uint64(i) {
			t.Errorf("%s: version %d has seqno %d: gap or disorder in %s", shard, i, v.SeqNo, fmtVersions(vs))
			return shard + ": not checked further"
		}
		final[v.SeqNo] = string(v.Data)
	}
	mayHaveWritten := map[string]bool{}
	counts := map[outcome]int{}
	for _, a := range attempts {
		counts[a.outcome]++
		got, present := final[a.seqno]
		switch a.outcome {
		case committed:
			mayHaveWritten[a.data] = true
			if !present || got != a.data {
				t.Errorf("%s: acknowledged write {%d %q} (acked %v) is missing: final has %q (present %v)",
					shard, a.seqno, a.data, a.returned.Format(time.StampMicro), got, present)
			}
		case failedIndeterminate:
			mayHaveWritten[a.data] = true
		case mismatch, failedDeterminate:
			if present && got == a.data {
				t.Errorf("%s: write {%d %q} answered %v (%v) but is in the final state", shard, a.seqno, a.data, a.outcome, a.err)
			}
		}
	}
	for _, v := range vs {
		if !mayHaveWritten[string(v.Data)] {
			t.Errorf("%s: final version {%d %q} was not written by any committed or indeterminate attempt", shard, v.SeqNo, v.Data)
		}
	}
	return fmt.Sprintf("%s: %d versions; attempts: %d committed, %d mismatch, %d determinate errors, %d indeterminate errors",
		shard, len(vs), counts[committed], counts[mismatch], counts[failedDeterminate], counts[failedIndeterminate])
}

// clientsOf turns concrete clients into the interface the load uses.
func clientsOf[C backend.Consensus](cs ...C) []backend.Consensus {
	out := make([]backend.Consensus, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}
