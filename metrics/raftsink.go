package metrics

import (
	"fmt"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprometheus "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// RaftMetricsExpiration is how long a series of Raft's own metrics stays
// exported after its last update. Longer than any scrape interval and the
// usual rate() windows, so an idle moment does not break them; a departed
// peer's series go after it.
const RaftMetricsExpiration = 10 * time.Minute

// InstallRaftMetrics makes hashicorp/raft's own metrics (and raft-boltdb's)
// exported, and returns the collector they are read from, to be registered
// on each replica's registry.
//
// Raft emits through github.com/hashicorp/go-metrics/compat, which forwards
// to github.com/armon/go-metrics unless the binary is built with the
// hashicorpmetrics tag; using compat here follows whichever of the two is
// compiled in. Its destination is process-global by design, so this installs
// it for the whole process: call it once, from the command that runs the
// replicas. Calling it again replaces the destination; the collector of the
// earlier call then stops receiving.
//
// The series are Raft's names with dots as underscores under committer_
// (committer_raft_commitTime, committer_raft_fsm_apply,
// committer_raft_replication_appendEntries_rpc{peer_id},
// committer_raft_replication_heartbeat{peer_id},
// committer_raft_transition_heartbeat_timeout, ...; raft-boltdb's are
// committer_raft_boltdb_*). Timings are summaries in milliseconds,
// go-metrics' unit. In a process running several replicas (committer dev)
// the series are the process's, summed over its replicas, and every
// replica's /metrics shows the same ones.
func InstallRaftMetrics() (prometheus.Collector, error) {
	// The sink insists on registering itself somewhere; a private registry
	// keeps it off the global one. Replicas register it on their own.
	sink, err := gmprometheus.NewPrometheusSinkFrom(gmprometheus.PrometheusOpts{
		Expiration: RaftMetricsExpiration,
		Registerer: prometheus.NewRegistry(),
		Name:       "committer_raft_metrics_sink",
	})
	if err != nil {
		return nil, fmt.Errorf("raft metrics sink: %w", err)
	}
	// The service name prefixes every key: committer.raft.commitTime is
	// exported as committer_raft_commitTime, beside committer's own series.
	cfg := gometrics.DefaultConfig(clusterNamespace)
	// The Go collector already exports the runtime, and a host name prefix
	// or label would change the series' names from host to host.
	cfg.EnableHostname = false
	cfg.EnableHostnameLabel = false
	cfg.EnableRuntimeMetrics = false
	cfg.EnableServiceLabel = false
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return nil, fmt.Errorf("raft metrics: %w", err)
	}
	return sink, nil
}
