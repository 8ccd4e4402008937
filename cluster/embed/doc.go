// Package embed assembles one committer replica: the instrumented backend,
// the Prometheus registry and metrics, the Raft replica (package cluster)
// with its peer connections (package rpc/peer), the gRPC server carrying the
// consensus, admin, health and reflection services, and the HTTP operations
// endpoint (/healthz, /readyz, /metrics, pprof). The gRPC health of the
// consensus service and of the whole server follows the replica's readiness
// predicate, as /readyz does (docs/architecture.md §8.2); the admin and peer
// services serve while the process does.
//
// It is the one place where a replica is wired: `committer serve`,
// `committer dev` and the in-process cluster tests all start replicas with
// Start, so an option added to Config reaches every one of them. Shutdown
// leaves gracefully: leadership is handed away while the gRPC server still
// forwards, in-flight calls drain, then Raft and the HTTP server stop.
package embed
