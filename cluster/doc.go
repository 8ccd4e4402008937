// Package cluster is one committer replica: Raft wiring, bootstrap and join,
// the leader lifecycle (barrier, fence, fresh cache, ready), the read gate,
// forwarding to the leader, and membership changes.
//
// A Replica implements backend.Consensus. On the ready leader a request runs
// through the read gate (reads) and the leader's head cache into the fenced
// storage backend; on any other replica it is forwarded, one hop, to the
// leader's gRPC address, held through elections until its deadline.
//
// Lock order: Replica.lifeMu is taken before Replica.mu; neither is held
// while calling into Raft futures, the backend, or the network.
package cluster
