package coalesce

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hacommit/committer/backend"
)

// Defaults bound one batch. A persist CaS carries a few KiB at most, so the
// operation cap is what usually closes a batch; the byte cap keeps one
// statement's parameters well below what the database accepts.
const (
	DefaultMaxOps      = 256
	DefaultMaxBytes    = 32 << 20
	DefaultMaxInFlight = 1
)

// Config bounds batches. Zero values pick the defaults.
type Config struct {
	// MaxOps bounds the operations in one batch (a multi-CaS counts each
	// element); a member larger than it goes alone.
	MaxOps int
	// MaxBytes bounds the payload bytes of one batch; a member larger than
	// it goes alone.
	MaxBytes int
	// MaxInFlight bounds the batches on the backend at once. With one (the
	// default) the next batch fills for exactly one round trip; more keep
	// more of the backend's connections busy, at the price of smaller
	// batches (on a CPU-bound database, measured slower: docs/benchmarks.md).
	MaxInFlight int
	// MaxDataBytes is the payload limit members are validated against
	// before they join a batch, so an invalid one fails alone (0: the
	// backend's default).
	MaxDataBytes int
	// Observe, if set, is told of every batch sent: its operations and how
	// long its first member waited to be sent.
	Observe func(ops int, wait time.Duration)
}

// Coalescer is a backend.Consensus whose compare-and-sets share backend
// transactions. Reads and truncates go straight to the store.
type Coalescer struct {
	store backend.Consensus
	cfg   Config
	// ctx bounds every batch: it ends when the replica shuts down.
	ctx context.Context

	mu       sync.Mutex
	pending  []*member // in arrival order
	inFlight int       // batch goroutines running
	wg       sync.WaitGroup
}

var _ backend.Consensus = (*Coalescer)(nil)

// member is one call waiting in, or sent with, a batch.
type member struct {
	ops    []backend.CASOp
	single bool // a CompareAndSet call: one op
	bytes  int
	queued time.Time
	ctx    context.Context

	// done is closed once committed and err are set, by the batch.
	done      chan struct{}
	committed []bool
	err       error
	// sent is set under mu when the member leaves the queue for a batch.
	sent bool
}

// New returns a coalescer over store; batches are bound to ctx, which should
// end only when the replica shuts down (not when it loses leadership: a
// batch already sent must still be answered).
func New(ctx context.Context, store backend.Consensus, cfg Config) *Coalescer {
	if cfg.MaxOps <= 0 {
		cfg.MaxOps = DefaultMaxOps
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	return &Coalescer{store: store, cfg: cfg, ctx: ctx}
}

// Wait waits for every batch goroutine to end (they end once the queue is
// empty, or when New's context ends).
func (c *Coalescer) Wait() { c.wg.Wait() }

// Idle reports whether no write is queued or in flight.
func (c *Coalescer) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight == 0 && len(c.pending) == 0
}

// Head reads through.
func (c *Coalescer) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	return c.store.Head(ctx, shard)
}

// HeadMany reads through.
func (c *Coalescer) HeadMany(ctx context.Context, shards []string) ([]*backend.VersionedData, error) {
	return backend.HeadMany(ctx, c.store, shards)
}

// Scan reads through.
func (c *Coalescer) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	return c.store.Scan(ctx, shard, from, limit)
}

// ListKeys reads through.
func (c *Coalescer) ListKeys(ctx context.Context) ([]string, error) { return c.store.ListKeys(ctx) }

// Truncate goes straight to the store (see the package doc).
func (c *Coalescer) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	return c.store.Truncate(ctx, shard, seqno)
}

// CompareAndSet joins the next batch.
func (c *Coalescer) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := backend.ValidateCAS(shard, v, c.cfg.MaxDataBytes); err != nil {
		return false, err
	}
	out, err := c.join(ctx, []backend.CASOp{{Shard: shard, New: v}}, true)
	if err != nil {
		return false, err
	}
	return out[0], nil
}

// CompareAndSetMulti joins the next batch as one member: its operations are
// decided in the batch's transaction, together.
func (c *Coalescer) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := backend.ValidateCASMulti(ops, c.cfg.MaxDataBytes); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return []bool{}, nil
	}
	return c.join(ctx, ops, false)
}

func (c *Coalescer) join(ctx context.Context, ops []backend.CASOp, single bool) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, backend.Determinatef("%w: %w", backend.ErrUnavailable, err)
	}
	m := &member{ops: ops, single: single, queued: time.Now(), ctx: ctx, done: make(chan struct{})}
	for _, op := range ops {
		m.bytes += len(op.New.Data)
	}
	c.mu.Lock()
	c.pending = append(c.pending, m)
	if c.inFlight < c.cfg.MaxInFlight {
		c.inFlight++
		c.wg.Add(1)
		go c.flush()
	}
	c.mu.Unlock()

	select {
	case <-m.done:
		return m.committed, m.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	sent := m.sent
	if !sent {
		c.remove(m)
	}
	c.mu.Unlock()
	if !sent {
		return nil, backend.Determinatef("%w: waiting for a write batch: %w", backend.ErrUnavailable, ctx.Err())
	}
	select {
	case <-m.done: // answered meanwhile: the answer is the truth
		return m.committed, m.err
	default:
	}
	return nil, backend.NewIndeterminate(fmt.Errorf("write batch in flight when the call ended: %w", ctx.Err()))
}

// remove drops m from the queue; c.mu must be held.
func (c *Coalescer) remove(m *member) {
	for i, p := range c.pending {
		if p == m {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return
		}
	}
}

// flush sends batches while members are queued; it is one of at most
// MaxInFlight batch goroutines.
func (c *Coalescer) flush() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		batch := c.take()
		if len(batch) == 0 {
			c.inFlight--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.send(batch)
	}
}

// take removes the next batch from the queue, in arrival order: members
// whose shards are free in this batch, within the caps (the first member
// always goes, whatever its size). A member that does not fit stays queued
// for the next batch, ahead of later arrivals. c.mu must be held.
func (c *Coalescer) take() []*member {
	var batch []*member
	shards := map[string]bool{}
	ops, bytes := 0, 0
	kept := c.pending[:0]
	for _, m := range c.pending {
		fits := len(batch) == 0 || (ops+len(m.ops) <= c.cfg.MaxOps && bytes+m.bytes <= c.cfg.MaxBytes)
		for _, op := range m.ops {
			if shards[op.Shard] {
				fits = false
			}
		}
		if !fits {
			kept = append(kept, m)
			continue
		}
		for _, op := range m.ops {
			shards[op.Shard] = true
		}
		ops += len(m.ops)
		bytes += m.bytes
		m.sent = true
		batch = append(batch, m)
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	return batch
}

// send runs one batch on the store and answers its members.
func (c *Coalescer) send(batch []*member) {
	ctx, cancel := c.batchContext(batch)
	defer cancel()
	var ops []backend.CASOp
	for _, m := range batch {
		ops = append(ops, m.ops...)
	}
	if c.cfg.Observe != nil {
		c.cfg.Observe(len(ops), time.Since(batch[0].queued))
	}
	var committed []bool
	var err error
	switch {
	case len(batch) == 1 && batch[0].single:
		var ok bool
		ok, err = c.store.CompareAndSet(ctx, ops[0].Shard, ops[0].New)
		committed = []bool{ok}
	default:
		committed, err = c.store.CompareAndSetMulti(ctx, ops)
		if err == nil && len(committed) != len(ops) {
			err = backend.NewIndeterminate(fmt.Errorf("write batch of %d operations got %d outcomes", len(ops), len(committed)))
		}
	}
	i := 0
	for _, m := range batch {
		if err != nil {
			// Every member gets the batch's error, determinacy and all.
			m.err = err
		} else {
			m.committed = committed[i : i+len(m.ops) : i+len(m.ops)]
		}
		i += len(m.ops)
		close(m.done)
	}
}

// batchContext bounds a batch by the latest deadline among its members (a
// member with none leaves only the coalescer's own context), so that no
// member's cancellation cuts the others' transaction short.
func (c *Coalescer) batchContext(batch []*member) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, m := range batch {
		d, ok := m.ctx.Deadline()
		if !ok {
			return context.WithCancel(c.ctx)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(c.ctx, latest)
}
