package shardlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster/shardlock"
)

// Writers to one shard go in arrival order, each after the previous one
// released it.
func TestOneShardIsFIFO(t *testing.T) {
	l := shardlock.New()
	first, err := l.Acquire(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		queued := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Acquire enqueues before it waits: signal once it is queued,
			// which the next writer waits for, so arrival order is i.
			go func() {
				for l.Waiting("s") < i+2 {
					time.Sleep(time.Millisecond)
				}
				close(queued)
			}()
			release, err := l.Acquire(t.Context(), "s")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			release()
		}()
		<-queued
	}
	first()
	wg.Wait()
	if fmt.Sprint(order) != "[0 1 2 3 4]" {
		t.Fatalf("order %v, want arrival order", order)
	}
	if l.Held() != 0 {
		t.Fatalf("%d shards still tracked after every release", l.Held())
	}
}

// Writers over overlapping shard sets never deadlock and never hold a
// shard together.
func TestOverlappingSetsExcludeWithoutDeadlock(t *testing.T) {
	l := shardlock.New()
	shards := []string{"a", "b", "c", "d", "e"}
	var holders [5]int32
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 300 {
				var set []string
				var idx []int
				for i, s := range shards {
					if r.IntN(2) == 0 {
						set, idx = append(set, s), append(idx, i)
					}
				}
				// Unsorted and with a duplicate, as callers may pass them.
				r.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
				if len(set) > 0 {
					set = append(set, set[0])
				}
				release, err := l.Acquire(t.Context(), set...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, i := range idx {
					holders[i]++
					if holders[i] != 1 {
						t.Errorf("shard %s held by %d writers", shards[i], holders[i])
					}
				}
				mu.Unlock()
				mu.Lock()
				for _, i := range idx {
					holders[i]--
				}
				mu.Unlock()
				release()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("writers over overlapping shards deadlocked")
	}
	if l.Held() != 0 {
		t.Fatalf("%d shards still tracked", l.Held())
	}
}

// A waiter whose context ends gives up its place, takes nothing, and gets a
// determinate error; the writers behind it move up.
func TestCancelledWaiterLeavesTheQueue(t *testing.T) {
	l := shardlock.New()
	hold, err := l.Acquire(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, "b", "a") // takes b, then waits for a
		errc <- err
	}()
	for l.Waiting("a") < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err = <-errc
	if !errors.Is(err, context.Canceled) || !backend.IsDeterminate(err) {
		t.Fatalf("cancelled wait: %v, want a determinate context.Canceled", err)
	}
	// b is free again, and a goes to the next waiter when released.
	rb, err := l.Acquire(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	rb()
	hold()
	ra, err := l.Acquire(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ra()
	if l.Held() != 0 {
		t.Fatalf("%d shards still tracked", l.Held())
	}
}

// blockingStore holds every CompareAndSet until release is closed,
// counting how many are inside at once per shard.
type blockingStore struct {
	backend.Consensus
	release chan struct{}
	mu      sync.Mutex
	inside  map[string]int
	most    int
}

func (b *blockingStore) enter(shards ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range shards {
		b.inside[s]++
		b.most = max(b.most, b.inside[s])
	}
}

func (b *blockingStore) exit(shards ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range shards {
		b.inside[s]--
	}
}

func (b *blockingStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	b.enter(shard)
	defer b.exit(shard)
	<-b.release
	return b.Consensus.CompareAndSet(ctx, shard, v)
}

func (b *blockingStore) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	var shards []string
	for _, op := range ops {
		shards = append(shards, op.Shard)
	}
	b.enter(shards...)
	defer b.exit(shards...)
	<-b.release
	return b.Consensus.CompareAndSetMulti(ctx, ops)
}

func openBolt(t *testing.T) backend.Fencer {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// While a multi-CaS is being decided, a CaS on one of its shards does not
// reach the store; one on another shard does.
func TestMultiCASExcludesWritesToItsShards(t *testing.T) {
	inner := &blockingStore{Consensus: openBolt(t), release: make(chan struct{}), inside: map[string]int{}}
	store := shardlock.Exclusive(inner, shardlock.New())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	multi := make(chan []bool, 1)
	go func() {
		out, err := store.CompareAndSetMulti(ctx, []backend.CASOp{
			{Shard: "A", New: backend.VersionedData{SeqNo: 0, Data: []byte("a0")}},
			{Shard: "B", New: backend.VersionedData{SeqNo: 0, Data: []byte("b0")}},
		})
		if err != nil {
			t.Error(err)
		}
		multi <- out
	}()
	waitInside(t, inner, "A", 1)
	single := make(chan bool, 1)
	go func() {
		ok, err := store.CompareAndSet(ctx, "B", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
		if err != nil {
			t.Error(err)
		}
		single <- ok
	}()
	other := make(chan bool, 1)
	go func() {
		ok, _ := store.CompareAndSet(ctx, "C", backend.VersionedData{SeqNo: 0, Data: []byte("c0")})
		other <- ok
	}()
	waitInside(t, inner, "C", 1)
	inner.mu.Lock()
	onB := inner.inside["B"]
	inner.mu.Unlock()
	if onB != 1 {
		t.Fatalf("%d writes on B inside the store while the multi-CaS holds it; want only the multi-CaS", onB)
	}
	close(inner.release)
	if got := <-multi; fmt.Sprint(got) != "[true true]" {
		t.Fatalf("multi = %v", got)
	}
	// The CaS on B ran after the multi-CaS was decided: it finds b0.
	if ok := <-single; ok {
		t.Fatal("cas(B,0) after the multi-CaS committed B@0 must mismatch")
	}
	if ok := <-other; !ok {
		t.Fatal("cas(C,0) = false")
	}
	if inner.most != 1 {
		t.Fatalf("at most %d writes on one shard inside the store, want 1", inner.most)
	}
}

func waitInside(t *testing.T, b *blockingStore, shard string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := b.inside[shard]
		b.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes on %s inside the store, want %d", got, shard, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The whole contract holds through the exclusion layer.
func TestConformance(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		return shardlock.Exclusive(openBolt(t), shardlock.New())
	})
}

// A read of a shard that a multi-CaS holds waits until the multi-CaS is
// decided, so that it sees all of its effects or, if it arrived before, is
// concurrent with it; a read of another shard does not wait. (Without the
// wait, a read that misses the cache can see a multi-CaS's commit in the
// database while a read of its other shard, served by the cache, does not.)
func TestReadsWaitForAMultiCASOnTheirShard(t *testing.T) {
	inner := &blockingStore{Consensus: openBolt(t), release: make(chan struct{}), inside: map[string]int{}}
	store := shardlock.Exclusive(inner, shardlock.New())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	multi := make(chan error, 1)
	go func() {
		_, err := store.CompareAndSetMulti(ctx, []backend.CASOp{
			{Shard: "A", New: backend.VersionedData{SeqNo: 0, Data: []byte("a0")}},
			{Shard: "B", New: backend.VersionedData{SeqNo: 0, Data: []byte("b0")}},
		})
		multi <- err
	}()
	waitInside(t, inner, "A", 1)

	if v, err := store.Head(ctx, "C"); err != nil || v != nil {
		t.Fatalf("head(C) during a multi-CaS on A and B = %+v, %v; want nil at once", v, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := store.Head(short, "A")
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) || !backend.IsDeterminate(err) {
		t.Fatalf("head(A) while a multi-CaS holds A: %v; want it to wait (a determinate deadline error)", err)
	}
	heads := make(chan *backend.VersionedData, 1)
	go func() {
		v, err := store.Head(ctx, "B")
		if err != nil {
			t.Error(err)
		}
		heads <- v
	}()
	scans := make(chan []backend.VersionedData, 1)
	go func() {
		vs, err := store.Scan(ctx, "A", 0, 10)
		if err != nil {
			t.Error(err)
		}
		scans <- vs
	}()
	close(inner.release)
	if err := <-multi; err != nil {
		t.Fatal(err)
	}
	if v := <-heads; v == nil || string(v.Data) != "b0" {
		t.Fatalf("head(B) that waited for the multi-CaS = %+v; want b0", v)
	}
	if vs := <-scans; len(vs) != 1 || string(vs[0].Data) != "a0" {
		t.Fatalf("scan(A) that waited for the multi-CaS = %+v; want [a0]", vs)
	}
}
