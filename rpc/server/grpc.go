package server

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/wire"
)

// ConsensusServiceName is the fully qualified name of the consensus service,
// as used by the health service and reflection.
const ConsensusServiceName = "mz_persist_committer.ProtoPersistConsensus"

// Server is a gRPC server carrying the consensus service, the standard
// health service and server reflection, with message limits lifted to
// wire.MaxMessageBytes.
type Server struct {
	grpc      *grpc.Server
	health    *health.Server
	consensus *Consensus
	timeout   time.Duration
}

// New builds a Server over store. opts are appended after the message-limit
// options (e.g. credentials or interceptors). Further services can be
// registered on GRPC() before Serve.
func New(store backend.Consensus, cfg Config, opts ...grpc.ServerOption) *Server {
	timeout := cfg.DefaultTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	base := append(wire.ServerOptions(), grpc.ChainUnaryInterceptor(boundWithoutDeadline(timeout)))
	gs := grpc.NewServer(append(base, opts...)...)
	c := NewConsensus(store, cfg)
	c.Register(gs)
	hs := RegisterHealthAndReflection(gs)
	hs.SetServingStatus(ConsensusServiceName, healthpb.HealthCheckResponse_SERVING)
	return &Server{grpc: gs, health: hs, consensus: c, timeout: timeout}
}

// Consensus returns the consensus service the server carries, and the
// deadline it gives calls that arrive without one: what another transport
// (the peer relay) needs to run the same calls the same way.
func (s *Server) Consensus() (*Consensus, time.Duration) { return s.consensus, s.timeout }

// boundWithoutDeadline gives a call that arrived without a deadline one of
// d, for every service on the server.
func boundWithoutDeadline(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// RegisterHealthAndReflection adds the standard health service (reporting
// SERVING for the whole server) and server reflection to gs, and returns the
// health server so that the caller can report per-service status.
func RegisterHealthAndReflection(gs *grpc.Server) *health.Server {
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return hs
}

// GRPC returns the underlying gRPC server.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Health returns the health service, for callers that track readiness.
func (s *Server) Health() *health.Server { return s.health }

// Serve accepts connections on lis until Shutdown. It returns nil after a
// Shutdown and the accept error otherwise.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown reports NOT_SERVING, stops accepting, and waits for in-flight calls
// until ctx is done; then it cancels the remaining calls and closes every
// connection. It reports whether the drain completed before ctx was done.
func (s *Server) Shutdown(ctx context.Context) (drained bool) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		// Stop makes the GracefulStop goroutine return too.
		s.grpc.Stop()
		<-done
		return false
	}
}
