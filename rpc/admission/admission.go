package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/peerpb"
)

// Reasons a call is refused, as the refusal metric labels them.
const (
	ReasonPermissionDenied = "permission_denied"
	ReasonConnectionLimit  = "connection_limit"
)

// Config is a server's admission policy. The zero value admits every call.
type Config struct {
	// PeerTLS: the server runs mutual TLS with its peers, so the peer
	// service is for connections that proved a peer certificate.
	PeerTLS bool
	// AdminIdentities may make membership, leadership and fence changes;
	// empty: anyone who can reach the port. Needs verified client
	// certificates to mean anything.
	AdminIdentities []string
	// ClientIdentities may call the consensus service; empty: anyone.
	ClientIdentities []string
	// MaxCallsPerConn bounds the calls one client connection has in
	// progress; 0: no bound. Replicas' connections are exempt: one of
	// them carries the calls of many clients.
	MaxCallsPerConn int
	// OnRefused, if set, is told of every refusal.
	OnRefused func(method, reason string)
}

// adminChanges are the admin calls that change the cluster. Status and
// ListMembers only read it and stay open to every client.
var adminChanges = []string{
	adminpb.Admin_AddVoter_FullMethodName,
	adminpb.Admin_RemoveServer_FullMethodName,
	adminpb.Admin_TransferLeadership_FullMethodName,
	adminpb.Admin_AdoptFence_FullMethodName,
}

var (
	peerPrefix      = "/" + peerpb.Peer_ServiceDesc.ServiceName + "/"
	consensusPrefix = "/" + consensuspb.ProtoPersistConsensus_ServiceDesc.ServiceName + "/"
)

// ServerOptions returns the interceptors and the connection tracking that
// enforce c. They belong before every other interceptor, so a refused call
// runs nothing.
func (c Config) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StatsHandler(connTracker{}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			done, err := c.admit(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			defer done()
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			done, err := c.admit(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			defer done()
			return handler(srv, ss)
		}),
	}
}

// caller is what the server knows of who is calling.
type caller struct {
	peer bool
	// ids are the names the verified client certificate proves; nil
	// without one.
	ids []string
}

func callerOf(ctx context.Context) caller {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return caller{}
	}
	cl := caller{peer: tlsconfig.IsPeer(info.State)}
	if len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
		cl.ids = tlsconfig.Identities(info.State.VerifiedChains[0][0])
	}
	return cl
}

func (cl caller) String() string {
	if len(cl.ids) == 0 {
		return "a client without a verified certificate"
	}
	return fmt.Sprintf("identity %q (certificate names: %s)", cl.ids[0], strings.Join(cl.ids, ", "))
}

func (cl caller) oneOf(allowed []string) bool {
	for _, id := range cl.ids {
		if slices.Contains(allowed, id) {
			return true
		}
	}
	return false
}

// admit decides method for the caller of ctx and, if it may run, counts
// it against its connection until done is called.
func (c Config) admit(ctx context.Context, method string) (done func(), err error) {
	cl := callerOf(ctx)
	if err := c.authorize(cl, method); err != nil {
		c.refused(method, ReasonPermissionDenied)
		return nil, err
	}
	if c.MaxCallsPerConn <= 0 || cl.peer {
		return func() {}, nil
	}
	cs, ok := ctx.Value(connKey{}).(*connState)
	if !ok {
		return func() {}, nil
	}
	if n := cs.calls.Add(1); n > int64(c.MaxCallsPerConn) {
		cs.calls.Add(-1)
		c.refused(method, ReasonConnectionLimit)
		return nil, status.Errorf(codes.ResourceExhausted,
			"committer: %s refused: this connection already has %d calls in progress, the most one client connection may have (--max-calls-per-conn); nothing was done, retry later or spread the calls over more connections",
			method, c.MaxCallsPerConn)
	}
	return func() { cs.calls.Add(-1) }, nil
}

func (c Config) authorize(cl caller, method string) error {
	if cl.peer {
		// A replica of this cluster: it forwards calls that the replica
		// its client reached has already authorized, and joins.
		return nil
	}
	switch {
	case strings.HasPrefix(method, peerPrefix):
		if c.PeerTLS {
			return status.Errorf(codes.PermissionDenied,
				"committer: permission denied: %s may not call %s, which only replicas of this cluster call (with a peer certificate signed by the peer CA)", cl, method)
		}
	case slices.Contains(adminChanges, method):
		if len(c.AdminIdentities) > 0 && !cl.oneOf(c.AdminIdentities) {
			return status.Errorf(codes.PermissionDenied,
				"committer: permission denied: %s may not call %s; it needs a client certificate naming one of the --admin-identities", cl, method)
		}
	case strings.HasPrefix(method, consensusPrefix):
		if len(c.ClientIdentities) > 0 && !cl.oneOf(c.ClientIdentities) {
			return status.Errorf(codes.PermissionDenied,
				"committer: permission denied: %s may not call %s; it needs a client certificate naming one of the --client-identities", cl, method)
		}
	}
	return nil
}

func (c Config) refused(method, reason string) {
	if c.OnRefused != nil {
		c.OnRefused(method, reason)
	}
}

// connState counts one connection's calls in progress.
type connState struct{ calls atomic.Int64 }

type connKey struct{}

// connTracker gives each server connection its connState: gRPC passes
// the context TagConn returns to every call on that connection.
type connTracker struct{}

func (connTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, &connState{})
}
func (connTracker) HandleConn(context.Context, stats.ConnStats)                     {}
func (connTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connTracker) HandleRPC(context.Context, stats.RPCStats)                       {}
