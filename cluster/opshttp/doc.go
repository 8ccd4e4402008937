// Package opshttp is a replica's operations HTTP endpoint: /healthz (the
// process is up), /readyz (the replica serves: the ready leader, or a
// follower whose leader has recorded that it is ready in the current term;
// the predicate is cluster.Replica.Readiness, which the gRPC health service
// follows too), /metrics (Prometheus) and /debug/pprof.
package opshttp
