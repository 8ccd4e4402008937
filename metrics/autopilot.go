package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// AutopilotState is the leader's autopilot's latest assessment, as the
// metrics show it.
type AutopilotState struct {
	Healthy          bool
	FailureTolerance int
	Members          []AutopilotMember
}

// AutopilotMember is one member of an AutopilotState.
type AutopilotMember struct {
	ID      string
	Healthy bool
	// TrailingLogs is how many entries the member's log trails the
	// leader's.
	TrailingLogs uint64
}

// autopilotCollector exports the assessment set last. It is a collector,
// not gauges, so that every scrape sees one assessment whole, a member
// that left has no series at all, and a replica that does not lead (whose
// autopilot is stopped) exports none of these series.
type autopilotCollector struct {
	state                                             atomic.Pointer[AutopilotState]
	healthy, tolerance, memberHealthy, memberTrailing *prometheus.Desc
}

func newAutopilotCollector(reg prometheus.Registerer) *autopilotCollector {
	c := &autopilotCollector{
		healthy: prometheus.NewDesc(clusterNamespace+"_autopilot_healthy",
			"1 while every member is healthy as the leader's autopilot judges it, 0 otherwise; exported by the leader only.", nil, nil),
		tolerance: prometheus.NewDesc(clusterNamespace+"_autopilot_failure_tolerance",
			"How many voters could fail with the healthy voters still a quorum, as the leader's autopilot judges it; exported by the leader only.", nil, nil),
		memberHealthy: prometheus.NewDesc(clusterNamespace+"_autopilot_member_healthy",
			"1 for each member the leader's autopilot judges healthy, 0 for the others; exported by the leader only, for the current members.", []string{"id"}, nil),
		memberTrailing: prometheus.NewDesc(clusterNamespace+"_autopilot_member_trailing_logs",
			"Raft log entries each member's log trails the leader's, as the member last reported its own; exported by the leader only, for the current members.", []string{"id"}, nil),
	}
	reg.MustRegister(c)
	return c
}

func (c *autopilotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
	ch <- c.tolerance
	ch <- c.memberHealthy
	ch <- c.memberTrailing
}

func (c *autopilotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.state.Load()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, boolValue(s.Healthy))
	ch <- prometheus.MustNewConstMetric(c.tolerance, prometheus.GaugeValue, float64(s.FailureTolerance))
	for _, m := range s.Members {
		ch <- prometheus.MustNewConstMetric(c.memberHealthy, prometheus.GaugeValue, boolValue(m.Healthy), m.ID)
		ch <- prometheus.MustNewConstMetric(c.memberTrailing, prometheus.GaugeValue, float64(m.TrailingLogs), m.ID)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SetAutopilot publishes the leader's autopilot's latest assessment
// (committer_autopilot_*); the series of members not in s disappear.
func (m *Metrics) SetAutopilot(s AutopilotState) { m.autopilot.state.Store(&s) }

// ClearAutopilot removes every committer_autopilot_* series: this replica's
// autopilot stopped (it no longer leads).
func (m *Metrics) ClearAutopilot() { m.autopilot.state.Store(nil) }
