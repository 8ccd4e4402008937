package checker_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// onlyKey is the history as the old per-key checker saw it on one key: the
// events on key, each multi_cas cut down to its element on key, which
// Check then checks as a one-element multi_cas.
func onlyKey(events []history.Event, key string) []history.Event {
	var out []history.Event
	for _, e := range events {
		switch {
		case e.F == history.FNemesis:
		case e.F == history.FCAS:
			if e.CAS.Key != key {
				continue
			}
		case e.F == history.FMultiCAS:
			i := slices.IndexFunc(e.Multi, func(el history.CASOp) bool { return el.Key == key })
			if i < 0 {
				continue
			}
			e.Multi = []history.CASOp{e.Multi[i]}
			if e.MultiCommitted != nil {
				e.MultiCommitted = []bool{e.MultiCommitted[i]}
			}
		case e.Key != key:
			continue
		}
		out = append(out, e)
	}
	return out
}

// wantEachKeyAlonePasses asserts that every key of the history is
// linearizable on its own, as the old per-key checker saw it.
func wantEachKeyAlonePasses(t *testing.T, events []history.Event, keys ...string) {
	t.Helper()
	for _, key := range keys {
		if r := checker.Check(onlyKey(events, key), checker.Options{}); r.Verdict != checker.Pass {
			t.Fatalf("key %s alone: %s %q; want PASS", key, r.Verdict, r.Problems)
		}
	}
}

// twoHeads writes version 0 of A and of B.
func twoHeads() *builder {
	b := newBuilder()
	b.seq(1, cas("A", 0, "a0"), committed(true))
	b.seq(1, cas("B", 0, "b0"), committed(true))
	return b
}

// The anomaly of a multi_cas that decides its elements at different
// moments, with a single cas on one of its shards committing in between.
func TestNonAtomicMultiCASFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *builder)
		want  string
	}{
		{
			// M's commit on A is seen (head(A) returns a1) before the cas on
			// B is even invoked, so M took effect while B's head was still
			// 0, where B's element expects exactly that head and must have
			// committed; yet M answered mismatch for it. Alone, A's element
			// commits early and B's element mismatches after the cas, both
			// inside M's interval.
			name: "an element's effect is seen before the write that made another mismatch",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.invoke(11, 2, head("A"))
				b.ok(12, 2, headIs(1, "a1"))
				b.invoke(13, 3, cas("B", 1, "x"))
				b.ok(14, 3, committed(true))
				b.ok(15, 1, multiCommitted(true, false))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(1, "x"))
			},
			// only A0 and B0 precede head(A) in any order: M cannot, and the
			// cas was invoked after head(A) returned
			want: `keys "A+B": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (7 operations): ` +
				`the longest valid order places 2 of them and leaves the shard A=[0:"a0"]; ` +
				`no order admits A: head() -> 1:"a1" (process 2 via n1, events #5-#6, ok, invoked at 0.011s, returned at 0.012s)`,
		},
		{
			// M's element on B expects head 1 and mismatched, so M took
			// effect before the cas on B committed seqno 1 (returned at 12);
			// but head(A), invoked at 13, still does not see M's commit on
			// A, so M took effect after 13. Alone, B's element mismatches
			// early and A's element commits late.
			name: "an element commits after the write that would have made another match",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 2, "b2")))
				b.invoke(11, 3, cas("B", 1, "x"))
				b.ok(12, 3, committed(true))
				b.invoke(13, 2, head("A"))
				b.ok(14, 2, headIs(0, "a0"))
				b.ok(15, 1, multiCommitted(true, false))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(1, "x"))
			},
			// after A0, B0, the cas and head(A), B's element would commit
			want: `keys "A+B": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (7 operations): ` +
				`the longest valid order places 4 of them and leaves the shards A=[0:"a0"] B=[0 … 1:"x"]; ` +
				`no order admits multi_cas(A=1:"a1", B=2:"b2") -> [committed mismatch] (process 1 via n1, events #4-#9, ok, invoked at 0.010s, returned at 0.015s)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := twoHeads()
			tc.build(b)
			r := checker.Check(b.events, checker.Options{})
			wantFail(t, r, []string{"A+B"}, tc.want)
			wantSearches(t, r, "A:4", "A+B:7", "B:4")
			wantEachKeyAlonePasses(t, b.events, "A", "B")
		})
	}
}

// The same kind of operations as the anomaly, in orders that one point per
// multi_cas explains.
func TestConsistentMultiCASInterleavingsPass(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *builder)
	}{
		{
			// the cas takes B's seqno 1 first; M then finds A at 0 and B at
			// 1, which is exactly its verdict
			name: "the single cas before the multi_cas",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.invoke(11, 3, cas("B", 1, "x"))
				b.ok(12, 3, committed(true))
				b.ok(13, 1, multiCommitted(true, false))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(1, "x"))
			},
		},
		{
			// M commits both, its effect on A is seen early, and the cas on
			// B then mismatches
			name: "the single cas after the multi_cas",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.invoke(11, 2, head("A"))
				b.ok(12, 2, headIs(1, "a1"))
				b.invoke(13, 3, cas("B", 1, "x"))
				b.ok(14, 3, committed(false))
				b.ok(15, 1, multiCommitted(true, true))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(1, "b1"))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := twoHeads()
			tc.build(b)
			r := checker.Check(b.events, checker.Options{})
			wantPass(t, r, 2, len(b.events)/2, 0, 0)
			if got := searches(r); len(got) != 3 || !strings.HasPrefix(got[1], "A+B:") {
				t.Fatalf("searches %q; want A, A+B, B", got)
			}
		})
	}
}

// An indeterminate multi_cas took effect at one point, with the verdicts the
// state there implies, or not at all.
func TestIndeterminateMultiCAS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *builder)
		// want is the problem of a failing history; empty: it passes
		want   string
		pruned int
	}{
		{
			name: "took effect on both keys",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.info(11, 1)
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(1, "b1"))
			},
		},
		{
			name: "had no effect",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.info(11, 1)
				b.seq(2, head("A"), headIs(0, "a0"))
				b.seq(2, head("B"), headIs(0, "b0"))
			},
		},
		{
			// B's element can match at no point, so taking effect commits
			// A's alone
			name: "took effect on the key whose expectation held",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 5, "b5")))
				b.info(11, 1)
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(0, "b0"))
			},
		},
		{
			// B's element would have committed wherever M took effect, and
			// it did not: A's effect is unexplained
			name: "took effect on one key although the other's expectation held throughout",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.info(11, 1)
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(2, head("B"), headIs(0, "b0"))
			},
			// head(A) places M, which commits B too
			want: `keys "A+B": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (5 operations): ` +
				`the longest valid order places 4 of them and leaves the shard B=[0 … 1:"b1"]; ` +
				`no order admits B: head() -> 0:"b0" (process 2 via n1, events #8-#9, ok, invoked at 0.014s, returned at 0.015s)`,
		},
		{
			// the acknowledged cas took B's seqno 1, so M's element on B is
			// lost; M's commit on A is seen before that cas was invoked,
			// where B's element would have committed
			name: "took effect where its lost element would have committed",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.seq(3, cas("B", 1, "x"), committed(true))
				b.info(b.clock, 1)
				b.seq(2, head("B"), headIs(1, "x"))
			},
			// head(A) needs M before it, where the lost element matches
			want: `keys "A+B": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (6 operations): ` +
				`the longest valid order places 2 of them and leaves the shard A=[0:"a0"]; ` +
				`no order admits A: head() -> 1:"a1" (process 2 via n1, events #5-#6, ok, invoked at 0.011s, returned at 0.012s)`,
			pruned: 1,
		},
		{
			// the same with M seen only after the cas: B's element
			// mismatches there, as it must
			name: "took effect where its lost element mismatched",
			build: func(b *builder) {
				b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
				b.seq(3, cas("B", 1, "x"), committed(true))
				b.seq(2, head("A"), headIs(1, "a1"))
				b.info(b.clock, 1)
				b.seq(2, head("B"), headIs(1, "x"))
			},
			pruned: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := twoHeads()
			tc.build(b)
			r := checker.Check(b.events, checker.Options{})
			wantEachKeyAlonePasses(t, b.events, "A", "B")
			if r.Pruned != tc.pruned {
				t.Fatalf("pruned %d; want %d", r.Pruned, tc.pruned)
			}
			if tc.want == "" {
				wantPass(t, r, 2, len(b.events)/2, 0, 1)
				return
			}
			wantFail(t, r, []string{"A+B"}, tc.want)
		})
	}
}

// groupsHistory links A with B and C with D with E through multi_cas, and
// has keys that nothing links: x and y, which a failed multi_cas names, x
// again with A in an indeterminate multi_cas whose elements both lost their
// seqno, and w, written by a multi_cas of one element.
func groupsHistory() *builder {
	b := newBuilder()
	b.seq(1, multi(el("A", 0, "a0"), el("B", 0, "b0")), multiCommitted(true, true))
	b.seq(1, multi(el("C", 0, "c0"), el("D", 0, "d0")), multiCommitted(true, true))
	b.seq(1, multi(el("D", 1, "d1"), el("E", 0, "e0")), multiCommitted(true, true))
	b.seq(1, cas("x", 0, "x0"), committed(true))
	b.seq(1, head("y"), absent())
	b.invoke(b.clock, 2, multi(el("x", 1, "x1"), el("y", 0, "y0")))
	b.fail(b.clock, 2)
	b.invoke(b.clock, 3, multi(el("x", 0, "lost"), el("A", 0, "lost")))
	b.info(b.clock, 3)
	b.seq(1, multi(el("w", 0, "w0")), multiCommitted(true))
	for _, final := range []struct {
		key string
		v   history.Version
	}{{"A", v(0, "a0")}, {"B", v(0, "b0")}, {"C", v(0, "c0")}, {"D", v(1, "d1")}, {"E", v(0, "e0")}, {"w", v(0, "w0")}, {"x", v(0, "x0")}} {
		b.seq(1, head(final.key), headIs(final.v.SeqNo, final.v.Data))
	}
	return b
}

func TestMultiCASLinksPartitionTheHistory(t *testing.T) {
	b := groupsHistory()
	r := checker.Check(b.events, checker.Options{})
	wantPass(t, r, 8, 15, 1, 1)
	// each linked key alone, then each group whole; keys of their own once
	wantSearches(t, r, "A:2", "A+B:3", "B:2", "C:2", "C+D+E:5", "D:3", "E:2", "w:2", "x:2", "y:1")
	var groups [][]string
	for _, kr := range r.PerKey {
		if len(kr.Keys) > 1 {
			groups = append(groups, kr.Keys)
		}
	}
	if !slices.EqualFunc(groups, [][]string{{"A", "B"}, {"C", "D", "E"}}, slices.Equal) {
		t.Fatalf("keys searched together %q; want [[A B] [C D E]]", groups)
	}
	// the indeterminate multi_cas lost both seqnos to acknowledged commits
	if r.Pruned != 2 {
		t.Fatalf("pruned %d; want 2", r.Pruned)
	}
}

func TestMultiKeyVisualization(t *testing.T) {
	dir := t.TempDir()
	b := twoHeads()
	b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
	b.invoke(11, 2, head("A"))
	b.ok(12, 2, headIs(1, "a1"))
	b.invoke(13, 3, cas("B", 1, "x"))
	b.ok(14, 3, committed(true))
	b.ok(15, 1, multiCommitted(true, false))
	failing := checker.Check(b.events, checker.Options{})
	path := filepath.Join(dir, "fail.html")
	if err := failing.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	// only the illegal partition, A+B: its operations name their keys
	page := readPage(t, path)
	for _, want := range []string{`multi_cas(A=1:\"a1\", B=1:\"b1\") -\u003e [committed mismatch]`, `A: head() -\u003e 1:\"a1\"`, `B: cas(1:\"x\") -\u003e committed`} {
		if !strings.Contains(page, want) {
			t.Errorf("failing visualization lacks %q", want)
		}
	}

	g := groupsHistory()
	passing := checker.Check(g.events, checker.Options{})
	path = filepath.Join(dir, "pass.html")
	if err := passing.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	// every partition, so every operation names its key; linked keys appear
	// in their group's partition and not again as projections
	page = readPage(t, path)
	for _, want := range []string{`x: cas(0:\"x0\") -\u003e committed`, `y: head() -\u003e absent`, `multi_cas(C=0:\"c0\", D=0:\"d0\") -\u003e [committed committed]`} {
		if !strings.Contains(page, want) {
			t.Errorf("passing visualization lacks %q", want)
		}
	}
	if strings.Contains(page, "multi_cas element") {
		t.Errorf("passing visualization shows a projection of a partition it shows whole")
	}

	// too large to search whole, A+B and C+D+E are shown key by key, not
	// again in the searches on each multi_cas's keys
	oversized := checker.CheckWithMaxJointOps(g.events, checker.Options{}, 2)
	wantSearches(t, oversized, "A:2", "A+B:3", "B:2", "C:2", "C+D:4", "D:3", "D+E:4", "E:2", "w:2", "x:2", "y:1")
	path = filepath.Join(dir, "oversized.html")
	if err := oversized.WriteVisualization(path); err != nil {
		t.Fatal(err)
	}
	page = readPage(t, path)
	if want := `D: multi_cas element(1:\"d1\") -\u003e committed`; !strings.Contains(page, want) {
		t.Errorf("visualization of an oversized partition lacks %q", want)
	}
	for _, twice := range []string{"multi_cas(A=", "multi_cas(C=", "multi_cas(D="} {
		if strings.Contains(page, twice) {
			t.Errorf("visualization of an oversized partition shows %s… twice", twice)
		}
	}
}

// A partition too large to search whole is searched on the key set of each
// multi_cas, sets inside larger ones left out; the anomaly on A and B is
// found either way.
func TestOversizedLinkedPartitionIsSearchedPerMultiCASKeySet(t *testing.T) {
	b := twoHeads()
	b.invoke(10, 1, multi(el("A", 1, "a1"), el("B", 1, "b1")))
	b.invoke(11, 2, head("A"))
	b.ok(12, 2, headIs(1, "a1"))
	b.invoke(13, 3, cas("B", 1, "x"))
	b.ok(14, 3, committed(true))
	b.ok(15, 1, multiCommitted(true, false))
	b.seq(1, multi(el("B", 2, "b2"), el("C", 0, "c0"), el("D", 0, "d0")), multiCommitted(true, true, true))
	b.seq(1, multi(el("C", 1, "c1"), el("D", 1, "d1")), multiCommitted(true, true))
	b.seq(2, head("A"), headIs(1, "a1"))
	b.seq(2, head("B"), headIs(2, "b2"))
	b.seq(2, head("C"), headIs(1, "c1"))
	b.seq(2, head("D"), headIs(1, "d1"))
	b.seq(2, scan("A", 0, all), versions(v(0, "a0"), v(1, "a1")))
	b.seq(2, scan("B", 0, all), versions(v(0, "b0"), v(1, "x"), v(2, "b2")))
	b.seq(2, scan("C", 0, all), versions(v(0, "c0"), v(1, "c1")))
	b.seq(2, scan("D", 0, all), versions(v(0, "d0"), v(1, "d1")))
	wantEachKeyAlonePasses(t, b.events, "A", "B", "C", "D")

	whole := checker.Check(b.events, checker.Options{})
	wantSearches(t, whole, "A:5", "A+B+C+D:15", "B:6", "C:4", "D:4")
	if whole.Verdict != checker.Fail || !slices.Equal(whole.IllegalKeys, []string{"A+B+C+D"}) || whole.Notes != nil {
		t.Fatalf("searched whole: %s, illegal %q, notes %q; want FAIL, [A+B+C+D], none", whole.Verdict, whole.IllegalKeys, whole.Notes)
	}

	r := checker.CheckWithMaxJointOps(b.events, checker.Options{}, 10)
	// {C, D} is inside {B, C, D}; on A and B, the multi_cas on B, C and D
	// is its element on B
	wantSearches(t, r, "A:5", "A+B:10", "B:6", "B+C+D:11", "C:4", "D:4")
	wantFail(t, r, []string{"A+B"},
		`keys "A+B": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (10 operations): `+
			`the longest valid order places 2 of them and leaves the shard A=[0:"a0"]; `+
			`no order admits A: head() -> 1:"a1" (process 2 via n1, events #5-#6, ok, invoked at 0.011s, returned at 0.012s)`)
	wantNotes := []string{`4 keys (A, B, C, D) are linked through multi_cas, with 15 operations, more than the 10 one search may hold: ` +
		`multi_cas atomicity was checked on the keys of each multi_cas (2 searches), not across all of them`}
	if !slices.Equal(r.Notes, wantNotes) {
		t.Fatalf("notes %q; want %q", r.Notes, wantNotes)
	}
}
