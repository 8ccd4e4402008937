package statslog

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hacommit/committer/metrics"
)

// The series the log is computed from, as package metrics names them.
const (
	rpcTotal    = "mz_persist_committer_rpc_total"
	rpcDuration = "mz_persist_committer_rpc_duration_seconds"
	inflight    = "mz_persist_committer_inflight_rpcs"
	cacheHits   = "mz_persist_committer_cache_hits_total"
	cacheMisses = "mz_persist_committer_cache_misses_total"
	forwarded   = "committer_forwarded_requests_total"
)

// ops are the operations the log reports, in this order.
var ops = []string{
	metrics.OpHead, metrics.OpScan, metrics.OpCompareAndSet, metrics.OpCompareAndSetMulti,
	metrics.OpTruncate, metrics.OpListKeys,
}

// Message is the message of every stats record.
const Message = "stats"

// Logger logs the stats of one registry. Tick is not safe for concurrent
// use; Run calls it from one goroutine.
type Logger struct {
	g        prometheus.Gatherer
	log      *slog.Logger
	interval time.Duration
	prev     totals
}

// totals are the cumulative values of one gather.
type totals struct {
	calls     map[string]float64 // by op, every result
	durSum    map[string]float64 // by op, seconds
	durCount  map[string]float64
	cas       map[string]float64 // compare_and_set calls by result
	errors    float64            // determinate and indeterminate, every op
	hits      float64
	misses    float64
	forwarded float64
	inflight  float64 // a gauge: its current value, not a total
}

// New returns a Logger of g's series that logs to log; interval is what the
// records say they cover. The first Tick reports what happened since New.
func New(g prometheus.Gatherer, log *slog.Logger, interval time.Duration) *Logger {
	l := &Logger{g: g, log: log, interval: interval}
	l.prev = l.gather()
	return l
}

// Run ticks every interval until ctx ends. With an interval of 0 or less it
// returns at once: the log is off.
func (l *Logger) Run(ctx context.Context) {
	if l.interval <= 0 {
		return
	}
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.Tick()
		}
	}
}

// Tick logs one record with what changed since the previous Tick (or New).
func (l *Logger) Tick() {
	cur := l.gather()
	prev := l.prev
	l.prev = cur

	counts := make([]any, 0, len(ops))
	means := make([]any, 0, len(ops))
	for _, op := range ops {
		counts = append(counts, slog.Int64(op, count(delta(cur.calls[op], prev.calls[op]))))
		if n := delta(cur.durCount[op], prev.durCount[op]); n > 0 {
			mean := delta(cur.durSum[op], prev.durSum[op]) / n
			means = append(means, slog.Float64(op, round3(mean*1000)))
		}
	}
	attrs := []any{
		slog.String("interval", l.interval.String()),
		slog.Group("ops", counts...),
	}
	if len(means) > 0 {
		attrs = append(attrs, slog.Group("mean_ms", means...))
	}
	casErrors := delta(cur.cas[metrics.ResultDeterminateError], prev.cas[metrics.ResultDeterminateError]) +
		delta(cur.cas[metrics.ResultIndeterminateError], prev.cas[metrics.ResultIndeterminateError])
	attrs = append(attrs,
		slog.Group("cas",
			slog.Int64("committed", count(delta(cur.cas[metrics.ResultCommitted], prev.cas[metrics.ResultCommitted]))),
			slog.Int64("mismatch", count(delta(cur.cas[metrics.ResultMismatch], prev.cas[metrics.ResultMismatch]))),
			slog.Int64("errors", count(casErrors))),
		slog.Int64("errors", count(delta(cur.errors, prev.errors))),
	)
	hits, misses := delta(cur.hits, prev.hits), delta(cur.misses, prev.misses)
	if hits+misses > 0 {
		attrs = append(attrs, slog.Float64("cache_hit_rate", round3(hits/(hits+misses))))
	}
	attrs = append(attrs,
		slog.Int64("forwarded", count(delta(cur.forwarded, prev.forwarded))),
		slog.Int64("inflight", count(cur.inflight)),
	)
	l.log.Info(Message, attrs...)
}

// delta is cur - prev for a counter; a counter below its previous value was
// reset (a new process, never within one registry), and counts from zero.
func delta(cur, prev float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func count(v float64) int64 { return int64(math.Round(v)) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// gather reads the series the log needs. A registry that fails to gather
// some collector still returns the others; the log uses what it got.
func (l *Logger) gather() totals {
	t := totals{
		calls: map[string]float64{}, durSum: map[string]float64{}, durCount: map[string]float64{},
		cas: map[string]float64{},
	}
	families, err := l.g.Gather()
	if err != nil {
		l.log.Debug("stats: gathering metrics", "err", err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			op, result := label(m, "op"), label(m, "result")
			switch mf.GetName() {
			case rpcTotal:
				v := m.GetCounter().GetValue()
				t.calls[op] += v
				if op == metrics.OpCompareAndSet {
					t.cas[result] += v
				}
				if result == metrics.ResultDeterminateError || result == metrics.ResultIndeterminateError {
					t.errors += v
				}
			case rpcDuration:
				t.durSum[op] += m.GetHistogram().GetSampleSum()
				t.durCount[op] += float64(m.GetHistogram().GetSampleCount())
			case inflight:
				t.inflight += m.GetGauge().GetValue()
			case cacheHits:
				t.hits += m.GetCounter().GetValue()
			case cacheMisses:
				t.misses += m.GetCounter().GetValue()
			case forwarded:
				t.forwarded += m.GetCounter().GetValue()
			}
		}
	}
	return t
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}
