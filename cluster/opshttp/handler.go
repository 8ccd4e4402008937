package opshttp

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hacommit/committer/cluster"
)

// Replica is what /readyz asks of a replica: the readiness predicate the
// gRPC health service follows too (cluster.Replica.Readiness).
type Replica interface {
	Readiness() cluster.Readiness
}

// Readiness is the JSON body of /readyz; its status code is 200 when Ready
// and 503 otherwise.
type Readiness struct {
	// Ready: the replica serves, directly (the fenced leader) or by
	// forwarding (a follower whose leader has recorded that it is ready in
	// the current term). The gRPC health service reports the same.
	Ready bool `json:"ready"`
	// Leader: Raft says this replica leads (ready or not).
	Leader bool `json:"leader"`
	// LeaderKnown: the replica knows a leader.
	LeaderKnown bool `json:"leader_known"`
	// Reason says why the replica is not ready; absent when it is.
	Reason string `json:"reason,omitempty"`
}

// Handler returns the mux for the operations port.
func Handler(r Replica, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rd := r.Readiness()
		b := Readiness{Ready: rd.Ready, Leader: rd.Leader, LeaderKnown: rd.LeaderKnown, Reason: rd.Reason}
		w.Header().Set("Content-Type", "application/json")
		if !b.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(b)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
