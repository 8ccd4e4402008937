package cluster

import (
	"context"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/fsm"
)

// PeerClient is a connection to another replica: the calls the forwarder and the
// membership code make on it. Package rpc/peer implements it over gRPC; it is
// defined here, where it is used, so that this package depends on no
// generated service stubs.
//
// Its errors follow the forwarder's determinacy rules (docs/architecture.md
// §7): a call that never left this replica, or that the peer refused before
// acting because it does not lead, fails with a determinate error matching
// backend.ErrUnavailable or backend.ErrNotLeader; any other failure is
// returned as the peer reported it, and a consensus write whose call broke
// after it was sent is indeterminate.
type PeerClient interface {
	backend.Consensus
	// AddVoter adds m as a voter, or updates its addresses, and returns the
	// configuration index.
	AddVoter(ctx context.Context, m fsm.Member) (uint64, error)
	// RemoveServer removes a member and returns the configuration index.
	RemoveServer(ctx context.Context, id string) (uint64, error)
	// TransferLeadership hands leadership to target (any voter when empty)
	// and returns the new leader and its term.
	TransferLeadership(ctx context.Context, target string) (fsm.Member, uint64, error)
	// AdoptFence asks the peer to adopt the database's fence for the
	// cluster.
	AdoptFence(ctx context.Context, force bool) (FenceChange, error)
	// CurrentTerm asks the peer for its current Raft term, as of the moment
	// it answers; the asking leader names its own term and id.
	CurrentTerm(ctx context.Context, leaderTerm uint64, leaderID string) (uint64, error)
	// LastLeaderContact is how long ago the peer last heard from the
	// leader, as the peer itself reports; negative when it does not know.
	LastLeaderContact(ctx context.Context) (time.Duration, error)
	// ServerStats asks the peer for its own view of its Raft log, for the
	// leader's autopilot; the asking leader names its own term and id.
	ServerStats(ctx context.Context, leaderTerm uint64, leaderID string) (ServerStats, error)
}

// PeerDialer hands out connections to other replicas by gRPC address. A
// Replica owns the dialer it is given and closes it on Close.
type PeerDialer interface {
	// Dial returns a connection to addr. It does not wait for the network:
	// connection failures surface on the first call.
	Dial(addr string) (PeerClient, error)
	Close() error
}
