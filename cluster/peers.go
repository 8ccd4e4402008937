package cluster

import (
	"context"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/wire"
)

// peerPool keeps one gRPC connection per peer address, shared by forwarding
// and membership calls, and closed with the replica.
type peerPool struct {
	dialOpts []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*peerConn
}

type peerConn struct {
	cc        *grpc.ClientConn
	consensus backend.Consensus
	admin     adminpb.AdminClient
}

// newPeerPool uses opts for every peer connection; without any, peers are
// dialed in plaintext, like the client port they serve on. When the replica
// advertises an IP address, outbound dials are bound to it, so that peers
// and packet filters see one stable source address per replica (as Raft's
// stream layer does).
func newPeerPool(opts []grpc.DialOption, advertised string) *peerPool {
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
	return &peerPool{dialOpts: opts, conns: map[string]*peerConn{}}
}

func (p *peerPool) get(addr string) (*peerConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.conns[addr]; ok {
		return pc, nil
	}
	// NewClient does not dial; connection errors surface on the first call.
	cc, err := grpc.NewClient(addr, append(wire.DialOptions(), p.dialOpts...)...)
	if err != nil {
		return nil, err
	}
	pc := &peerConn{cc: cc, consensus: client.FromConn(cc), admin: adminpb.NewAdminClient(cc)}
	p.conns[addr] = pc
	return pc, nil
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pc := range p.conns {
		pc.cc.Close()
		delete(p.conns, addr)
	}
}
