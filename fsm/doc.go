// Package fsm is the Raft finite-state machine of a committer cluster: the
// small amount of cluster metadata that every replica must agree on.
//
// It holds the members (their Raft, gRPC and HTTP addresses), the history of
// leader epochs, and hints of hot shards that a new leader prefetches. Shard
// data is not replicated through Raft: it lives in the consensus backend,
// written only by the fenced leader. Commands and snapshots are versioned JSON
// so that a later release can read what an older one wrote.
package fsm
