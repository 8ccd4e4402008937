package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hacommit/committer/backend"
)

// terminateCommitterSessions kills every committer session on the test
// database from an admin connection and returns how many it hit.
func terminateCommitterSessions(t *testing.T, admin *pgx.Conn) int {
	t.Helper()
	var n int
	err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'committer' AND datname = current_database()`).Scan(&n)
	if err != nil {
		t.Fatalf("terminate sessions: %v", err)
	}
	return n
}

func waitNoCommitterSessions(t *testing.T, admin *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'committer' AND datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d committer sessions still alive after termination", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCallsAfterIdleConnectionsKilledSucceed kills every pooled connection
// while it is idle (as a database restart or an operator would) and checks
// that the next calls run on fresh connections instead of failing on the
// dead ones.
func TestCallsAfterIdleConnectionsKilledSucceed(t *testing.T) {
	const conns = 4
	b, url := newStore(t, Config{MaxConns: conns})
	admin := adminConn(t, url)
	ctx := context.Background()
	for round := range 3 {
		var held []interface{ Release() }
		for range conns {
			c, err := b.shared.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
		if n := terminateCommitterSessions(t, admin); n != conns {
			t.Fatalf("round %d: terminated %d sessions, want %d", round, n, conns)
		}
		waitNoCommitterSessions(t, admin)

		seq := uint64(2 * round)
		wantCAS(t, b, "K", seq, fmt.Sprintf("round %d", round), true)
		got, err := b.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "K", New: vd(seq+1, "multi")}, {Shard: fmt.Sprintf("M%d", round), New: vd(0, "m")}})
		if err != nil || len(got) != 2 || !got[0] || !got[1] {
			t.Fatalf("round %d: multi after kill = %v, %v; want [true true]", round, got, err)
		}
		// Below seq+1: seq and, after round 0, the previous round's seq-1.
		wantTruncate(t, b, "K", seq+1, min(seq+1, 2))
		wantHead(t, b, "K", &backend.VersionedData{SeqNo: seq + 1, Data: []byte("multi")})
	}
}

// stormCall is one write issued during the storm.
type stormCall struct {
	ops       []backend.CASOp // one op for a single CaS
	committed []bool
	err       error
}

// TestConnectionKillStorm terminates the backend's sessions repeatedly while
// several writers run single and 8-shard multi CaS. Every failure must be
// classified correctly, nothing may be half-written, and the store must work
// normally afterwards.
func TestConnectionKillStorm(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) { testConnectionKillStorm(t, iso) })
	}
}

func testConnectionKillStorm(t *testing.T, iso Isolation) {
	const writers, shardsPerWriter, rounds = 6, 8, 6
	b, url := newStore(t, Config{Isolation: iso, MaxConns: 12})
	admin := adminConn(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var (
		stop          = make(chan struct{})
		wg            sync.WaitGroup
		calls         = make([][]stormCall, writers)
		indeterminate atomic.Int64
		committedOps  atomic.Int64
	)
	for w := range writers {
		wg.Go(func() {
			shards := make([]string, shardsPerWriter)
			heads := make(map[string]int64, shardsPerWriter)
			for i := range shards {
				shards[i] = fmt.Sprintf("w%d-s%d", w, i)
				heads[shards[i]] = -1
			}
			// refresh re-reads the heads after an outcome we cannot know;
			// this writer is its shards' only writer, so they are then exact.
			refresh := func() bool {
				for _, s := range shards {
					for {
						h, err := b.Head(ctx, s)
						if err == nil {
							heads[s] = -1
							if h != nil {
								heads[s] = int64(h.SeqNo)
							}
							break
						}
						if ctx.Err() != nil {
							return false
						}
					}
				}
				return true
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var call stormCall
				if i%3 == 0 {
					for _, s := range shards {
						call.ops = append(call.ops, backend.CASOp{Shard: s, New: backend.VersionedData{
							SeqNo: uint64(heads[s] + 1), Data: fmt.Appendf(nil, "w%d call %d multi %s", w, i, s)}})
					}
					call.committed, call.err = b.CompareAndSetMulti(ctx, call.ops)
				} else {
					s := shards[i%shardsPerWriter]
					call.ops = []backend.CASOp{{Shard: s, New: backend.VersionedData{
						SeqNo: uint64(heads[s] + 1), Data: fmt.Appendf(nil, "w%d call %d single", w, i)}}}
					var ok bool
					ok, call.err = b.CompareAndSet(ctx, s, call.ops[0].New)
					if call.err == nil {
						call.committed = []bool{ok}
					}
				}
				calls[w] = append(calls[w], call)
				if call.err != nil {
					if !backend.IsDeterminate(call.err) {
						indeterminate.Add(1)
					}
					if !refresh() {
						return
					}
					continue
				}
				for j, op := range call.ops {
					if !call.committed[j] {
						t.Errorf("writer %d: %s at %d with an exact head did not commit", w, op.Shard, op.New.SeqNo)
						return
					}
					heads[op.Shard] = int64(op.New.SeqNo)
					committedOps.Add(1)
				}
			}
		})
	}

	terminated := 0
	for round := range rounds {
		time.Sleep(60 * time.Millisecond)
		n := terminateCommitterSessions(t, admin)
		terminated += n
		t.Logf("round %d: terminated %d sessions", round, n)
	}
	// Let the writers run on past the last kill, then stop them.
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	var total, determinate int
	for w := range writers {
		for _, c := range calls[w] {
			total++
			if c.err == nil {
				continue
			}
			if !backend.IsDeterminate(c.err) {
				continue
			}
			determinate++
			// Determinate needs proof that nothing ran: a storage abort, pgx
			// saying nothing was sent, no connection, or a failure while
			// preparing the batch (before any statement of it executed).
			var acq *acquireError
			var prep pgx.ErrPreprocessingBatch
			switch {
			case errors.Is(c.err, backend.ErrFenced):
				t.Errorf("writer %d: fenced at a constant epoch: %v", w, c.err)
			case errors.Is(c.err, backend.ErrRetryable), pgconn.SafeToRetry(c.err), errors.As(c.err, &acq), errors.As(c.err, &prep):
			default:
				t.Errorf("writer %d: determinate error with no proof that nothing happened: %v", w, c.err)
			}
		}
	}
	t.Logf("%d calls, %d ops committed, %d sessions terminated, %d determinate and %d indeterminate failures",
		total, committedOps.Load(), terminated, determinate, indeterminate.Load())
	if terminated == 0 {
		t.Fatal("no session was terminated")
	}
	if indeterminate.Load() == 0 {
		t.Errorf("no call failed indeterminate: the kills never hit a write in flight")
	}

	// Atomicity and durability: every call's versions are all there with its
	// exact data, or none is; acknowledged ones are all there.
	for w := range writers {
		for _, c := range calls[w] {
			present := 0
			for _, op := range c.ops {
				var data []byte
				err := admin.QueryRow(ctx, `SELECT data FROM consensus.consensus WHERE shard = $1 AND sequence_number = $2`,
					op.Shard, int64(op.New.SeqNo)).Scan(&data)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					t.Fatal(err)
				}
				if err == nil && bytes.Equal(data, op.New.Data) {
					present++
				}
			}
			switch {
			case c.err == nil && present != len(c.ops):
				t.Errorf("writer %d: acknowledged call of %d ops has %d in storage", w, len(c.ops), present)
			case c.err != nil && backend.IsDeterminate(c.err) && present != 0:
				t.Errorf("writer %d: determinate failure (%v) but %d of %d ops are in storage", w, c.err, present, len(c.ops))
			case present != 0 && present != len(c.ops):
				t.Errorf("writer %d: call half-written: %d of %d ops in storage (err %v)", w, present, len(c.ops), c.err)
			}
		}
		// No gaps: each shard's versions are exactly 0..head.
		for i := range shardsPerWriter {
			shard := fmt.Sprintf("w%d-s%d", w, i)
			vs, err := b.Scan(ctx, shard, 0, all)
			if err != nil {
				t.Fatal(err)
			}
			for j, v := range vs {
				if v.SeqNo != uint64(j) {
					t.Fatalf("%s: version %d has seqno %d: a gap", shard, j, v.SeqNo)
				}
			}
		}
	}

	// The storm is over: the very next calls succeed.
	wantCAS(t, b, "after-storm", 0, "fresh", true)
	got, err := b.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "after-storm", New: vd(1, "a")}, {Shard: "after-storm-2", New: vd(0, "b")}})
	if err != nil || len(got) != 2 || !got[0] || !got[1] {
		t.Fatalf("multi after the storm = %v, %v; want [true true]", got, err)
	}
}

// TestCancelledWriteDeterminacy: a write cancelled before anything was sent
// is determinate; one cancelled while the server works on it is
// indeterminate, because the server may still commit it after the client gave
// up (here it is blocked on the fence row, and proceeds once released).
func TestCancelledWriteDeterminacy(t *testing.T) {
	b, url := newStore(t, Config{})
	admin := adminConn(t, url)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.CompareAndSet(cancelled, "K", vd(0, "never sent"))
	if err == nil || !backend.IsDeterminate(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cas with a cancelled context: %v, want a determinate context.Canceled", err)
	}
	wantHead(t, b, "K", nil)

	ctx := context.Background()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT epoch FROM consensus.committer_fence WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	writeCtx, cancelWrite := context.WithCancel(ctx)
	defer cancelWrite()
	done := make(chan error, 1)
	go func() {
		_, err := b.CompareAndSet(writeCtx, "K", vd(0, "maybe"))
		done <- err
	}()
	other := adminConn(t, url)
	waitForActivity(t, other, sqlLockFence, "Lock")
	cancelWrite()
	writeErr := <-done
	if writeErr == nil || backend.IsDeterminate(writeErr) {
		t.Fatalf("cas cancelled while in flight: %v, want indeterminate", writeErr)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Whatever the server decided, it is all or nothing.
	head, err := b.Head(ctx, "K")
	if err != nil {
		t.Fatal(err)
	}
	if head != nil && (head.SeqNo != 0 || string(head.Data) != "maybe") {
		t.Fatalf("head after the cancelled write = %+v, want none or {0, maybe}", head)
	}
	t.Logf("cancelled write: %v; head afterwards: %+v", writeErr, head)
}
