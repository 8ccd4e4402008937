package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
)

func mustFence(t *testing.T, ctx context.Context, s backend.Fencer, epoch uint64) {
	t.Helper()
	if err := s.Fence(ctx, epoch); err != nil {
		t.Fatalf("fence(%d): %v", epoch, err)
	}
}

func wantFenced(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, backend.ErrFenced)
}

// testStaleEpochRejected walks one store through two epochs and checks that
// the older handle's writes are refused, change nothing, and that its reads
// keep working.
func testStaleEpochRejected(t *testing.T, s backend.Fencer) {
	ctx := t.Context()
	w5 := s.AtEpoch(5)

	// The stored epoch starts at 0, so epoch 5 may not write until it fences.
	_, err := w5.CompareAndSet(ctx, "a", vd(0, "early"))
	wantFenced(t, "epoch 5 cas before fence(5)", err)
	wantKeys(t, ctx, s)

	mustFence(t, ctx, s, 5)
	wantCAS(t, ctx, w5, "a", vd(0, "a0"), true)
	wantCAS(t, ctx, w5, "a", vd(1, "a1"), true)
	wantCAS(t, ctx, w5, "a", vd(2, "a2"), true)
	wantCAS(t, ctx, w5, "a", vd(2, "late"), false)
	wantCAS(t, ctx, w5, "b", vd(0, "b0"), true)
	wantMulti(t, ctx, w5, []backend.CASOp{{Shard: "a", New: vd(3, "a3")}, {Shard: "c", New: vd(0, "c0")}}, []bool{true, true})
	wantTruncate(t, ctx, w5, "a", 1, 1)
	if t.Failed() {
		return
	}

	mustFence(t, ctx, s, 6)
	shards := []string{"a", "b", "c", "d"}
	before := takeSnapshot(t, ctx, s, shards)

	_, err = w5.CompareAndSet(ctx, "a", vd(4, "a4 from epoch 5"))
	wantFenced(t, "epoch 5 cas(a, 4) after fence(6)", err)
	_, err = w5.CompareAndSet(ctx, "d", vd(0, "d0 from epoch 5"))
	wantFenced(t, "epoch 5 cas(d, 0) after fence(6)", err)
	_, err = w5.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(4, "a4")}, {Shard: "d", New: vd(0, "d0")}})
	wantFenced(t, "epoch 5 multi after fence(6)", err)
	_, err = w5.Truncate(ctx, "a", 3)
	wantFenced(t, "epoch 5 truncate(a, 3) after fence(6)", err)
	// The handle Open returned writes at epoch 0, far below the stored epoch.
	_, err = s.CompareAndSet(ctx, "a", vd(4, "a4 from epoch 0"))
	wantFenced(t, "epoch 0 cas(a, 4) after fence(6)", err)

	wantSameSnapshot(t, "after refused epoch 5 writes", before, takeSnapshot(t, ctx, s, shards), shards)

	// Reads need no epoch: the stale handle still sees everything.
	wantHead(t, ctx, w5, "a", &backend.VersionedData{SeqNo: 3, Data: []byte("a3")})
	wantScan(t, ctx, w5, "a", 0, all, []backend.VersionedData{vd(1, "a1"), vd(2, "a2"), vd(3, "a3")})
	wantHead(t, ctx, w5, "d", nil)
	wantKeys(t, ctx, w5, "a", "b", "c")

	w6 := s.AtEpoch(6)
	wantCAS(t, ctx, w6, "a", vd(4, "a4"), true)
	wantMulti(t, ctx, w6, []backend.CASOp{{Shard: "b", New: vd(1, "b1")}, {Shard: "d", New: vd(0, "d0")}}, []bool{true, true})
	wantTruncate(t, ctx, w6, "a", 4, 3)

	wantFenced(t, "fence(5) after fence(6)", s.Fence(ctx, 5))
	wantFenced(t, "fence(0) after fence(6)", s.Fence(ctx, 0))
	mustFence(t, ctx, s, 6)
	mustFence(t, ctx, w5, 6) // any handle may fence; its own epoch does not matter
	// Re-fencing the stored epoch leaves its writers working.
	wantCAS(t, ctx, w6, "a", vd(5, "a5"), true)
	_, err = w5.CompareAndSet(ctx, "a", vd(6, "a6 from epoch 5"))
	wantFenced(t, "epoch 5 cas after fence(6) twice", err)

	wantScan(t, ctx, s, "a", 0, all, []backend.VersionedData{vd(4, "a4"), vd(5, "a5")})
	wantScan(t, ctx, s, "b", 0, all, []backend.VersionedData{vd(0, "b0"), vd(1, "b1")})
	wantScan(t, ctx, s, "c", 0, all, []backend.VersionedData{vd(0, "c0")})
	wantScan(t, ctx, s, "d", 0, all, []backend.VersionedData{vd(0, "d0")})
	wantKeys(t, ctx, s, "a", "b", "c", "d")

	// A handle derived from a handle takes the new epoch, not the old one.
	wantCAS(t, ctx, w5.AtEpoch(6), "a", vd(6, "a6"), true)
	mustFence(t, ctx, s, 7)
	_, err = w6.CompareAndSet(ctx, "a", vd(7, "a7 from epoch 6"))
	wantFenced(t, "epoch 6 cas after fence(7)", err)
	wantHead(t, ctx, s, "a", &backend.VersionedData{SeqNo: 6, Data: []byte("a6")})
}

// testUnboundHandle checks that the handle a store is opened with writes at
// epoch 0, which is also the epoch of a store never fenced.
func testUnboundHandle(t *testing.T, s backend.Fencer) {
	ctx := t.Context()
	wantCAS(t, ctx, s, "a", vd(0, "a0"), true)
	mustFence(t, ctx, s, 0)
	wantCAS(t, ctx, s, "a", vd(1, "a1"), true)
	wantCAS(t, ctx, s.AtEpoch(0), "a", vd(2, "a2"), true)
	mustFence(t, ctx, s, 1)
	_, err := s.CompareAndSet(ctx, "a", vd(3, "a3 from epoch 0"))
	wantFenced(t, "epoch 0 cas after fence(1)", err)
	_, err = s.Truncate(ctx, "a", 2)
	wantFenced(t, "epoch 0 truncate after fence(1)", err)
	wantCAS(t, ctx, s.AtEpoch(1), "a", vd(3, "a3"), true)
	wantScan(t, ctx, s, "a", 0, all, []backend.VersionedData{vd(0, "a0"), vd(1, "a1"), vd(2, "a2"), vd(3, "a3")})
}

// testFenceStopsRacingWriters is the writer-storm test of docs/architecture.md
// §5.3 (Fencing, the ordering argument): writers at epoch 5 keep writing
// while epoch 6 fences. Once Fence(6) has returned, no epoch 5 write may take
// effect, so the state seen right after the fence is final.
func testFenceStopsRacingWriters(t *testing.T, s backend.Fencer) {
	const writers, nShards = 8, 32
	const committedBeforeFence = 32 // commits to see before fencing
	const fencedAfterFence = 16     // refusals to see before stopping
	const runOn = 200 * time.Millisecond

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	shards := make([]string, nShards)
	for i := range shards {
		shards[i] = fmt.Sprintf("shard-%02d", i)
	}
	mustFence(t, ctx, s, 5)
	w5 := s.AtEpoch(5)

	var (
		fenceReturned atomic.Bool  // set once Fence(6) has returned
		committed     atomic.Int64 // epoch 5 writes that took effect
		fencedAfter   atomic.Int64 // epoch 5 writes started after the fence and refused
		stop          = make(chan struct{})
		stopOnce      sync.Once
		wg            sync.WaitGroup
	)
	stopWriters := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer stopWriters() // also on t.Fatal, so no writer outlives the test

	// outcome judges one write. started says whether the fence had returned
	// before the write was issued; took says whether it took effect.
	outcome := func(w int, what string, startedAfterFence, took bool, err error) {
		switch {
		case err == nil && startedAfterFence:
			t.Errorf("writer %d: %s started after fence(6) returned and succeeded (took effect: %v), want fenced", w, what, took)
		case err == nil:
			if took {
				committed.Add(1)
			}
		case errors.Is(err, backend.ErrFenced) && backend.IsDeterminate(err):
			if startedAfterFence {
				fencedAfter.Add(1)
			}
		case !backend.IsDeterminate(err):
			t.Errorf("writer %d: %s: indeterminate error %v", w, what, err)
		case startedAfterFence:
			t.Errorf("writer %d: %s started after fence(6) returned: got %v, want fenced", w, what, err)
		}
		// A determinate non-fence error before the fence (a lost race, a
		// storage conflict) is a legitimate refusal.
	}

	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0x5eed))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				after := fenceReturned.Load()
				shard := shards[rng.IntN(nShards)]
				head, err := w5.Head(ctx, shard)
				if err != nil {
					t.Errorf("writer %d: head(%q): %v", w, shard, err)
					return
				}
				next := uint64(0)
				if head != nil {
					next = head.SeqNo + 1
				}
				data := fmt.Appendf(nil, "writer %d op %d", w, i)
				switch op := rng.IntN(10); {
				case op < 7:
					ok, err := w5.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: next, Data: data})
					outcome(w, fmt.Sprintf("cas(%q, %d)", shard, next), after, ok, err)
				case op < 9:
					ops := []backend.CASOp{{Shard: shard, New: backend.VersionedData{SeqNo: next, Data: data}}}
					for _, j := range rng.Perm(nShards)[:3] {
						other := shards[j]
						if other == shard || len(ops) == 3 {
							continue
						}
						h, err := w5.Head(ctx, other)
						if err != nil {
							t.Errorf("writer %d: head(%q): %v", w, other, err)
							return
						}
						n := uint64(0)
						if h != nil {
							n = h.SeqNo + 1
						}
						ops = append(ops, backend.CASOp{Shard: other, New: backend.VersionedData{SeqNo: n, Data: data}})
					}
					res, err := w5.CompareAndSetMulti(ctx, ops)
					took := false
					for _, c := range res {
						took = took || c
					}
					outcome(w, fmt.Sprintf("multi of %d", len(ops)), after, took, err)
				default:
					if head == nil {
						continue
					}
					deleted, err := w5.Truncate(ctx, shard, head.SeqNo)
					outcome(w, fmt.Sprintf("truncate(%q, %d)", shard, head.SeqNo), after, deleted > 0, err)
				}
			}
		})
	}

	waitFor(t, ctx, "epoch 5 commits before the fence", func() bool { return committed.Load() >= committedBeforeFence })
	mustFence(t, ctx, s, 6)
	fenceReturned.Store(true)
	atFence := takeSnapshot(t, ctx, s.AtEpoch(6), shards)

	time.Sleep(runOn)
	waitFor(t, ctx, "epoch 5 writes refused after the fence", func() bool { return fencedAfter.Load() >= fencedAfterFence })
	stopWriters()
	afterRun := takeSnapshot(t, ctx, s, shards)

	t.Logf("epoch 5: %d writes took effect before the fence, %d refused after it", committed.Load(), fencedAfter.Load())
	if committed.Load() == 0 {
		t.Errorf("no epoch 5 write took effect before the fence")
	}
	if fencedAfter.Load() == 0 {
		t.Errorf("no epoch 5 write was refused after the fence")
	}
	wantSameSnapshot(t, "epoch 5 writers running on after fence(6)", atFence, afterRun, shards)

	// The new epoch writes on top of exactly the state the fence froze.
	head := afterRun.heads[shards[0]]
	next := uint64(0)
	if head != nil {
		next = head.SeqNo + 1
	}
	wantCAS(t, ctx, s.AtEpoch(6), shards[0], vd(next, "epoch 6"), true)
}

// waitFor polls cond until it holds; ctx bounds the wait so that a store that
// never gets there fails instead of hanging.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if t.Failed() {
			t.Fatalf("gave up waiting for %s: the test already failed", what)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
