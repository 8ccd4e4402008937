// Package opshttp is a replica's operations HTTP endpoint: /healthz (the
// process is up), /readyz (the replica is in a cluster with a known leader,
// and a leader only once it has fenced the backend), /metrics (Prometheus)
// and /debug/pprof.
package opshttp
