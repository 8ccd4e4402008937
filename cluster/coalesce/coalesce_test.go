package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/backend/postgres"
	"github.com/hacommit/committer/cluster/coalesce"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m, &srv)) }

func openBolt(t *testing.T) *bolt.Backend {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "data.db"), bolt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func openPostgres(t *testing.T, iso postgres.Isolation) *postgres.Backend {
	t.Helper()
	url := pgtest.Require(t, srv).CreateDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := postgres.Open(ctx, postgres.Config{URL: url, Isolation: iso, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newCoalescer(t *testing.T, store backend.Consensus, cfg coalesce.Config) *coalesce.Coalescer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := coalesce.New(ctx, store, cfg)
	t.Cleanup(func() {
		cancel()
		c.Wait()
	})
	return c
}

// The coalescer is a backend.Consensus like every layer: the whole suite
// runs through it, on bolt and on PostgreSQL under both isolation levels,
// with one batch in flight and with several.
func TestConformance(t *testing.T) {
	for _, inFlight := range []int{1, 4} {
		t.Run(fmt.Sprintf("bolt/inflight%d", inFlight), func(t *testing.T) {
			conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
				return newCoalescer(t, openBolt(t), coalesce.Config{MaxInFlight: inFlight})
			})
		})
		for _, iso := range []postgres.Isolation{postgres.Serializable, postgres.ReadCommitted} {
			t.Run(fmt.Sprintf("postgres-%s/inflight%d", iso, inFlight), func(t *testing.T) {
				conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
					return newCoalescer(t, openPostgres(t, iso), coalesce.Config{MaxInFlight: inFlight})
				})
			})
		}
	}
	// Fencing through the coalescer: a bound handle's batches are fenced.
	t.Run("postgres/fencing", func(t *testing.T) {
		conformance.RunFencing(t, func(t *testing.T) backend.Fencer {
			return &fencedCoalescer{Fencer: openPostgres(t, postgres.Serializable), t: t}
		})
	})
}

// fencedCoalescer puts a coalescer in front of every bound handle, so that
// the fencing cases write through batches.
type fencedCoalescer struct {
	backend.Fencer
	t *testing.T
	c *coalesce.Coalescer
}

func (f *fencedCoalescer) wrap(h backend.Fencer) backend.Fencer {
	return &fencedCoalescer{Fencer: h, t: f.t, c: newCoalescer(f.t, h, coalesce.Config{})}
}
func (f *fencedCoalescer) AtEpoch(e uint64) backend.Fencer { return f.wrap(f.Fencer.AtEpoch(e)) }
func (f *fencedCoalescer) Owned(o string) backend.Fencer   { return f.wrap(f.Fencer.Owned(o)) }
func (f *fencedCoalescer) coalescer() backend.Consensus {
	if f.c == nil {
		f.c = newCoalescer(f.t, f.Fencer, coalesce.Config{})
	}
	return f.c
}
func (f *fencedCoalescer) CompareAndSet(ctx context.Context, s string, v backend.VersionedData) (bool, error) {
	return f.coalescer().CompareAndSet(ctx, s, v)
}
func (f *fencedCoalescer) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	return f.coalescer().CompareAndSetMulti(ctx, ops)
}

// heldStore holds every write call until released, counts the calls and
// records the operations of each, and can fail them.
type heldStore struct {
	backend.Consensus
	mu      sync.Mutex
	calls   [][]backend.CASOp
	arrived chan int // receives the number of calls so far, at each call
	release chan struct{}
	fail    func(ops []backend.CASOp) error // after the inner call, if set
}

func newHeldStore(inner backend.Consensus) *heldStore {
	return &heldStore{Consensus: inner, arrived: make(chan int, 100), release: make(chan struct{})}
}

func (h *heldStore) record(ops []backend.CASOp) {
	h.mu.Lock()
	h.calls = append(h.calls, ops)
	n := len(h.calls)
	h.mu.Unlock()
	h.arrived <- n
	<-h.release
}

func (h *heldStore) callOps() [][]backend.CASOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]backend.CASOp(nil), h.calls...)
}

func (h *heldStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	ops := []backend.CASOp{{Shard: shard, New: v}}
	h.record(ops)
	ok, err := h.Consensus.CompareAndSet(ctx, shard, v)
	if err == nil && h.fail != nil {
		err = h.fail(ops)
	}
	return ok, err
}

func (h *heldStore) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	h.record(ops)
	out, err := h.Consensus.CompareAndSetMulti(ctx, ops)
	if err == nil && h.fail != nil {
		err = h.fail(ops)
	}
	return out, err
}

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

type result struct {
	committed []bool
	err       error
}

// holdFirstThenQueue sends one CaS that the store holds, then n more on
// other shards (and whatever extra adds), and waits until all are queued
// behind the held one.
func holdFirstThenQueue(t *testing.T, c *coalesce.Coalescer, h *heldStore, calls []func() result) []chan result {
	t.Helper()
	var chans []chan result
	start := func(f func() result) {
		ch := make(chan result, 1)
		go func() { ch <- f() }()
		chans = append(chans, ch)
	}
	start(calls[0])
	if n := <-h.arrived; n != 1 {
		t.Fatalf("first call = %d", n)
	}
	for _, f := range calls[1:] {
		start(f)
	}
	// Every later caller must be queued before the held batch returns; the
	// coalescer has no hook for that, so give the goroutines time. Too
	// short a wait only splits the queue into more batches, which the
	// assertions below report as a failure, never as a false pass.
	time.Sleep(200 * time.Millisecond)
	return chans
}

func cas(c *coalesce.Coalescer, ctx context.Context, shard string, v backend.VersionedData) func() result {
	return func() result {
		ok, err := c.CompareAndSet(ctx, shard, v)
		return result{[]bool{ok}, err}
	}
}

// While one batch is in flight the next fills: writers that arrive during
// it share one backend call, and each gets its own outcome.
func TestWritersQueuedBehindABatchShareTheNext(t *testing.T) {
	store := openBolt(t)
	h := newHeldStore(store)
	c := newCoalescer(t, h, coalesce.Config{MaxInFlight: 1})
	ctx := t.Context()
	mustCAS(t, store, "taken", vd(0, "x"))
	calls := []func() result{cas(c, ctx, "first", vd(0, "f"))}
	for i := range 5 {
		calls = append(calls, cas(c, ctx, fmt.Sprintf("s%d", i), vd(0, "v")))
	}
	calls = append(calls, cas(c, ctx, "taken", vd(0, "mismatch")))
	calls = append(calls, func() result {
		out, err := c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "m1", New: vd(0, "a")}, {Shard: "m2", New: vd(0, "b")}})
		return result{out, err}
	})
	chans := holdFirstThenQueue(t, c, h, calls)
	close(h.release)
	want := [][]bool{{true}, {true}, {true}, {true}, {true}, {true}, {false}, {true, true}}
	for i, ch := range chans {
		r := <-ch
		if r.err != nil || fmt.Sprint(r.committed) != fmt.Sprint(want[i]) {
			t.Errorf("call %d = %v, %v; want %v", i, r.committed, r.err, want[i])
		}
	}
	got := h.callOps()
	if len(got) != 2 || len(got[0]) != 1 || len(got[1]) != 8 {
		t.Fatalf("backend calls = %d with %v ops; want 2 calls: the held one, then one batch of 8 operations", len(got), opsPerCall(got))
	}
	for _, s := range []string{"s0", "s4", "m1", "m2"} {
		if v, err := store.Head(ctx, s); err != nil || v == nil || v.SeqNo != 0 {
			t.Errorf("head %s = %+v, %v", s, v, err)
		}
	}
}

func opsPerCall(calls [][]backend.CASOp) []int {
	var n []int
	for _, c := range calls {
		n = append(n, len(c))
	}
	return n
}

func mustCAS(t *testing.T, s backend.Consensus, shard string, v backend.VersionedData) {
	t.Helper()
	if ok, err := s.CompareAndSet(t.Context(), shard, v); !ok || err != nil {
		t.Fatalf("cas %s = %v, %v", shard, ok, err)
	}
}

// Two writes to one shard never share a batch, whoever calls: the later one
// goes in a later batch and sees the earlier one's effect.
func TestOneShardPerBatch(t *testing.T) {
	store := openBolt(t)
	h := newHeldStore(store)
	c := newCoalescer(t, h, coalesce.Config{MaxInFlight: 1})
	ctx := t.Context()
	chans := holdFirstThenQueue(t, c, h, []func() result{
		cas(c, ctx, "other", vd(0, "o")),
		cas(c, ctx, "k", vd(0, "a")),
		cas(c, ctx, "k", vd(0, "b")),
		cas(c, ctx, "k2", vd(0, "c")),
	})
	go func() {
		for range h.arrived {
		}
	}()
	close(h.release)
	var wins int
	for i, ch := range chans {
		r := <-ch
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if i == 1 || i == 2 {
			if r.committed[0] {
				wins++
			}
		}
	}
	if wins != 1 {
		t.Fatalf("%d of the two seqno-0 writes to k committed; want exactly 1", wins)
	}
	for i, ops := range h.callOps() {
		seen := map[string]bool{}
		for _, op := range ops {
			if seen[op.Shard] {
				t.Fatalf("backend call %d holds shard %s twice: %v", i, op.Shard, ops)
			}
			seen[op.Shard] = true
		}
	}
}

// A batch that fails gives every member its error with its determinacy: a
// broken batch that may have committed is indeterminate for all (and here
// it did commit), a fenced one determinate fenced for all.
func TestAFailedBatchAnswersEveryMember(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		determinate bool
		sentinel    error
	}{
		{"broken after commit", backend.NewIndeterminate(errors.New("connection reset after the commit was sent")), false, nil},
		{"fenced", backend.Determinatef("%w: stored epoch 9", backend.ErrFenced), true, backend.ErrFenced},
		{"retryable", backend.Determinatef("%w: gave up after 9 aborts", backend.ErrRetryable), true, backend.ErrRetryable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openBolt(t)
			h := newHeldStore(store)
			c := newCoalescer(t, h, coalesce.Config{MaxInFlight: 1})
			ctx := t.Context()
			var calls []func() result
			calls = append(calls, cas(c, ctx, "first", vd(0, "f")))
			for i := range 4 {
				calls = append(calls, cas(c, ctx, fmt.Sprintf("s%d", i), vd(0, "v")))
			}
			chans := holdFirstThenQueue(t, c, h, calls)
			h.fail = func(ops []backend.CASOp) error {
				if len(ops) > 1 {
					return tc.err
				}
				return nil
			}
			go func() {
				for range h.arrived {
				}
			}()
			close(h.release)
			if r := <-chans[0]; r.err != nil || !r.committed[0] {
				t.Fatalf("the held single write = %v, %v", r.committed, r.err)
			}
			for i, ch := range chans[1:] {
				r := <-ch
				switch {
				case r.err == nil:
					t.Fatalf("member %d of the failed batch succeeded: %v", i, r.committed)
				case backend.IsDeterminate(r.err) != tc.determinate:
					t.Fatalf("member %d: %v; determinate = %v, want %v", i, r.err, backend.IsDeterminate(r.err), tc.determinate)
				case tc.sentinel != nil && !errors.Is(r.err, tc.sentinel):
					t.Fatalf("member %d: %v; want %v", i, r.err, tc.sentinel)
				}
			}
			if got := opsPerCall(h.callOps()); len(got) != 2 || got[1] != 4 {
				t.Fatalf("backend calls %v; want the held one and one batch of 4", got)
			}
		})
	}
}

// A member whose call ends while it waits to be sent leaves the queue: it
// gets a determinate error and never reaches the backend. One whose call
// ends while its batch is in flight gets an indeterminate error.
func TestCallsEndingBeforeAndDuringTheirBatch(t *testing.T) {
	store := openBolt(t)
	h := newHeldStore(store)
	c := newCoalescer(t, h, coalesce.Config{MaxInFlight: 1})
	ctx := t.Context()
	queuedCtx, endQueued := context.WithCancel(ctx)
	sentCtx, endSent := context.WithCancel(ctx)
	chans := holdFirstThenQueue(t, c, h, []func() result{
		cas(c, sentCtx, "first", vd(0, "f")),
		cas(c, queuedCtx, "queued", vd(0, "q")),
	})
	endQueued()
	r := <-chans[1]
	if r.err == nil || !backend.IsDeterminate(r.err) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("queued member ended = %v, %v; want a determinate error wrapping context.Canceled", r.committed, r.err)
	}
	endSent()
	r = <-chans[0]
	if r.err == nil || backend.IsDeterminate(r.err) {
		t.Fatalf("in-flight member ended = %v, %v; want an indeterminate error", r.committed, r.err)
	}
	close(h.release)
	// The in-flight batch still runs to its end: its write lands.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := store.Head(ctx, "first")
		if err == nil && v != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch in flight when its caller gave up never committed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v, err := store.Head(ctx, "queued"); err != nil || v != nil {
		t.Fatalf("head queued = %+v, %v; the member that left the queue must not be written", v, err)
	}
	if got := len(h.callOps()); got != 1 {
		t.Fatalf("%d backend calls; want only the held one", got)
	}
}

// Caps close a batch: with MaxOps 3, seven queued single writes go as 3, 3
// and 1; a member above the caps goes alone.
func TestBatchCaps(t *testing.T) {
	store := openBolt(t)
	h := newHeldStore(store)
	c := newCoalescer(t, h, coalesce.Config{MaxInFlight: 1, MaxOps: 3, MaxBytes: 1 << 20})
	ctx := t.Context()
	calls := []func() result{cas(c, ctx, "first", vd(0, "f"))}
	for i := range 7 {
		calls = append(calls, cas(c, ctx, fmt.Sprintf("s%d", i), vd(0, "v")))
	}
	big := string(make([]byte, 2<<20))
	calls = append(calls, cas(c, ctx, "big", vd(0, big)))
	chans := holdFirstThenQueue(t, c, h, calls)
	go func() {
		for range h.arrived {
		}
	}()
	close(h.release)
	for i, ch := range chans {
		if r := <-ch; r.err != nil || !r.committed[0] {
			t.Fatalf("call %d = %v, %v", i, r.committed, r.err)
		}
	}
	var sizes []int
	for _, ops := range h.callOps()[1:] {
		sizes = append(sizes, len(ops))
	}
	total := 0
	for _, n := range sizes {
		if n > 3 {
			t.Fatalf("a batch of %d operations with MaxOps 3: %v", n, sizes)
		}
		total += n
	}
	if total != 8 || len(sizes) < 4 {
		t.Fatalf("batches %v; want the 8 queued writes in at least 4 batches of at most 3 (the 2 MiB one alone)", sizes)
	}
}

// Invalid members fail alone, before they join a batch.
func TestInvalidMembersFailAlone(t *testing.T) {
	c := newCoalescer(t, openBolt(t), coalesce.Config{MaxDataBytes: 8})
	ctx := t.Context()
	if _, err := c.CompareAndSet(ctx, "", vd(0, "x")); !errors.Is(err, backend.ErrInvalidArgument) || !backend.IsDeterminate(err) {
		t.Fatalf("empty shard: %v", err)
	}
	if _, err := c.CompareAndSet(ctx, "k", vd(0, "123456789")); !errors.Is(err, backend.ErrInvalidArgument) {
		t.Fatalf("9 bytes with an 8-byte limit: %v", err)
	}
	if _, err := c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "x")}, {Shard: "a", New: vd(0, "y")}}); !errors.Is(err, backend.ErrInvalidArgument) {
		t.Fatalf("duplicate shard: %v", err)
	}
}

// Many writers at once: every write is answered, exactly one writer wins
// each seqno of each shard, and the backend sees fewer calls than writes.
func TestConcurrentWritersShareBatches(t *testing.T) {
	store := openPostgres(t, postgres.Serializable)
	var calls atomic.Int64
	counted := &countingStore{Consensus: store, calls: &calls}
	var observed atomic.Int64
	c := newCoalescer(t, counted, coalesce.Config{Observe: func(ops int, _ time.Duration) { observed.Add(int64(ops)) }})
	ctx := t.Context()
	const writers, rounds, shards = 32, 20, 8
	var wg sync.WaitGroup
	var wins [shards][rounds]atomic.Int32
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				s := (w + r) % shards
				ok, err := c.CompareAndSet(ctx, fmt.Sprintf("k%d", s), vd(uint64(r), fmt.Sprintf("w%d", w)))
				if err != nil {
					errs <- err
					return
				}
				if ok {
					wins[s][r].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write failed: %v", err)
	}
	for s := range shards {
		v, err := store.Head(ctx, fmt.Sprintf("k%d", s))
		if err != nil || v == nil {
			t.Fatalf("head k%d = %+v, %v", s, v, err)
		}
		for r := range int(v.SeqNo) + 1 {
			if n := wins[s][r].Load(); n != 1 {
				t.Errorf("k%d seqno %d: %d winners, want 1", s, r, n)
			}
		}
	}
	if n := calls.Load(); n >= writers*rounds {
		t.Errorf("%d backend calls for %d writes: nothing was batched", n, writers*rounds)
	}
	if got := observed.Load(); got != writers*rounds {
		t.Errorf("Observe saw %d operations, want %d", got, writers*rounds)
	}
}

type countingStore struct {
	backend.Consensus
	calls *atomic.Int64
}

func (s *countingStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	s.calls.Add(1)
	return s.Consensus.CompareAndSet(ctx, shard, v)
}

func (s *countingStore) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	s.calls.Add(1)
	return s.Consensus.CompareAndSetMulti(ctx, ops)
}
