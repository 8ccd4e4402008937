package shardlock

import (
	"context"
	"slices"
	"sync"

	"github.com/hacommit/committer/backend"
)

// Locks is a set of per-shard FIFO locks. The zero value is not usable; use
// New.
type Locks struct {
	mu sync.Mutex
	// queues holds, per shard, the tickets of the holder and the waiters
	// in arrival order; a shard with no ticket has no entry.
	queues map[string][]*ticket
	// multi holds, per shard held by a multi-CaS, a channel closed when
	// that multi-CaS is decided; reads of the shard wait for it.
	multi map[string]chan struct{}
}

// ticket is one writer's place in one shard's queue. Its channel is closed
// when it reaches the head.
type ticket struct {
	turn chan struct{}
}

// New returns an empty lock set.
func New() *Locks { return &Locks{queues: map[string][]*ticket{}, multi: map[string]chan struct{}{}} }

// Acquire waits until the caller holds every shard in shards (duplicates are
// held once), in arrival order per shard, and returns the release function.
// If ctx ends first it releases what it took and returns ctx's error
// (wrapped as a determinate error: nothing was done).
func (l *Locks) Acquire(ctx context.Context, shards ...string) (release func(), err error) {
	sorted := slices.Clone(shards)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)

	// Enqueue on every shard at once, so the arrival order is one order for
	// all of them; then wait for each turn in ascending shard order.
	tickets := make([]*ticket, len(sorted))
	l.mu.Lock()
	for i, s := range sorted {
		t := &ticket{turn: make(chan struct{})}
		q := l.queues[s]
		if len(q) == 0 {
			close(t.turn)
		}
		l.queues[s] = append(q, t)
		tickets[i] = t
	}
	l.mu.Unlock()

	release = func() { l.leave(sorted, tickets) }
	for _, t := range tickets {
		select {
		case <-t.turn:
		case <-ctx.Done():
			release()
			return nil, backend.Determinatef("%w: waiting for earlier writes to the same shards: %w", backend.ErrUnavailable, ctx.Err())
		}
	}
	if len(sorted) > 1 {
		decided := make(chan struct{})
		l.mu.Lock()
		for _, s := range sorted {
			l.multi[s] = decided
		}
		l.mu.Unlock()
		return func() {
			l.mu.Lock()
			for _, s := range sorted {
				delete(l.multi, s)
			}
			l.mu.Unlock()
			close(decided)
			l.leave(sorted, tickets)
		}, nil
	}
	return release, nil
}

// WaitMulti waits until no multi-CaS holds shard. A multi-CaS commits all
// of its elements at once in the database, but the cache above learns the
// outcome only when the call returns: in between, a read of one of its
// shards that misses the cache can see the commit while a read of another
// that hits the cache does not, and an observer would see one element's
// effect without the other's. A read that arrives while a multi-CaS holds
// its shard therefore waits until the outcome is in the cache. Reads that
// arrived before it started need not: they are concurrent with it.
func (l *Locks) WaitMulti(ctx context.Context, shard string) error {
	l.mu.Lock()
	decided := l.multi[shard]
	l.mu.Unlock()
	if decided == nil {
		return nil
	}
	select {
	case <-decided:
		return nil
	case <-ctx.Done():
		return backend.Determinatef("%w: waiting for a multi-CaS on the shard: %w", backend.ErrUnavailable, ctx.Err())
	}
}

// leave removes the tickets from their queues and hands each shard to the
// next waiter. A ticket that never reached the head is just dropped.
func (l *Locks) leave(shards []string, tickets []*ticket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range shards {
		q := l.queues[s]
		idx := slices.Index(q, tickets[i])
		if idx < 0 {
			continue
		}
		q = slices.Delete(q, idx, idx+1)
		if len(q) == 0 {
			delete(l.queues, s)
			continue
		}
		l.queues[s] = q
		if idx == 0 {
			close(q[0].turn)
		}
	}
}

// Held returns how many shards have a holder or waiters, for tests and
// metrics.
func (l *Locks) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queues)
}

// Exclusive wraps store so that every write holds its shards for as long as
// it runs (see the package doc). Reads take no lock; a read of a shard held
// by a multi-CaS waits until it is decided (see WaitMulti).
func Exclusive(store backend.Consensus, locks *Locks) backend.Consensus {
	return &exclusive{Consensus: store, locks: locks}
}

type exclusive struct {
	backend.Consensus
	locks *Locks
}

func (e *exclusive) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	release, err := e.locks.Acquire(ctx, shard)
	if err != nil {
		return false, err
	}
	defer release()
	return e.Consensus.CompareAndSet(ctx, shard, v)
}

func (e *exclusive) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	shards := make([]string, len(ops))
	for i, op := range ops {
		shards[i] = op.Shard
	}
	release, err := e.locks.Acquire(ctx, shards...)
	if err != nil {
		return nil, err
	}
	defer release()
	return e.Consensus.CompareAndSetMulti(ctx, ops)
}

func (e *exclusive) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	release, err := e.locks.Acquire(ctx, shard)
	if err != nil {
		return 0, err
	}
	defer release()
	return e.Consensus.Truncate(ctx, shard, seqno)
}

// Waiting returns how many writers hold or wait for shard.
func (l *Locks) Waiting(shard string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queues[shard])
}

func (e *exclusive) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	if err := e.locks.WaitMulti(ctx, shard); err != nil {
		return nil, err
	}
	return e.Consensus.Head(ctx, shard)
}

func (e *exclusive) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := e.locks.WaitMulti(ctx, shard); err != nil {
		return nil, err
	}
	return e.Consensus.Scan(ctx, shard, from, limit)
}
