package cache

import (
	"container/list"
	"context"
	"math"
	"slices"
	"sync"

	"github.com/hacommit/committer/backend"
)

// Config bounds the cache. Zero values pick the defaults.
type Config struct {
	// MaxEntries bounds the number of cached shards.
	MaxEntries int
	// MaxBytes bounds the sum of cached shard names and payloads.
	MaxBytes int
	// TailVersions bounds the recent versions kept per shard to answer
	// scans from (0: DefaultTailVersions; negative: no tails).
	TailVersions int
	// TailBytes bounds the payload of one shard's tail (0:
	// DefaultTailBytes); the head itself always stays.
	TailBytes int
	// MaxKeys bounds the shard names kept to answer ListKeys from (0:
	// DefaultMaxKeys; negative: ListKeys always reads through). Past it
	// the cache stops keeping names and reads through.
	MaxKeys int
	// UnsafeSkipGeneration lets an operation fill what it saw even after its
	// shard was dropped, evicted or cleared while it was in flight: the
	// per-shard generation no longer stops late fills, so an older version
	// can come back and hide a newer head. It exists only as a canary for
	// the correctness harness (committer serve --unsafe-skip-cache-generation);
	// never set it in production.
	UnsafeSkipGeneration bool
}

// Defaults sized for a metadata workload: persist shard states are small,
// but a few may be large, so the byte bound is what usually evicts.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxBytes   = 256 << 20
	// A persist reader catching up scans from a seqno a few versions
	// behind the head; a tail of 32 versions up to 256 KiB answers that
	// without the database for the small states persist keeps.
	DefaultTailVersions = 32
	DefaultTailBytes    = 256 << 10
	// A million names of persist's 40-byte shard ids take ~100 MiB at
	// worst; deployments have thousands.
	DefaultMaxKeys = 1_000_000
	// entryOverhead approximates the bookkeeping cost of one entry.
	entryOverhead = 96
	// tailOverhead approximates the cost of one tail version beyond its
	// payload.
	tailOverhead = 32
	// anySize: the payload limit is the server's and the storage's to
	// enforce; the cache validates only what its fast path relies on.
	anySize = math.MaxInt
)

// Cache is a backend.Consensus that keeps each shard's latest version.
//
// Byte slices are shared, not copied: every layer of the request path treats
// a VersionedData's Data as immutable once handed over.
//
// # What keeps a cached head linearizable
//
// Every operation that reaches the store learns something about a shard's
// head: a read or a committed CaS sees a version that was the head at some
// moment during the call, a truncate proves the head is at least its seqno,
// and a CaS of seqno k that the store mismatched proves the head is not k-1.
// Once such an operation has returned, no later Head may answer from the
// cache with something older, even while the write that moved the head on is
// still on its way back to the cache. So when an operation ends (under mu) it
// either raises the shard's entry to what it saw, or, when it cannot vouch
// for what it saw, drops the entry.
//
// Dropping is safe at any moment; filling is not: an operation that read
// version n must not fill it after some newer version of the shard was
// dropped, evicted or never cached (too large), because nothing then stops n
// from hiding the newer head. Each shard with operations in flight has a
// flight record whose gen counts such losses; an operation fills only if gen
// did not move since it started, and a drop always bumps gen.
type Cache struct {
	inner      backend.Consensus
	maxEntries int
	maxBytes   int
	tailLen    int // 0: no tails
	tailBytes  int
	// skipGen is Config.UnsafeSkipGeneration, the canary's switch.
	skipGen bool

	mu      sync.Mutex
	lru     *list.List // of *entry, most recently used first
	entries map[string]*list.Element
	bytes   int
	// flights holds a record for every shard with an operation on the store
	// in flight; it is empty when the cache is idle.
	flights map[string]*flight
	keys    keySet
	stats   Stats // counters only; sizes are filled in by Stats()
}

type entry struct {
	shard string
	v     backend.VersionedData
	// tail is empty, or the shard's latest versions in ascending,
	// contiguous seqnos, ending with v: every version from tail[0] on.
	tail []backend.VersionedData
}

func (e *entry) size() int {
	n := entrySize(e.shard, e.v)
	for i := 0; i+1 < len(e.tail); i++ {
		n += len(e.tail[i].Data) + tailOverhead
	}
	return n
}

func entrySize(shard string, v backend.VersionedData) int {
	return len(shard) + len(v.Data) + entryOverhead
}

// flight tracks the operations in flight on one shard.
type flight struct {
	refs int
	// gen counts drops of the shard since the record was created.
	gen uint64
}

// ticket is one operation's claim on a shard's flight record.
type ticket struct {
	shard string
	f     *flight
	gen   uint64
}

var _ backend.Consensus = (*Cache)(nil)

// New wraps inner.
func New(inner backend.Consensus, cfg Config) *Cache {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	switch {
	case cfg.TailVersions == 0:
		cfg.TailVersions = DefaultTailVersions
	case cfg.TailVersions < 0:
		cfg.TailVersions = 0
	}
	if cfg.TailBytes <= 0 {
		cfg.TailBytes = DefaultTailBytes
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	return &Cache{
		keys:       newKeySet(cfg.MaxKeys),
		inner:      inner,
		maxEntries: cfg.MaxEntries,
		maxBytes:   cfg.MaxBytes,
		tailLen:    cfg.TailVersions,
		tailBytes:  cfg.TailBytes,
		skipGen:    cfg.UnsafeSkipGeneration,
		lru:        list.New(),
		entries:    map[string]*list.Element{},
		flights:    map[string]*flight{},
	}
}

// Stats is a point-in-time view for metrics. Counters only grow over the
// life of a Cache.
type Stats struct {
	// Hits and Misses total every decision below: Hits = HeadHits +
	// CASFastFails + MultiFastFails + ScanHits + ListKeysHits, Misses =
	// HeadMisses + CASWriteThroughs + MultiWriteThroughs + ScanMisses +
	// ListKeysMisses.
	Hits, Misses uint64
	// HeadHits and HeadMisses count Head calls answered from the cache and
	// read through to the store.
	HeadHits, HeadMisses uint64
	// CASFastFails counts CompareAndSets answered "mismatch" from the cache;
	// CASWriteThroughs those sent to the store.
	CASFastFails, CASWriteThroughs uint64
	// MultiFastFails and MultiWriteThroughs count CompareAndSetMulti
	// elements, not calls, the same way.
	// Prefetched counts the shards Prefetch read (not counted as misses).
	MultiFastFails, MultiWriteThroughs uint64
	Prefetched                         uint64
	// ScanHits counts scans answered from a shard's tail or head;
	// ScanMisses those read through.
	ScanHits, ScanMisses uint64
	// ListKeysHits counts ListKeys answered from the names the cache
	// keeps; ListKeysMisses those read through.
	ListKeysHits, ListKeysMisses uint64
	// Evictions counts entries removed to respect MaxEntries or MaxBytes.
	Evictions uint64
	// Drops counts entries removed because the cache could no longer vouch
	// for them (an indeterminate write, a newer head it could not keep).
	Drops uint64
	// Shards and Bytes are the current number and size of entries.
	Shards int
	Bytes  int
}

// Stats returns counters and sizes.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Hits = s.HeadHits + s.CASFastFails + s.MultiFastFails + s.ScanHits + s.ListKeysHits
	s.Misses = s.HeadMisses + s.CASWriteThroughs + s.MultiWriteThroughs + s.ScanMisses + s.ListKeysMisses
	s.Shards = len(c.entries)
	s.Bytes = c.bytes
	return s
}

// Clear drops every entry. Operations in flight cannot refill what they saw
// before the clear.
func (c *Cache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Init()
	clear(c.entries)
	c.bytes = 0
	for _, f := range c.flights {
		f.gen++
	}
}

// HotShards returns up to n shards, most recently used first.
func (c *Cache) HotShards(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, max(0, min(n, c.lru.Len())))
	for el := c.lru.Front(); el != nil && len(out) < n; el = el.Next() {
		out = append(out, el.Value.(*entry).shard)
	}
	return out
}

// prefetchChunk bounds the shards of one bulk read.
const prefetchChunk = 1024

// Prefetch loads the heads of shards that are not cached, in bulk reads of
// the store (backend.HeadMany: one round trip per chunk on a store that
// reads many heads at once), and fills them like Head misses. It stops at
// the first error; what it filled until then stays.
func (c *Cache) Prefetch(ctx context.Context, shards []string) error {
	for len(shards) > 0 {
		chunk := shards[:min(prefetchChunk, len(shards))]
		shards = shards[len(chunk):]
		c.mu.Lock()
		var missing []string
		var tickets []ticket
		for _, s := range chunk {
			if _, ok := c.entries[s]; ok || backend.ValidateShard(s) != nil {
				continue
			}
			missing = append(missing, s)
			tickets = append(tickets, c.beginLocked(s))
		}
		c.stats.Prefetched += uint64(len(missing))
		c.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		heads, err := backend.HeadMany(ctx, c.inner, missing)
		c.mu.Lock()
		for i, t := range tickets {
			if err == nil && heads[i] != nil {
				c.sawLocked(t, *heads[i], true)
			}
			c.endLocked(t)
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// cachedLocked returns the shard's entry and marks it recently used.
func (c *Cache) cachedLocked(shard string) (*entry, bool) {
	el, ok := c.entries[shard]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*entry), true
}

// beginLocked registers an operation on shard that is about to reach the
// store; endLocked must follow.
func (c *Cache) beginLocked(shard string) ticket {
	f := c.flights[shard]
	if f == nil {
		f = &flight{}
		c.flights[shard] = f
	}
	f.refs++
	return ticket{shard: shard, f: f, gen: f.gen}
}

func (c *Cache) endLocked(t ticket) {
	t.f.refs--
	if t.f.refs == 0 {
		delete(c.flights, t.shard)
	}
}

// clean reports whether nothing was dropped from t's shard since t began.
func (t ticket) clean() bool { return t.f.gen == t.gen }

// dropLocked removes shard's entry, if any, and stops every operation in
// flight on it from filling what it saw.
func (c *Cache) dropLocked(shard string) {
	if el, ok := c.entries[shard]; ok {
		c.removeLocked(el)
		c.stats.Drops++
	}
	if f := c.flights[shard]; f != nil {
		f.gen++
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	c.lru.Remove(el)
	delete(c.entries, e.shard)
	c.bytes -= e.size()
}

// sawLocked records that t's operation saw v as the shard's head (exact) or
// proved the head is at least v.SeqNo (not exact, v.Data unknown).
func (c *Cache) sawLocked(t ticket, v backend.VersionedData, exact bool) {
	c.sawTailLocked(t, v, exact, nil)
}

// sawTailLocked is sawLocked with the versions up to v the operation also
// saw, ascending and contiguous, ending with v (a scan's result), or nil.
func (c *Cache) sawTailLocked(t ticket, v backend.VersionedData, exact bool, seen []backend.VersionedData) {
	// Whatever was seen, the shard has a version, and keeps one forever.
	c.keys.exists(t.shard)
	e, ok := c.cachedLocked(t.shard)
	if ok && e.v.SeqNo >= v.SeqNo {
		return // monotonic: never replace with an older version
	}
	if !exact || (!t.clean() && !c.skipGen) || entrySize(t.shard, v) > c.maxBytes {
		// The cache cannot show v, so it must show nothing older.
		c.dropLocked(t.shard)
		return
	}
	var tail []backend.VersionedData
	switch {
	case c.tailLen == 0:
	case ok && len(e.tail) > 0 && e.v.SeqNo+1 == v.SeqNo:
		// The next version: the tail goes on.
		tail = append(e.tail, v)
	case len(seen) > 0:
		tail = slices.Clone(seen)
	default:
		tail = []backend.VersionedData{v}
	}
	tail = c.trimTail(tail)
	if ok {
		c.bytes -= e.size()
		e.v, e.tail = v, tail
		c.bytes += e.size()
	} else {
		e = &entry{shard: t.shard, v: v, tail: tail}
		c.entries[t.shard] = c.lru.PushFront(e)
		c.bytes += e.size()
	}
	for c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes {
		// The entry just raised is at the front and fits on its own, so
		// the loop stops before reaching it.
		back := c.lru.Back()
		shard := back.Value.(*entry).shard
		c.removeLocked(back)
		c.stats.Evictions++
		if f := c.flights[shard]; f != nil {
			f.gen++
		}
	}
}

// trimTail keeps the newest versions of tail within the tail bounds; the
// last one (the head) always stays.
func (c *Cache) trimTail(tail []backend.VersionedData) []backend.VersionedData {
	if len(tail) == 0 {
		return nil
	}
	start := max(0, len(tail)-c.tailLen)
	bytes := 0
	for i := len(tail) - 2; i >= start; i-- {
		bytes += len(tail[i].Data)
		if bytes > c.tailBytes {
			start = i + 1
			break
		}
	}
	if start == 0 {
		return tail
	}
	// A fresh array, so that the versions trimmed off can be collected.
	return slices.Clone(tail[start:])
}

// mismatchedLocked records that the store refused a CaS of seqno: the head
// is not seqno-1. A cached seqno-1 is therefore behind the store (a commit is
// on its way back), and with no entry an operation in flight might fill
// seqno-1 after this answer; either way the shard must be dropped.
func (c *Cache) mismatchedLocked(t ticket, seqno uint64) {
	if seqno == 0 {
		return // "the shard is not empty": an absent head is never cached
	}
	if e, ok := c.cachedLocked(t.shard); !ok || e.v.SeqNo == seqno-1 {
		c.dropLocked(t.shard)
	}
}

// casOutcomeLocked applies what one CaS element taught the cache.
func (c *Cache) casOutcomeLocked(t ticket, v backend.VersionedData, committed bool, err error) {
	switch {
	case err != nil:
		if !backend.IsDeterminate(err) {
			// It may have committed: the cache no longer knows the head,
			// nor whether the shard exists.
			c.dropLocked(t.shard)
			c.keys.unsure(t.shard)
		}
	case committed:
		c.sawLocked(t, v, true)
	default:
		if v.SeqNo == 0 {
			c.keys.exists(t.shard) // "the shard is not empty"
		}
		c.mismatchedLocked(t, v.SeqNo)
	}
}

// Head answers from the cache, or reads through and fills it.
func (c *Cache) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	if err := backend.ValidateShard(shard); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if e, ok := c.cachedLocked(shard); ok {
		v := e.v
		c.stats.HeadHits++
		c.mu.Unlock()
		return &v, nil
	}
	c.stats.HeadMisses++
	t := c.beginLocked(shard)
	c.mu.Unlock()

	v, err := c.inner.Head(ctx, shard)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.endLocked(t)
	// "Absent" is never cached: the first CaS fills the entry.
	if err == nil && v != nil {
		c.sawLocked(t, *v, true)
	}
	return v, err
}

// CompareAndSet fast-fails from the cache or writes through.
func (c *Cache) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := backend.ValidateCAS(shard, v, anySize); err != nil {
		return false, err
	}
	c.mu.Lock()
	if e, ok := c.cachedLocked(shard); ok && e.v.SeqNo >= v.SeqNo {
		// The cached head c >= v.SeqNo > v.SeqNo-1, and heads never
		// decrease (docs/architecture.md §4, CaS fast-fail from the cache).
		c.stats.CASFastFails++
		c.mu.Unlock()
		return false, nil
	}
	c.stats.CASWriteThroughs++
	t := c.beginLocked(shard)
	c.mu.Unlock()

	committed, err := c.inner.CompareAndSet(ctx, shard, v)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.endLocked(t)
	c.casOutcomeLocked(t, v, committed, err)
	return committed, err
}

// CompareAndSetMulti fast-fails the elements the cache can decide and sends
// the rest to the backend in one call. The fast-failed elements stay
// mismatched at the moment the backend decides the rest, because heads never
// decrease, so the call still takes effect at one point.
func (c *Cache) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := backend.ValidateCASMulti(ops, anySize); err != nil {
		return nil, err
	}
	out := make([]bool, len(ops))
	var rest []backend.CASOp
	var restIdx []int
	var tickets []ticket
	c.mu.Lock()
	for i, op := range ops {
		if e, ok := c.cachedLocked(op.Shard); ok && e.v.SeqNo >= op.New.SeqNo {
			c.stats.MultiFastFails++
			continue
		}
		c.stats.MultiWriteThroughs++
		rest = append(rest, op)
		restIdx = append(restIdx, i)
		tickets = append(tickets, c.beginLocked(op.Shard))
	}
	c.mu.Unlock()
	if len(rest) == 0 {
		return out, nil
	}

	res, err := c.inner.CompareAndSetMulti(ctx, rest)

	c.mu.Lock()
	defer c.mu.Unlock()
	for j, t := range tickets {
		if err == nil && len(res) != len(rest) {
			// A store that breaks the one-result-per-element contract
			// taught nothing trustworthy; forget these shards.
			c.dropLocked(t.shard)
			c.keys.unsure(t.shard)
		} else if err != nil {
			c.casOutcomeLocked(t, rest[j].New, false, err)
		} else {
			c.casOutcomeLocked(t, rest[j].New, res[j], nil)
		}
		c.endLocked(t)
	}
	if err != nil {
		return nil, err
	}
	if len(res) != len(rest) {
		return nil, backend.Indeterminatef("cache: store answered %d results for %d compare-and-sets", len(res), len(rest))
	}
	for j, ok := range res {
		out[restIdx[j]] = ok
	}
	return out, nil
}

// Scan reads through: the cache holds only heads. A scan that returned fewer
// versions than its limit ended at the head, which fills the cache; one cut
// short by the limit still proves the head is at least its last version.
func (c *Cache) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := backend.ValidateScan(shard, from); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if vs, ok := c.scanCachedLocked(shard, from, limit); ok {
		c.stats.ScanHits++
		c.mu.Unlock()
		return vs, nil
	}
	c.stats.ScanMisses++
	t := c.beginLocked(shard)
	c.mu.Unlock()

	vs, err := c.inner.Scan(ctx, shard, from, limit)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.endLocked(t)
	if err == nil && len(vs) > 0 {
		// A scan that stopped before its limit read every version from
		// from on: the last is the head, and all of them are a tail.
		exact := uint64(len(vs)) < uint64(backend.ClampLimit(limit))
		var seen []backend.VersionedData
		if exact && contiguous(vs) {
			seen = vs
		}
		c.sawTailLocked(t, vs[len(vs)-1], exact, seen)
	}
	return vs, err
}

// scanCachedLocked answers a scan from the shard's entry when that is
// exact: no operation on the shard is in flight (one might have changed the
// store already, and a read elsewhere seen it), and either from is above
// the head (nothing to return) or the tail starts at or below from. A
// truncate trims the tail when it returns, so a tail never holds a version
// a returned truncate deleted.
func (c *Cache) scanCachedLocked(shard string, from, limit uint64) ([]backend.VersionedData, bool) {
	el, ok := c.entries[shard]
	if !ok || c.flights[shard] != nil {
		return nil, false
	}
	e := el.Value.(*entry)
	switch {
	case from > e.v.SeqNo:
		c.lru.MoveToFront(el)
		return []backend.VersionedData{}, true
	case len(e.tail) == 0 || e.tail[0].SeqNo > from:
		return nil, false
	}
	c.lru.MoveToFront(el)
	rest := e.tail[from-e.tail[0].SeqNo:]
	n := min(uint64(len(rest)), uint64(backend.ClampLimit(limit)))
	return slices.Clone(rest[:n]), true
}

// trimBelowLocked drops the tail's versions below seqno, which a truncate
// deleted (it never deletes the head).
func (c *Cache) trimBelowLocked(shard string, seqno uint64) {
	el, ok := c.entries[shard]
	if !ok {
		return
	}
	e := el.Value.(*entry)
	i := 0
	for i < len(e.tail) && e.tail[i].SeqNo < seqno {
		i++
	}
	if i == 0 {
		return
	}
	c.bytes -= e.size()
	e.tail = slices.Clone(e.tail[i:])
	c.bytes += e.size()
}

// contiguous reports whether vs's seqnos follow one another.
func contiguous(vs []backend.VersionedData) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i].SeqNo != vs[i-1].SeqNo+1 {
			return false
		}
	}
	return true
}

// Truncate writes through. It never removes a shard's head, so it cannot make
// an entry wrong; a successful truncate to seqno proves the head is at least
// seqno, which an entry lagging behind a commit in flight must not contradict.
func (c *Cache) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	if err := backend.ValidateTruncate(shard, seqno); err != nil {
		return 0, err
	}
	c.mu.Lock()
	t := c.beginLocked(shard)
	c.mu.Unlock()

	deleted, err := c.inner.Truncate(ctx, shard, seqno)

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.endLocked(t)
	if err == nil {
		c.trimBelowLocked(shard, seqno)
		c.sawLocked(t, backend.VersionedData{SeqNo: seqno}, false)
	}
	return deleted, err
}

// ListKeys answers from the shard names the cache keeps once it can prove
// them complete (docs/architecture.md §3, ListKeys), and reads through
// otherwise; a read-through makes them complete when nothing is unsure.
func (c *Cache) ListKeys(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	if keys, ok := c.keys.list(c.flights); ok {
		c.stats.ListKeysHits++
		c.mu.Unlock()
		return keys, nil
	}
	c.stats.ListKeysMisses++
	c.mu.Unlock()

	keys, err := c.inner.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys.listed(keys)
	return keys, nil
}
