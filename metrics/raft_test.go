package metrics_test

import (
	"strings"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hacommit/committer/metrics"
)

// Raft's metrics, emitted through go-metrics' compat package as Raft emits
// them, reach every registry the collector is registered on, named as
// Raft names them with dots as underscores under committer_, labels kept.
func TestRaftMetricsReachTheRegistries(t *testing.T) {
	collector, err := metrics.InstallRaftMetrics()
	if err != nil {
		t.Fatal(err)
	}
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for _, reg := range regs {
		reg.MustRegister(collector)
	}
	gometrics.IncrCounter([]string{"raft", "apply"}, 1)
	gometrics.IncrCounter([]string{"raft", "apply"}, 1)
	gometrics.MeasureSinceWithLabels([]string{"raft", "replication", "heartbeat"}, time.Now().Add(-time.Second),
		[]gometrics.Label{{Name: "peer_id", Value: "r2"}})
	for i, reg := range regs {
		n, err := testutil.GatherAndCount(reg, "committer_raft_apply", "committer_raft_replication_heartbeat")
		if err != nil || n != 2 {
			t.Fatalf("registry %d: %d raft series, %v; want 2", i, n, err)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP committer_raft_apply committer_raft_apply
# TYPE committer_raft_apply counter
committer_raft_apply 2
`), "committer_raft_apply"); err != nil {
			t.Errorf("registry %d: %v", i, err)
		}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range families {
			if mf.GetName() != "committer_raft_replication_heartbeat" {
				continue
			}
			for _, m := range mf.GetMetric() {
				s := m.GetSummary()
				if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetName() == "peer_id" && m.GetLabel()[0].GetValue() == "r2" &&
					s.GetSampleCount() == 1 && s.GetSampleSum() >= 1000 { // milliseconds
					found = true
				}
			}
		}
		if !found {
			t.Errorf("registry %d: no committer_raft_replication_heartbeat{peer_id=\"r2\"} summary of one sample of at least 1000 ms", i)
		}
	}
}

func TestHeartbeatFailuresByPeer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.HeartbeatFailed("r2")
	m.HeartbeatFailed("r2")
	m.HeartbeatFailed("r3")
	const head = `
# HELP committer_raft_heartbeat_failures_total Heartbeats this replica, leading, failed to deliver, by peer. Raft's own metrics time the heartbeats that succeed (committer_raft_replication_heartbeat).
# TYPE committer_raft_heartbeat_failures_total counter
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(head+`committer_raft_heartbeat_failures_total{peer_id="r2"} 2
committer_raft_heartbeat_failures_total{peer_id="r3"} 1
`), "committer_raft_heartbeat_failures_total"); err != nil {
		t.Error(err)
	}
	m.ForgetPeer("r3")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(head+`committer_raft_heartbeat_failures_total{peer_id="r2"} 2
`), "committer_raft_heartbeat_failures_total"); err != nil {
		t.Error(err)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewBuildInfo(metrics.BuildInfo{Version: "v1.0.0", Revision: "abc", GoVersion: "go1.26.0"}))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP committer_build_info Always 1; its labels name the running build: version, revision and the Go version that built it.
# TYPE committer_build_info gauge
committer_build_info{go_version="go1.26.0",revision="abc",version="v1.0.0"} 1
`)); err != nil {
		t.Error(err)
	}
}
