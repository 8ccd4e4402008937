// Package cache is the leader's monotonic cache of shard heads, as a
// backend.Consensus layer over the storage backend.
//
// The leader is the only writer while its fence holds, so a committed CaS
// tells it the shard's exact latest version. The cache keeps that version,
// answers Head from it, and answers a CaS whose expected seqno is already
// behind the cached head with "mismatch" without a round trip: a shard's head
// never decreases, so the mismatch is true at the moment of the answer
// (docs/architecture.md §3, Why cached heads are linearizable, and §4, CaS
// fast-fail from the cache).
//
// The cache is only correct while every write goes through it; the owner
// clears it whenever leadership changes hands.
package cache
