package statslog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/metrics/statslog"
)

// lines is a JSON log sink whose records can be read back as maps.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // the only field that cannot be known
			}
			return a
		},
	}))
}

// records returns the records logged since the last call.
func (l *lines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	l.buf.Reset()
	return out
}

// want parses the expected record, so that numbers compare as JSON's.
func want(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("expected record %q: %v", js, err)
	}
	return m
}

func wantOne(t *testing.T, got []map[string]any, js string) {
	t.Helper()
	w := want(t, js)
	if len(got) != 1 || !reflect.DeepEqual(got[0], w) {
		gotJSON, _ := json.Marshal(got)
		t.Fatalf("records = %s\nwant one: %s", gotJSON, js)
	}
}

// registry holds series named and labelled as package metrics names them,
// set to known values by hand.
type registry struct {
	reg                            *prometheus.Registry
	calls, hits, misses, forwarded *prometheus.CounterVec
	duration                       *prometheus.HistogramVec
	inflight                       prometheus.Gauge
}

func newRegistry() *registry {
	r := &registry{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mz_persist_committer_rpc_total", Help: "h"},
			[]string{"op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mz_persist_committer_rpc_duration_seconds", Help: "h"},
			[]string{"op"}),
		inflight:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "mz_persist_committer_inflight_rpcs", Help: "h"}),
		hits:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mz_persist_committer_cache_hits_total", Help: "h"}, []string{"op"}),
		misses:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mz_persist_committer_cache_misses_total", Help: "h"}, []string{"op"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "committer_forwarded_requests_total", Help: "h"}, []string{"op", "result"}),
	}
	r.reg.MustRegister(r.calls, r.duration, r.inflight, r.hits, r.misses, r.forwarded)
	return r
}

func (r *registry) call(op, result string, n int, seconds float64) {
	r.calls.WithLabelValues(op, result).Add(float64(n))
	for range n {
		r.duration.WithLabelValues(op).Observe(seconds)
	}
}

// Each record reports what happened since the previous one (the first:
// since New), from the registry's series: calls per operation, their mean
// latency (only for operations that had calls), the CaS outcomes, errors of
// every operation, the cache hit rate (only when the cache was asked),
// forwards, and the calls in flight at the tick.
func TestTickReportsTheIntervalFromTheRegistry(t *testing.T) {
	r := newRegistry()
	// Before New: not part of any interval.
	r.call(metrics.OpHead, metrics.ResultOK, 5, 0.1)
	r.hits.WithLabelValues(metrics.OpHead).Add(100)
	r.forwarded.WithLabelValues(metrics.OpHead, metrics.ResultOK).Add(7)

	var out lines
	l := statslog.New(r.reg, out.logger(), time.Minute)

	r.call(metrics.OpHead, metrics.ResultOK, 2, 0.002)
	r.call(metrics.OpHead, metrics.ResultOK, 1, 0.008)
	r.call(metrics.OpHead, metrics.ResultDeterminateError, 1, 0.008)
	r.call(metrics.OpCompareAndSet, metrics.ResultCommitted, 6, 0.0005)
	r.call(metrics.OpCompareAndSet, metrics.ResultMismatch, 2, 0.0005)
	r.call(metrics.OpCompareAndSet, metrics.ResultDeterminateError, 1, 0.0005)
	r.call(metrics.OpCompareAndSet, metrics.ResultIndeterminateError, 1, 0.0005)
	r.call(metrics.OpListKeys, metrics.ResultIndeterminateError, 1, 0.25)
	r.hits.WithLabelValues(metrics.OpHead).Add(9)
	r.misses.WithLabelValues(metrics.OpHead).Add(1)
	r.hits.WithLabelValues(metrics.OpCompareAndSet).Add(8)
	r.misses.WithLabelValues(metrics.OpCompareAndSet).Add(2)
	r.forwarded.WithLabelValues(metrics.OpHead, metrics.ResultOK).Add(3)
	r.forwarded.WithLabelValues(metrics.OpCompareAndSet, metrics.ResultCommitted).Add(1)
	r.inflight.Set(3)
	l.Tick()
	wantOne(t, out.records(t), `{"level":"INFO","msg":"stats","interval":"1m0s",
		"ops":{"head":4,"scan":0,"compare_and_set":10,"compare_and_set_multi":0,"truncate":0,"list_keys":1},
		"mean_ms":{"head":5,"compare_and_set":0.5,"list_keys":250},
		"cas":{"committed":6,"mismatch":2,"errors":2},
		"errors":4,"cache_hit_rate":0.85,"forwarded":4,"inflight":3}`)

	// A quiet interval: zero counts, no means, no hit rate.
	r.inflight.Set(0)
	l.Tick()
	wantOne(t, out.records(t), `{"level":"INFO","msg":"stats","interval":"1m0s",
		"ops":{"head":0,"scan":0,"compare_and_set":0,"compare_and_set_multi":0,"truncate":0,"list_keys":0},
		"cas":{"committed":0,"mismatch":0,"errors":0},
		"errors":0,"forwarded":0,"inflight":0}`)

	r.call(metrics.OpScan, metrics.ResultOK, 3, 0.001)
	r.misses.WithLabelValues(metrics.OpHead).Add(4)
	l.Tick()
	wantOne(t, out.records(t), `{"level":"INFO","msg":"stats","interval":"1m0s",
		"ops":{"head":0,"scan":3,"compare_and_set":0,"compare_and_set_multi":0,"truncate":0,"list_keys":0},
		"mean_ms":{"scan":1},
		"cas":{"committed":0,"mismatch":0,"errors":0},
		"errors":0,"cache_hit_rate":0,"forwarded":0,"inflight":0}`)
}

// The names the log reads are the ones package metrics exports: calls
// through its instrumented store show up with their outcomes.
func TestTickReadsTheReplicaMetrics(t *testing.T) {
	store, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	var out lines
	l := statslog.New(reg, out.logger(), 10*time.Second)

	c := m.InstrumentRPC(store)
	ctx := context.Background()
	for i, want := range []bool{true, true, false} {
		seq := uint64(i)
		if !want {
			seq = 7
		}
		if ok, err := c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: seq, Data: []byte("x")}); ok != want || err != nil {
			t.Fatalf("cas %d = %v, %v; want %v", i, ok, err, want)
		}
	}
	if _, err := c.Head(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Truncate(ctx, "s", 9); err == nil {
		t.Fatal("truncate above the head succeeded")
	}
	m.Forwarded(metrics.OpHead, metrics.ResultOK, time.Millisecond)
	m.ObserveCache(func() (metrics.CacheStats, bool) {
		return metrics.CacheStats{Instance: 1, HeadHits: 3, HeadMisses: 1}, true
	})
	l.Tick()
	recs := out.records(t)
	if len(recs) != 1 {
		t.Fatalf("records = %v; want one", recs)
	}
	got := recs[0]
	means, ok := got["mean_ms"].(map[string]any)
	if !ok || len(means) != 3 || means["head"] == nil || means["compare_and_set"] == nil || means["truncate"] == nil {
		t.Fatalf("mean_ms = %v; want head, compare_and_set and truncate", got["mean_ms"])
	}
	delete(got, "mean_ms")
	wantOne(t, []map[string]any{got}, `{"level":"INFO","msg":"stats","interval":"10s",
		"ops":{"head":1,"scan":0,"compare_and_set":3,"compare_and_set_multi":0,"truncate":1,"list_keys":0},
		"cas":{"committed":2,"mismatch":1,"errors":0},
		"errors":1,"cache_hit_rate":0.75,"forwarded":1,"inflight":0}`)
}

// An interval of 0 turns the log off: Run returns at once and logs
// nothing. A positive one ends with its context.
func TestRunWithoutIntervalIsOff(t *testing.T) {
	r := newRegistry()
	var out lines
	done := make(chan struct{})
	go func() {
		defer close(done)
		statslog.New(r.reg, out.logger(), 0).Run(context.Background()) // never cancelled
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run with interval 0 did not return")
	}
	if recs := out.records(t); len(recs) != 0 {
		t.Fatalf("records with the log off = %v", recs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		statslog.New(r.reg, out.logger(), time.Hour).Run(ctx)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
