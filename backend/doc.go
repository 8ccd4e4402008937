// Package backend defines the persist consensus API that every layer of
// committer implements, and the error model shared by all of them.
//
// A Consensus stores, per shard, an append-only sequence of versions. The
// request path is a stack of Consensus implementations (gRPC client,
// forwarding, read gate, cache, coalescer, storage), so one conformance suite
// (package backend/conformance) checks every layer against the same contract.
//
// Storage implementations live in sub-packages: backend/postgres (PostgreSQL
// and CockroachDB through pgx) and backend/bolt (an embedded bbolt file).
package backend
