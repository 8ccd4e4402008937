package cache_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/cache"
)

// TestStress races writers, readers, multi-CaS, scans, truncates, injected
// indeterminate answers and clears over one cache on bolt. Each worker checks
// what linearizability promises a single client: the heads it observes never
// go back, and a head it committed is visible to its next read. At the end
// every cached head must equal the store's.
func TestStress(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  cache.Config
	}{
		{"Default", cache.Config{}},
		{"Evicting", cache.Config{MaxEntries: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) { stress(t, tc.cfg, 500*time.Millisecond) })
	}
}

func stress(t *testing.T, cfg cache.Config, runFor time.Duration) {
	const workers, shardCount = 8, 16
	f := newFixture(t, cfg)
	shards := make([]string, shardCount)
	for i := range shards {
		shards[i] = fmt.Sprintf("shard-%02d", i)
	}

	var committed, mismatched, injected atomic.Int64
	deadline := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0x5eed))
			// seen[s] is the highest seqno this worker observed for s, plus
			// one (0: nothing observed).
			seen := make(map[string]uint64, shardCount)
			observe := func(op, shard string, seqno uint64) {
				if seqno+1 < seen[shard] {
					t.Errorf("worker %d: %s(%s) observed seqno %d after seqno %d", w, op, shard, seqno, seen[shard]-1)
				}
				seen[shard] = max(seen[shard], seqno+1)
			}
			headOf := func(shard string) (uint64, bool) {
				v, err := f.cache.Head(f.ctx, shard)
				if err != nil {
					t.Errorf("worker %d: head(%s): %v", w, shard, err)
					return 0, false
				}
				if v == nil {
					if seen[shard] != 0 {
						t.Errorf("worker %d: head(%s) absent after seqno %d", w, shard, seen[shard]-1)
					}
					return 0, true
				}
				observe("head", shard, v.SeqNo)
				return v.SeqNo + 1, true
			}
			// unexpected reports every error except the injected ones.
			unexpected := func(what string, err error) bool {
				if err == nil {
					return false
				}
				if errors.Is(err, errInjected) && !backend.IsDeterminate(err) {
					injected.Add(1)
					return true
				}
				t.Errorf("worker %d: %s: %v", w, what, err)
				return true
			}
			for n := 0; time.Now().Before(deadline) && !t.Failed(); n++ {
				shard := shards[rng.IntN(shardCount)]
				data := fmt.Appendf(nil, "w%d n%d", w, n)
				switch p := rng.IntN(100); {
				case p < 45:
					if p < 5 {
						f.probe.FailNext(opCAS)
					}
					next, ok := headOf(shard)
					if !ok {
						return
					}
					if rng.IntN(4) == 0 && next > 0 {
						next -= uint64(rng.IntN(int(min(next, 3))) + 1) // a stale writer
					}
					won, err := f.cache.CompareAndSet(f.ctx, shard, backend.VersionedData{SeqNo: next, Data: data})
					if unexpected("cas", err) {
						continue
					}
					if won {
						committed.Add(1)
						observe("cas", shard, next)
						headOf(shard) // read your write
					} else {
						mismatched.Add(1)
					}
				case p < 60:
					if p < 47 {
						f.probe.FailNext(opMulti)
					}
					perm := rng.Perm(shardCount)[:2+rng.IntN(2)]
					ops := make([]backend.CASOp, len(perm))
					for i, idx := range perm {
						next, ok := headOf(shards[idx])
						if !ok {
							return
						}
						ops[i] = backend.CASOp{Shard: shards[idx], New: backend.VersionedData{SeqNo: next, Data: data}}
					}
					res, err := f.cache.CompareAndSetMulti(f.ctx, ops)
					if unexpected("multi", err) {
						continue
					}
					for i, won := range res {
						if won {
							committed.Add(1)
							observe("multi", ops[i].Shard, ops[i].New.SeqNo)
						}
					}
				case p < 80:
					headOf(shard)
				case p < 90:
					limit := 1 + rng.IntN(4)
					vs, err := f.cache.Scan(f.ctx, shard, 0, uint64(limit))
					if unexpected("scan", err) {
						continue
					}
					switch {
					case len(vs) == 0:
					case len(vs) < limit:
						// The scan reached the head.
						observe("scan", shard, vs[len(vs)-1].SeqNo)
					default:
						// Cut by the limit: the head is at least the last
						// version, which may be older than heads seen.
						seen[shard] = max(seen[shard], vs[len(vs)-1].SeqNo+1)
					}
				case p < 98:
					next, ok := headOf(shard)
					if !ok || next == 0 {
						continue
					}
					if _, err := f.cache.Truncate(f.ctx, shard, next-1); err != nil {
						t.Errorf("worker %d: truncate(%s, %d): %v", w, shard, next-1, err)
					}
				default:
					f.cache.Clear()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d committed, %d mismatched, %d injected indeterminate answers; stats %+v",
		committed.Load(), mismatched.Load(), injected.Load(), f.stats())
	if t.Failed() {
		return
	}
	if committed.Load() == 0 || mismatched.Load() == 0 {
		t.Fatalf("the run committed %d and mismatched %d CaS; want both to happen", committed.Load(), mismatched.Load())
	}

	// Every cached head is the store's head. The Head calls below must be
	// hits (the cache is idle now), so they show the cached value.
	cached := f.cache.HotShards(shardCount)
	headCalls := f.probe.Calls(opHead)
	for _, shard := range cached {
		got, err := f.cache.Head(f.ctx, shard)
		if err != nil {
			t.Fatalf("head(%s): %v", shard, err)
		}
		if want := f.storeHead(shard); !sameVersion(got, want) {
			t.Errorf("cached head(%s) = %s, store has %s", shard, describe(got), describe(want))
		}
	}
	f.calls(opHead, headCalls)
	// And every shard reads the same through the cache as from the store.
	for _, shard := range shards {
		got, err := f.cache.Head(f.ctx, shard)
		if err != nil {
			t.Fatalf("head(%s): %v", shard, err)
		}
		if want := f.storeHead(shard); !sameVersion(got, want) {
			t.Errorf("head(%s) = %s, store has %s", shard, describe(got), describe(want))
		}
	}
}
