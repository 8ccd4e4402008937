package cache_test

import (
	"fmt"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster/cache"
)

func (f *fixture) scan(shard string, from, limit uint64, want ...backend.VersionedData) {
	f.t.Helper()
	got, err := f.cache.Scan(f.ctx, shard, from, limit)
	if err != nil || !conformance.SameVersions(got, want) {
		f.t.Fatalf("scan(%q, %d, %d) = %s, %v; want %s", shard, from, limit, conformance.DescribeAll(got), err, conformance.DescribeAll(want))
	}
}

func versions(shard string, from, to uint64) []backend.VersionedData {
	var out []backend.VersionedData
	for s := from; s <= to; s++ {
		out = append(out, vd(s, fmt.Sprintf("%s%d", shard, s)))
	}
	return out
}

// Commits through the cache build a shard's tail; a scan from within it, or
// above the head, is answered without the store.
func TestScanFromTheTail(t *testing.T) {
	f := newFixture(t, cache.Config{TailVersions: 4})
	for _, v := range versions("a", 0, 6) {
		f.cas("a", v, true)
	}
	f.scan("a", 3, backend.MaxSeqNo+1, versions("a", 3, 6)...)
	f.scan("a", 4, 2, versions("a", 4, 5)...)
	f.scan("a", 6, 10, versions("a", 6, 6)...)
	f.scan("a", 7, 10)
	f.scan("a", 1000, 10)
	f.calls(opScan, 0)
	// Below the tail (4 versions: 3 to 6): the store answers, and since it
	// read everything from 1 on, that becomes the tail (trimmed to 4).
	f.scan("a", 1, 10, versions("a", 1, 6)...)
	f.calls(opScan, 1)
	f.scan("a", 3, 10, versions("a", 3, 6)...)
	f.calls(opScan, 1)
	if st := f.stats(); st.ScanHits != 6 || st.ScanMisses != 1 {
		t.Fatalf("stats %+v; want 6 scan hits, 1 miss", st)
	}
}

// A truncate trims the tail when it returns: no later scan shows a version
// it deleted.
func TestTruncateTrimsTheTail(t *testing.T) {
	f := newFixture(t, cache.Config{})
	for _, v := range versions("a", 0, 5) {
		f.cas("a", v, true)
	}
	if n, err := f.cache.Truncate(f.ctx, "a", 3); err != nil || n != 3 {
		t.Fatalf("truncate = %d, %v", n, err)
	}
	f.scan("a", 3, 10, versions("a", 3, 5)...)
	f.calls(opScan, 0)
	f.scan("a", 0, 10, versions("a", 3, 5)...) // below the tail: the store
	f.calls(opScan, 1)
}

// While an operation on the shard is in flight, scans go to the store: the
// operation may have changed it already, and a read elsewhere seen that.
func TestScanWithAWriteInFlightReadsThrough(t *testing.T) {
	f := newFixture(t, cache.Config{})
	for _, v := range versions("a", 0, 2) {
		f.cas("a", v, true)
	}
	pk := f.probe.ParkNext(opCAS)
	slow := inBackground(func() casResult {
		ok, err := f.cache.CompareAndSet(f.ctx, "a", vd(3, "a3"))
		return casResult{ok, err}
	})
	arrive(t, pk) // committed in the store, not yet answered
	f.scan("a", 1, 10, versions("a", 1, 3)...)
	f.calls(opScan, 1)
	close(pk.release)
	if r := wait(t, slow); r.err != nil || !r.committed {
		t.Fatalf("cas = %v, %v", r.committed, r.err)
	}
	f.scan("a", 2, 10, versions("a", 2, 3)...)
	f.calls(opScan, 1)
}

// A write whose outcome is unknown drops the entry and its tail; writes the
// cache did not see (a skipped seqno) restart the tail at the new head.
func TestTailDroppedWhenTheCacheCannotVouch(t *testing.T) {
	f := newFixture(t, cache.Config{})
	for _, v := range versions("a", 0, 2) {
		f.cas("a", v, true)
	}
	f.probe.FailNext(opCAS)
	if _, err := f.cache.CompareAndSet(f.ctx, "a", vd(3, "a3")); err == nil {
		t.Fatal("the injected failure did not fail")
	}
	f.scan("a", 1, 10, versions("a", 1, 3)...)
	f.calls(opScan, 1)
	// That scan read everything from 1: it is the tail now.
	f.scan("a", 2, 10, versions("a", 2, 3)...)
	f.calls(opScan, 1)

	f.commitDirect("b", versions("b", 0, 4)...)
	f.head("b", ptr(vd(4, "b4")))
	f.scan("b", 4, 10, vd(4, "b4"))
	f.scan("b", 3, 10, versions("b", 3, 4)...)
	f.calls(opScan, 2)
}

// Tails count toward the byte bound, and the tail byte bound keeps a
// shard's tail small while its head always stays.
func TestTailBytesAreBounded(t *testing.T) {
	f := newFixture(t, cache.Config{TailBytes: 10})
	for _, v := range versions("a", 0, 9) { // 2 bytes each
		f.cas("a", v, true)
	}
	f.scan("a", 4, 10, versions("a", 4, 9)...) // 5 kept before the head: 10 bytes
	f.calls(opScan, 0)
	f.scan("a", 3, 10, versions("a", 3, 9)...)
	f.calls(opScan, 1)
	off := newFixture(t, cache.Config{TailVersions: -1})
	off.cas("a", vd(0, "a0"), true)
	off.scan("a", 0, 10, vd(0, "a0"))
	off.calls(opScan, 1)
}
