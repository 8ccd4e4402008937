package opshttp

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Replica is what /readyz asks of a replica.
type Replica interface {
	// IsLeader reports whether Raft says this replica leads.
	IsLeader() bool
	// Ready reports whether it is the fenced, serving leader.
	Ready() bool
	// LeaderKnown reports whether it knows a leader.
	LeaderKnown() bool
}

// Readiness is the JSON body of /readyz; its status code is 200 when Ready
// and 503 otherwise.
type Readiness struct {
	// Ready: the replica serves, directly (the fenced leader) or by
	// forwarding (a follower that knows a leader).
	Ready bool `json:"ready"`
	// Leader: Raft says this replica leads (ready or not).
	Leader bool `json:"leader"`
	// LeaderKnown: the replica knows a leader.
	LeaderKnown bool `json:"leader_known"`
}

// Handler returns the mux for the operations port.
func Handler(r Replica, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		b := Readiness{Leader: r.IsLeader(), LeaderKnown: r.LeaderKnown()}
		// A follower serves (by forwarding) once it knows a leader; a leader
		// serves only after its fence.
		b.Ready = b.LeaderKnown && (!b.Leader || r.Ready())
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
