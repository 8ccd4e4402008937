package peer

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/peerpb"
	"github.com/hacommit/committer/rpc/wire"
)

// ErrClosed: the dialer was closed.
var ErrClosed = errors.New("peer dialer closed")

// Dialer keeps one gRPC connection per peer address, shared by forwarding
// and membership calls.
type Dialer struct {
	dialOpts []grpc.DialOption

	// mu guards conns and closed; it is never held across a call.
	mu     sync.Mutex
	conns  map[string]*Conn
	closed bool
}

var _ cluster.PeerDialer = (*Dialer)(nil)

// NewDialer uses opts for every peer connection; without any, peers are
// dialed in plaintext, like the client port they serve on. When the replica
// advertises an IP address (advertised is its own gRPC host:port), outbound
// dials are bound to it, so that peers and packet filters see one stable
// source address per replica, as Raft's stream layer does.
func NewDialer(advertised string, opts ...grpc.DialOption) *Dialer {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if host, _, err := net.SplitHostPort(advertised); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
			opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", addr)
			}))
		}
	}
	return &Dialer{dialOpts: opts, conns: map[string]*Conn{}}
}

// Dial returns the connection to addr, creating it on first use. It does
// not wait for the network.
func (d *Dialer) Dial(addr string) (cluster.PeerClient, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if c, ok := d.conns[addr]; ok {
		return c, nil
	}
	cc, err := grpc.NewClient(addr, append(wire.PeerDialOptions(), d.dialOpts...)...)
	if err != nil {
		return nil, err
	}
	rc := newRelayConn(cc)
	c := &Conn{Consensus: client.FromConn(rc), cc: cc, relay: rc, admin: adminpb.NewAdminClient(cc), peer: peerpb.NewPeerClient(cc)}
	d.conns[addr] = c
	return c, nil
}

// Close closes every connection; calls in flight fail.
func (d *Dialer) Close() error {
	d.mu.Lock()
	conns := d.conns
	d.conns, d.closed = nil, true
	d.mu.Unlock()
	var errs []error
	for _, c := range conns {
		c.relay.close()
		errs = append(errs, c.cc.Close())
	}
	return errors.Join(errs...)
}

// Conn is one peer: its consensus service through the Go client (one
// attempt per call, no leader following: the forwarder decides), carried on
// the peer's relay stream, and its admin service.
type Conn struct {
	backend.Consensus
	cc    *grpc.ClientConn
	relay *relayConn
	admin adminpb.AdminClient
	peer  peerpb.PeerClient
}

var _ cluster.PeerClient = (*Conn)(nil)

// call runs one admin call and classifies its failure.
func call[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	ctx, delivery := wire.TrackDelivery(ctx)
	resp, err := fn(ctx)
	if err == nil {
		return resp, nil
	}
	if refused := wire.DecodeAdminRefusal(err); refused != nil {
		return resp, refused
	}
	if !delivery.MayHaveArrived() {
		return resp, backend.Determinatef("%w: %v", backend.ErrUnavailable, err)
	}
	return resp, err
}

// AddVoter asks the peer to add m as a voter.
func (c *Conn) AddVoter(ctx context.Context, m fsm.Member) (uint64, error) {
	resp, err := call(ctx, func(ctx context.Context) (*adminpb.AddVoterResponse, error) {
		return c.admin.AddVoter(ctx, &adminpb.AddVoterRequest{Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr, HttpAddr: m.HTTPAddr})
	})
	return resp.GetIndex(), err
}

// RemoveServer asks the peer to remove a member.
func (c *Conn) RemoveServer(ctx context.Context, id string) (uint64, error) {
	resp, err := call(ctx, func(ctx context.Context) (*adminpb.RemoveServerResponse, error) {
		return c.admin.RemoveServer(ctx, &adminpb.RemoveServerRequest{Id: id})
	})
	return resp.GetIndex(), err
}

// TransferLeadership asks the peer to move leadership to target.
func (c *Conn) TransferLeadership(ctx context.Context, target string) (fsm.Member, uint64, error) {
	resp, err := call(ctx, func(ctx context.Context) (*adminpb.TransferLeadershipResponse, error) {
		return c.admin.TransferLeadership(ctx, &adminpb.TransferLeadershipRequest{TargetId: target})
	})
	if err != nil {
		return fsm.Member{}, 0, err
	}
	l := resp.GetLeader()
	return fsm.Member{ID: l.GetId(), RaftAddr: l.GetRaftAddr(), GRPCAddr: l.GetGrpcAddr(), HTTPAddr: l.GetHttpAddr()}, resp.GetTerm(), nil
}

// LastLeaderContact asks the peer when it last heard from the leader.
func (c *Conn) LastLeaderContact(ctx context.Context) (time.Duration, error) {
	resp, err := call(ctx, func(ctx context.Context) (*adminpb.StatusResponse, error) {
		return c.admin.Status(ctx, &adminpb.StatusRequest{})
	})
	if err != nil {
		return -1, err
	}
	if lc := resp.GetLastLeaderContact(); lc != nil {
		return lc.AsDuration(), nil
	}
	return -1, nil
}

// CurrentTerm asks the peer for its current Raft term, as of the moment it
// answers.
func (c *Conn) CurrentTerm(ctx context.Context, leaderTerm uint64, leaderID string) (uint64, error) {
	resp, err := c.peer.CurrentTerm(ctx, &peerpb.CurrentTermRequest{LeaderTerm: leaderTerm, LeaderId: leaderID})
	if err != nil {
		return 0, err
	}
	return resp.GetTerm(), nil
}

// ServerStats asks the peer for its view of its Raft log, for the leader's
// autopilot.
func (c *Conn) ServerStats(ctx context.Context, leaderTerm uint64, leaderID string) (cluster.ServerStats, error) {
	resp, err := c.peer.ServerStats(ctx, &peerpb.ServerStatsRequest{LeaderTerm: leaderTerm, LeaderId: leaderID})
	if err != nil {
		return cluster.ServerStats{}, err
	}
	st := cluster.ServerStats{ID: resp.GetId(), LastContact: -1, LastTerm: resp.GetLastTerm(), LastIndex: resp.GetLastIndex()}
	if lc := resp.GetLastContact(); lc != nil {
		st.LastContact = lc.AsDuration()
	}
	return st, nil
}

// AdoptFence asks the peer to adopt the database's fence for the cluster.
func (c *Conn) AdoptFence(ctx context.Context, force bool) (cluster.FenceChange, error) {
	resp, err := call(ctx, func(ctx context.Context) (*adminpb.AdoptFenceResponse, error) {
		return c.admin.AdoptFence(ctx, &adminpb.AdoptFenceRequest{Force: force})
	})
	if err != nil {
		return cluster.FenceChange{}, err
	}
	return cluster.FenceChange{
		Before: backend.FenceState{Owner: resp.GetPreviousOwner(), Epoch: resp.GetPreviousEpoch(), Lost: resp.GetPreviousLost()},
		Owner:  resp.GetOwner(),
		Epoch:  resp.GetEpoch(),
	}, nil
}
