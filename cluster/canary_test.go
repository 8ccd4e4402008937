package cluster_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/embed"
)

// With --unsafe-join-inflight-reads a read that arrives while a confirmation
// round is in flight is answered by that round; by default it waits for the
// next one. This proves the flag reaches the read gate (the gate itself is
// tested in cluster/readgate).
func TestUnsafeJoinInflightReadsJoinTheRoundInFlight(t *testing.T) {
	for _, tt := range []struct {
		name   string
		unsafe bool
		rounds uint64
	}{
		{"default waits for the next round", false, 2},
		{"unsafe joins the round in flight", true, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := startCluster(t, 3, func(c *embed.Config) { c.UnsafeJoinInflightReads = tt.unsafe })
			l := tc.leader()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			// A round can ask only voters whose addresses are recorded; until
			// all are, rounds may fail and reads retry with more of them.
			for len(l.replica.FSMState().Members) != 3 {
				if ctx.Err() != nil {
					t.Fatalf("members never registered: %+v", l.replica.FSMState().Members)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := l.replica.Head(ctx, "k"); err != nil {
				t.Fatalf("warm-up read: %v", err)
			}

			// The first round holds once it has started gathering evidence,
			// until the second read has arrived.
			started, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			l.replica.SetReadRoundHook(func() {
				first := false
				once.Do(func() { first = true })
				if first {
					close(started)
					<-release
				}
			})
			before := l.replica.ReadRounds()
			head := func() <-chan error {
				ch := make(chan error, 1)
				go func() {
					_, err := l.replica.Head(ctx, "k")
					ch <- err
				}()
				return ch
			}
			first := head()
			select {
			case <-started:
			case <-ctx.Done():
				t.Fatal("the first read's round never started")
			}
			second := head()
			time.Sleep(200 * time.Millisecond) // let it reach the gate
			close(release)
			for i, ch := range []<-chan error{first, second} {
				if err := <-ch; err != nil {
					t.Fatalf("read %d: %v", i+1, err)
				}
			}
			if got := l.replica.ReadRounds() - before; got != tt.rounds {
				t.Fatalf("confirmation rounds = %d, want %d", got, tt.rounds)
			}
		})
	}
}

// answerLosingStore commits the first CompareAndSet on answerLostShard and
// then holds its answer until the call's context ends, like a leader whose
// answer never makes it back: the forwarded call breaks after it was sent,
// with the write committed. committed is closed once the write is in.
const answerLostShard = "answer-lost"

// loseFirstAnswer returns a CompareAndSet that commits the first write to
// answerLostShard, closes committed, and then never answers it: the call
// breaks after the write committed.
func loseFirstAnswer(committed chan struct{}) func(context.Context, backend.Fencer, string, backend.VersionedData) (bool, error) {
	var once sync.Once
	return func(ctx context.Context, inner backend.Fencer, shard string, v backend.VersionedData) (bool, error) {
		ok, err := inner.CompareAndSet(ctx, shard, v)
		if shard != answerLostShard || err != nil || !ok {
			return ok, err
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(committed)
			<-ctx.Done()
			return false, ctx.Err()
		}
		return ok, err
	}
}

// A forwarded write whose call broke after it was sent is indeterminate (it
// may have committed, and here it did); with
// --unsafe-determinate-forward-errors the follower reports it as a
// determinate ErrUnavailable, which tells the client nothing happened.
func TestUnsafeDeterminateForwardReportsABrokenWriteAsDeterminate(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		name := "default keeps it indeterminate"
		if unsafe {
			name = "unsafe makes it determinate"
		}
		t.Run(name, func(t *testing.T) {
			committed := make(chan struct{})
			lose := loseFirstAnswer(committed)
			tc := startCluster(t, 3, func(c *embed.Config) {
				c.Backend = &interceptingStore{Fencer: c.Backend, cas: lose}
				c.UnsafeDeterminateForward = unsafe
			})
			f := tc.follower()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			callCtx, breakCall := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				_, err := f.replica.CompareAndSet(callCtx, answerLostShard, backend.VersionedData{SeqNo: 0, Data: []byte("w")})
				done <- err
			}()
			select {
			case <-committed:
			case <-ctx.Done():
				t.Fatal("the forwarded write never reached the leader's backend")
			}
			breakCall() // the call breaks after the leader committed
			err := <-done
			switch {
			case err == nil:
				t.Fatal("the broken forwarded write succeeded")
			case unsafe && (!backend.IsDeterminate(err) || !errors.Is(err, backend.ErrUnavailable)):
				t.Fatalf("err = %v; want a determinate ErrUnavailable", err)
			case !unsafe && backend.IsDeterminate(err):
				t.Fatalf("err = %v; want it indeterminate", err)
			}
			v, err := tc.store.Head(ctx, answerLostShard)
			if err != nil || v == nil || v.SeqNo != 0 || string(v.Data) != "w" {
				t.Fatalf("store head = %+v, %v; want the write committed at seqno 0", v, err)
			}
		})
	}
}
