package wire_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hacommit/committer/rpc/wire"
)

// freezableProxy relays TCP connections to target until frozen; frozen, it
// keeps every connection open but passes nothing, like a link whose packets
// are all lost.
type freezableProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	wake   chan struct{} // closed on close
}

func newFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{lis: lis, target: target, wake: make(chan struct{})}
	go p.accept()
	t.Cleanup(func() {
		close(p.wake)
		lis.Close()
	})
	return p
}

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *freezableProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *freezableProxy) accept() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies until frozen, then reads and drops everything until the
// proxy closes.
func (p *freezableProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.isFrozen() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// A peer connection whose other end stops answering is given up within the
// peer keepalive (10s, gRPC's floor, plus 2s), not the clients' 30s, so the
// forwarder's next call gets a fresh connection.
func TestPeerConnectionsThatStopAnsweringAreReplaced(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(wire.ServerOptions()...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	proxy := newFreezableProxy(t, lis.Addr().String())

	cc, err := grpc.NewClient(proxy.lis.Addr().String(), append(wire.PeerDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	proxy.freeze()
	frozen := time.Now()
	// The clients' keepalive (20s + 10s) would leave the connection READY
	// well past this deadline.
	deadline, stop := context.WithTimeout(ctx, 16*time.Second)
	defer stop()
	if !cc.WaitForStateChange(deadline, connectivity.Ready) {
		t.Fatalf("the connection was still READY %v after its peer stopped answering", time.Since(frozen).Round(time.Second))
	}
	t.Logf("given up after %v (now %v)", time.Since(frozen).Round(100*time.Millisecond), cc.GetState())
}
