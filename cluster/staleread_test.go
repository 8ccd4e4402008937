package cluster_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
)

var errFrozen = errors.New("frozen by the test")

// freezingTransport wraps a leader's Raft transport. Once frozen, it acts
// like a process that stopped right after sending a heartbeat: the next
// AppendEntries to holdPeer is delivered and its response is held, every
// other outgoing RPC fails without being sent, and every incoming RPC is
// refused. thaw hands the held response to Raft.
type freezingTransport struct {
	raft.Transport
	holdPeer raft.ServerID

	mu      sync.Mutex
	frozen  bool
	holding bool          // an AppendEntries to holdPeer was claimed
	held    chan struct{} // closed once its response is in hand
	thaw    chan struct{} // closed to release it

	heldErr     error
	heldOK      bool
	heldEntries int
}

func newFreezingTransport(inner raft.Transport, holdPeer raft.ServerID) *freezingTransport {
	return &freezingTransport{Transport: inner, holdPeer: holdPeer, held: make(chan struct{}), thaw: make(chan struct{})}
}

// thawOnce releases the held response; later calls do nothing.
func (f *freezingTransport) thawOnce() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.thaw:
	default:
		close(f.thaw)
	}
}

func (f *freezingTransport) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
}

// unfreeze lets every RPC through again (a held response stays held until
// thaw).
func (f *freezingTransport) unfreeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = false
}

func (f *freezingTransport) isFrozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen
}

// claimHold reports whether this call is the one whose response is held.
func (f *freezingTransport) claimHold(id raft.ServerID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen || f.holding || id != f.holdPeer {
		return false
	}
	f.holding = true
	return true
}

func (f *freezingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if f.claimHold(id) {
		err := f.Transport.AppendEntries(id, target, args, resp)
		f.heldErr, f.heldOK, f.heldEntries = err, resp.Success, len(args.Entries)
		close(f.held)
		<-f.thaw
		return err
	}
	if f.isFrozen() {
		return errFrozen
	}
	return f.Transport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline is refused so that every append goes through
// AppendEntries, where the freeze can see it.
func (f *freezingTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (f *freezingTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if f.isFrozen() {
		return errFrozen
	}
	return f.Transport.RequestVote(id, target, args, resp)
}

func (f *freezingTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if f.isFrozen() {
		return errFrozen
	}
	return f.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

func (f *freezingTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if f.isFrozen() {
		return errFrozen
	}
	return f.Transport.InstallSnapshot(id, target, args, resp, data)
}

func (f *freezingTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if f.isFrozen() {
		return errFrozen
	}
	return f.Transport.TimeoutNow(id, target, args, resp)
}

// Consumer refuses incoming RPCs while frozen: the new leader's appends and
// the candidates' votes never reach the frozen leader.
func (f *freezingTransport) Consumer() <-chan raft.RPC {
	in := f.Transport.Consumer()
	out := make(chan raft.RPC)
	go func() {
		for rpc := range in {
			if f.isFrozen() {
				rpc.Respond(nil, errFrozen)
				continue
			}
			out <- rpc
		}
	}()
	return out
}

func (f *freezingTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	f.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		if f.isFrozen() {
			rpc.Respond(nil, errFrozen)
			return
		}
		cb(rpc)
	})
}

// A leader that stopped right after a heartbeat holds that heartbeat's
// acknowledgement, from before it stopped. While it is stopped the others
// elect a new leader, which commits a write. A read then reaches the old
// leader. Its confirmation round must not count the old acknowledgement as
// evidence that it still leads: the read must not return the old value.
//
// The freeze is deterministic: the old leader's transport holds the ack
// until the read's round has started, and its long leader lease keeps it
// believing it leads meanwhile, as a paused process would.
func TestReadConfirmationIgnoresAcksFromBeforeTheRead(t *testing.T) {
	var freezer *freezingTransport
	slow := cluster.Timeouts{Heartbeat: 5 * time.Second, Election: 5 * time.Second, LeaderLease: 5 * time.Second}
	fast := cluster.Timeouts{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond, LeaderLease: 100 * time.Millisecond}
	tc := startCluster(t, 3, func(c *embed.Config) {
		c.Timeouts = fast
		if c.ID == "r1" {
			c.Timeouts = slow
			c.WrapRaftTransport = func(inner raft.Transport) raft.Transport {
				freezer = newFreezingTransport(inner, "r2")
				return freezer
			}
		}
	})
	old := tc.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tc.makeLeader(ctx, old)
	if l := tc.leader(); l != old {
		t.Fatalf("leader %s, want %s", l.id, old.id)
	}
	if ok, err := old.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("v0")}); !ok || err != nil {
		t.Fatalf("cas v0 = %v, %v", ok, err)
	}

	freezer.freeze()
	select {
	case <-freezer.held:
	case <-ctx.Done():
		t.Fatal("no heartbeat to r2 was sent after the freeze")
	}
	defer freezer.thawOnce()

	// r2 and r3 elect a new leader, which fences and commits v1.
	var next *node
	for next == nil {
		for _, nd := range tc.nodes[1:] {
			if nd.replica.Ready() {
				next = nd
			}
		}
		if ctx.Err() != nil {
			t.Fatal("r2 and r3 elected no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, err := next.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 1, Data: []byte("v1")}); !ok || err != nil {
		t.Fatalf("cas v1 on the new leader %s = %v, %v", next.id, ok, err)
	}
	if !old.replica.IsLeader() {
		t.Fatal("the frozen leader already stepped down; the window is not open")
	}

	// The read reaches the old leader; once its round has started, the held
	// acknowledgement (from before the read) arrives.
	var once sync.Once
	old.replica.SetReadRoundHook(func() {
		once.Do(func() {
			// Raft takes the round's verify request from a buffered
			// channel; its leader loop chooses at random among the
			// channels that are ready. Each Barrier below returns once
			// the loop has taken it, so after n of them the verify request
			// is still unregistered with probability 2^-n.
			for range 40 {
				old.replica.Raft().Barrier(0)
			}
			freezer.thawOnce()
		})
	})
	if freezer.heldErr != nil || !freezer.heldOK {
		t.Fatalf("the held acknowledgement: err %v, success %v; want a successful one", freezer.heldErr, freezer.heldOK)
	}
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	v, err := old.replica.Head(rctx, "k")
	if err == nil && (v == nil || string(v.Data) != "v1") {
		t.Fatalf("read on the deposed leader returned %+v after v1 was committed: a stale read", v)
	}
	t.Logf("read on the deposed leader: %+v, %v", v, err)
}
