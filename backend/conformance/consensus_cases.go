package conformance

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hacommit/committer/backend"
)

// testSpecCases runs conformance cases 1-9 (docs/architecture.md §2.5,
// Conformance cases) in order on one store; each case builds on the state the
// previous one left, so the first failing case stops the sequence.
func testSpecCases(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	const k, o, f = "K", "O", "F"
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"1_EmptyShard", func(t *testing.T) {
			wantHead(t, ctx, s, k, nil)
			wantScan(t, ctx, s, k, 0, all, nil)
			wantTruncateAboveHead(t, ctx, s, k, 0)
		}},
		{"2_FirstWrite", func(t *testing.T) {
			wantCAS(t, ctx, s, k, vd(1, "abc"), false)
			wantCAS(t, ctx, s, k, vd(0, "abc"), true)
			wantKeys(t, ctx, s, k)
		}},
		{"3_ReadFirstVersion", func(t *testing.T) {
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 0, Data: []byte("abc")})
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(0, "abc")})
			wantScan(t, ctx, s, k, 1, all, nil)
			wantTruncate(t, ctx, s, k, 0, 0)
			wantTruncateAboveHead(t, ctx, s, k, 1)
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(0, "abc")})
		}},
		{"4_SecondWrite", func(t *testing.T) {
			wantCAS(t, ctx, s, k, vd(3, "def"), false)
			wantCAS(t, ctx, s, k, vd(0, "def"), false)
			wantCAS(t, ctx, s, k, vd(1, "def"), true)
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 1, Data: []byte("def")})
		}},
		{"5_ScanRanges", func(t *testing.T) {
			v0, v1 := vd(0, "abc"), vd(1, "def")
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{v0, v1})
			wantScan(t, ctx, s, k, 1, all, []backend.VersionedData{v1})
			wantScan(t, ctx, s, k, 2, all, nil)
			wantScan(t, ctx, s, k, 0, 1, []backend.VersionedData{v0})
			wantScan(t, ctx, s, k, 0, 2, []backend.VersionedData{v0, v1})
			wantScan(t, ctx, s, k, 0, 100, []backend.VersionedData{v0, v1})
		}},
		{"6_TruncateIdempotent", func(t *testing.T) {
			wantTruncate(t, ctx, s, k, 1, 1)
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(1, "def")})
			wantTruncate(t, ctx, s, k, 1, 0)
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(1, "def")})
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 1, Data: []byte("def")})
		}},
		{"7_OtherKey", func(t *testing.T) {
			wantHead(t, ctx, s, o, nil)
			wantCAS(t, ctx, s, o, vd(0, "einszweidrei"), true)
			wantHead(t, ctx, s, o, &backend.VersionedData{SeqNo: 0, Data: []byte("einszweidrei")})
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 1, Data: []byte("def")})
			wantKeys(t, ctx, s, k, o)
		}},
		{"8_LargeAndEmptyValues", func(t *testing.T) {
			tenKiB := strings.Repeat("a", 10<<10)
			wantCAS(t, ctx, s, k, vd(11, "invalid"), false)
			wantCAS(t, ctx, s, k, vd(2, tenKiB), true)
			wantCAS(t, ctx, s, k, vd(3, ""), true)
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(1, "def"), vd(2, tenKiB), vd(3, "")})
			wantTruncate(t, ctx, s, k, 3, 2)
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(3, "")})
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 3, Data: nil})
		}},
		{"9_Multi", func(t *testing.T) {
			wantMulti(t, ctx, s, []backend.CASOp{
				{Shard: k, New: vd(4, "K4")},
				{Shard: o, New: vd(7, "O7")},
				{Shard: f, New: vd(0, "F0")},
			}, []bool{true, false, true})
			wantMulti(t, ctx, s, []backend.CASOp{
				{Shard: k, New: vd(5, "K5")},
				{Shard: f, New: vd(2, "F2")},
			}, []bool{true, false})
			wantHead(t, ctx, s, k, &backend.VersionedData{SeqNo: 5, Data: []byte("K5")})
			wantHead(t, ctx, s, o, &backend.VersionedData{SeqNo: 0, Data: []byte("einszweidrei")})
			wantHead(t, ctx, s, f, &backend.VersionedData{SeqNo: 0, Data: []byte("F0")})
			wantScan(t, ctx, s, k, 0, all, []backend.VersionedData{vd(3, ""), vd(4, "K4"), vd(5, "K5")})
			wantScan(t, ctx, s, o, 0, all, []backend.VersionedData{vd(0, "einszweidrei")})
			wantScan(t, ctx, s, f, 0, all, []backend.VersionedData{vd(0, "F0")})
			wantKeys(t, ctx, s, f, k, o)
		}},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			return
		}
	}
}

// testConcurrentCAS races many writers on one shard. Each attempt reads the
// head and proposes head+1 with data unique to the attempt, so every committed
// version is attributable to exactly one attempt.
func testConcurrentCAS(t *testing.T, s backend.Consensus) {
	const racers, attempts = 16, 200
	const shard = "race"
	ctx := t.Context()

	type win struct {
		seqno uint64
		data  []byte
	}
	wins := make([][]win, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range racers {
		wg.Go(func() {
			<-start
			for a := range attempts {
				head, err := s.Head(ctx, shard)
				if err != nil {
					t.Errorf("racer %d: head: %v", g, err)
					return
				}
				var next uint64
				if head != nil {
					next = head.SeqNo + 1
				}
				v := backend.VersionedData{SeqNo: next, Data: fmt.Appendf(nil, "racer %02d attempt %03d", g, a)}
				committed, err := s.CompareAndSet(ctx, shard, v)
				if err != nil {
					if !backend.IsDeterminate(err) {
						t.Errorf("racer %d: cas %s: indeterminate error %v", g, describe(&v), err)
						return
					}
					continue // a determinate failure is a lost race
				}
				if committed {
					wins[g] = append(wins[g], win{seqno: v.SeqNo, data: v.Data})
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	winners := make(map[uint64]win)
	for _, ws := range wins {
		for _, w := range ws {
			if prev, dup := winners[w.seqno]; dup {
				t.Errorf("seqno %d committed twice: %q and %q", w.seqno, prev.data, w.data)
			}
			winners[w.seqno] = w
		}
	}
	n := uint64(len(winners))
	if n == 0 {
		t.Fatalf("no attempt out of %d committed", racers*attempts)
	}
	want := make([]backend.VersionedData, 0, n)
	for seqno := range n {
		w, ok := winners[seqno]
		if !ok {
			t.Fatalf("history has a gap: seqno %d has no winner, %d winners in total", seqno, n)
		}
		want = append(want, backend.VersionedData{SeqNo: seqno, Data: w.data})
	}
	t.Logf("%d of %d attempts committed", n, racers*attempts)
	wantScan(t, ctx, s, shard, 0, all, want)
	wantHead(t, ctx, s, shard, &want[n-1])
	wantKeys(t, ctx, s, shard)
}

// testMultiDuplicateShard checks that a multi-CaS naming a shard twice is
// rejected as a whole before anything is written.
func testMultiDuplicateShard(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	mustCommit(t, ctx, s, "a", vd(0, "a0"))

	_, err := s.CompareAndSetMulti(ctx, []backend.CASOp{
		{Shard: "a", New: vd(1, "a1")},
		{Shard: "b", New: vd(0, "b0")},
		{Shard: "a", New: vd(2, "a2")},
	})
	wantErr(t, "multi with shard a twice", err, backend.ErrInvalidArgument)
	_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{
		{Shard: "c", New: vd(0, "c0")},
		{Shard: "c", New: vd(0, "c0")},
	})
	wantErr(t, "multi with the same op twice", err, backend.ErrInvalidArgument)

	wantHead(t, ctx, s, "a", &backend.VersionedData{SeqNo: 0, Data: []byte("a0")})
	wantScan(t, ctx, s, "a", 0, all, []backend.VersionedData{vd(0, "a0")})
	wantHead(t, ctx, s, "b", nil)
	wantHead(t, ctx, s, "c", nil)
	wantKeys(t, ctx, s, "a")
}

func testMultiEmpty(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	for _, ops := range [][]backend.CASOp{nil, {}} {
		got, err := s.CompareAndSetMulti(ctx, ops)
		if err != nil {
			t.Errorf("multi(%#v): %v", ops, err)
		} else if len(got) != 0 {
			t.Errorf("multi(%#v) = %v, want an empty result", ops, got)
		}
	}
	wantKeys(t, ctx, s)
}

// testSeqNoAboveMax checks that 2^63 is rejected everywhere a seqno is
// accepted, and that 2^63-1 is an ordinary value.
func testSeqNoAboveMax(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	mustCommit(t, ctx, s, "k", vd(0, "k0"))

	for _, seqno := range []uint64{tooBig, all} {
		_, err := s.CompareAndSet(ctx, "fresh", backend.VersionedData{SeqNo: seqno, Data: []byte("x")})
		wantErr(t, fmt.Sprintf("cas(fresh, seqno %d)", seqno), err, backend.ErrInvalidArgument)
		_, err = s.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: seqno, Data: []byte("x")})
		wantErr(t, fmt.Sprintf("cas(k, seqno %d)", seqno), err, backend.ErrInvalidArgument)
		_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "fresh", New: backend.VersionedData{SeqNo: seqno}}})
		wantErr(t, fmt.Sprintf("multi[(fresh, seqno %d)]", seqno), err, backend.ErrInvalidArgument)
		// A valid element beside an invalid one must not be written either.
		_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{
			{Shard: "k", New: vd(1, "k1")},
			{Shard: "fresh", New: backend.VersionedData{SeqNo: seqno}},
		})
		wantErr(t, fmt.Sprintf("multi[(k, 1), (fresh, seqno %d)]", seqno), err, backend.ErrInvalidArgument)
		_, err = s.Truncate(ctx, "k", seqno)
		wantErr(t, fmt.Sprintf("truncate(k, %d)", seqno), err, backend.ErrInvalidArgument)
		_, err = s.Scan(ctx, "k", seqno, all)
		wantErr(t, fmt.Sprintf("scan(k, %d, all)", seqno), err, backend.ErrInvalidArgument)
	}

	// The largest valid seqno is accepted and behaves like any other.
	wantCAS(t, ctx, s, "fresh", backend.VersionedData{SeqNo: backend.MaxSeqNo, Data: []byte("x")}, false)
	wantCAS(t, ctx, s, "k", backend.VersionedData{SeqNo: backend.MaxSeqNo, Data: []byte("x")}, false)
	wantScan(t, ctx, s, "k", backend.MaxSeqNo, all, nil)
	wantTruncateAboveHead(t, ctx, s, "k", backend.MaxSeqNo)

	wantHead(t, ctx, s, "k", &backend.VersionedData{SeqNo: 0, Data: []byte("k0")})
	wantScan(t, ctx, s, "k", 0, all, []backend.VersionedData{vd(0, "k0")})
	wantHead(t, ctx, s, "fresh", nil)
	wantKeys(t, ctx, s, "k")
}

// testBadShardNames checks that every call naming a shard rejects a name no
// backend can store alike, and that the longest allowed name works.
func testBadShardNames(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	mustCommit(t, ctx, s, "k", vd(0, "k0"))

	for _, bad := range []string{"", strings.Repeat("n", backend.MaxShardBytes+1), "a\x00b", "bad\xffutf8"} {
		name := bad
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		_, err := s.Head(ctx, bad)
		wantErr(t, fmt.Sprintf("head(%q)", name), err, backend.ErrInvalidArgument)
		_, err = s.Scan(ctx, bad, 0, all)
		wantErr(t, fmt.Sprintf("scan(%q, 0, all)", name), err, backend.ErrInvalidArgument)
		_, err = s.CompareAndSet(ctx, bad, vd(0, "x"))
		wantErr(t, fmt.Sprintf("cas(%q, 0)", name), err, backend.ErrInvalidArgument)
		_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: bad, New: vd(0, "x")}})
		wantErr(t, fmt.Sprintf("multi[(%q, 0)]", name), err, backend.ErrInvalidArgument)
		// A bad element fails the whole call: the good one is not written.
		_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "k", New: vd(1, "k1")}, {Shard: bad, New: vd(0, "x")}})
		wantErr(t, fmt.Sprintf("multi[(k, 1), (%q, 0)]", name), err, backend.ErrInvalidArgument)
		_, err = s.Truncate(ctx, bad, 0)
		wantErr(t, fmt.Sprintf("truncate(%q, 0)", name), err, backend.ErrInvalidArgument)
	}

	// The longest name allowed, with every byte outside ASCII, round-trips.
	longest := strings.Repeat("é", backend.MaxShardBytes/2)
	mustCommit(t, ctx, s, longest, vd(0, "l0"))
	wantHead(t, ctx, s, longest, &backend.VersionedData{SeqNo: 0, Data: []byte("l0")})
	wantHead(t, ctx, s, "k", &backend.VersionedData{SeqNo: 0, Data: []byte("k0")})
	wantScan(t, ctx, s, "k", 0, all, []backend.VersionedData{vd(0, "k0")})
	wantKeys(t, ctx, s, "k", longest)
}

// testLargeValues round-trips incompressible values of 0 B, 1 MiB and 32 MiB.
func testLargeValues(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	rng := rand.NewChaCha8([32]byte{'c', 'o', 'n', 'f', 'o', 'r', 'm'})
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rng.Read(b) // ChaCha8.Read never fails
		return b
	}
	want := []backend.VersionedData{
		{SeqNo: 0, Data: []byte{}},
		{SeqNo: 1, Data: random(1 << 20)},
		{SeqNo: 2, Data: random(32 << 20)},
	}
	const shard = "large"
	for i := range want {
		// Hand the store its own copy, so the comparison below cannot pass by
		// aliasing the caller's buffer.
		v := backend.VersionedData{SeqNo: want[i].SeqNo, Data: bytes.Clone(want[i].Data)}
		wantCAS(t, ctx, s, shard, v, true)
		wantHead(t, ctx, s, shard, &want[i])
	}
	wantScan(t, ctx, s, shard, 0, all, want)
	wantScan(t, ctx, s, shard, 1, 1, want[1:2])
	wantScan(t, ctx, s, shard, 2, all, want[2:])
}

func testScanLimits(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	const shard = "scan"
	var versions []backend.VersionedData
	for seqno := range uint64(5) {
		v := vd(seqno, fmt.Sprintf("v%d", seqno))
		mustCommit(t, ctx, s, shard, v)
		versions = append(versions, v)
	}
	wantScan(t, ctx, s, shard, 0, 0, nil)
	wantScan(t, ctx, s, shard, 2, 0, nil)
	wantScan(t, ctx, s, shard, 0, all, versions)
	wantScan(t, ctx, s, shard, 0, backend.MaxSeqNo, versions)
	wantScan(t, ctx, s, shard, 0, tooBig, versions)
	wantScan(t, ctx, s, shard, 0, 5, versions)
	wantScan(t, ctx, s, shard, 0, 4, versions[:4])
	wantScan(t, ctx, s, shard, 1, 2, versions[1:3])
	wantScan(t, ctx, s, shard, 3, all, versions[3:])
	wantScan(t, ctx, s, shard, 4, 1, versions[4:])
	wantScan(t, ctx, s, shard, 5, all, nil)
	wantScan(t, ctx, s, "never-written", 0, all, nil)
	// The limit counts versions returned, not seqnos from the start point.
	wantTruncate(t, ctx, s, shard, 2, 2)
	wantScan(t, ctx, s, shard, 0, 2, versions[2:4])
	wantScan(t, ctx, s, shard, 0, all, versions[2:])
}

// testListKeysSorted checks byte order (Go's string order), which is what a
// collation-aware ORDER BY would get wrong for mixed case and non-ASCII.
func testListKeysSorted(t *testing.T, s backend.Consensus) {
	ctx := t.Context()
	wantKeys(t, ctx, s)
	shards := []string{"zeta", "B", "a", "alpha", "a/b", "A", "shard-10", "shard-9", "shard-1", "ß", "Z", "_"}
	for i, shard := range shards {
		mustCommit(t, ctx, s, shard, vd(0, fmt.Sprintf("first %d", i)))
	}
	mustCommit(t, ctx, s, "alpha", vd(1, "second"))
	// Truncating to the head keeps the shard listed: the head is never deleted.
	wantTruncate(t, ctx, s, "alpha", 1, 1)
	// A mismatched CaS does not write, so it does not create a key.
	wantCAS(t, ctx, s, "ghost", vd(5, "never"), false)

	want := slices.Clone(shards)
	slices.Sort(want)
	wantKeys(t, ctx, s, want...)
}
