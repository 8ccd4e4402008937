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

const heldShard = "held"

// holdFirstCAS returns a CompareAndSet that holds the first write to
// heldShard until release is closed, closing reached when it arrives.
func holdFirstCAS(reached, release chan struct{}) func(context.Context, backend.Fencer, string, backend.VersionedData) (bool, error) {
	var once sync.Once
	return func(ctx context.Context, inner backend.Fencer, shard string, v backend.VersionedData) (bool, error) {
		first := false
		if shard == heldShard {
			once.Do(func() { first = true })
		}
		if first {
			close(reached)
			select {
			case <-release:
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
		return inner.CompareAndSet(ctx, shard, v)
	}
}

// A write of an old term that reaches the backend after the replica was
// re-elected and fenced again is fenced, and must not depose the healthy
// leader of the current term: only a fenced write of the current term means
// that a later leader exists.
func TestFencedWriteOfAnOldTermDoesNotDeposeTheCurrentTerm(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	hold := holdFirstCAS(reached, release)
	tc := startCluster(t, 3, func(c *embed.Config) {
		c.Backend = &interceptingStore{Fencer: c.Backend, cas: hold}
	})
	l := tc.leader()
	oldTerm := l.replica.FSMState().Epochs
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// A write of the current term waits in the backend.
	done := make(chan error, 1)
	go func() {
		_, err := l.replica.CompareAndSet(ctx, heldShard, backend.VersionedData{SeqNo: 0, Data: []byte("late")})
		done <- err
	}()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the write never reached the backend")
	}

	// Leadership goes away and comes back: l leads a later term, fenced at
	// that term.
	var other *node
	for _, nd := range tc.nodes {
		if nd != l {
			other = nd
			break
		}
	}
	if _, _, err := l.replica.TransferLeadership(ctx, other.id); err != nil {
		t.Fatalf("transfer to %s: %v", other.id, err)
	}
	if got := tc.leader(); got != other {
		t.Fatalf("leader %s, want %s", got.id, other.id)
	}
	if _, _, err := other.replica.TransferLeadership(ctx, l.id); err != nil {
		t.Fatalf("transfer back to %s: %v", l.id, err)
	}
	if got := tc.leader(); got != l {
		t.Fatalf("leader %s, want %s", got.id, l.id)
	}
	term := l.replica.CurrentTerm()

	// The old term's write reaches the backend now and is fenced.
	close(release)
	if err := <-done; err != nil {
		// Fenced at the old epoch, it goes on to the current term's store
		// and commits there.
		t.Fatalf("the held write = %v; want it to commit in the current term", err)
	}
	if !l.replica.Ready() || l.replica.CurrentTerm() != term {
		t.Fatalf("after an old term's fenced write: ready %v, term %d; want the term-%d leader to stay ready (epochs before: %+v)",
			l.replica.Ready(), l.replica.CurrentTerm(), term, oldTerm)
	}
	v, err := dial(t, l.grpcAddr).Head(ctx, heldShard)
	if err != nil || v == nil || string(v.Data) != "late" {
		t.Fatalf("head(%s) = %+v, %v; want the held write", heldShard, v, err)
	}
	if errors.Is(err, backend.ErrFenced) {
		t.Fatal("unreachable")
	}
}

// A fenced write of the current term does depose it: the lifecycle hands
// leadership to another voter.
func TestFencedWriteOfTheCurrentTermHandsLeadershipAway(t *testing.T) {
	tc := startCluster(t, 3)
	l := tc.leader()
	term := l.replica.CurrentTerm()
	if err := tc.store.Owned(l.replica.FSMState().ClusterID).Fence(t.Context(), 1000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	// Fenced here, the write goes on to whichever replica leads next, which
	// cannot serve either; how it ends depends on where it is when its
	// deadline passes, but it never commits.
	if ok, err := l.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("a")}); ok || err == nil {
		t.Fatalf("cas after a later fence = %v, %v; want an error", ok, err)
	}
	if v, err := tc.store.Head(t.Context(), "k"); err != nil || v != nil {
		t.Fatalf("head = %+v, %v; the fenced write must not land", v, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.replica.IsLeader() && l.replica.CurrentTerm() == term {
		if time.Now().After(deadline) {
			t.Fatalf("%s still leads term %d after a fenced write of that term", l.id, term)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
