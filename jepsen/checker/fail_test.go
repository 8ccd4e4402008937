package checker_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// wantFail asserts a FAIL with exactly these problems and illegal keys.
func wantFail(t *testing.T, r checker.Result, illegal []string, problems ...string) {
	t.Helper()
	if r.Verdict != checker.Fail {
		t.Fatalf("verdict %s; want FAIL (problems %q)", r.Verdict, r.Problems)
	}
	wantLin := porcupine.Ok
	if len(illegal) > 0 {
		wantLin = porcupine.Illegal
	}
	if r.Linearizable != wantLin || !slices.Equal(r.IllegalKeys, illegal) {
		t.Fatalf("linearizable %s, illegal keys %q; want %s, %q", r.Linearizable, r.IllegalKeys, wantLin, illegal)
	}
	if !slices.Equal(r.Problems, problems) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(r.Problems, "\n"), strings.Join(problems, "\n"))
	}
}

// staleReadHistory is the anomaly of --read-consistency=leader: a deposed
// leader answers a head after a newer write was acknowledged.
func staleReadHistory() *builder {
	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	b.faultStart(b.clock, "partition", "n1")
	b.seq(1, cas("k", 1, "b"), committed(true))
	b.seq(2, head("k"), headIs(0, "a"))
	b.faultEnd(b.clock, "partition", "n1")
	b.seq(1, scan("k", 0, all), versions(v(0, "a"), v(1, "b")))
	b.seq(1, head("k"), headIs(1, "b"))
	return b
}

func TestStaleReadFails(t *testing.T) {
	r := checker.Check(staleReadHistory().events, checker.Options{})
	wantFail(t, r, []string{"k"},
		`key "k": not linearizable (5 operations): the longest valid order places 2 of them and leaves the shard [0 … 1:"b"]; `+
			`no order admits head() -> 0:"a" (process 2 via n1, events #5-#6, ok, invoked at 0.005s, returned at 0.006s)`)
}

func TestTwoCommitsAtOneSeqnoFail(t *testing.T) {
	b := newBuilder()
	b.invoke(0, 1, cas("k", 0, "a"))
	b.invoke(1, 2, cas("k", 0, "b"))
	b.ok(2, 1, committed(true))
	b.ok(3, 2, committed(true))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, []string{"k"},
		`key "k": not linearizable (2 operations): the longest valid order places 1 of them and leaves the shard [0:"a"]; `+
			`no order admits cas(0:"b") -> committed (process 2 via n1, events #1-#3, ok, invoked at 0.001s, returned at 0.003s)`,
		`key "k": seqno 0 acknowledged as committed twice: data "a" by cas (process 1 via n1, events #0-#2, ok, invoked at 0.000s) `+
			`and data "b" by cas (process 2 via n1, events #1-#3, ok, invoked at 0.001s)`)
}

func TestLostAcknowledgedWriteFails(t *testing.T) {
	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	b.seq(1, cas("k", 1, "b"), committed(true))
	b.faultStart(b.clock, "kill", "n1")
	b.seq(1, cas("k", 2, "c"), committed(true))
	b.faultEnd(b.clock, "kill", "n1")
	b.seq(2, scan("k", 0, all), versions(v(0, "a"), v(1, "b")))
	b.seq(2, head("k"), headIs(1, "b"))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, []string{"k"},
		`key "k": not linearizable (5 operations): the longest valid order places 3 of them and leaves the shard [0 … 2:"c"]; `+
			`no order admits scan(from=0, limit=all) -> [0:"a" 1:"b"] (process 2 via n1, events #8-#9, ok, invoked at 0.008s, returned at 0.009s)`,
		`key "k": last full scan, scan (process 2 via n1, events #8-#9, ok, invoked at 0.008s), returned [0:"a" 1:"b"] `+
			`and lost 1 of 3 acknowledged writes: seqno 2 missing (acknowledged at 0.006s)`,
		`key "k": last head, head (process 2 via n1, events #10-#11, ok, invoked at 0.010s), returned 1:"b", `+
			`below the acknowledged seqno 2 (acknowledged at 0.006s)`)
	if r.DurabilityKeys != 1 || len(r.Faults) != 1 {
		t.Fatalf("durability keys %d, faults %d; want 1, 1", r.DurabilityKeys, len(r.Faults))
	}
}

func TestPhantomListKeysFails(t *testing.T) {
	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	// writes that certainly created nothing
	b.seq(1, cas("mismatched", 3, "m"), committed(false))
	b.invoke(b.clock, 1, cas("failed", 0, "f"))
	b.fail(b.clock, 1)
	// a write of unknown outcome may have created its key
	b.invoke(b.clock, 3, cas("maybe", 0, "x"))
	b.info(b.clock, 3)
	b.seq(2, listKeys(), keys("failed", "ghost", "k", "maybe", "mismatched"))
	// written only after the list_keys returned: still a phantom there
	b.seq(1, cas("ghost", 0, "g"), committed(true))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, nil,
		`list_keys list_keys (process 2 via n1, events #8-#9, ok, invoked at 0.008s) returned 3 keys no write could have created before it completed: "failed"; "ghost"; "mismatched"`)
}

func TestListKeysMissingKeyFails(t *testing.T) {
	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	b.seq(2, head("j"), absent())
	b.invoke(b.clock, 3, cas("j", 0, "x"))
	b.info(b.clock, 3)
	b.seq(2, head("j"), headIs(0, "x"))
	b.seq(2, listKeys(), keys("j", "k"))
	b.seq(2, listKeys(), keys("k"))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, nil,
		`list_keys list_keys (process 2 via n1, events #10-#11, ok, invoked at 0.010s) missed 1 existing keys: `+
			`"j" (a head returned seqno 0 at 0.007s)`)
}

func TestWrongDeletedCountFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(b *builder)
		want  string
	}{
		{
			name: "first truncation",
			build: func(b *builder) {
				b.seq(1, truncate("k", 2), deleted(1))
			},
			want: `key "k": not linearizable (4 operations): the longest valid order places 3 of them and leaves the shard [0 … 2:"c"]; ` +
				`no order admits truncate(2) -> deleted 1 (process 1 via n1, events #6-#7, ok, invoked at 0.006s, returned at 0.007s)`,
		},
		{
			name: "repeated truncation counts versions already gone",
			build: func(b *builder) {
				b.seq(1, truncate("k", 2), deleted(2))
				b.seq(1, truncate("k", 2), deleted(2))
			},
			want: `key "k": not linearizable (5 operations): the longest valid order places 4 of them and leaves the shard [2:"c"]; ` +
				`no order admits truncate(2) -> deleted 2 (process 1 via n1, events #8-#9, ok, invoked at 0.008s, returned at 0.009s)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			for i, d := range []string{"a", "b", "c"} {
				b.seq(1, cas("k", uint64(i), d), committed(true))
			}
			tc.build(b)
			wantFail(t, checker.Check(b.events, checker.Options{}), []string{"k"}, tc.want)
		})
	}
}

func TestScanMissingVersionFails(t *testing.T) {
	b := newBuilder()
	for i, d := range []string{"a", "b", "c"} {
		b.seq(1, cas("k", uint64(i), d), committed(true))
	}
	b.seq(2, scan("k", 0, 10), versions(v(0, "a"), v(2, "c")))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, []string{"k"},
		`key "k": not linearizable (4 operations): the longest valid order places 3 of them and leaves the shard [0 … 2:"c"]; `+
			`no order admits scan(from=0, limit=10) -> [0:"a" 2:"c"] (process 2 via n1, events #6-#7, ok, invoked at 0.006s, returned at 0.007s)`)
}

func TestMalformedHistoryFails(t *testing.T) {
	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	b.add(b.clock, history.Event{Process: 7, Type: history.OK, F: history.FHead, Key: "k"})
	b.seq(1, multi(el("k", 1, "b"), el("j", 0, "x")), multiCommitted(true))
	r := checker.Check(b.events, checker.Options{})
	wantFail(t, r, nil,
		"malformed history: event #2: ok completion of process 7 without an invocation",
		"malformed history: event #4: multi_cas of 2 elements answered 1 results")
}

// Many concurrent reads that may be ordered in any way, and one that fits
// none of the orders: porcupine must try every subset before it can say
// Illegal, so a small budget runs out first.
func TestTimeoutIsUnknown(t *testing.T) {
	b := newBuilder()
	const readers = 40
	b.invoke(0, 0, head("k"))
	for p := 1; p <= readers; p++ {
		b.invoke(int64(p), p, head("k"))
	}
	b.ok(100, 0, headIs(5, "never written"))
	for p := 1; p <= readers; p++ {
		b.ok(int64(100+p), p, absent())
	}
	began := time.Now()
	r := checker.Check(b.events, checker.Options{Timeout: 50 * time.Millisecond})
	if r.Verdict != checker.Unknown || r.Linearizable != porcupine.Unknown || !slices.Equal(r.UnknownKeys, []string{"k"}) {
		t.Fatalf("verdict %s, linearizable %s, unknown keys %q; want UNKNOWN, Unknown, [k]", r.Verdict, r.Linearizable, r.UnknownKeys)
	}
	want := []string{`key "k": linearizability search did not finish within the 50ms budget (41 operations)`}
	if !slices.Equal(r.Problems, want) {
		t.Fatalf("problems %q; want %q", r.Problems, want)
	}
	t.Logf("timed out after %s", time.Since(began))
}

func TestWriteVisualization(t *testing.T) {
	dir := t.TempDir()
	failing := checker.Check(staleReadHistory().events, checker.Options{})
	failPath := filepath.Join(dir, "fail.html")
	if err := failing.WriteVisualization(failPath); err != nil {
		t.Fatal(err)
	}
	page := readPage(t, failPath)
	for _, want := range []string{"<html", `head() -\u003e 0:\"a\"`, "fault: partition", "process 2 via n1, events #5-#6, ok"} {
		if !strings.Contains(page, want) {
			t.Errorf("failing visualization lacks %q", want)
		}
	}

	b := newBuilder()
	b.seq(1, cas("k", 0, "a"), committed(true))
	b.seq(1, head("k"), headIs(0, "a"))
	passing := checker.Check(b.events, checker.Options{})
	passPath := filepath.Join(dir, "pass.html")
	if err := passing.WriteVisualization(passPath); err != nil {
		t.Fatal(err)
	}
	page = readPage(t, passPath)
	for _, want := range []string{"<html", `cas(0:\"a\") -\u003e committed`, `head() -\u003e 0:\"a\"`} {
		if !strings.Contains(page, want) {
			t.Errorf("passing visualization lacks %q", want)
		}
	}
	if err := passing.WriteVisualization(filepath.Join(dir, "missing", "x.html")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("writing into a missing directory: %v; want ErrNotExist", err)
	}
}

func readPage(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 1000 {
		t.Fatalf("%s has only %d bytes", path, len(data))
	}
	return string(data)
}

// Indeterminate writes that lost their seqno to an acknowledged commit are
// left out of the search. Kept in, these thirty could each be placed at any
// point as no-ops, and proving the stale read illegal would mean trying
// every subset of them.
func TestLosingIndeterminateWritesDoNotBlowUpTheSearch(t *testing.T) {
	b := newBuilder()
	b.seq(0, cas("k", 0, "a"), committed(true))
	const losers = 30
	for p := 1; p <= losers; p++ {
		b.invoke(int64(10+p), p, cas("k", 1, fmt.Sprintf("lost-%d", p)))
	}
	b.invoke(50, 100, cas("k", 1, "won"))
	b.ok(60, 100, committed(true))
	for p := 1; p <= losers; p++ {
		b.info(int64(60+p), p)
	}
	b.seq(101, head("k"), headIs(0, "a"))
	r := checker.Check(b.events, checker.Options{Timeout: 20 * time.Second})
	if r.Verdict != checker.Fail || r.Linearizable != porcupine.Illegal || r.Pruned != losers {
		t.Fatalf("verdict %s, linearizable %s, pruned %d; want FAIL, Illegal, %d", r.Verdict, r.Linearizable, r.Pruned, losers)
	}
}
