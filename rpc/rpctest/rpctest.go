package rpctest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/server"
)

// shutdownTimeout bounds the drain at cleanup; calls still running after it
// are cancelled.
const shutdownTimeout = 10 * time.Second

// Server is a consensus server listening on 127.0.0.1.
type Server struct {
	*server.Server
	// Addr is the host:port the server listens on.
	Addr   string
	served chan error
}

// Serve starts a server.New over store on a free loopback port and stops it
// at cleanup. Use StartWith to register more services before it serves.
func Serve(t testing.TB, store backend.Consensus, cfg server.Config, opts ...grpc.ServerOption) *Server {
	t.Helper()
	return StartWith(t, server.New(store, cfg, opts...))
}

// StartWith serves srv on a free loopback port and stops it at cleanup.
func StartWith(t testing.TB, srv *server.Server) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rpctest: listen: %v", err)
	}
	s := &Server{Server: srv, Addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { s.served <- srv.Serve(lis) }()
	t.Cleanup(s.stop)
	return s
}

// Stop shuts the server down now (cancelling calls in flight after a drain of
// at most drain) and waits for Serve to return. Cleanup does it too; a second
// call does nothing.
func (s *Server) Stop(t testing.TB, drain time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	s.Shutdown(ctx)
	s.wait(t)
}

func (s *Server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	s.Shutdown(ctx)
	if s.served != nil {
		<-s.served
		s.served = nil
	}
}

func (s *Server) wait(t testing.TB) {
	if s.served == nil {
		return
	}
	if err := <-s.served; err != nil {
		t.Errorf("rpctest: serve %s: %v", s.Addr, err)
	}
	s.served = nil
}

// OpenBolt opens a bolt store in a fresh temporary directory and closes it at
// cleanup.
func OpenBolt(t testing.TB, opts bolt.Options) *bolt.Backend {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "consensus.db"), opts)
	if err != nil {
		t.Fatalf("rpctest: open bolt: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("rpctest: close bolt: %v", err)
		}
	})
	return b
}

// Dial returns a client of endpoints, closed at cleanup.
func Dial(t testing.TB, endpoints []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(endpoints, opts...)
	if err != nil {
		t.Fatalf("rpctest: client: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("rpctest: close client: %v", err)
		}
	})
	return c
}

// FreeAddr returns a loopback address nothing listens on: connecting to it is
// refused.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		t.Fatalf("rpctest: %v", err)
	}
	return addrs[0]
}
