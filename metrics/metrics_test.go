package metrics_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/metrics"
)

const all = math.MaxUint64

// The decorators must be invisible to every semantic case.
func TestDecoratorsPassConformance(t *testing.T) {
	t.Run("RPC", func(t *testing.T) {
		conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
			return metrics.New(prometheus.NewRegistry()).InstrumentRPC(openBolt(t))
		})
	})
	t.Run("Backing", func(t *testing.T) {
		conformance.Run(t, func(t *testing.T) backend.Fencer {
			return metrics.New(prometheus.NewRegistry()).InstrumentBacking(openBolt(t))
		})
	})
}

// countsText renders the expected text of an {op,result} counter family with
// every pre-created series at 0 except those in set.
func countsText(name, help string, ops []string, set map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
	for _, op := range ops {
		results := []string{"determinate_error", "indeterminate_error", "ok"}
		if op == "compare_and_set" {
			results = []string{"committed", "determinate_error", "indeterminate_error", "mismatch"}
		}
		for _, r := range results {
			fmt.Fprintf(&b, "%s{op=%q,result=%q} %d\n", name, op, r, set[op+"/"+r])
		}
	}
	return b.String()
}

var consensusOps = []string{"compare_and_set", "compare_and_set_multi", "head", "list_keys", "scan", "truncate"}

func TestInstrumentRPC(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	store := &lossyStore{Consensus: openBolt(t)}
	c := m.InstrumentRPC(store)
	ctx := t.Context()

	mustNil := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wantErr := func(what string, err error, determinate bool) {
		t.Helper()
		if err == nil || backend.IsDeterminate(err) != determinate {
			t.Fatalf("%s = %v, want an error with determinate=%v", what, err, determinate)
		}
	}

	v, err := c.Head(ctx, "a")
	mustNil("head(a)", err)
	if v != nil {
		t.Fatalf("head(a) = %v, want none", v)
	}
	ok, err := c.CompareAndSet(ctx, "a", vd(0, "a0"))
	mustNil("cas(a, 0)", err)
	if !ok {
		t.Fatal("cas(a, 0) did not commit")
	}
	for _, seqno := range []uint64{0, 5} {
		ok, err = c.CompareAndSet(ctx, "a", vd(seqno, "x"))
		if ok || err != nil {
			t.Fatalf("cas(a, %d) = %v, %v; want mismatch", seqno, ok, err)
		}
	}
	_, err = c.CompareAndSet(ctx, "", vd(0, "x"))
	wantErr(`cas("")`, err, true)
	store.FailNext()
	_, err = c.CompareAndSet(ctx, "a", vd(1, "a1"))
	wantErr("lossy cas(a, 1)", err, false)
	if !errors.Is(err, errLost) {
		t.Fatalf("lossy cas error %v does not carry the store's cause", err)
	}
	v, err = c.Head(ctx, "a")
	mustNil("head(a)", err)
	if v == nil || v.SeqNo != 1 {
		t.Fatalf("head(a) = %v, want seqno 1 (the lossy write committed)", v)
	}
	_, err = c.Head(ctx, "")
	wantErr(`head("")`, err, true)
	vs, err := c.Scan(ctx, "a", 0, all)
	mustNil("scan", err)
	if len(vs) != 2 {
		t.Fatalf("scan(a) = %v, want 2 versions", vs)
	}
	res, err := c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(2, "a2")}, {Shard: "b", New: vd(1, "b1")}})
	mustNil("multi", err)
	if !slices.Equal(res, []bool{true, false}) {
		t.Fatalf("multi = %v, want [true false]", res)
	}
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "b", New: vd(0, "b0")}, {Shard: "b", New: vd(0, "b0")}})
	wantErr("multi with a duplicate", err, true)
	store.FailNext()
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "b", New: vd(0, "b0")}})
	wantErr("lossy multi", err, false)
	n, err := c.Truncate(ctx, "a", 2)
	mustNil("truncate(a, 2)", err)
	if n != 2 {
		t.Fatalf("truncate(a, 2) deleted %d, want 2", n)
	}
	_, err = c.Truncate(ctx, "a", 100)
	wantErr("truncate(a, 100)", err, true)
	keys, err := c.ListKeys(ctx)
	mustNil("list keys", err)
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("list keys = %q, want [a b]", keys)
	}

	want := countsText("mz_persist_committer_rpc_total",
		"Consensus calls served, by operation and result (ok, committed, mismatch, determinate_error, indeterminate_error).",
		consensusOps, map[string]int{
			"head/ok": 2, "head/determinate_error": 1,
			"compare_and_set/committed": 1, "compare_and_set/mismatch": 2,
			"compare_and_set/determinate_error": 1, "compare_and_set/indeterminate_error": 1,
			"scan/ok":                  1,
			"compare_and_set_multi/ok": 1, "compare_and_set_multi/determinate_error": 1,
			"compare_and_set_multi/indeterminate_error": 1,
			"truncate/ok": 1, "truncate/determinate_error": 1,
			"list_keys/ok": 1,
		}) + `# HELP mz_persist_committer_inflight_rpcs Consensus calls being served now.
# TYPE mz_persist_committer_inflight_rpcs gauge
mz_persist_committer_inflight_rpcs 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mz_persist_committer_rpc_total", "mz_persist_committer_inflight_rpcs"); err != nil {
		t.Fatal(err)
	}
	for op, calls := range map[string]uint64{
		"head": 3, "compare_and_set": 5, "scan": 1, "compare_and_set_multi": 3, "truncate": 2, "list_keys": 1,
	} {
		if got := histogramCount(t, reg, "mz_persist_committer_rpc_duration_seconds", op); got != calls {
			t.Errorf("rpc_duration_seconds{op=%q} holds %d observations, want %d", op, got, calls)
		}
	}
	// The RPC decorator says nothing about the backing store.
	if got := histogramCount(t, reg, "mz_persist_committer_backing_duration_seconds", "head"); got != 0 {
		t.Errorf("backing_duration_seconds{op=head} holds %d observations, want 0", got)
	}

	// A call in flight is counted while it waits, and only then.
	h := store.HoldNextHead()
	done := make(chan error, 1)
	go func() {
		_, err := c.Head(ctx, "a")
		done <- err
	}()
	<-h.inside
	if got := gaugeValue(t, reg, "mz_persist_committer_inflight_rpcs"); got != 1 {
		t.Fatalf("inflight_rpcs = %v during a held head, want 1", got)
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatalf("held head: %v", err)
	}
	if got := gaugeValue(t, reg, "mz_persist_committer_inflight_rpcs"); got != 0 {
		t.Fatalf("inflight_rpcs = %v after the head returned, want 0", got)
	}
	if got := find(t, reg, "mz_persist_committer_rpc_total", map[string]string{"op": "head", "result": "ok"}).GetCounter().GetValue(); got != 3 {
		t.Fatalf("rpc_total{head,ok} = %v, want 3", got)
	}
}

func TestInstrumentBacking(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	raw := openBolt(t)
	store := m.InstrumentBacking(raw)
	ctx := t.Context()

	if err := store.Fence(ctx, 1); err != nil {
		t.Fatalf("fence(1): %v", err)
	}
	h1 := store.AtEpoch(1)
	if ok, err := h1.CompareAndSet(ctx, "a", vd(0, "a0")); !ok || err != nil {
		t.Fatalf("cas(a, 0) at epoch 1 = %v, %v; want committed", ok, err)
	}
	if ok, err := h1.CompareAndSet(ctx, "a", vd(0, "again")); ok || err != nil {
		t.Fatalf("cas(a, 0) again = %v, %v; want mismatch", ok, err)
	}
	if err := store.Fence(ctx, 2); err != nil {
		t.Fatalf("fence(2): %v", err)
	}
	_, err := h1.CompareAndSet(ctx, "a", vd(1, "a1"))
	if !errors.Is(err, backend.ErrFenced) || !backend.IsDeterminate(err) {
		t.Fatalf("cas at the stale epoch 1 = %v, want determinate fenced", err)
	}
	_, err = h1.AtEpoch(2).CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(1, "a1")}})
	if err != nil {
		t.Fatalf("multi at epoch 2: %v", err)
	}
	if _, err := h1.Truncate(ctx, "a", 0); !errors.Is(err, backend.ErrFenced) {
		t.Fatalf("truncate at the stale epoch 1 = %v, want fenced", err)
	}
	if got := testutil.ToFloat64(counterOf(t, reg, "committer_fenced_writes_total")); got != 2 {
		t.Fatalf("fenced_writes_total = %v, want 2 (the stale CaS and truncate; not the multi at epoch 2)", got)
	}
	err = store.Fence(ctx, 1)
	if metrics.FenceResult(err) != metrics.FenceRefused {
		t.Fatalf("fence(1) after fence(2) = %v, classified %q; want refused", err, metrics.FenceResult(err))
	}
	if v, err := store.Head(ctx, "a"); err != nil || v == nil || v.SeqNo != 1 {
		t.Fatalf("head(a) = %v, %v; want seqno 1", v, err)
	}
	if _, err := store.Scan(ctx, "a", 0, all); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if _, err := store.AtEpoch(2).Truncate(ctx, "a", 1); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if _, err := store.ListKeys(ctx); err != nil {
		t.Fatalf("list keys: %v", err)
	}
	// Close passes through: the store is closed, and says so determinately.
	if err := store.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, err = raw.Head(ctx, "a")
	if err == nil {
		t.Fatal("head after close through the decorator succeeded; the store is still open")
	}
	_, err = store.Head(ctx, "a")
	if !backend.IsDeterminate(err) {
		t.Fatalf("head after close = %v, want a determinate error", err)
	}

	want := countsText("mz_persist_committer_backing_total", "Calls to the storage backend, by operation and result.",
		[]string{"compare_and_set", "compare_and_set_multi", "fence", "head", "list_keys", "scan", "truncate"},
		map[string]int{
			"fence/ok": 2, "fence/determinate_error": 1,
			"compare_and_set/committed": 1, "compare_and_set/mismatch": 1, "compare_and_set/determinate_error": 1,
			"compare_and_set_multi/ok": 1,
			"head/ok":                  1, "head/determinate_error": 1,
			"scan/ok": 1, "truncate/ok": 1, "truncate/determinate_error": 1, "list_keys/ok": 1,
		})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mz_persist_committer_backing_total"); err != nil {
		t.Fatal(err)
	}
	for op, calls := range map[string]uint64{
		"fence": 3, "compare_and_set": 3, "compare_and_set_multi": 1, "head": 2, "scan": 1, "truncate": 2, "list_keys": 1,
	} {
		if got := histogramCount(t, reg, "mz_persist_committer_backing_duration_seconds", op); got != calls {
			t.Errorf("backing_duration_seconds{op=%q} holds %d observations, want %d", op, got, calls)
		}
	}
	if got := histogramCount(t, reg, "mz_persist_committer_rpc_duration_seconds", "head"); got != 0 {
		t.Errorf("rpc_duration_seconds{op=head} holds %d observations, want 0", got)
	}
}

// leaderCache is what a replica holds while it leads: a cache built for one
// term.
type leaderCache struct {
	term  uint64
	cache *cache.Cache
}

func cacheStatsOf(lc *leaderCache) (metrics.CacheStats, bool) {
	if lc == nil {
		return metrics.CacheStats{}, false
	}
	return metrics.FromCache(lc.term, lc.cache.Stats()), true
}

func cacheText(headHits, casHits, multiHits, headMisses, casMisses, multiMisses, evictions, drops, shards, bytes int) string {
	return fmt.Sprintf(`# HELP mz_persist_committer_cache_hits_total Calls (multi-CaS: elements) the leader's head cache answered without storage, by operation.
# TYPE mz_persist_committer_cache_hits_total counter
mz_persist_committer_cache_hits_total{op="compare_and_set"} %d
mz_persist_committer_cache_hits_total{op="compare_and_set_multi"} %d
mz_persist_committer_cache_hits_total{op="head"} %d
mz_persist_committer_cache_hits_total{op="list_keys"} 0
mz_persist_committer_cache_hits_total{op="scan"} 0
# HELP mz_persist_committer_cache_misses_total Calls (multi-CaS: elements) the leader's head cache sent on to storage, by operation.
# TYPE mz_persist_committer_cache_misses_total counter
mz_persist_committer_cache_misses_total{op="compare_and_set"} %d
mz_persist_committer_cache_misses_total{op="compare_and_set_multi"} %d
mz_persist_committer_cache_misses_total{op="head"} %d
mz_persist_committer_cache_misses_total{op="list_keys"} 0
mz_persist_committer_cache_misses_total{op="scan"} 0
# HELP mz_persist_committer_cache_evictions_total Head cache entries evicted to respect its bounds.
# TYPE mz_persist_committer_cache_evictions_total counter
mz_persist_committer_cache_evictions_total %d
# HELP mz_persist_committer_cache_drops_total Head cache entries dropped because the cache could no longer prove them current.
# TYPE mz_persist_committer_cache_drops_total counter
mz_persist_committer_cache_drops_total %d
# HELP mz_persist_committer_cached_shards Shards in the leader's head cache.
# TYPE mz_persist_committer_cached_shards gauge
mz_persist_committer_cached_shards %d
# HELP mz_persist_committer_cached_bytes Bytes the leader's head cache accounts for its entries.
# TYPE mz_persist_committer_cached_bytes gauge
mz_persist_committer_cached_bytes %d
`, casHits, multiHits, headHits, casMisses, multiMisses, headMisses, evictions, drops, shards, bytes)
}

var cacheFamilies = []string{
	"mz_persist_committer_cache_hits_total", "mz_persist_committer_cache_misses_total",
	"mz_persist_committer_cache_evictions_total", "mz_persist_committer_cache_drops_total",
	"mz_persist_committer_cached_shards", "mz_persist_committer_cached_bytes",
}

func TestCacheMetricsAcrossTerms(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	store := openBolt(t)
	ctx := t.Context()
	var current atomic.Pointer[leaderCache]
	compare := func(want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), cacheFamilies...); err != nil {
			t.Fatal(err)
		}
	}

	// Before any cache is observed every series reads 0.
	compare(cacheText(0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	m.ObserveCache(func() (metrics.CacheStats, bool) { return cacheStatsOf(current.Load()) })
	compare(cacheText(0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

	// Term 1.
	c1 := cache.New(store, cache.Config{})
	current.Store(&leaderCache{term: 1, cache: c1})
	if ok, err := c1.CompareAndSet(ctx, "a", vd(0, "a0")); !ok || err != nil {
		t.Fatalf("cas(a, 0) = %v, %v", ok, err)
	}
	if ok, err := c1.CompareAndSet(ctx, "a", vd(0, "late")); ok || err != nil {
		t.Fatalf("stale cas(a, 0) = %v, %v", ok, err)
	}
	if _, err := c1.Head(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Head(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "x")}, {Shard: "b", New: vd(0, "b0")}}); err != nil {
		t.Fatal(err)
	}
	bytes1 := c1.Stats().Bytes
	compare(cacheText(1, 1, 1, 1, 1, 1, 0, 0, 2, bytes1))

	// Leadership lost: no cache, the counters keep their totals.
	current.Store(nil)
	compare(cacheText(1, 1, 1, 1, 1, 1, 0, 0, 0, 0))

	// Term 3: a fresh cache starts from zero; the exported totals go on.
	c3 := cache.New(store, cache.Config{MaxEntries: 1})
	current.Store(&leaderCache{term: 3, cache: c3})
	for range 2 {
		if _, err := c3.Head(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := c3.CompareAndSet(ctx, "c", vd(0, "c0")); !ok || err != nil {
		t.Fatalf("cas(c, 0) = %v, %v", ok, err)
	}
	bytes3 := c3.Stats().Bytes
	compare(cacheText(2, 1, 1, 2, 2, 1, 1, 0, 1, bytes3))
	// Scraping again changes nothing.
	compare(cacheText(2, 1, 1, 2, 2, 1, 1, 0, 1, bytes3))
}

func TestClusterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	m.SetRaftState("Candidate")
	m.SetRaftState("Leader") // raft.RaftState.String() spelling
	m.SetTerm(7)
	m.LeaderChanged()
	m.LeaderChanged()
	m.Forwarded("head", metrics.Result(nil), time.Millisecond)
	m.Forwarded("compare_and_set", metrics.CASResult(false, nil), time.Millisecond)
	m.Forwarded("compare_and_set", metrics.CASResult(false, backend.Indeterminatef("broken stream")), time.Millisecond)
	m.Forwarded("scan", metrics.Result(backend.NewDeterminate(backend.ErrNotLeader)), time.Millisecond)
	m.Fenced(metrics.FenceResult(nil))
	m.Fenced(metrics.FenceResult(backend.Determinatef("%w: stored epoch 9", backend.ErrFenced)))
	m.Fenced(metrics.FenceResult(errors.New("connection refused")))
	m.Fenced(metrics.FenceOK)
	m.SetReady(true)
	for i, n := range []int{1, 3, 1024, 5000} {
		// Waits of 0, 1ms, 2ms and 3ms.
		m.ObserveBatch(n, time.Duration(i)*time.Millisecond)
	}

	want := `# HELP committer_raft_state 1 for this replica's current Raft state, 0 for the others.
# TYPE committer_raft_state gauge
committer_raft_state{state="candidate"} 0
committer_raft_state{state="follower"} 0
committer_raft_state{state="leader"} 1
committer_raft_state{state="shutdown"} 0
# HELP committer_raft_term Current Raft term of this replica.
# TYPE committer_raft_term gauge
committer_raft_term 7
# HELP committer_leader_changes_total Leadership changes this replica observed.
# TYPE committer_leader_changes_total counter
committer_leader_changes_total 2
# HELP committer_fence_events_total Backend fence attempts on becoming leader, by result (ok, refused, error).
# TYPE committer_fence_events_total counter
committer_fence_events_total{result="error"} 1
committer_fence_events_total{result="ok"} 2
committer_fence_events_total{result="refused"} 1
# HELP committer_ready 1 while this replica serves requests, 0 otherwise.
# TYPE committer_ready gauge
committer_ready 1
# HELP committer_batch_size Operations per storage batch.
# TYPE committer_batch_size histogram
committer_batch_size_bucket{le="1"} 1
committer_batch_size_bucket{le="2"} 1
committer_batch_size_bucket{le="4"} 2
committer_batch_size_bucket{le="8"} 2
committer_batch_size_bucket{le="16"} 2
committer_batch_size_bucket{le="32"} 2
committer_batch_size_bucket{le="64"} 2
committer_batch_size_bucket{le="128"} 2
committer_batch_size_bucket{le="256"} 2
committer_batch_size_bucket{le="512"} 2
committer_batch_size_bucket{le="1024"} 3
committer_batch_size_bucket{le="+Inf"} 4
committer_batch_size_sum 6028
committer_batch_size_count 4
` + countsText("committer_forwarded_requests_total", "Requests this replica forwarded to the leader, by operation and result.",
		consensusOps, map[string]int{
			"head/ok": 1, "compare_and_set/mismatch": 1, "compare_and_set/indeterminate_error": 1, "scan/determinate_error": 1,
		})
	families := []string{
		"committer_raft_state", "committer_raft_term", "committer_leader_changes_total", "committer_fence_events_total",
		"committer_ready", "committer_batch_size", "committer_forwarded_requests_total",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), families...); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "committer_forwarded_request_duration_seconds"); err != nil || n != 3 {
		t.Fatalf("forwarded duration series = %d, %v; want head, compare_and_set and scan", n, err)
	}
	// The waits: buckets from 50µs doubling; 0 falls in the first, 1ms in
	// 1.6ms, 2ms and 3ms in 3.2ms.
	wait := "# HELP committer_batch_wait_seconds How long the first write of a storage batch waited for the batch to be sent.\n# TYPE committer_batch_wait_seconds histogram\n"
	for _, le := range prometheus.ExponentialBuckets(0.00005, 2, 14) {
		in := 0
		for _, w := range []float64{0, 0.001, 0.002, 0.003} {
			if w <= le {
				in++
			}
		}
		wait += fmt.Sprintf("committer_batch_wait_seconds_bucket{le=%q} %d\n", strconv.FormatFloat(le, 'g', -1, 64), in)
	}
	wait += "committer_batch_wait_seconds_bucket{le=\"+Inf\"} 4\ncommitter_batch_wait_seconds_sum 0.006\ncommitter_batch_wait_seconds_count 4\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wait), "committer_batch_wait_seconds"); err != nil {
		t.Fatal(err)
	}

	// A state outside the known four gets its own series until the next
	// change removes it.
	m.SetRaftState("Recovering")
	m.SetReady(false)
	stateText := func(values map[string]int) string {
		s := "# HELP committer_raft_state 1 for this replica's current Raft state, 0 for the others.\n# TYPE committer_raft_state gauge\n"
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s += fmt.Sprintf("committer_raft_state{state=%q} %d\n", k, values[k])
		}
		return s
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(stateText(map[string]int{
		"candidate": 0, "follower": 0, "leader": 0, "recovering": 1, "shutdown": 0,
	})), "committer_raft_state"); err != nil {
		t.Fatal(err)
	}
	m.SetRaftState("follower")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(stateText(map[string]int{
		"candidate": 0, "follower": 1, "leader": 0, "shutdown": 0,
	})), "committer_raft_state"); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, reg, "committer_ready"); got != 0 {
		t.Fatalf("committer_ready = %v after SetReady(false), want 0", got)
	}
}

// Every metric operators rely on (the persist committer names and the cluster
// metrics listed in the package documentation, metrics/doc.go) is exported
// from the start, before any traffic, and the set passes Prometheus' own lint.
func TestEverySpecMetricIsGathered(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var got []string
	for _, f := range families {
		got = append(got, f.GetName())
	}
	for _, name := range []string{
		"mz_persist_committer_rpc_total",
		"mz_persist_committer_rpc_duration_seconds",
		"mz_persist_committer_backing_duration_seconds",
		"mz_persist_committer_cache_hits_total",
		"mz_persist_committer_cache_misses_total",
		"mz_persist_committer_cached_shards",
		"mz_persist_committer_inflight_rpcs",
		"committer_raft_state",
		"committer_raft_term",
		"committer_leader_changes_total",
		"committer_forwarded_requests_total",
		"committer_fence_events_total",
		"committer_ready",
		"committer_batch_size",
	} {
		if !slices.Contains(got, name) {
			t.Errorf("%s is not gathered; gathered %q", name, got)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// Metrics hold no global state: two replicas in one process register on
// their own registries, and a second registration on one registry is refused.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := prometheus.NewRegistry(), prometheus.NewRegistry()
	ma, mb := metrics.New(a), metrics.New(b)
	ma.LeaderChanged()
	mb.SetTerm(3)
	if got := find(t, a, "committer_leader_changes_total", nil).GetCounter().GetValue(); got != 1 {
		t.Fatalf("registry a leader changes = %v, want 1", got)
	}
	if got := find(t, b, "committer_leader_changes_total", nil).GetCounter().GetValue(); got != 0 {
		t.Fatalf("registry b leader changes = %v, want 0", got)
	}
	if got := gaugeValue(t, a, "committer_raft_term"); got != 0 {
		t.Fatalf("registry a term = %v, want 0", got)
	}

	defer func() {
		r := recover()
		var are prometheus.AlreadyRegisteredError
		err, _ := r.(error)
		if !errors.As(err, &are) {
			t.Fatalf("second New on one registry: recovered %v, want an AlreadyRegisteredError panic", r)
		}
	}()
	metrics.New(a)
}

func TestPanicsAreCountedByMethod(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.PanicRecovered("/mz_persist_committer.ProtoPersistConsensus/Head")
	m.PanicRecovered("/mz_persist_committer.ProtoPersistConsensus/Head")
	want := `# HELP committer_handler_panics_total Panics in a call's handler that were recovered into an error for that call, by gRPC method. Any is a bug to report.
# TYPE committer_handler_panics_total counter
committer_handler_panics_total{method="/mz_persist_committer.ProtoPersistConsensus/Head"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "committer_handler_panics_total"); err != nil {
		t.Fatal(err)
	}
}

// counterOf gathers the single unlabelled counter name from reg.
func counterOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("%s not gathered", name)
	return nil
}

func TestRefusedCallsAreCountedByMethodAndReason(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Refused("/committer.admin.v1.Admin/AddVoter", "permission_denied")
	m.Refused("/committer.admin.v1.Admin/AddVoter", "permission_denied")
	m.Refused("/mz_persist_committer.ProtoPersistConsensus/Head", "connection_limit")
	want := `# HELP committer_refused_calls_total Calls refused before they ran, by gRPC method and reason: permission_denied (the caller's certificate identity is not allowed) or connection_limit (its connection had too many calls in progress).
# TYPE committer_refused_calls_total counter
committer_refused_calls_total{method="/committer.admin.v1.Admin/AddVoter",reason="permission_denied"} 2
committer_refused_calls_total{method="/mz_persist_committer.ProtoPersistConsensus/Head",reason="connection_limit"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "committer_refused_calls_total"); err != nil {
		t.Fatal(err)
	}
}
