package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacommit/committer/backend"
)

// opMetrics are one operation's series, resolved once so that a call costs
// no label lookup.
type opMetrics struct {
	duration prometheus.Observer
	results  map[string]prometheus.Counter
}

func (o *opMetrics) record(start time.Time, result string) {
	o.duration.Observe(time.Since(start).Seconds())
	o.results[result].Inc()
}

// opSet holds the series of every operation of one decorator.
type opSet struct {
	head, scan, cas, multi, truncate, listKeys, fence *opMetrics
}

func newOpSet(total *prometheus.CounterVec, duration *prometheus.HistogramVec, withFence bool) *opSet {
	resolve := func(op string) *opMetrics {
		o := &opMetrics{duration: duration.WithLabelValues(op), results: map[string]prometheus.Counter{}}
		for _, r := range resultsOf(op) {
			o.results[r] = total.WithLabelValues(op, r)
		}
		return o
	}
	s := &opSet{
		head: resolve(OpHead), scan: resolve(OpScan), cas: resolve(OpCompareAndSet),
		multi: resolve(OpCompareAndSetMulti), truncate: resolve(OpTruncate), listKeys: resolve(OpListKeys),
	}
	if withFence {
		s.fence = resolve(OpFence)
	}
	return s
}

// InstrumentRPC wraps the Consensus the servers call: it counts every call by
// operation and result (rpc_total), times it (rpc_duration_seconds) and
// tracks the calls in flight (inflight_rpcs).
func (m *Metrics) InstrumentRPC(inner backend.Consensus) backend.Consensus {
	return &rpcConsensus{
		inner:    inner,
		ops:      newOpSet(m.rpcTotal, m.rpcDuration, false),
		inflight: m.inflight,
	}
}

type rpcConsensus struct {
	inner    backend.Consensus
	ops      *opSet
	inflight prometheus.Gauge
}

var _ backend.Consensus = (*rpcConsensus)(nil)

func (c *rpcConsensus) begin() time.Time {
	c.inflight.Inc()
	return time.Now()
}

func (c *rpcConsensus) end(o *opMetrics, start time.Time, result string) {
	o.record(start, result)
	c.inflight.Dec()
}

func (c *rpcConsensus) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	start := c.begin()
	v, err := c.inner.Head(ctx, shard)
	c.end(c.ops.head, start, Result(err))
	return v, err
}

func (c *rpcConsensus) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	start := c.begin()
	vs, err := c.inner.Scan(ctx, shard, from, limit)
	c.end(c.ops.scan, start, Result(err))
	return vs, err
}

func (c *rpcConsensus) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	start := c.begin()
	ok, err := c.inner.CompareAndSet(ctx, shard, v)
	c.end(c.ops.cas, start, CASResult(ok, err))
	return ok, err
}

func (c *rpcConsensus) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	start := c.begin()
	res, err := c.inner.CompareAndSetMulti(ctx, ops)
	c.end(c.ops.multi, start, Result(err))
	return res, err
}

func (c *rpcConsensus) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	start := c.begin()
	n, err := c.inner.Truncate(ctx, shard, seqno)
	c.end(c.ops.truncate, start, Result(err))
	return n, err
}

func (c *rpcConsensus) ListKeys(ctx context.Context) ([]string, error) {
	start := c.begin()
	keys, err := c.inner.ListKeys(ctx)
	c.end(c.ops.listKeys, start, Result(err))
	return keys, err
}

// InstrumentBacking wraps the storage backend: it times every call
// (backing_duration_seconds) and counts it by result (backing_total),
// including Fence. Handles from AtEpoch are instrumented the same way; Close
// passes through.
func (m *Metrics) InstrumentBacking(inner backend.Fencer) backend.Fencer {
	return &backingFencer{inner: inner, ops: newOpSet(m.backingTotal, m.backingDuration, true), fenced: m.fencedWrites}
}

type backingFencer struct {
	inner backend.Fencer
	ops   *opSet // shared by every handle of the store
	// fenced counts writes refused by a later epoch (ErrFenced).
	fenced prometheus.Counter
}

// noteFenced counts err if the fence refused the write.
func (b *backingFencer) noteFenced(err error) {
	if err != nil && errors.Is(err, backend.ErrFenced) {
		b.fenced.Inc()
	}
}

var _ backend.Fencer = (*backingFencer)(nil)

func (b *backingFencer) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	start := time.Now()
	v, err := b.inner.Head(ctx, shard)
	b.ops.head.record(start, Result(err))
	return v, err
}

// HeadMany is timed as one head call.
func (b *backingFencer) HeadMany(ctx context.Context, shards []string) ([]*backend.VersionedData, error) {
	start := time.Now()
	vs, err := backend.HeadMany(ctx, b.inner, shards)
	b.ops.head.record(start, Result(err))
	return vs, err
}

func (b *backingFencer) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	start := time.Now()
	vs, err := b.inner.Scan(ctx, shard, from, limit)
	b.ops.scan.record(start, Result(err))
	return vs, err
}

func (b *backingFencer) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	start := time.Now()
	ok, err := b.inner.CompareAndSet(ctx, shard, v)
	b.ops.cas.record(start, CASResult(ok, err))
	b.noteFenced(err)
	return ok, err
}

func (b *backingFencer) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	start := time.Now()
	res, err := b.inner.CompareAndSetMulti(ctx, ops)
	b.ops.multi.record(start, Result(err))
	b.noteFenced(err)
	return res, err
}

func (b *backingFencer) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	start := time.Now()
	n, err := b.inner.Truncate(ctx, shard, seqno)
	b.ops.truncate.record(start, Result(err))
	b.noteFenced(err)
	return n, err
}

func (b *backingFencer) ListKeys(ctx context.Context) ([]string, error) {
	start := time.Now()
	keys, err := b.inner.ListKeys(ctx)
	b.ops.listKeys.record(start, Result(err))
	return keys, err
}

func (b *backingFencer) Fence(ctx context.Context, epoch uint64) error {
	start := time.Now()
	err := b.inner.Fence(ctx, epoch)
	b.ops.fence.record(start, Result(err))
	return err
}

func (b *backingFencer) AtEpoch(epoch uint64) backend.Fencer {
	return &backingFencer{inner: b.inner.AtEpoch(epoch), ops: b.ops, fenced: b.fenced}
}

func (b *backingFencer) Owned(owner string) backend.Fencer {
	return &backingFencer{inner: b.inner.Owned(owner), ops: b.ops, fenced: b.fenced}
}

// FenceState and Adopt are rare operator calls; they are not timed.
func (b *backingFencer) FenceState(ctx context.Context) (backend.FenceState, error) {
	return b.inner.FenceState(ctx)
}

func (b *backingFencer) Adopt(ctx context.Context, epoch uint64) error {
	return b.inner.Adopt(ctx, epoch)
}

func (b *backingFencer) Close() error { return b.inner.Close() }
