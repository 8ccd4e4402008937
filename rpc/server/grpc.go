package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	onPanic   func(method string, p any) error
}

// New builds a Server over store. opts are appended after the message-limit
// options (e.g. credentials or interceptors). Further services can be
// registered on GRPC() before Serve.
func New(store backend.Consensus, cfg Config, opts ...grpc.ServerOption) *Server {
	timeout := cfg.DefaultTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	onPanic := PanicHandler(log, cfg.OnPanic)
	recovered := func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		return onPanic(method, p)
	}
	base := append(wire.ServerOptions(),
		grpc.ChainUnaryInterceptor(
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(recovered)),
			boundWithoutDeadline(timeout)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recovered))),
	)
	gs := grpc.NewServer(append(base, opts...)...)
	c := NewConsensus(store, cfg)
	c.Register(gs)
	hs := RegisterHealthAndReflection(gs)
	// Without a readiness source the server serves whenever it runs;
	// FollowReadiness makes it tell the truth instead.
	hs.SetServingStatus(ConsensusServiceName, healthpb.HealthCheckResponse_SERVING)
	return &Server{grpc: gs, health: hs, consensus: c, timeout: timeout, onPanic: onPanic}
}

// Consensus returns the consensus service the server carries, the deadline
// it gives calls that arrive without one and its panic handler: what
// another transport (the peer relay) needs to run the same calls the same
// way.
func (s *Server) Consensus() (*Consensus, time.Duration, func(method string, p any) error) {
	return s.consensus, s.timeout, s.onPanic
}

// PanicHandler turns a panic in a call's handler into that call's error
// instead of a crashed replica: it logs the panic with its stack, tells
// onPanic (if set) and answers Internal. Call it from the deferred recover
// of the goroutine that panicked, so that the stack is the panic's. The call may have acted before it panicked, so
// the answer must not say it did not: an Internal status from a call that
// reached the server is indeterminate to the Go client (docs/architecture.md
// §2.4).
func PanicHandler(log *slog.Logger, onPanic func(method string)) func(method string, p any) error {
	return func(method string, p any) error {
		log.Error("a call's handler panicked; the call fails, the replica goes on", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if onPanic != nil {
			onPanic(method)
		}
		return status.Errorf(codes.Internal, "committer: the %s handler failed unexpectedly (%v); the outcome of the call is unknown", method, p)
	}
}

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
// SERVING for the whole server until told otherwise) and server reflection
// to gs, and returns the health server so that the caller can report
// per-service status.
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

// SetServing reports service ("" for the whole server) SERVING or
// NOT_SERVING on the health service; Watch streams see the change. After
// Shutdown it has no effect: everything stays NOT_SERVING.
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// FollowReadiness makes the health of the whole server ("") and of the
// consensus service follow ready: it sets them from ready() before it
// returns (so a server not yet serving never shows a stale SERVING), then
// keeps them current from a goroutine until ctx ends, whose end closes the
// returned channel. changed must return a channel closed after the next
// event that may change ready(); it is taken before ready() is evaluated,
// so a change in between is never missed. Other services keep whatever
// SetServing reported.
func (s *Server) FollowReadiness(ctx context.Context, ready func() bool, changed func() <-chan struct{}) <-chan struct{} {
	ch := changed()
	last := ready()
	s.setReady(last)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			ch = changed()
			if now := ready(); now != last {
				last = now
				s.setReady(now)
			}
		}
	}()
	return done
}

func (s *Server) setReady(ready bool) {
	s.SetServing("", ready)
	s.SetServing(ConsensusServiceName, ready)
}

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
