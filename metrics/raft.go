package metrics

import "github.com/prometheus/client_golang/prometheus"

func newHeartbeatFailures() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: clusterNamespace, Name: "raft_heartbeat_failures_total",
		Help: "Heartbeats this replica, leading, failed to deliver, by peer. Raft's own metrics time the heartbeats that succeed (committer_raft_replication_heartbeat).",
	}, []string{"peer_id"})
}

// HeartbeatFailed counts one failed heartbeat to peer. It is called from
// Raft's replication goroutine, so it must stay this cheap.
func (m *Metrics) HeartbeatFailed(peer string) { m.heartbeatFailures.WithLabelValues(peer).Inc() }

// ForgetPeer drops the per-peer series of a peer that left the
// configuration.
func (m *Metrics) ForgetPeer(peer string) { m.heartbeatFailures.DeleteLabelValues(peer) }
