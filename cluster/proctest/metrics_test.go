package proctest_test

import (
	"math"
	"testing"

	"github.com/hacommit/committer/cluster/proctest"
)

func TestMetricValue(t *testing.T) {
	const text = `# HELP committer_fence_events_total fence attempts
# TYPE committer_fence_events_total counter
committer_fence_events_total{result="ok"} 2
committer_fence_events_total{result="refused"} 1
committer_fence_events_total_extra{result="ok"} 100
# TYPE committer_raft_term gauge
committer_raft_term 7
committer_forwarded_requests_total{op="head",result="ok"} 3
committer_forwarded_requests_total{op="compare_and_set",result="committed"} 4.5
odd{a="x,y",b="say \"hi\"",c="two\nlines \\ slash"} 9
# HELP mz_persist_committer_backing_duration_seconds storage call latency
# TYPE mz_persist_committer_backing_duration_seconds histogram
mz_persist_committer_backing_duration_seconds_bucket{op="head",le="0.005"} 1
mz_persist_committer_backing_duration_seconds_bucket{op="head",le="0.1"} 4
mz_persist_committer_backing_duration_seconds_bucket{op="head",le="+Inf"} 5
mz_persist_committer_backing_duration_seconds_sum{op="head"} 0.75
mz_persist_committer_backing_duration_seconds_count{op="head"} 5
mz_persist_committer_backing_duration_seconds_bucket{op="cas",le="0.005"} 0
mz_persist_committer_backing_duration_seconds_bucket{op="cas",le="0.1"} 2
mz_persist_committer_backing_duration_seconds_bucket{op="cas",le="+Inf"} 2
mz_persist_committer_backing_duration_seconds_sum{op="cas"} 0.125
mz_persist_committer_backing_duration_seconds_count{op="cas"} 2
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 0.25
go_gc_duration_seconds{quantile="0.5"} 0.5
go_gc_duration_seconds{quantile="1"} 1
go_gc_duration_seconds_sum 0.5
go_gc_duration_seconds_count 12
`
	for _, tc := range []struct {
		name   string
		labels map[string]string
		sum    float64
		n      int
	}{
		{"committer_fence_events_total", map[string]string{"result": "ok"}, 2, 1},
		{"committer_fence_events_total", nil, 3, 2},
		{"committer_fence_events", nil, 0, 0}, // a prefix is not the name
		{"committer_fence_events_total_extra", nil, 100, 1},
		{"committer_raft_term", nil, 7, 1},
		{"committer_raft_term", map[string]string{"op": ""}, 7, 1}, // absent counts as empty
		{"committer_raft_term", map[string]string{"op": "head"}, 0, 0},
		{"committer_forwarded_requests_total", nil, 7.5, 2},
		{"committer_forwarded_requests_total", map[string]string{"op": "head"}, 3, 1},
		{"committer_forwarded_requests_total", map[string]string{"op": "head", "result": "committed"}, 0, 0},
		{"committer_forwarded_requests_total", map[string]string{"op": "truncate"}, 0, 0},
		{"odd", map[string]string{"a": "x,y", "b": `say "hi"`, "c": "two\nlines \\ slash"}, 9, 1},
		{"missing", nil, 0, 0},

		// histogram: the series the text format names, not the family
		{"mz_persist_committer_backing_duration_seconds", nil, 0, 0},
		{"mz_persist_committer_backing_duration_seconds_count", nil, 7, 2},
		{"mz_persist_committer_backing_duration_seconds_count", map[string]string{"op": "cas"}, 2, 1},
		{"mz_persist_committer_backing_duration_seconds_sum", nil, 0.875, 2},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"op": "head"}, 10, 3},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"le": "0.1"}, 6, 2},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"le": "1e-1", "op": "head"}, 4, 1},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"le": "+Inf"}, 7, 2},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"le": "0.2"}, 0, 0},
		{"mz_persist_committer_backing_duration_seconds_bucket", map[string]string{"le": "soon"}, 0, 0},

		// summary: the bare name is the quantiles
		{"go_gc_duration_seconds", nil, 1.75, 3},
		{"go_gc_duration_seconds", map[string]string{"quantile": "0.50"}, 0.5, 1},
		{"go_gc_duration_seconds_count", nil, 12, 1},
		{"go_gc_duration_seconds_sum", nil, 0.5, 1},
	} {
		sum, n := proctest.MetricValue(text, tc.name, tc.labels)
		if sum != tc.sum || n != tc.n {
			t.Errorf("MetricValue(%s, %v) = %v, %d; want %v, %d", tc.name, tc.labels, sum, n, tc.sum, tc.n)
		}
	}
}

func TestMetricValueOfAMalformedExpositionIsNaN(t *testing.T) {
	// The first line parses; a sum of it alone would look like a real 2.
	const text = "committer_fence_events_total{result=\"ok\"} 2\ncommitter_raft_term seven\n"
	sum, n := proctest.MetricValue(text, "committer_fence_events_total", nil)
	if !math.IsNaN(sum) || n != 0 {
		t.Fatalf("MetricValue of a malformed exposition = %v, %d; want NaN, 0", sum, n)
	}
}

func TestMetricValueOfNothing(t *testing.T) {
	sum, n := proctest.MetricValue("", "committer_raft_term", nil)
	if sum != 0 || n != 0 {
		t.Fatalf("MetricValue of an empty exposition = %v, %d; want 0, 0", sum, n)
	}
}
