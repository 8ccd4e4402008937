package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacommit/committer/cluster/cache"
)

// CacheStats is what the head cache reports at scrape time. Counters only
// grow for one Instance.
type CacheStats struct {
	// Instance identifies the cache the counters come from (the leader
	// builds a fresh cache per term, so the term is a good value). When it
	// changes, or a counter goes down, the previous instance's counters are
	// folded into the running totals, so that the exported counters never
	// go down. What the old instance counted after the last scrape is lost.
	Instance uint64

	HeadHits, HeadMisses   uint64
	CASHits, CASMisses     uint64 // CompareAndSet calls
	MultiHits, MultiMisses uint64 // CompareAndSetMulti elements
	ScanHits, ScanMisses   uint64
	ListHits, ListMisses   uint64 // ListKeys calls
	Evictions, Drops       uint64

	Shards int
	Bytes  int
}

type cacheCounters struct {
	headHits, headMisses, casHits, casMisses, multiHits, multiMisses, scanHits, scanMisses, listHits, listMisses, evictions, drops uint64
}

func countersOf(s CacheStats) cacheCounters {
	return cacheCounters{s.HeadHits, s.HeadMisses, s.CASHits, s.CASMisses, s.MultiHits, s.MultiMisses, s.ScanHits, s.ScanMisses, s.ListHits, s.ListMisses, s.Evictions, s.Drops}
}

func (a cacheCounters) plus(b cacheCounters) cacheCounters {
	return cacheCounters{
		a.headHits + b.headHits, a.headMisses + b.headMisses,
		a.casHits + b.casHits, a.casMisses + b.casMisses,
		a.multiHits + b.multiHits, a.multiMisses + b.multiMisses,
		a.scanHits + b.scanHits, a.scanMisses + b.scanMisses,
		a.listHits + b.listHits, a.listMisses + b.listMisses,
		a.evictions + b.evictions, a.drops + b.drops,
	}
}

// below reports whether some counter of a is below b's.
func (a cacheCounters) below(b cacheCounters) bool {
	return a.headHits < b.headHits || a.headMisses < b.headMisses ||
		a.casHits < b.casHits || a.casMisses < b.casMisses ||
		a.multiHits < b.multiHits || a.multiMisses < b.multiMisses ||
		a.scanHits < b.scanHits || a.scanMisses < b.scanMisses ||
		a.listHits < b.listHits || a.listMisses < b.listMisses ||
		a.evictions < b.evictions || a.drops < b.drops
}

// ObserveCache sets the function the cache metrics are read from at scrape
// time; ok=false means there is no cache now (not the leader): the counters
// keep their totals and the gauges read 0. fn is called during scrapes, so it
// must be quick and must not call back into Metrics. Calling ObserveCache
// again replaces fn.
func (m *Metrics) ObserveCache(fn func() (stats CacheStats, ok bool)) {
	m.cache.mu.Lock()
	defer m.cache.mu.Unlock()
	m.cache.fn = fn
}

// cacheCollector reads CacheStats at scrape time, so that the cache needs no
// Prometheus dependency and costs nothing between scrapes.
//
// Lock order: mu, then whatever fn takes (the cache's own lock).
type cacheCollector struct {
	hits, misses, evictions, drops, shards, bytes *prometheus.Desc

	mu           sync.Mutex
	fn           func() (CacheStats, bool)
	seen         bool // last holds an instance's counters
	lastInstance uint64
	last, base   cacheCounters
}

func newCacheCollector() *cacheCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "", n) }
	return &cacheCollector{
		hits:      prometheus.NewDesc(name("cache_hits_total"), "Calls (multi-CaS: elements) the leader's head cache answered without storage, by operation.", []string{"op"}, nil),
		misses:    prometheus.NewDesc(name("cache_misses_total"), "Calls (multi-CaS: elements) the leader's head cache sent on to storage, by operation.", []string{"op"}, nil),
		evictions: prometheus.NewDesc(name("cache_evictions_total"), "Head cache entries evicted to respect its bounds.", nil, nil),
		drops:     prometheus.NewDesc(name("cache_drops_total"), "Head cache entries dropped because the cache could no longer prove them current.", nil, nil),
		shards:    prometheus.NewDesc(name("cached_shards"), "Shards in the leader's head cache.", nil, nil),
		bytes:     prometheus.NewDesc(name("cached_bytes"), "Bytes the leader's head cache accounts for its entries.", nil, nil),
	}
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.evictions, c.drops, c.shards, c.bytes} {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	total, shards, bytes := c.read()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.hits, total.headHits, OpHead)
	counter(c.hits, total.casHits, OpCompareAndSet)
	counter(c.hits, total.multiHits, OpCompareAndSetMulti)
	counter(c.hits, total.scanHits, OpScan)
	counter(c.hits, total.listHits, OpListKeys)
	counter(c.misses, total.headMisses, OpHead)
	counter(c.misses, total.casMisses, OpCompareAndSet)
	counter(c.misses, total.multiMisses, OpCompareAndSetMulti)
	counter(c.misses, total.scanMisses, OpScan)
	counter(c.misses, total.listMisses, OpListKeys)
	counter(c.evictions, total.evictions)
	counter(c.drops, total.drops)
	ch <- prometheus.MustNewConstMetric(c.shards, prometheus.GaugeValue, float64(shards))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(bytes))
}

// read samples fn and returns the running counter totals and the gauges.
func (c *cacheCollector) read() (total cacheCounters, shards, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fn == nil {
		return c.base.plus(c.last), 0, 0
	}
	s, ok := c.fn()
	if !ok {
		return c.base.plus(c.last), 0, 0
	}
	now := countersOf(s)
	if c.seen && (s.Instance != c.lastInstance || now.below(c.last)) {
		c.base = c.base.plus(c.last)
	}
	c.seen, c.lastInstance, c.last = true, s.Instance, now
	return c.base.plus(c.last), s.Shards, s.Bytes
}

// FromCache converts the head cache's statistics of one leadership term.
func FromCache(term uint64, s cache.Stats) CacheStats {
	return CacheStats{
		Instance: term,
		HeadHits: s.HeadHits, HeadMisses: s.HeadMisses,
		CASHits: s.CASFastFails, CASMisses: s.CASWriteThroughs,
		MultiHits: s.MultiFastFails, MultiMisses: s.MultiWriteThroughs,
		ScanHits: s.ScanHits, ScanMisses: s.ScanMisses,
		ListHits: s.ListKeysHits, ListMisses: s.ListKeysMisses,
		Evictions: s.Evictions, Drops: s.Drops,
		Shards: s.Shards, Bytes: s.Bytes,
	}
}
