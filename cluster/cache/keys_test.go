package cache_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/cache"
)

// listKeys asks the cache for the shard list and checks it and how many
// list reads reached the store so far.
func (f *fixture) listKeys(wantReads int, want ...string) {
	f.t.Helper()
	got, err := f.cache.ListKeys(f.ctx)
	if err != nil {
		f.t.Fatalf("list keys: %v", err)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		f.t.Fatalf("list keys = %q, want %q", got, want)
	}
	f.calls(opListKeys, wantReads)
}

func TestListKeysAnsweredFromTheCacheOnceComplete(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.commitDirect("b", vd(0, "b0")) // written before this cache existed
	f.cas("a", vd(0, "a0"), true)

	f.listKeys(1, "a", "b") // the first list must read the store
	f.listKeys(1, "a", "b")
	f.cas("c", vd(0, "c0"), true)
	f.cas("a", vd(1, "a1"), true)
	f.listKeys(1, "a", "b", "c")
	if _, err := f.cache.CompareAndSetMulti(f.ctx, []backend.CASOp{{Shard: "e", New: vd(0, "e0")}, {Shard: "d", New: vd(0, "d0")}}); err != nil {
		t.Fatalf("multi: %v", err)
	}
	f.listKeys(1, "a", "b", "c", "d", "e")

	// The caller owns what it got.
	got, _ := f.cache.ListKeys(f.ctx)
	got[0] = "zzz"
	f.listKeys(1, "a", "b", "c", "d", "e")
	if st := f.stats(); st.ListKeysHits != 5 || st.ListKeysMisses != 1 {
		t.Fatalf("stats = %+v, want 5 list hits and 1 miss", st)
	}
}

// A CaS that created a shard in the store but has not returned yet may be
// observed by a read that reads through; the list must not miss the shard
// meanwhile.
func TestListKeysReadsThroughWhileANewShardIsBeingWritten(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.listKeys(1, "a")

	pk := f.probe.ParkNext(opCAS)
	slow := inBackground(func() error {
		_, err := f.cache.CompareAndSet(f.ctx, "n", vd(0, "n0"))
		return err
	})
	arrive(t, pk) // committed in the store, not yet returned
	f.listKeys(2, "a", "n")
	f.listKeys(2, "a", "n") // the store showed it: the shard exists
	close(pk.release)
	if err := wait(t, slow); err != nil {
		t.Fatalf("cas(n, 0): %v", err)
	}
	f.listKeys(2, "a", "n")

	// A write in flight on a shard the list already holds changes nothing.
	pk = f.probe.ParkNext(opCAS)
	slow = inBackground(func() error {
		_, err := f.cache.CompareAndSet(f.ctx, "a", vd(1, "a1"))
		return err
	})
	arrive(t, pk)
	f.listKeys(2, "a", "n")
	close(pk.release)
	if err := wait(t, slow); err != nil {
		t.Fatalf("cas(a, 1): %v", err)
	}
}

// After a write that failed indeterminate on a shard not known to exist,
// the list comes from the store until something shows the shard exists.
func TestListKeysAfterAnIndeterminateWrite(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.listKeys(1, "a")

	// It did commit: the next read-through finds it, and the list is
	// complete again.
	f.probe.FailNext(opCAS)
	if _, err := f.cache.CompareAndSet(f.ctx, "p", vd(0, "p0")); !errors.Is(err, errInjected) {
		t.Fatalf("cas(p, 0) = %v, want the injected error", err)
	}
	f.listKeys(2, "a", "p")
	f.listKeys(2, "a", "p")

	// It did not commit (the store mismatched it, the answer was lost):
	// every list reads the store, since the write might still show up.
	f.probe.FailNext(opCAS)
	if _, err := f.cache.CompareAndSet(f.ctx, "q", vd(3, "q3")); !errors.Is(err, errInjected) {
		t.Fatalf("cas(q, 3) = %v, want the injected error", err)
	}
	f.listKeys(3, "a", "p")
	f.listKeys(4, "a", "p")
	f.head("q", nil) // absence proves nothing lasting
	f.listKeys(5, "a", "p")
	// A refused CaS of seqno 0 would prove it exists; a committed one does.
	f.cas("q", vd(0, "q0"), true)
	f.listKeys(5, "a", "p", "q")
}

// A failed list teaches nothing; the next one reads through again.
func TestListKeysFailureReadsThroughAgain(t *testing.T) {
	f := newFixture(t, cache.Config{})
	f.cas("a", vd(0, "a0"), true)
	f.probe.FailNext(opListKeys)
	if _, err := f.cache.ListKeys(f.ctx); !errors.Is(err, errInjected) {
		t.Fatalf("list keys = %v, want the injected error", err)
	}
	f.listKeys(2, "a")
	f.listKeys(2, "a")
}

// Past MaxKeys the cache keeps no names and every list reads the store; a
// negative MaxKeys keeps none from the start.
func TestListKeysBeyondMaxKeysReadsThrough(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxKeys int
		reads   []int // store reads after each list below
	}{
		{"bounded", 2, []int{1, 1, 2, 3}},
		{"off", -1, []int{1, 2, 3, 4}},
		{"room", 10, []int{1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, cache.Config{MaxKeys: tc.maxKeys})
			f.cas("a", vd(0, "a0"), true)
			f.listKeys(tc.reads[0], "a")
			f.cas("b", vd(0, "b0"), true)
			f.listKeys(tc.reads[1], "a", "b")
			f.cas("c", vd(0, "c0"), true)
			f.listKeys(tc.reads[2], "a", "b", "c")
			f.listKeys(tc.reads[3], "a", "b", "c")
		})
	}
}
