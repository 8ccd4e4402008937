package checker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/checker"
)

// wantPass asserts a clean PASS with exact coverage counts: every key
// searched alone, and keys linked by multi_cas searched together too.
func wantPass(t *testing.T, r checker.Result, keys, ops, failed, indeterminate int) {
	t.Helper()
	if r.Verdict != checker.Pass || r.Linearizable != porcupine.Ok || len(r.Problems) != 0 {
		t.Fatalf("verdict %s, linearizable %s, problems %q; want PASS, Ok, none", r.Verdict, r.Linearizable, r.Problems)
	}
	if r.Keys != keys || r.Ops != ops || r.Failed != failed || r.Indeterminate != indeterminate {
		t.Fatalf("keys %d ops %d failed %d indeterminate %d; want %d %d %d %d",
			r.Keys, r.Ops, r.Failed, r.Indeterminate, keys, ops, failed, indeterminate)
	}
	alone := 0
	for _, kr := range r.PerKey {
		if len(kr.Keys) == 1 {
			alone++
		}
	}
	if alone != keys || r.IllegalKeys != nil || r.UnknownKeys != nil {
		t.Fatalf("per key %v, illegal %q, unknown %q", r.PerKey, r.IllegalKeys, r.UnknownKeys)
	}
	for _, kr := range r.PerKey {
		if kr.Result != porcupine.Ok {
			t.Fatalf("key %q: %s", kr.Key, kr.Result)
		}
	}
}

// searches lists what Check searched as label:operations, in its order.
func searches(r checker.Result) []string {
	out := make([]string, len(r.PerKey))
	for i, kr := range r.PerKey {
		out[i] = fmt.Sprintf("%s:%d", kr.Key, kr.Ops)
	}
	return out
}

func wantSearches(t *testing.T, r checker.Result, want ...string) {
	t.Helper()
	if got := searches(r); !slices.Equal(got, want) {
		t.Fatalf("searches %q; want %q", got, want)
	}
}

// The conformance sequence (cases 1-9 of docs/architecture.md §2.5), recorded
// as a sequential history.
func TestSequentialConformanceHistoryPasses(t *testing.T) {
	b := newBuilder()
	big := strings.Repeat("a", 10<<10)
	// 1
	b.seq(1, head("K"), absent())
	b.seq(1, scan("K", 0, all), versions())
	b.seq(1, truncate("K", 0), aboveHead())
	// 2
	b.seq(1, cas("K", 1, "abc"), committed(false))
	b.seq(1, cas("K", 0, "abc"), committed(true))
	b.seq(1, listKeys(), keys("K"))
	// 3
	b.seq(1, head("K"), headIs(0, "abc"))
	b.seq(1, scan("K", 0, all), versions(v(0, "abc")))
	b.seq(1, scan("K", 1, all), versions())
	b.seq(1, truncate("K", 0), deleted(0))
	b.seq(1, truncate("K", 1), aboveHead())
	// 4
	b.seq(1, cas("K", 3, "def"), committed(false))
	b.seq(1, cas("K", 0, "def"), committed(false))
	b.seq(1, cas("K", 1, "def"), committed(true))
	b.seq(1, head("K"), headIs(1, "def"))
	// 5
	b.seq(1, scan("K", 0, all), versions(v(0, "abc"), v(1, "def")))
	b.seq(1, scan("K", 1, all), versions(v(1, "def")))
	b.seq(1, scan("K", 2, all), versions())
	b.seq(1, scan("K", 0, 1), versions(v(0, "abc")))
	b.seq(1, scan("K", 0, 2), versions(v(0, "abc"), v(1, "def")))
	b.seq(1, scan("K", 0, 100), versions(v(0, "abc"), v(1, "def")))
	b.seq(1, scan("K", 0, 0), versions())
	// 6
	b.seq(1, truncate("K", 1), deleted(1))
	b.seq(1, scan("K", 0, all), versions(v(1, "def")))
	b.seq(1, truncate("K", 1), deleted(0))
	// 7
	b.seq(1, head("O"), absent())
	b.seq(1, cas("O", 0, "einszweidrei"), committed(true))
	b.seq(1, head("O"), headIs(0, "einszweidrei"))
	b.seq(1, head("K"), headIs(1, "def"))
	// 8
	b.seq(1, cas("K", 11, "invalid"), committed(false))
	b.seq(1, cas("K", 2, big), committed(true))
	b.seq(1, cas("K", 3, ""), committed(true))
	b.seq(1, truncate("K", 3), deleted(2))
	// 9
	b.seq(1, multi(el("K", 4, "k4"), el("O", 7, "o7"), el("F", 0, "f0")), multiCommitted(true, false, true))
	b.seq(1, multi(el("K", 5, "k5"), el("F", 2, "f2")), multiCommitted(true, false))
	// final reads
	b.seq(1, listKeys(), keys("F", "K", "O"))
	b.seq(1, scan("F", 0, all), versions(v(0, "f0")))
	b.seq(1, scan("K", 0, all), versions(v(3, ""), v(4, "k4"), v(5, "k5")))
	b.seq(1, scan("O", 0, all), versions(v(0, "einszweidrei")))
	b.seq(1, head("F"), headIs(0, "f0"))
	b.seq(1, head("K"), headIs(5, "k5"))
	b.seq(1, head("O"), headIs(0, "einszweidrei"))

	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 3, 42, 0, 0)
	if r.ListKeysChecked != 2 || r.DurabilityKeys != 3 || r.Notes != nil {
		t.Fatalf("list_keys checked %d, durability keys %d, notes %q; want 2, 3, none", r.ListKeysChecked, r.DurabilityKeys, r.Notes)
	}
	// the multi_cas of case 9 link the three keys: each is searched alone,
	// then all of them together with each multi_cas counted once
	wantSearches(t, r, "F:4", "F+K+O:40", "K:33", "O:6")
	if together := r.PerKey[1].Keys; !slices.Equal(together, []string{"F", "K", "O"}) {
		t.Fatalf("keys searched together %q; want [F K O]", together)
	}
}

// Overlapping operations may take effect in any order their intervals allow.
func TestConcurrentOverlappingHistoryPasses(t *testing.T) {
	b := newBuilder()
	b.invoke(0, 1, cas("k", 0, "a"))
	b.invoke(1, 2, cas("k", 0, "b"))
	b.invoke(2, 3, head("k"))
	b.ok(3, 3, absent()) // before either cas
	b.invoke(4, 4, head("k"))
	b.ok(5, 1, committed(true))
	b.ok(6, 2, committed(false))
	b.ok(7, 4, headIs(0, "a"))
	b.invoke(8, 1, cas("k", 1, "c"))
	b.invoke(9, 2, head("k"))
	b.invoke(10, 3, scan("k", 0, all))
	b.ok(11, 2, headIs(1, "c")) // the cas took effect before it returned
	b.ok(12, 3, versions(v(0, "a"), v(1, "c")))
	b.ok(13, 1, committed(true))
	// a concurrent pair on another key, observed in the opposite order of
	// their invocations
	b.invoke(14, 5, cas("j", 0, "x"))
	b.invoke(15, 6, cas("j", 0, "y"))
	b.ok(16, 6, committed(true))
	b.ok(17, 5, committed(false))
	b.invoke(18, 4, head("j"))
	b.invoke(18, 7, listKeys())
	b.ok(19, 4, headIs(0, "y"))
	b.ok(20, 7, keys("j", "k"))
	b.seq(1, scan("j", 0, all), versions(v(0, "y")))
	b.seq(1, scan("k", 0, all), versions(v(0, "a"), v(1, "c")))

	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 2, 13, 0, 0)
}

// An indeterminate write may or may not have happened; either is fine.
func TestIndeterminateWritesPass(t *testing.T) {
	b := newBuilder()
	// took effect: a later read sees it
	b.invoke(0, 1, cas("k", 0, "a"))
	b.info(5, 1)
	b.seq(2, head("k"), headIs(0, "a"))
	b.seq(2, cas("k", 1, "b"), committed(true))
	// did not take effect: a later write at the same seqno wins
	b.invoke(20, 11, cas("j", 0, "x"))
	b.info(25, 11)
	b.seq(3, head("j"), absent())
	b.seq(3, cas("j", 0, "y"), committed(true))
	b.seq(3, head("j"), headIs(0, "y"))
	// never completed: the history ends before it returns, and it took effect
	b.invoke(b.clock, 12, cas("j", 1, "z"))
	// an indeterminate multi_cas whose first element took effect; the second
	// could not have matched
	b.invoke(b.clock, 13, multi(el("m", 0, "m0"), el("k", 0, "late")))
	b.info(b.clock, 13)
	// an indeterminate truncate that took effect
	b.invoke(b.clock, 14, truncate("k", 1))
	b.info(b.clock, 14)
	// failed operations had no effect; failed reads observed nothing
	b.invoke(b.clock, 4, cas("k", 2, "never"))
	b.fail(b.clock, 4)
	b.invoke(b.clock, 4, head("k"))
	b.info(b.clock, 4)
	// final reads
	b.seq(5, scan("j", 0, all), versions(v(0, "y"), v(1, "z")))
	b.seq(5, scan("k", 0, all), versions(v(1, "b")))
	b.seq(5, scan("m", 0, all), versions(v(0, "m0")))
	b.seq(5, head("k"), headIs(1, "b"))

	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 3, 16, 1, 6)
	if r.DurabilityKeys != 2 || r.Notes != nil {
		t.Fatalf("durability keys %d, notes %q; want 2 (j and k: nothing acknowledged on m), none", r.DurabilityKeys, r.Notes)
	}
	// cas(j, 0, "x") lost its seqno to the acknowledged cas(j, 0, "y"), so
	// j has 5 operations; the multi_cas links k and m
	if r.Pruned != 1 {
		t.Fatalf("pruned %d; want 1", r.Pruned)
	}
	wantSearches(t, r, "j:5", "k:7", "k+m:8", "m:2")
}

// Truncation deletes only what still exists, is idempotent, and refuses
// empty shards and bounds above the head.
func TestTruncateIdempotenceAndAboveHeadPass(t *testing.T) {
	b := newBuilder()
	b.seq(1, truncate("e", 0), aboveHead())
	for i, d := range []string{"a", "b", "c", "d"} {
		b.seq(1, cas("k", uint64(i), d), committed(true))
	}
	b.seq(1, truncate("k", 4), aboveHead())
	b.seq(1, truncate("k", 2), deleted(2))
	b.seq(1, truncate("k", 2), deleted(0))
	b.seq(1, truncate("k", 1), deleted(0))
	b.seq(1, scan("k", 0, all), versions(v(2, "c"), v(3, "d")))
	b.seq(1, scan("k", 1, 1), versions(v(2, "c")))
	b.seq(1, truncate("k", 3), deleted(1))
	b.seq(1, scan("k", 0, all), versions(v(3, "d")))
	// two concurrent truncates at the same bound: one deletes, one finds
	// nothing left, in either order
	b.seq(1, cas("k", 4, "e"), committed(true))
	b.seq(1, cas("k", 5, "f"), committed(true))
	at := b.clock
	b.invoke(at, 1, truncate("k", 5))
	b.invoke(at+1, 2, truncate("k", 5))
	b.ok(at+2, 1, deleted(0))
	b.ok(at+3, 2, deleted(2))
	// an indeterminate truncate above the head changes nothing
	b.invoke(b.clock, 3, truncate("k", 9))
	b.info(b.clock, 3)
	b.seq(1, scan("k", 0, all), versions(v(5, "f")))
	b.seq(1, head("k"), headIs(5, "f"))

	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 2, 20, 0, 1)
}

func TestMultiCASPasses(t *testing.T) {
	b := newBuilder()
	b.seq(1, multi(el("a", 0, "a0"), el("b", 0, "b0")), multiCommitted(true, true))
	b.seq(1, multi(el("a", 1, "a1"), el("b", 0, "b0'")), multiCommitted(true, false))
	b.invoke(b.clock, 2, multi(el("a", 2, "a2"), el("c", 0, "c0")))
	b.info(b.clock, 2)
	b.seq(1, head("c"), headIs(0, "c0"))
	b.seq(1, head("a"), headIs(2, "a2"))
	// a failed multi_cas had no effect on any of its shards
	b.invoke(b.clock, 3, multi(el("a", 3, "a3"), el("d", 0, "d0")))
	b.fail(b.clock, 3)
	b.seq(1, listKeys(), keys("a", "b", "c"))
	b.seq(1, scan("a", 0, all), versions(v(0, "a0"), v(1, "a1"), v(2, "a2")))
	b.seq(1, scan("b", 0, all), versions(v(0, "b0")))
	b.seq(1, scan("c", 0, all), versions(v(0, "c0")))
	b.seq(1, head("d"), absent())

	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 4, 11, 1, 1)
	if r.ListKeysChecked != 1 || r.DurabilityKeys != 2 {
		t.Fatalf("list_keys checked %d, durability keys %d; want 1, 2", r.ListKeysChecked, r.DurabilityKeys)
	}
	// the failed multi_cas links nothing: d stays a key of its own
	wantSearches(t, r, "a:5", "a+b+c:8", "b:3", "c:3", "d:1")
}

func TestFaultsPairsWindows(t *testing.T) {
	b := newBuilder()
	b.faultStart(100, "kill", "n1")
	b.faultStart(200, "pause", "n2")
	b.faultStart(250, "pause", "n3")
	b.faultEnd(300, "kill", "n1")
	b.faultEnd(400, "pause", "n3")
	b.faultStart(500, "partition", "n1", "n2|n3")
	b.faultEnd(600, "pause") // targets described differently: closes the oldest pause
	b.seq(1, head("k"), absent())

	got := checker.Faults(b.events)
	want := []checker.Fault{
		{Kind: "kill", Targets: []string{"n1"}, Start: 100e6, End: 300e6, Ended: true},
		{Kind: "pause", Targets: []string{"n2"}, Start: 200e6, End: 600e6, Ended: true},
		{Kind: "pause", Targets: []string{"n3"}, Start: 250e6, End: 400e6, Ended: true},
		// never ended: lasts until just after the last event, at 602 ms
		{Kind: "partition", Targets: []string{"n1", "n2|n3"}, Start: 500e6, End: 602e6 + 1, Ended: false},
	}
	if !slices.EqualFunc(got, want, func(a, b checker.Fault) bool {
		return a.Kind == b.Kind && slices.Equal(a.Targets, b.Targets) && a.Start == b.Start && a.End == b.End && a.Ended == b.Ended
	}) {
		t.Fatalf("faults\n got %+v\nwant %+v", got, want)
	}
	r := checker.Check(b.events, checker.Options{})
	if len(r.Faults) != 4 || r.Ops != 1 {
		t.Fatalf("check saw %d faults and %d ops; want 4 and 1", len(r.Faults), r.Ops)
	}
}
