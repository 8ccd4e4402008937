package cluster

import (
	"context"

	"google.golang.org/grpc/metadata"

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

// CurrentTerm returns Raft's current term.
func (r *Replica) CurrentTerm() uint64 { return r.raft.CurrentTerm() }
