package cluster

import (
	"context"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/fsm"
)

// MarkForwardedIncoming makes ctx look like a request a peer forwarded.
func MarkForwardedIncoming(ctx context.Context) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs(forwardedKey, "1"))
}

// ForceSnapshot takes a Raft snapshot now.
func (r *Replica) ForceSnapshot() error { return r.raft.Snapshot().Error() }

// FSMState returns the replicated state.
func (r *Replica) FSMState() fsm.State { return r.fsm.State() }

// LastSnapshotIndex returns the index of the newest snapshot on disk.
func (r *Replica) LastSnapshotIndex() string { return r.raft.Stats()["last_snapshot_index"] }

// SetReadRoundHook makes h run each time a read confirmation round has
// started gathering its evidence.
func (r *Replica) SetReadRoundHook(h func()) { r.roundStarted.Store(&h) }

// Raft returns the replica's Raft instance.
func (r *Replica) Raft() *raft.Raft { return r.raft }

// ConfirmLeadership runs one read confirmation round.
func (r *Replica) ConfirmLeadership() (uint64, error) { return r.confirmLeadership() }

// ReadRounds returns how many read confirmation rounds the read gate has
// started.
func (r *Replica) ReadRounds() uint64 { return r.gate.Rounds() }

// TermCacheStats returns the ready term's cache counters.
func (r *Replica) TermCacheStats() (cache.Stats, bool) {
	lt := r.leader.Load()
	if lt == nil {
		return cache.Stats{}, false
	}
	return lt.cache.Stats(), true
}
