package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster/cache"
)

func TestConformance(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		return cache.New(openBolt(t), cache.Config{})
	})
}

// TestConformanceTinyCache runs the suite through a cache that evicts all the
// time, so every case also crosses the eviction paths.
func TestConformanceTinyCache(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		return cache.New(openBolt(t), cache.Config{MaxEntries: 2, MaxBytes: 16 << 10})
	})
}

// fixture is a cache over a probed bolt store.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	store *bolt.Backend // the real store, for setup and for reading past the cache
	probe *probedStore
	cache *cache.Cache
}

func newFixture(t *testing.T, cfg cache.Config) *fixture {
	store := openBolt(t)
	return newFixtureOver(t, store, store, cfg)
}

func newFixtureOver(t *testing.T, store *bolt.Backend, handle backend.Consensus, cfg cache.Config) *fixture {
	p := newProbe(handle)
	return &fixture{t: t, ctx: t.Context(), store: store, probe: p, cache: cache.New(p, cfg)}
}

// commitDirect writes to the store behind the cache's back, for setup only.
func (f *fixture) commitDirect(shard string, vs ...backend.VersionedData) {
	f.t.Helper()
	for _, v := range vs {
		ok, err := f.store.CompareAndSet(f.ctx, shard, v)
		if err != nil || !ok {
			f.t.Fatalf("setup: store cas(%q, %s) = %v, %v; want committed", shard, describe(&v), ok, err)
		}
	}
}

func (f *fixture) cas(shard string, v backend.VersionedData, want bool) {
	f.t.Helper()
	got, err := f.cache.CompareAndSet(f.ctx, shard, v)
	if err != nil {
		f.t.Fatalf("cas(%q, %s): %v", shard, describe(&v), err)
	}
	if got != want {
		f.t.Fatalf("cas(%q, %s) committed = %v, want %v", shard, describe(&v), got, want)
	}
}

func (f *fixture) head(shard string, want *backend.VersionedData) {
	f.t.Helper()
	got, err := f.cache.Head(f.ctx, shard)
	if err != nil {
		f.t.Fatalf("head(%q): %v", shard, err)
	}
	if !sameVersion(got, want) {
		f.t.Fatalf("head(%q) = %s, want %s", shard, describe(got), describe(want))
	}
}

// storeHead reads the store directly, past the cache and the probe.
func (f *fixture) storeHead(shard string) *backend.VersionedData {
	f.t.Helper()
	v, err := f.store.Head(f.ctx, shard)
	if err != nil {
		f.t.Fatalf("store head(%q): %v", shard, err)
	}
	return v
}

// calls asserts how many calls of op have reached the store so far.
func (f *fixture) calls(op string, want int) {
	f.t.Helper()
	if got := f.probe.Calls(op); got != want {
		f.t.Fatalf("store %s calls = %d, want %d", op, got, want)
	}
}

func (f *fixture) hot(want ...string) {
	f.t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := f.cache.HotShards(100); !slices.Equal(got, want) {
		f.t.Fatalf("HotShards = %q, want %q", got, want)
	}
}

func (f *fixture) stats() cache.Stats {
	return f.cache.Stats()
}

func ptr(v backend.VersionedData) *backend.VersionedData { return &v }

func sameVersion(a, b *backend.VersionedData) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.SeqNo == b.SeqNo && bytes.Equal(a.Data, b.Data)
}

// inBackground runs fn on its own goroutine; the returned channel has room
// for the one result, so the goroutine never blocks on a test that failed.
func inBackground[T any](fn func() T) <-chan T {
	out := make(chan T, 1)
	go func() { out <- fn() }()
	return out
}

type headResult struct {
	v   *backend.VersionedData
	err error
}

type casResult struct {
	committed bool
	err       error
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-t.Context().Done():
		t.Fatal("test ended while waiting for a background call")
		panic("unreachable")
	}
}

func arrive(t *testing.T, pk *parking) {
	t.Helper()
	select {
	case <-pk.arrived:
	case <-t.Context().Done():
		t.Fatal("test ended before the parked call reached the store")
	}
}

func TestCASFastFailFromCache(t *testing.T) {
	f := newFixture(t, cache.Config{})
	for s := range uint64(4) {
		f.cas("a", vd(s, fmt.Sprint("a", s)), true)
	}
	f.calls(opCAS, 4)

	// Every seqno <= 3 is behind the cached head: mismatch, no store call.
	for s := range uint64(4) {
		f.cas("a", vd(s, "late"), false)
	}
	f.calls(opCAS, 4)
	if st := f.stats(); st.CASFastFails != 4 || st.CASWriteThroughs != 4 {
		t.Fatalf("stats = %+v, want 4 fast fails and 4 write-throughs", st)
	}

	f.cas("a", vd(4, "a4"), true) // n+1 goes through
	f.calls(opCAS, 5)
	f.cas("a", vd(9, "a9"), false) // n+5 is asked, never guessed
	f.calls(opCAS, 6)
	if got := f.storeHead("a"); !sameVersion(got, ptr(vd(4, "a4"))) {
		t.Fatalf("store head = %s, want {4, a4}", describe(got))
	}
	// The far-ahead mismatch says nothing against the cached head.
	f.head("a", ptr(vd(4, "a4")))
	f.calls(opHead, 0)

	want := cache.Stats{
		Hits: 5, Misses: 6, HeadHits: 1, CASFastFails: 4, CASWriteThroughs: 6,
		Shards: 1, Bytes: f.stats().Bytes,
	}
	if st := f.stats(); st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
}

func TestHeadHitsMissesAndAbsence(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("a", vd(0, "a0"))

	f.head("a", ptr(vd(0, "a0"))) // miss fills
	f.calls(opHead, 1)
	f.head("a", ptr(vd(0, "a0"))) // hit
	f.calls(opHead, 1)

	f.cas("a", vd(1, "a1"), true)
	f.head("a", ptr(vd(1, "a1"))) // a committed CaS is a hit
	f.calls(opHead, 1)

	// Absent is never cached.
	f.head("missing", nil)
	f.head("missing", nil)
	f.calls(opHead, 3)

	st := f.stats()
	if st.HeadHits != 2 || st.HeadMisses != 3 || st.Shards != 1 {
		t.Fatalf("stats = %+v, want 2 head hits, 3 head misses, 1 shard", st)
	}
	f.hot("a")
}

// A slow miss that read n must not replace n+1 committed meanwhile.
func TestSlowHeadMissKeepsNewerCommit(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("a", vd(0, "a0"), vd(1, "a1"), vd(2, "a2"))

	pk := f.probe.ParkNext(opHead)
	slow := inBackground(func() headResult {
		v, err := f.cache.Head(f.ctx, "a")
		return headResult{v, err}
	})
	arrive(t, pk) // it has read {2, a2}
	f.cas("a", vd(3, "a3"), true)
	close(pk.release)
	r := wait(t, slow)
	if r.err != nil || !sameVersion(r.v, ptr(vd(2, "a2"))) {
		t.Fatalf("slow head = %s, %v; want {2, a2}", describe(r.v), r.err)
	}

	f.head("a", ptr(vd(3, "a3")))
	f.calls(opHead, 1) // only the slow miss reached the store
}

func TestIndeterminateCASDropsShard(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.cas("a", vd(1, "a1"), true)
	f.cas("b", vd(0, "b0"), true)

	f.probe.FailNext(opCAS)
	ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(2, "a2"))
	if ok || !errors.Is(err, errInjected) || backend.IsDeterminate(err) {
		t.Fatalf("cas(a, 2) = %v, %v; want the injected indeterminate error", ok, err)
	}
	f.hot("b")

	f.head("a", ptr(vd(2, "a2"))) // the write did commit: read from the store
	f.calls(opHead, 1)
	f.head("a", ptr(vd(2, "a2")))
	f.head("b", ptr(vd(0, "b0")))
	f.calls(opHead, 1)
	if st := f.stats(); st.Drops != 1 || st.Evictions != 0 {
		t.Fatalf("stats = %+v, want 1 drop, 0 evictions", st)
	}
}

// A miss that read n before an indeterminate write of n+1 must not fill n
// after it.
func TestHeadMissAcrossIndeterminateCASDoesNotRefill(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("a", vd(0, "a0"), vd(1, "a1"))

	pk := f.probe.ParkNext(opHead)
	slow := inBackground(func() headResult {
		v, err := f.cache.Head(f.ctx, "a")
		return headResult{v, err}
	})
	arrive(t, pk) // it has read {1, a1}
	f.probe.FailNext(opCAS)
	if ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(2, "a2")); ok || !errors.Is(err, errInjected) {
		t.Fatalf("cas(a, 2) = %v, %v; want the injected indeterminate error", ok, err)
	}
	close(pk.release)
	if r := wait(t, slow); r.err != nil || !sameVersion(r.v, ptr(vd(1, "a1"))) {
		t.Fatalf("slow head = %s, %v; want {1, a1}", describe(r.v), r.err)
	}
	f.hot()

	f.head("a", ptr(vd(2, "a2")))
	f.calls(opHead, 2)
}

// A committed CaS of n whose answer comes back after an indeterminate write
// of n+1 must not cache n.
func TestCommittedCASAcrossIndeterminateCASDoesNotCacheStale(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)

	pk := f.probe.ParkNext(opCAS)
	slow := inBackground(func() casResult {
		ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(1, "a1"))
		return casResult{ok, err}
	})
	arrive(t, pk) // {1, a1} is committed, the cache still holds {0, a0}
	f.probe.FailNext(opCAS)
	if ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(2, "a2")); ok || !errors.Is(err, errInjected) {
		t.Fatalf("cas(a, 2) = %v, %v; want the injected indeterminate error", ok, err)
	}
	close(pk.release)
	if r := wait(t, slow); r.err != nil || !r.committed {
		t.Fatalf("slow cas(a, 1) = %v, %v; want committed", r.committed, r.err)
	}

	f.head("a", ptr(vd(2, "a2")))
	f.calls(opHead, 1)
}

// A miss that read n must not fill it after n+1 was cached and then evicted.
func TestHeadMissAcrossEvictionDoesNotRefill(t *testing.T) {
	f := newFixture(t, cache.Config{MaxEntries: 1})
	f.commitDirect("a", vd(0, "a0"))

	pk := f.probe.ParkNext(opHead)
	slow := inBackground(func() headResult {
		v, err := f.cache.Head(f.ctx, "a")
		return headResult{v, err}
	})
	arrive(t, pk) // it has read {0, a0}
	f.cas("a", vd(1, "a1"), true)
	f.cas("b", vd(0, "b0"), true) // evicts a
	f.hot("b")
	close(pk.release)
	if r := wait(t, slow); r.err != nil || !sameVersion(r.v, ptr(vd(0, "a0"))) {
		t.Fatalf("slow head = %s, %v; want {0, a0}", describe(r.v), r.err)
	}
	f.hot("b")

	f.head("a", ptr(vd(1, "a1")))
	f.calls(opHead, 2)
	f.hot("a")
	if st := f.stats(); st.Evictions != 2 || st.Shards != 1 {
		t.Fatalf("stats = %+v, want 2 evictions, 1 shard", st)
	}
}

// The canary's switch really removes the generation check: the late fills
// that TestHeadMissAcrossIndeterminateCASDoesNotRefill and
// TestHeadMissAcrossEvictionDoesNotRefill stop go into the cache, and a Head
// answers the older version from it while the store holds a newer one.
func TestUnsafeSkipGenerationLetsLateFillsIn(t *testing.T) {
	t.Run("across an indeterminate CaS", func(t *testing.T) {
		f := newFixture(t, cache.Config{UnsafeSkipGeneration: true})
		f.commitDirect("a", vd(0, "a0"), vd(1, "a1"))

		pk := f.probe.ParkNext(opHead)
		slow := inBackground(func() headResult {
			v, err := f.cache.Head(f.ctx, "a")
			return headResult{v, err}
		})
		arrive(t, pk) // it has read {1, a1}
		f.probe.FailNext(opCAS)
		if ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(2, "a2")); ok || !errors.Is(err, errInjected) {
			t.Fatalf("cas(a, 2) = %v, %v; want the injected indeterminate error", ok, err)
		}
		close(pk.release)
		if r := wait(t, slow); r.err != nil || !sameVersion(r.v, ptr(vd(1, "a1"))) {
			t.Fatalf("slow head = %s, %v; want {1, a1}", describe(r.v), r.err)
		}
		f.hot("a") // the late fill went in

		f.head("a", ptr(vd(1, "a1"))) // stale: the store holds {2, a2}
		if got := f.storeHead("a"); !sameVersion(got, ptr(vd(2, "a2"))) {
			t.Fatalf("store head = %s, want {2, a2}", describe(got))
		}
		f.calls(opHead, 1) // answered from the cache
	})
	t.Run("across an eviction", func(t *testing.T) {
		f := newFixture(t, cache.Config{MaxEntries: 1, UnsafeSkipGeneration: true})
		f.commitDirect("a", vd(0, "a0"))

		pk := f.probe.ParkNext(opHead)
		slow := inBackground(func() headResult {
			v, err := f.cache.Head(f.ctx, "a")
			return headResult{v, err}
		})
		arrive(t, pk) // it has read {0, a0}
		f.cas("a", vd(1, "a1"), true)
		f.cas("b", vd(0, "b0"), true) // evicts a
		close(pk.release)
		if r := wait(t, slow); r.err != nil || !sameVersion(r.v, ptr(vd(0, "a0"))) {
			t.Fatalf("slow head = %s, %v; want {0, a0}", describe(r.v), r.err)
		}
		f.hot("a") // the late fill went in and evicted b

		f.head("a", ptr(vd(0, "a0"))) // stale: {1, a1} was acknowledged
		f.calls(opHead, 1)
		if st := f.stats(); st.Evictions != 2 || st.Drops != 0 || st.Shards != 1 {
			t.Fatalf("stats = %+v, want 2 evictions, 0 drops, 1 shard", st)
		}
	})
}

// Once a call has seen the store ahead of the cache (a commit is still on its
// way back to it), no later Head may answer the older cached head.
func TestStoreObservationsOutrunCachedHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		// headCalls: a scan that reached the head refills the cache with
		// it; the other observations can only drop the lagging entry.
		headCalls int
		observe   func(f *fixture)
	}{
		{"ScanToHead", 0, func(f *fixture) {
			vs, err := f.cache.Scan(f.ctx, "a", 0, ^uint64(0))
			if err != nil || len(vs) != 4 || vs[3].SeqNo != 3 {
				f.t.Fatalf("scan(a, 0, all) = %v, %v; want seqnos 0-3", vs, err)
			}
		}},
		{"ScanCutByLimit", 1, func(f *fixture) {
			vs, err := f.cache.Scan(f.ctx, "a", 2, 2)
			if err != nil || len(vs) != 2 || vs[1].SeqNo != 3 {
				f.t.Fatalf("scan(a, 2, 2) = %v, %v; want seqnos 2-3", vs, err)
			}
		}},
		{"StoreMismatch", 1, func(f *fixture) {
			f.cas("a", vd(3, "other writer"), false)
		}},
		{"Truncate", 1, func(f *fixture) {
			n, err := f.cache.Truncate(f.ctx, "a", 3)
			if err != nil || n != 3 {
				f.t.Fatalf("truncate(a, 3) = %d, %v; want 3 deleted", n, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cache.Config{})
			for s := range uint64(3) {
				f.cas("a", vd(s, fmt.Sprint("a", s)), true)
			}
			pk := f.probe.ParkNext(opCAS)
			slow := inBackground(func() casResult {
				ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(3, "a3"))
				return casResult{ok, err}
			})
			arrive(t, pk) // {3, a3} is committed, the cache holds {2, a2}

			tc.observe(f)
			f.head("a", ptr(vd(3, "a3")))
			f.calls(opHead, tc.headCalls)

			close(pk.release)
			if r := wait(t, slow); r.err != nil || !r.committed {
				t.Fatalf("slow cas(a, 3) = %v, %v; want committed", r.committed, r.err)
			}
			f.head("a", ptr(vd(3, "a3")))
			f.calls(opHead, tc.headCalls)
		})
	}
}

func TestScanToHeadFillsCache(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("a", vd(0, "a0"), vd(1, "a1"), vd(2, "a2"))
	f.commitDirect("b", vd(0, "b0"), vd(1, "b1"), vd(2, "b2"))

	if vs, err := f.cache.Scan(f.ctx, "a", 1, 10); err != nil || len(vs) != 2 {
		t.Fatalf("scan(a, 1, 10) = %v, %v; want 2 versions", vs, err)
	}
	f.head("a", ptr(vd(2, "a2")))
	f.calls(opHead, 0)

	// Cut short by its limit, a scan does not know the head.
	if vs, err := f.cache.Scan(f.ctx, "b", 0, 2); err != nil || len(vs) != 2 {
		t.Fatalf("scan(b, 0, 2) = %v, %v; want 2 versions", vs, err)
	}
	f.head("b", ptr(vd(2, "b2")))
	f.calls(opHead, 1)
	f.calls(opScan, 2)
}

func TestDeterminateErrorsKeepEntries(t *testing.T) {
	store := openBolt(t)
	ctx := t.Context()
	if err := store.Fence(ctx, 1); err != nil {
		t.Fatalf("fence(1): %v", err)
	}
	f := newFixtureOver(t, store, store.AtEpoch(1), cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.cas("a", vd(1, "a1"), true)
	if err := store.Fence(ctx, 2); err != nil {
		t.Fatalf("fence(2): %v", err)
	}

	ok, err := f.cache.CompareAndSet(ctx, "a", vd(2, "a2"))
	if ok || !errors.Is(err, backend.ErrFenced) || !backend.IsDeterminate(err) {
		t.Fatalf("cas(a, 2) at a stale epoch = %v, %v; want determinate fenced", ok, err)
	}
	if err != f.probe.LastErr() {
		t.Fatalf("cas error %v is not the store's error %v", err, f.probe.LastErr())
	}
	f.head("a", ptr(vd(1, "a1")))
	f.calls(opHead, 0)

	res, err := f.cache.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(2, "a2")}, {Shard: "b", New: vd(0, "b0")}})
	if res != nil || !errors.Is(err, backend.ErrFenced) || !backend.IsDeterminate(err) || err != f.probe.LastErr() {
		t.Fatalf("multi at a stale epoch = %v, %v; want the store's determinate fenced error", res, err)
	}
	f.head("a", ptr(vd(1, "a1")))
	f.calls(opHead, 0)
	f.head("b", nil)
	f.calls(opHead, 1)

	// Rejected input never reaches the store.
	_, err = f.cache.CompareAndSet(ctx, "", vd(0, "x"))
	if !errors.Is(err, backend.ErrInvalidArgument) || !backend.IsDeterminate(err) {
		t.Fatalf("cas(\"\") = %v; want determinate invalid argument", err)
	}
	f.calls(opCAS, 3)
	if got := f.storeHead("a"); !sameVersion(got, ptr(vd(1, "a1"))) {
		t.Fatalf("store head(a) = %s, want {1, a1}", describe(got))
	}
	if st := f.stats(); st.Drops != 0 || st.Shards != 1 {
		t.Fatalf("stats = %+v, want no drops and 1 shard", st)
	}
}

func TestMultiSplitsBetweenCacheAndStore(t *testing.T) {
	f := newFixture(t, cache.Config{})
	for s := range uint64(4) {
		f.cas("a", vd(s, fmt.Sprint("a", s)), true)
	}
	f.cas("b", vd(0, "b0"), true)
	f.cas("b", vd(1, "b1"), true)
	f.cas("d", vd(0, "d0"), true)
	f.calls(opCAS, 7)

	got, err := f.cache.CompareAndSetMulti(f.ctx, []backend.CASOp{
		{Shard: "a", New: vd(2, "stale")}, // decided by the cache
		{Shard: "b", New: vd(2, "b2")},    // commits
		{Shard: "c", New: vd(0, "c0")},    // commits
		{Shard: "d", New: vd(5, "d5")},    // store mismatch
		{Shard: "e", New: vd(1, "e1")},    // store mismatch, shard absent
	})
	if want := []bool{false, true, true, false, false}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("multi = %v, %v; want %v", got, err, want)
	}
	f.calls(opMulti, 1)
	sent := f.probe.LastMulti()
	var sentDesc []string
	for _, op := range sent {
		sentDesc = append(sentDesc, fmt.Sprintf("%s@%d", op.Shard, op.New.SeqNo))
	}
	if want := []string{"b@2", "c@0", "d@5", "e@1"}; !slices.Equal(sentDesc, want) {
		t.Fatalf("store received %q, want %q", sentDesc, want)
	}
	f.head("b", ptr(vd(2, "b2")))
	f.head("c", ptr(vd(0, "c0")))
	f.head("d", ptr(vd(0, "d0")))
	f.calls(opHead, 0)
	f.head("e", nil)
	f.calls(opHead, 1)
	if st := f.stats(); st.MultiFastFails != 1 || st.MultiWriteThroughs != 4 {
		t.Fatalf("stats = %+v, want 1 multi fast fail, 4 multi write-throughs", st)
	}

	// Everything decided by the cache: no store call at all.
	got, err = f.cache.CompareAndSetMulti(f.ctx, []backend.CASOp{{Shard: "a", New: vd(3, "x")}, {Shard: "b", New: vd(1, "x")}})
	if want := []bool{false, false}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("multi of stale ops = %v, %v; want %v", got, err, want)
	}
	f.calls(opMulti, 1)

	// An indeterminate multi drops every shard it sent, and only those.
	f.probe.FailNext(opMulti)
	got, err = f.cache.CompareAndSetMulti(f.ctx, []backend.CASOp{
		{Shard: "b", New: vd(3, "b3")},
		{Shard: "c", New: vd(1, "c1")},
		{Shard: "a", New: vd(0, "stale")},
	})
	if got != nil || !errors.Is(err, errInjected) || backend.IsDeterminate(err) {
		t.Fatalf("failing multi = %v, %v; want the injected indeterminate error", got, err)
	}
	f.calls(opMulti, 2)
	if sent := f.probe.LastMulti(); len(sent) != 2 || sent[0].Shard != "b" || sent[1].Shard != "c" {
		t.Fatalf("store received %v, want b and c only", sent)
	}
	f.head("a", ptr(vd(3, "a3")))
	f.head("d", ptr(vd(0, "d0")))
	f.calls(opHead, 1)
	f.head("b", ptr(vd(3, "b3")))
	f.head("c", ptr(vd(1, "c1")))
	f.calls(opHead, 3)
}

func TestMaxEntriesEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFixture(t, cache.Config{MaxEntries: 3})
	for _, s := range []string{"s1", "s2", "s3"} {
		f.cas(s, vd(0, s), true)
	}
	f.hot("s3", "s2", "s1")
	f.head("s1", ptr(vd(0, "s1"))) // touch
	f.hot("s1", "s3", "s2")
	f.cas("s4", vd(0, "s4"), true)
	f.hot("s4", "s1", "s3")
	f.cas("s3", vd(0, "x"), false) // a fast fail is a use too
	f.cas("s5", vd(0, "s5"), true)
	f.hot("s5", "s3", "s4")
	if got := f.cache.HotShards(2); !slices.Equal(got, []string{"s5", "s3"}) {
		t.Fatalf("HotShards(2) = %q, want [s5 s3]", got)
	}
	if st := f.stats(); st.Evictions != 2 || st.Shards != 3 {
		t.Fatalf("stats = %+v, want 2 evictions, 3 shards", st)
	}
	f.calls(opHead, 0)
	f.head("s2", ptr(vd(0, "s2")))
	f.calls(opHead, 1)
}

func TestMaxBytesEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFixture(t, cache.Config{})
	payload := func(s string) backend.VersionedData { return vd(0, strings.Repeat(s, 50)) } // 100 bytes
	// Measure one entry: shard names of two bytes, payloads of 100.
	f.commitDirect("s0", payload("s0"))
	probeCache := cache.New(f.store, cache.Config{})
	if err := probeCache.Prefetch(f.ctx, []string{"s0"}); err != nil {
		t.Fatalf("prefetch: %v", err)
	}
	size := probeCache.Stats().Bytes
	if size <= 102 {
		t.Fatalf("one entry of 102 bytes of key and data accounts %d bytes", size)
	}

	f = newFixtureOver(t, f.store, f.store, cache.Config{MaxBytes: 3*size + size/2})
	f.head("s0", ptr(payload("s0")))
	f.cas("s1", payload("s1"), true)
	f.cas("s2", payload("s2"), true)
	f.hot("s2", "s1", "s0")
	if st := f.stats(); st.Bytes != 3*size || st.Shards != 3 {
		t.Fatalf("stats = %+v, want %d bytes in 3 shards", st, 3*size)
	}
	f.head("s0", ptr(payload("s0")))
	f.cas("s3", payload("s3"), true) // evicts s1
	f.hot("s3", "s0", "s2")
	if st := f.stats(); st.Bytes != 3*size || st.Evictions != 1 {
		t.Fatalf("stats = %+v, want %d bytes and 1 eviction", st, 3*size)
	}

	// A version larger than the whole cache is never cached, and evicts
	// nothing.
	huge := vd(0, strings.Repeat("h", 4*size))
	f.cas("s4", huge, true)
	f.hot("s3", "s0", "s2")
	f.calls(opHead, 1)
	f.head("s4", &huge)
	f.head("s4", &huge)
	f.calls(opHead, 3)
	if st := f.stats(); st.Bytes != 3*size || st.Evictions != 1 {
		t.Fatalf("stats = %+v, want %d bytes and 1 eviction", st, 3*size)
	}
}

// A cached shard whose next version is too large to cache must be dropped,
// not left at its old head, and must not flush the rest of the cache.
func TestOversizedNewVersionDropsOnlyItsShard(t *testing.T) {
	f := newFixture(t, cache.Config{MaxBytes: 1000})
	f.cas("b", vd(0, "b"), true)
	f.cas("c", vd(0, "c"), true)
	f.cas("a", vd(0, "a"), true)
	f.hot("a", "c", "b")
	before := f.stats().Bytes

	huge := vd(1, strings.Repeat("x", 2000))
	f.cas("a", huge, true)
	f.hot("c", "b")
	f.head("a", &huge)
	f.calls(opHead, 1)
	f.cas("a", vd(1, "late"), false) // not cached, so the store decides
	f.calls(opCAS, 5)
	if st := f.stats(); st.Evictions != 0 || st.Drops != 1 || st.Bytes != before*2/3 {
		t.Fatalf("stats = %+v, want 0 evictions, 1 drop, %d bytes", st, before*2/3)
	}
}

func TestClear(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.cas("b", vd(0, "b0"), true)
	f.commitDirect("c", vd(0, "c0"))

	pk := f.probe.ParkNext(opHead)
	slow := inBackground(func() headResult {
		v, err := f.cache.Head(f.ctx, "c")
		return headResult{v, err}
	})
	arrive(t, pk)
	f.cache.Clear()
	close(pk.release)
	if r := wait(t, slow); r.err != nil || !sameVersion(r.v, ptr(vd(0, "c0"))) {
		t.Fatalf("head across clear = %s, %v; want {0, c0}", describe(r.v), r.err)
	}
	f.hot()
	if st := f.stats(); st.Shards != 0 || st.Bytes != 0 {
		t.Fatalf("stats after clear = %+v, want empty", st)
	}

	f.head("a", ptr(vd(0, "a0")))
	f.head("c", ptr(vd(0, "c0")))
	f.calls(opHead, 3)
	f.hot("c", "a")
}

func TestPrefetchAndHotShards(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("a", vd(0, "a0"))
	f.commitDirect("b", vd(0, "b0"), vd(1, "b1"))
	f.commitDirect("c", vd(0, "c0"))

	if err := f.cache.Prefetch(f.ctx, []string{"a", "b", "c", "missing"}); err != nil {
		t.Fatalf("prefetch: %v", err)
	}
	f.calls(opHead, 4)
	f.hot("c", "b", "a")
	if got := f.cache.HotShards(2); !slices.Equal(got, []string{"c", "b"}) {
		t.Fatalf("HotShards(2) = %q, want [c b]", got)
	}
	if got := f.cache.HotShards(0); len(got) != 0 {
		t.Fatalf("HotShards(0) = %q, want none", got)
	}
	f.head("a", ptr(vd(0, "a0")))
	f.head("b", ptr(vd(1, "b1")))
	f.calls(opHead, 4)
	f.hot("b", "a", "c")

	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	err := f.cache.Prefetch(ctx, []string{"a", "d"})
	if !errors.Is(err, context.Canceled) || !backend.IsDeterminate(err) {
		t.Fatalf("prefetch with a canceled context = %v, want determinate context.Canceled", err)
	}
	// A cached shard is not read again, and its place in the LRU stays.
	f.hot("b", "a", "c")
}

// bulkStore counts HeadMany calls over a store that has no bulk read.
type bulkStore struct {
	backend.Consensus
	calls [][]string
}

func (b *bulkStore) HeadMany(ctx context.Context, shards []string) ([]*backend.VersionedData, error) {
	b.calls = append(b.calls, shards)
	out := make([]*backend.VersionedData, len(shards))
	for i, s := range shards {
		v, err := b.Consensus.Head(ctx, s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Prefetch reads what is not cached in one bulk call per chunk of 1024
// when the store offers one.
func TestPrefetchReadsInBulk(t *testing.T) {
	store := openBolt(t)
	ctx := t.Context()
	var shards []string
	for i := range 1500 {
		s := fmt.Sprintf("s%04d", i)
		shards = append(shards, s)
		if i%2 == 0 {
			if ok, err := store.CompareAndSet(ctx, s, vd(0, s)); !ok || err != nil {
				t.Fatal(err)
			}
		}
	}
	bulk := &bulkStore{Consensus: store}
	c := cache.New(bulk, cache.Config{})
	if _, err := c.Head(ctx, "s0000"); err != nil {
		t.Fatal(err)
	}
	if err := c.Prefetch(ctx, shards); err != nil {
		t.Fatal(err)
	}
	if len(bulk.calls) != 2 || len(bulk.calls[0]) != 1023 || len(bulk.calls[1]) != 476 {
		t.Fatalf("bulk reads of %d calls; want 2, of 1023 (s0000 was cached) and 476 shards", len(bulk.calls))
	}
	st := c.Stats()
	if st.Shards != 750 || st.Prefetched != 1499 {
		t.Fatalf("stats %+v; want the 750 written shards cached, 1499 prefetched", st)
	}
}
