package workload

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestClassify(t *testing.T) {
	above := backend.Determinatef("%w: seqno 9 > head 3", backend.ErrTruncateAboveHead)
	for _, tc := range []struct {
		f        string
		err      error
		typ      history.Type
		errorTag string
	}{
		{history.FCAS, nil, history.OK, ""},
		{history.FTruncate, above, history.OK, AboveHead},
		// Above-head only means a refused truncate for a truncate.
		{history.FCAS, above, history.Fail, above.Error()},
		{history.FCAS, backend.Determinatef("%w: fenced", backend.ErrFenced), history.Fail, "determinate: fenced: fenced"},
		{history.FHead, backend.Indeterminatef("connection reset"), history.Info, "indeterminate: connection reset"},
		// An error that does not state its determinacy may have taken effect.
		{history.FCAS, errors.New("boom"), history.Info, "boom"},
		{history.FTruncate, backend.NewIndeterminate(backend.ErrTruncateAboveHead), history.Info, "indeterminate: truncate seqno above head"},
	} {
		typ, msg := classify(tc.f, tc.err)
		if typ != tc.typ || msg != tc.errorTag {
			t.Errorf("classify(%s, %v) = %s %q, want %s %q", tc.f, tc.err, typ, msg, tc.typ, tc.errorTag)
		}
	}
}

// TestExecuteRecordsEachOperation runs one operation of each kind against a
// real store and checks the completion events field by field.
func TestExecuteRecordsEachOperation(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quiet()})
	ctx := t.Context()
	run := func(o op) history.Event {
		t.Helper()
		inv := o.invocation(7, "n2")
		done, err := execute(ctx, store, o, inv)
		if done.Type == history.Fail || done.Type == history.Info {
			t.Logf("%s: %v", o.f, err)
		}
		return done
	}
	cas := func(key string, seqno uint64, data string) op {
		return op{f: history.FCAS, cas: &history.CASOp{Key: key, SeqNo: seqno, Data: data}}
	}
	check := func(name string, got, want history.Event) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
	base := func(f string) history.Event { return history.Event{Process: 7, Type: history.OK, F: f, Node: "n2"} }

	e := base(history.FHead)
	e.Key = "a"
	check("head of an empty key", run(op{f: history.FHead, key: "a"}), e)

	e = base(history.FTruncate)
	e.Key, e.Error = "a", AboveHead
	check("truncate of an empty key", run(op{f: history.FTruncate, key: "a", seqno: 0}), e)

	for i, d := range []string{"a0", "a1", "a2"} {
		e = base(history.FCAS)
		e.CAS = &history.CASOp{Key: "a", SeqNo: uint64(i), Data: d}
		e.Committed = true
		check("cas "+d, run(cas("a", uint64(i), d)), e)
	}
	e = base(history.FCAS)
	e.CAS = &history.CASOp{Key: "a", SeqNo: 1, Data: "stale"}
	check("stale cas", run(cas("a", 1, "stale")), e)

	e = base(history.FScan)
	e.Key, e.From, e.Limit = "a", 1, math.MaxUint64
	e.Versions = []history.Version{{SeqNo: 1, Data: "a1"}, {SeqNo: 2, Data: "a2"}}
	check("scan", run(op{f: history.FScan, key: "a", from: 1, limit: math.MaxUint64}), e)

	e = base(history.FTruncate)
	e.Key, e.SeqNo, e.Deleted = "a", 2, 2
	check("truncate", run(op{f: history.FTruncate, key: "a", seqno: 2}), e)

	e = base(history.FTruncate)
	e.Key, e.SeqNo, e.Error = "a", 3, AboveHead
	check("truncate above the head", run(op{f: history.FTruncate, key: "a", seqno: 3}), e)

	multi := []history.CASOp{{Key: "a", SeqNo: 3, Data: "a3"}, {Key: "b", SeqNo: 5, Data: "b5"}, {Key: "c", SeqNo: 0, Data: "c0"}}
	e = base(history.FMultiCAS)
	e.Multi = multi
	e.MultiCommitted = []bool{true, false, true}
	check("multi_cas", run(op{f: history.FMultiCAS, multi: multi}), e)

	e = base(history.FHead)
	e.Key, e.Head = "a", &history.Version{SeqNo: 3, Data: "a3"}
	check("head", run(op{f: history.FHead, key: "a"}), e)

	e = base(history.FListKeys)
	e.Keys = []string{"a", "c"}
	got := run(op{f: history.FListKeys})
	slices.Sort(got.Keys)
	check("list_keys", got, e)

	// A determinate failure carries the error and no result.
	e = base(history.FCAS)
	e.Type = history.Fail
	e.CAS = &history.CASOp{Key: "", SeqNo: 0, Data: "x"}
	got = run(cas("", 0, "x"))
	if got.Type != history.Fail || got.Error == "" || got.Committed {
		t.Fatalf("cas on an empty key = %+v, want a determinate failure", got)
	}
	got.Error = ""
	check("cas on an empty key", got, e)
}

func TestKeyspaceRotation(t *testing.T) {
	ks := newKeyspace(2, 3, 2)
	if ks.current(0) != "k0000" || ks.current(1) != "k0001" {
		t.Fatalf("first keys %s, %s", ks.current(0), ks.current(1))
	}
	ks.done(0, "k0000", false)
	ks.done(0, "k0000", false)
	if ks.current(0) != "k0000" {
		t.Fatalf("group 0 moved after 2 of 3 writes")
	}
	ks.done(0, "k0000", false)
	if ks.current(0) != "k0002" {
		t.Fatalf("group 0 is on %s after 3 writes, want k0002", ks.current(0))
	}
	// A write counted against a key the group has left changes nothing.
	ks.done(0, "k0000", true)
	ks.done(0, "k0000", true)
	if ks.current(0) != "k0002" {
		t.Fatalf("a late write on the old key moved group 0 to %s", ks.current(0))
	}
	// Two indeterminate writes retire a key early.
	ks.done(1, "k0001", true)
	ks.done(1, "k0001", true)
	if ks.current(1) != "k0003" {
		t.Fatalf("group 1 is on %s after 2 indeterminate writes, want k0003", ks.current(1))
	}
	ks.touch("k0002", "k0000")
	ks.touch("k0000")
	if got := ks.Used(); !slices.Equal(got, []string{"k0000", "k0002"}) {
		t.Fatalf("Used() = %v", got)
	}
	ks.saw("k0002", 5)
	ks.saw("k0002", 3)
	if s, ok := ks.latestOf("k0002"); !ok || s != 5 {
		t.Fatalf("latest of k0002 = %d, %v; want 5", s, ok)
	}
	if _, ok := ks.latestOf("k0003"); ok {
		t.Fatal("k0003 has a latest seqno without any observation")
	}
	others := ks.others(0, 5, rand.New(rand.NewPCG(1, 2)))
	if !slices.Equal(others, []string{"k0003"}) {
		t.Fatalf("others(0) = %v, want [k0003]", others)
	}
}

func newChooser(seed uint64, r role, ks *keyspace) *chooser {
	return &chooser{rng: rand.New(rand.NewPCG(seed, 0)), role: r, keys: ks, known: map[string]knowledge{}, worker: 3}
}

func TestChooserLearns(t *testing.T) {
	ks := newKeyspace(2, 100, 10)
	c := newChooser(1, pinned, ks)
	key := ks.current(0)
	ok := func(e history.Event) history.Event { e.Type = history.OK; return e }

	c.learn(op{f: history.FHead, key: key}, ok(history.Event{Head: &history.Version{SeqNo: 4}}))
	if k := c.known[key]; !k.has || k.seqno != 4 {
		t.Fatalf("after head -> 4, knowledge %+v", k)
	}
	if s, _ := ks.latestOf(key); s != 4 {
		t.Fatalf("the keyspace did not learn seqno 4: %d", s)
	}
	c.learn(op{f: history.FCAS, cas: &history.CASOp{Key: key, SeqNo: 5}}, ok(history.Event{Committed: true}))
	if k := c.known[key]; k.seqno != 5 {
		t.Fatalf("after a committed cas of 5, knowledge %+v", k)
	}
	// A scan cut short by its limit proves only a lower bound.
	c.learn(op{f: history.FScan, key: key, limit: 2}, ok(history.Event{Versions: []history.Version{{SeqNo: 1}, {SeqNo: 2}}}))
	if k := c.known[key]; k.seqno != 5 {
		t.Fatalf("a limited scan ending at 2 lowered the knowledge to %+v", k)
	}
	// A scan that ended before its limit ended at the head.
	c.learn(op{f: history.FScan, key: key, limit: math.MaxUint64}, ok(history.Event{Versions: []history.Version{{SeqNo: 6}, {SeqNo: 7}}}))
	if k := c.known[key]; k.seqno != 7 {
		t.Fatalf("after a full scan ending at 7, knowledge %+v", k)
	}
	c.learn(op{f: history.FTruncate, key: key, seqno: 9}, ok(history.Event{}))
	if k := c.known[key]; k.seqno != 9 {
		t.Fatalf("a truncate to 9 succeeded, so the head is at least 9; knowledge %+v", k)
	}
	c.learn(op{f: history.FTruncate, key: key, seqno: 9}, ok(history.Event{Error: AboveHead}))
	if !c.needRead {
		t.Fatal("a truncate refused as above a head believed higher must make the worker read")
	}
	if o := c.next(); o.f != history.FHead || o.key != key {
		t.Fatalf("a worker that must read chose %+v", o)
	}
	c.learn(op{f: history.FHead, key: key}, ok(history.Event{}))
	if k := c.known[key]; k.has || c.needRead {
		t.Fatalf("after head -> absent, knowledge %+v, needRead %v", k, c.needRead)
	}
	c.learn(op{f: history.FMultiCAS, multi: []history.CASOp{{Key: key, SeqNo: 0}, {Key: "other", SeqNo: 3}}},
		ok(history.Event{MultiCommitted: []bool{true, false}}))
	if k := c.known[key]; !k.has || k.seqno != 0 {
		t.Fatalf("after a multi_cas that committed seqno 0, knowledge %+v", k)
	}
	if _, ok := c.known["other"]; ok {
		t.Fatal("a multi_cas element that did not commit taught something")
	}
	// An indeterminate outcome: read before writing again.
	c.learn(op{f: history.FCAS, cas: &history.CASOp{Key: key, SeqNo: 1}}, history.Event{Type: history.Info})
	if !c.needRead {
		t.Fatal("an info did not make the worker read")
	}
	// A determinate failure teaches nothing.
	c.needRead = false
	c.learn(op{f: history.FCAS, cas: &history.CASOp{Key: key, SeqNo: 1}}, history.Event{Type: history.Fail})
	if c.needRead || c.known[key].seqno != 0 {
		t.Fatalf("a failure changed the worker's state: %+v, needRead %v", c.known[key], c.needRead)
	}
}

func TestChooserOperations(t *testing.T) {
	ks := newKeyspace(3, 1000, 10)
	c := newChooser(7, pinned, ks)
	key := ks.current(0)
	c.known[key] = knowledge{seqno: 10, has: true}
	counts := map[string]int{}
	values := map[string]bool{}
	right := 0
	for range 5000 {
		o := c.next()
		counts[o.f]++
		switch o.f {
		case history.FCAS:
			if o.cas.Key != key {
				t.Fatalf("cas on %s, not the group's key %s", o.cas.Key, key)
			}
			if o.cas.SeqNo == 11 {
				right++
			}
			if o.cas.SeqNo < 8 || o.cas.SeqNo > 13 {
				t.Fatalf("cas expecting seqno %d with a known head of 10", o.cas.SeqNo)
			}
			if values[o.cas.Data] {
				t.Fatalf("value %q written twice", o.cas.Data)
			}
			values[o.cas.Data] = true
		case history.FMultiCAS:
			if len(o.multi) < 2 || len(o.multi) > 3 || o.multi[0].Key != key {
				t.Fatalf("multi_cas %+v", o.multi)
			}
			seen := map[string]bool{}
			for _, m := range o.multi {
				if seen[m.Key] {
					t.Fatalf("multi_cas names %s twice", m.Key)
				}
				seen[m.Key] = true
				if values[m.Data] {
					t.Fatalf("value %q written twice", m.Data)
				}
				values[m.Data] = true
			}
		case history.FTruncate:
			if o.seqno < 7 || o.seqno > 12 {
				t.Fatalf("truncate to %d with a known head of 10", o.seqno)
			}
		case history.FScan:
			if o.from > 10 || o.limit == 0 {
				t.Fatalf("scan from %d limit %d", o.from, o.limit)
			}
		}
	}
	for _, f := range []string{history.FHead, history.FCAS, history.FScan, history.FTruncate, history.FMultiCAS, history.FListKeys} {
		if counts[f] == 0 {
			t.Errorf("5000 choices never chose %s: %v", f, counts)
		}
	}
	if right < counts[history.FCAS]*3/4 {
		t.Errorf("only %d of %d cas expected the known head", right, counts[history.FCAS])
	}

	r := newChooser(7, reader, ks)
	for range 1000 {
		if o := r.next(); o.f != history.FHead || o.key != key {
			t.Fatalf("a reader chose %s on %q", o.f, o.key)
		}
	}

	// The same seed makes the same choices.
	a, b := newChooser(99, routed, newKeyspace(3, 1000, 10)), newChooser(99, routed, newKeyspace(3, 1000, 10))
	for i := range 200 {
		if oa, ob := a.next(), b.next(); !reflect.DeepEqual(oa, ob) {
			t.Fatalf("choice %d differs: %+v vs %+v", i, oa, ob)
		}
	}
}

// TestWorkloadAgainstOneServer runs the workload for a moment against a
// real server over a real store, then the final reads, and checks the
// history: without faults it must be linearizable and complete.
func TestWorkloadAgainstOneServer(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quiet()})
	srv := rpctest.Serve(t, store, server.Config{Logger: quiet()})
	rec := history.NewRecorder()
	w, err := New(Config{
		Targets:      []Target{{Name: "n1", Addr: srv.Addr}},
		Concurrency:  6,
		Seed:         5,
		WritesPerKey: 40,
		Logger:       quiet(),
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Run until the groups have moved on a few times (two groups, a fresh
	// key after 40 writes).
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		w.Run(ctx)
	}()
	deadline := time.After(time.Minute)
	for len(w.Keys()) < 6 {
		select {
		case <-deadline:
			cancel()
			<-ran
			t.Fatalf("a minute of workload used only %d keys", len(w.Keys()))
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-ran
	if err := w.Final(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	events := rec.Events()
	pending := map[int]history.Event{}
	counts := map[history.Type]int{}
	finals := 0
	for _, e := range events {
		if e.Type == history.Invoke {
			if _, dup := pending[e.Process]; dup {
				t.Fatalf("process %d invoked twice without completing", e.Process)
			}
			pending[e.Process] = e
			continue
		}
		inv, ok := pending[e.Process]
		if !ok {
			t.Fatalf("completion without invocation: %+v", e)
		}
		delete(pending, e.Process)
		if inv.F != e.F || inv.Key != e.Key || !reflect.DeepEqual(inv.CAS, e.CAS) || !reflect.DeepEqual(inv.Multi, e.Multi) {
			t.Fatalf("completion %+v does not repeat its invocation %+v", e, inv)
		}
		counts[e.Type]++
		if e.Node == "final" {
			finals++
		}
	}
	if len(pending) != 0 {
		t.Fatalf("%d operations never completed", len(pending))
	}
	if counts[history.Fail] != 0 || counts[history.Info] != 0 {
		t.Fatalf("a fault-free run had failures: %v", counts)
	}
	keys := w.Keys()
	if finals != 2*len(keys)+1 {
		t.Fatalf("%d final reads for %d keys, want a scan and a head per key and one list_keys", finals, len(keys))
	}
	res := checker.Check(events, checker.Options{Timeout: time.Minute})
	if res.Verdict != checker.Pass {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Problems)
	}
	if res.Ops != counts[history.OK] || res.Keys != len(keys) {
		t.Fatalf("checker saw %d operations on %d keys, want %d on %d", res.Ops, res.Keys, counts[history.OK], len(keys))
	}
}
