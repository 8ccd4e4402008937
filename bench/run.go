package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hacommit/committer/backend"
)

// endSlack: a call that fails this close to the segment's end was cut short
// by it (the transport may see the deadline before the context says so).
const endSlack = 50 * time.Millisecond

// Scenario names a load shape.
type Scenario string

// The scenarios.
const (
	// CAS: every worker appends to its own shard, so every CaS commits.
	CAS Scenario = "cas"
	// CASContended: the workers share a few shards, each reading the head
	// and appending after it, as persist's writers do; a loser re-reads.
	CASContended Scenario = "cas-contended"
	// Head: every worker reads the heads of its own shards.
	Head Scenario = "head"
	// ScanTail: every worker scans its own shard from a few versions
	// behind the head, as a persist reader catching up does.
	ScanTail Scenario = "scan-tail"
	// Mix: every worker drives its own shard the way persist does, in a
	// repeating cycle of ten calls: five CaS, three Head, a Scan from a
	// few versions back and a Truncate of what lies below the last
	// tailVersions.
	Mix Scenario = "persist-mix"
)

// Scenarios lists them in report order.
func Scenarios() []Scenario { return []Scenario{CAS, CASContended, Head, ScanTail, Mix} }

// tailVersions is how many versions a scan-tail shard holds, and how far
// behind the head a scan may start.
const tailVersions = 16

// scanLimit bounds every scan of the scenarios.
const scanLimit = 8

// Target is a named store under load.
type Target struct {
	Name  string
	Store backend.Consensus
	// Transactions, if set, counts the database's write transactions so
	// far, to report transactions per operation (Direct.Transactions).
	Transactions func(ctx context.Context) (int64, error)
}

// Config shapes one benchmark.
type Config struct {
	Workers int
	// Shards is the number of shards cas-contended shares.
	Shards     int
	ValueBytes int
	Duration   time.Duration
	Rounds     int
	// Progress, if set, gets a line each second while a segment runs.
	Progress func(line string)
}

// Segment is one target's run of one scenario in one round.
type Segment struct {
	Target   string
	Scenario Scenario
	Round    int
	// Ops are the completed operations (for cas-contended, committed CaS);
	// Mismatches the CaS that lost (cas-contended).
	Ops, Mismatches int64
	Errors          int64
	// FirstError is the first error's message, if any.
	FirstError string
	Elapsed    time.Duration
	// Latencies are every operation's, sorted.
	Latencies []time.Duration
	// Transactions the database ran meanwhile, -1 if unknown.
	Transactions int64
}

// OpsPerSecond is the segment's throughput.
func (s Segment) OpsPerSecond() float64 { return float64(s.Ops) / s.Elapsed.Seconds() }

// Run runs every scenario on every target for cfg.Rounds rounds,
// interleaved: in each round each target runs the scenario once, the order
// of the targets rotating from round to round.
func Run(ctx context.Context, cfg Config, targets []Target, scenarios []Scenario) ([]Segment, error) {
	var out []Segment
	prefix := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	for _, sc := range scenarios {
		for round := range cfg.Rounds {
			for i := range targets {
				t := targets[(i+round)%len(targets)]
				// Targets may share a store (cluster and via do): each gets its own shards.
				seg, err := runSegment(ctx, cfg, t, sc, round, fmt.Sprintf("%s/%s/%s/r%d", prefix, t.Name, sc, round))
				if err != nil {
					return out, fmt.Errorf("%s on %s, round %d: %w", sc, t.Name, round+1, err)
				}
				out = append(out, seg)
			}
		}
	}
	return out, nil
}

func runSegment(ctx context.Context, cfg Config, t Target, sc Scenario, round int, prefix string) (Segment, error) {
	seg := Segment{Target: t.Name, Scenario: sc, Round: round, Transactions: -1}
	value := make([]byte, cfg.ValueBytes)
	shardOf := func(w int) string { return fmt.Sprintf("%s/w%d", prefix, w) }
	if sc == CASContended {
		shardOf = func(w int) string { return fmt.Sprintf("%s/s%d", prefix, w%max(1, cfg.Shards)) }
	}
	if err := prepare(ctx, t.Store, sc, cfg.Workers, shardOf, value); err != nil {
		return seg, err
	}
	var before int64
	if t.Transactions != nil {
		n, err := t.Transactions(ctx)
		if err != nil {
			return seg, err
		}
		before = n
	}

	var ops, mismatches, errs atomic.Int64
	var firstErr atomic.Value // string
	lat := make([][]time.Duration, cfg.Workers)
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shard := shardOf(w)
			next := uint64(0) // the seqno this worker writes next
			if sc == ScanTail {
				next = tailVersions
			}
			step := 0 // position in the persist-mix cycle
			deadline, _ := runCtx.Deadline()
			failed := func(err error) {
				if runCtx.Err() != nil || time.Until(deadline) < endSlack {
					return // the segment's end cut the call short
				}
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			for runCtx.Err() == nil {
				t0 := time.Now()
				switch sc {
				case CAS:
					ok, err := t.Store.CompareAndSet(runCtx, shard, backend.VersionedData{SeqNo: next, Data: value})
					switch {
					case err != nil:
						failed(err)
						continue
					case ok:
						next++
						ops.Add(1)
					default:
						mismatches.Add(1)
					}
				case CASContended:
					ok, err := t.Store.CompareAndSet(runCtx, shard, backend.VersionedData{SeqNo: next, Data: value})
					if err != nil {
						failed(err)
						continue
					}
					if ok {
						next++
						ops.Add(1)
					} else {
						mismatches.Add(1)
						// Learn the head, as a persist writer does after
						// losing a race.
						h, err := t.Store.Head(runCtx, shard)
						if err != nil {
							failed(err)
							continue
						}
						if h != nil {
							next = h.SeqNo + 1
						}
					}
				case Head:
					if _, err := t.Store.Head(runCtx, shard); err != nil {
						failed(err)
						continue
					}
					ops.Add(1)
				case ScanTail:
					from := next - 1 - uint64(step%tailVersions)
					step++
					vs, err := t.Store.Scan(runCtx, shard, from, scanLimit)
					if err == nil {
						err = checkScan(vs, from, next)
					}
					if err != nil {
						failed(err)
						continue
					}
					ops.Add(1)
				case Mix:
					var err error
					committed := true
					switch k := step % 10; {
					case k < 5:
						committed, err = t.Store.CompareAndSet(runCtx, shard, backend.VersionedData{SeqNo: next, Data: value})
						if err == nil && committed {
							next++
						}
					case k < 8:
						_, err = t.Store.Head(runCtx, shard)
					case k == 8:
						from := next - min(next, 4)
						var vs []backend.VersionedData
						vs, err = t.Store.Scan(runCtx, shard, from, scanLimit)
						if err == nil {
							err = checkScan(vs, from, next)
						}
					default:
						if next > tailVersions {
							_, err = t.Store.Truncate(runCtx, shard, next-tailVersions)
						}
					}
					step++
					switch {
					case err != nil:
						failed(err)
						continue
					case !committed:
						mismatches.Add(1) // its own shard: a lost answer's retry
					}
					ops.Add(1)
				}
				if runCtx.Err() == nil {
					lat[w] = append(lat[w], time.Since(t0))
				}
			}
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress != nil {
			progress(runCtx, cfg.Progress, t.Name, sc, &ops, &errs)
		}
	}()
	wg.Wait()
	stop()
	<-progressDone
	seg.Elapsed = time.Since(start)
	seg.Ops, seg.Mismatches, seg.Errors = ops.Load(), mismatches.Load(), errs.Load()
	if e, ok := firstErr.Load().(string); ok {
		seg.FirstError = e
	}
	for _, l := range lat {
		seg.Latencies = append(seg.Latencies, l...)
	}
	slices.Sort(seg.Latencies)
	if t.Transactions != nil {
		n, err := t.Transactions(ctx)
		if err != nil {
			return seg, err
		}
		seg.Transactions = n - before - 1 // the first count took an id too
	}
	return seg, nil
}

// prepare gives every worker's shard what the scenario reads: one version
// for head, tailVersions for scan-tail. The workers' shards are written in
// parallel, untimed.
func prepare(ctx context.Context, store backend.Consensus, sc Scenario, workers int, shardOf func(int) string, value []byte) error {
	versions := map[Scenario]int{Head: 1, ScanTail: tailVersions}[sc]
	if versions == 0 {
		return nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range versions {
				ok, err := store.CompareAndSet(ctx, shardOf(w), backend.VersionedData{SeqNo: uint64(n), Data: value})
				if err == nil && !ok {
					err = fmt.Errorf("cas of seqno %d on a fresh shard mismatched", n)
				}
				if err != nil {
					errs[w] = fmt.Errorf("set up shard %s: %w", shardOf(w), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkScan verifies a scan from from of a shard whose head is next-1: the
// versions from on, contiguous, at most scanLimit of them.
func checkScan(vs []backend.VersionedData, from, next uint64) error {
	want := min(next-from, scanLimit)
	if uint64(len(vs)) != want {
		return fmt.Errorf("scan from %d returned %d versions, want %d", from, len(vs), want)
	}
	for i, v := range vs {
		if v.SeqNo != from+uint64(i) {
			return fmt.Errorf("scan from %d returned seqno %d at %d", from, v.SeqNo, i)
		}
	}
	return nil
}

// progress prints one line a second until ctx ends.
func progress(ctx context.Context, say func(string), target string, sc Scenario, ops, errs *atomic.Int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastT := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n := ops.Load()
			say(fmt.Sprintf("%-10s %-14s %8.0f ops/s  errors %d", target, sc, float64(n-last)/now.Sub(lastT).Seconds(), errs.Load()))
			last, lastT = n, now
		}
	}
}
