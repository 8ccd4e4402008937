package metrics_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacommit/committer/metrics"
)

// autopilotSeries gathers reg's committer_autopilot_* samples as
// "name{id}" -> value.
func autopilotSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			if !strings.HasPrefix(name, "committer_autopilot_") {
				continue
			}
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			out[name] = m.GetGauge().GetValue()
		}
	}
	return out
}

// The autopilot series show exactly the last assessment: members that left
// lose their series, and a replica whose autopilot stopped exports none.
func TestAutopilotSeriesFollowTheAssessment(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	if got := autopilotSeries(t, reg); len(got) != 0 {
		t.Fatalf("before any assessment: %v", got)
	}
	m.SetAutopilot(metrics.AutopilotState{Healthy: false, FailureTolerance: 1, Members: []metrics.AutopilotMember{
		{ID: "r1", Healthy: true}, {ID: "r2", Healthy: true, TrailingLogs: 3}, {ID: "r3", Healthy: false, TrailingLogs: 900},
	}})
	want := map[string]float64{
		"committer_autopilot_healthy": 0, "committer_autopilot_failure_tolerance": 1,
		"committer_autopilot_member_healthy{r1}": 1, "committer_autopilot_member_healthy{r2}": 1, "committer_autopilot_member_healthy{r3}": 0,
		"committer_autopilot_member_trailing_logs{r1}": 0, "committer_autopilot_member_trailing_logs{r2}": 3, "committer_autopilot_member_trailing_logs{r3}": 900,
	}
	if got := autopilotSeries(t, reg); !maps.Equal(got, want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	m.SetAutopilot(metrics.AutopilotState{Healthy: true, FailureTolerance: 0, Members: []metrics.AutopilotMember{{ID: "r1", Healthy: true}, {ID: "r2", Healthy: true}}})
	got := autopilotSeries(t, reg)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{
		"committer_autopilot_failure_tolerance", "committer_autopilot_healthy",
		"committer_autopilot_member_healthy{r1}", "committer_autopilot_member_healthy{r2}",
		"committer_autopilot_member_trailing_logs{r1}", "committer_autopilot_member_trailing_logs{r2}",
	}) || got["committer_autopilot_healthy"] != 1 {
		t.Fatalf("after r3 left: %v", got)
	}
	m.ClearAutopilot()
	if got := autopilotSeries(t, reg); len(got) != 0 {
		t.Fatalf("after autopilot stopped: %v", got)
	}
}
