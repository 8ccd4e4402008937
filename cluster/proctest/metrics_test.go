package proctest_test

import (
	"testing"

	"github.com/hacommit/committer/cluster/proctest"
)

func TestMetricValue(t *testing.T) {
	const text = `# HELP committer_fence_events_total fence attempts
# TYPE committer_fence_events_total counter
committer_fence_events_total{result="ok"} 2
committer_fence_events_total{result="refused"} 1
committer_fence_events_total_extra{result="ok"} 100
committer_raft_term 7
committer_forwarded_requests_total{op="head",result="ok"} 3
committer_forwarded_requests_total{op="compare_and_set",result="committed"} 4.5
odd{a="x,y",b="say \"hi\""} 9
`
	for _, tc := range []struct {
		name   string
		labels map[string]string
		sum    float64
		n      int
	}{
		{"committer_fence_events_total", map[string]string{"result": "ok"}, 2, 1},
		{"committer_fence_events_total", nil, 3, 2},
		{"committer_raft_term", nil, 7, 1},
		{"committer_forwarded_requests_total", nil, 7.5, 2},
		{"committer_forwarded_requests_total", map[string]string{"op": "head"}, 3, 1},
		{"committer_forwarded_requests_total", map[string]string{"op": "truncate"}, 0, 0},
		{"odd", map[string]string{"a": "x,y", "b": `say "hi"`}, 9, 1},
		{"missing", nil, 0, 0},
	} {
		sum, n := proctest.MetricValue(text, tc.name, tc.labels)
		if sum != tc.sum || n != tc.n {
			t.Errorf("MetricValue(%s, %v) = %v, %d; want %v, %d", tc.name, tc.labels, sum, n, tc.sum, tc.n)
		}
	}
}
