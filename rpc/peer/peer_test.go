package peer_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/rpc/adminserver"
	"github.com/hacommit/committer/rpc/peer"
)

// stubReplica answers every admin call with err, or with fixed values.
type stubReplica struct{ err error }

func (s stubReplica) Status(context.Context, bool) (cluster.Status, error) {
	return cluster.Status{ID: "r2", LastLeaderContact: 1500 * time.Millisecond}, s.err
}
func (s stubReplica) Members() ([]cluster.MemberStatus, uint64, error) { return nil, 0, s.err }
func (s stubReplica) Health() (cluster.ClusterHealth, bool)            { return cluster.ClusterHealth{}, false }
func (s stubReplica) AddVoter(context.Context, fsm.Member) (uint64, error) {
	return 7, s.err
}
func (s stubReplica) RemoveServer(context.Context, string) (uint64, error) { return 8, s.err }
func (s stubReplica) AdoptFence(context.Context, bool) (cluster.FenceChange, error) {
	return cluster.FenceChange{Before: backend.FenceState{Owner: "old", Epoch: 4}, Owner: "new", Epoch: 6}, s.err
}
func (s stubReplica) TransferLeadership(context.Context, string) (fsm.Member, uint64, error) {
	return fsm.Member{ID: "r3", GRPCAddr: "10.0.0.3:6882"}, 9, s.err
}

// serveAdmin serves the admin service over r on a loopback port.
func serveAdmin(t *testing.T, r adminserver.Replica) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	adminserver.Register(gs, r)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func dial(t *testing.T, addr string) cluster.PeerClient {
	t.Helper()
	d := peer.NewDialer("127.0.0.1:0")
	t.Cleanup(func() { _ = d.Close() })
	p, err := d.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdminCallsReturnThePeersAnswer(t *testing.T) {
	p := dial(t, serveAdmin(t, stubReplica{}))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if idx, err := p.AddVoter(ctx, fsm.Member{ID: "r4", RaftAddr: "x:1"}); idx != 7 || err != nil {
		t.Errorf("AddVoter = %d, %v; want 7", idx, err)
	}
	if idx, err := p.RemoveServer(ctx, "r4"); idx != 8 || err != nil {
		t.Errorf("RemoveServer = %d, %v; want 8", idx, err)
	}
	if m, term, err := p.TransferLeadership(ctx, ""); m.ID != "r3" || m.GRPCAddr != "10.0.0.3:6882" || term != 9 || err != nil {
		t.Errorf("TransferLeadership = %+v, %d, %v; want r3 at term 9", m, term, err)
	}
	if ch, err := p.AdoptFence(ctx, true); err != nil || ch.Before.Owner != "old" || ch.Before.Epoch != 4 || ch.Owner != "new" || ch.Epoch != 6 {
		t.Errorf("AdoptFence = %+v, %v; want old@4 -> new@6", ch, err)
	}
	if d, err := p.LastLeaderContact(ctx); d != 1500*time.Millisecond || err != nil {
		t.Errorf("LastLeaderContact = %v, %v; want 1.5s", d, err)
	}
}

// The forwarder retries only what provably did nothing: a refusal by a
// replica that does not lead, or a call that never left this one. Every
// other failure keeps the peer's status.
func TestAdminErrorsKeepTheirDeterminacy(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	notLeader := dial(t, serveAdmin(t, stubReplica{err: backend.Determinatef("%w: leader is r3", backend.ErrNotLeader)}))
	_, err := notLeader.AddVoter(ctx, fsm.Member{ID: "r4", RaftAddr: "x:1"})
	if !errors.Is(err, backend.ErrNotLeader) || !backend.IsDeterminate(err) {
		t.Errorf("refused AddVoter: %v, want a determinate ErrNotLeader", err)
	}

	unknown := dial(t, serveAdmin(t, stubReplica{err: cluster.ErrUnknownMember}))
	_, err = unknown.RemoveServer(ctx, "r9")
	if status.Code(err) != codes.NotFound || backend.IsDeterminate(err) {
		t.Errorf("RemoveServer of an unknown member: %v, want the peer's NotFound status", err)
	}

	port, err := freeport.Port("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	closed := dial(t, net.JoinHostPort("127.0.0.1", itoa(port)))
	_, err = closed.AddVoter(ctx, fsm.Member{ID: "r4", RaftAddr: "x:1"})
	if !errors.Is(err, backend.ErrUnavailable) || !backend.IsDeterminate(err) {
		t.Errorf("AddVoter to a closed port: %v, want a determinate ErrUnavailable", err)
	}
}

func itoa(n int) string { return (&net.TCPAddr{Port: n}).String()[1:] }
