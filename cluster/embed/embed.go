package embed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/cluster/coalesce"
	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/metrics/statslog"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/adminserver"
	"github.com/hacommit/committer/rpc/admission"
	"github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/peer"
	"github.com/hacommit/committer/rpc/peerpb"
	"github.com/hacommit/committer/rpc/peerserver"
	"github.com/hacommit/committer/rpc/server"
)

// Config is everything one replica needs.
type Config struct {
	// ID names the replica; stable across restarts.
	ID string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// GRPCAddr is where the gRPC API listens (port 0 picks one);
	// GRPCAdvertise what peers and clients dial (default: the bound address,
	// with this host's name for an unspecified host).
	GRPCAddr      string
	GRPCAdvertise string
	// RaftAddr is where Raft listens; RaftAdvertise what peers dial (may be
	// a DNS name; default derived like GRPCAdvertise).
	RaftAddr      string
	RaftAdvertise string
	// HTTPAddr is the operations endpoint's address; empty disables it.
	HTTPAddr string
	// BootstrapExpect, Peers and Join form or join a cluster; see
	// cluster.Config.
	BootstrapExpect int
	Peers           []cluster.Peer
	Join            []string
	// ReadConsistency defaults to cluster.Linearizable.
	ReadConsistency cluster.ReadConsistency
	// UnsafeSkipFence, UnsafeSkipShardExclusion, UnsafeJoinInflightReads
	// and UnsafeDeterminateForward: see cluster.Config; the cache's canary
	// is Cache.UnsafeSkipGeneration. Never set them in production.
	UnsafeSkipFence          bool
	UnsafeSkipShardExclusion bool
	UnsafeJoinInflightReads  bool
	UnsafeDeterminateForward bool
	// FaultDelays: see cluster.Config. Empty in production.
	FaultDelays faultdelay.Delays
	// MaxDataBytes bounds one version's data at the gRPC server; 0 takes
	// backend.DefaultMaxDataBytes.
	MaxDataBytes int
	// RequestTimeout bounds calls that arrive without a deadline; 0 takes
	// server.DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Timeouts tune Raft; zero fields take cluster.DefaultTimeouts.
	Timeouts cluster.Timeouts
	// Cache bounds the leader's head cache.
	Cache cache.Config
	// HotShardInterval and HotShards: see cluster.Config.
	HotShardInterval time.Duration
	HotShards        int
	// Coalesce bounds the leader's write batches; its MaxDataBytes is
	// MaxDataBytes.
	Coalesce coalesce.Config
	// Autopilot tunes staged joins and dead-server cleanup; see
	// cluster.Config.
	Autopilot cluster.AutopilotConfig
	// Backend is the shared storage. The caller owns it: Shutdown does not
	// close it, since several replicas of one process may share it.
	Backend backend.Fencer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// WrapRaftTransport: see cluster.Config; tests only.
	WrapRaftTransport func(raft.Transport) raft.Transport
	// RaftMetrics, if set, is the collector of Raft's own metrics
	// (metrics.InstallRaftMetrics), registered on the replica's registry;
	// nil leaves them out.
	RaftMetrics prometheus.Collector
	// StatsInterval is how often the replica logs its one-line stats
	// (package metrics/statslog); 0 turns them off.
	StatsInterval time.Duration
	// TLS, if set, secures every port: the gRPC port with the client and
	// peer identities, the Raft port with mutual peer TLS, the HTTP port
	// with the client identity (docs/architecture.md §12). Nil: plaintext.
	TLS *tlsconfig.Server
	// Admission limits who may call what on the gRPC port and how many
	// calls one client connection may have in progress; Start sets its
	// PeerTLS and OnRefused.
	Admission admission.Config
	// EnablePprof serves /debug/pprof on the HTTP port.
	EnablePprof bool
}

// Server is a running replica with its gRPC and HTTP servers.
type Server struct {
	cfg      Config
	log      *slog.Logger
	replica  *cluster.Replica
	registry *prometheus.Registry
	grpc     *server.Server
	peer     *peerserver.Server
	grpcLis  net.Listener
	grpcAddr string
	http     *http.Server
	httpLis  net.Listener
	httpAddr string

	// stopBackground ends the goroutines below; healthDone and statsDone
	// are closed when they have.
	stopBackground context.CancelFunc
	healthDone     <-chan struct{}
	statsDone      chan struct{}

	// served receives the gRPC and HTTP Serve results; buffered for both,
	// so the serving goroutines never block on it.
	served chan error
	// stopped is closed when the first server stops serving.
	stopped  chan struct{}
	stopOnce sync.Once
	shutOnce sync.Once
	shutErr  error
}

// Start opens the replica over cfg.Backend and starts serving. The serving
// goroutines are owned by the Server and end with Shutdown.
func Start(cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxDataBytes == 0 {
		cfg.MaxDataBytes = backend.DefaultMaxDataBytes
	}
	if cfg.StatsInterval < 0 {
		return nil, fmt.Errorf("stats interval must not be negative (0 turns the stats log off), got %v", cfg.StatsInterval)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 2), stopped: make(chan struct{})}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on gRPC address %s: %w", cfg.GRPCAddr, err)
	}
	closers = append(closers, func() { s.grpcLis.Close() })
	// Advertise what was bound, so that port 0 works.
	if s.grpcAddr, err = Advertised(s.grpcLis.Addr().String(), cfg.GRPCAdvertise); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on HTTP address %s: %w", cfg.HTTPAddr, err)
		}
		closers = append(closers, func() { s.httpLis.Close() })
		if s.httpAddr, err = Advertised(s.httpLis.Addr().String(), ""); err != nil {
			return nil, err
		}
	}
	raftAdv, err := raftAdvertise(cfg.RaftAddr, cfg.RaftAdvertise)
	if err != nil {
		return nil, err
	}

	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(s.registry)
	if cfg.TLS != nil {
		metrics.RegisterCertificateExpiry(s.registry, map[string]func() time.Time{"client": cfg.TLS.Client.NotAfter, "peer": cfg.TLS.Peer.NotAfter})
	}
	s.registry.MustRegister(metrics.NewBuildInfo(metrics.Build()))
	if cfg.RaftMetrics != nil {
		if err := s.registry.Register(cfg.RaftMetrics); err != nil {
			return nil, fmt.Errorf("raft metrics: %w", err)
		}
	}

	s.replica, err = cluster.Open(cluster.Config{
		ID:                       cfg.ID,
		DataDir:                  cfg.DataDir,
		RaftBind:                 cfg.RaftAddr,
		RaftAdvertise:            raftAdv,
		GRPCAddr:                 s.grpcAddr,
		HTTPAddr:                 s.httpAddr,
		Backend:                  m.InstrumentBacking(cfg.Backend),
		ReadConsistency:          cfg.ReadConsistency,
		BootstrapExpect:          cfg.BootstrapExpect,
		Peers:                    cfg.Peers,
		Join:                     cfg.Join,
		Cache:                    cfg.Cache,
		Coalesce:                 coalesceConfig(cfg),
		Autopilot:                cfg.Autopilot,
		HotShardInterval:         cfg.HotShardInterval,
		HotShards:                cfg.HotShards,
		Timeouts:                 cfg.Timeouts,
		UnsafeSkipFence:          cfg.UnsafeSkipFence,
		UnsafeSkipShardExclusion: cfg.UnsafeSkipShardExclusion,
		UnsafeJoinInflightReads:  cfg.UnsafeJoinInflightReads,
		UnsafeDeterminateForward: cfg.UnsafeDeterminateForward,
		FaultDelays:              cfg.FaultDelays,
		RaftTLS:                  raftTLS(cfg.TLS),
		PeerDialer:               peer.NewDialer(s.grpcAddr, peerDialOptions(cfg.TLS)...),
		WrapRaftTransport:        cfg.WrapRaftTransport,
		Metrics:                  m,
		Logger:                   cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", cfg.ID, err)
	}
	adm := cfg.Admission
	adm.PeerTLS = cfg.TLS != nil
	adm.OnRefused = m.Refused
	grpcOpts := adm.ServerOptions()
	if cfg.TLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(cfg.TLS.GRPC())))
	}
	s.grpc = server.New(m.InstrumentRPC(s.replica), server.Config{MaxDataBytes: cfg.MaxDataBytes, DefaultTimeout: cfg.RequestTimeout, Logger: cfg.Logger, OnPanic: m.PanicRecovered}, grpcOpts...)
	adminserver.Register(s.grpc.GRPC(), s.replica)
	impl, timeout, onPanic := s.grpc.Consensus()
	s.peer = peerserver.Register(s.grpc.GRPC(), s.replica,
		&peerserver.Relayed{Desc: &consensuspb.ProtoPersistConsensus_ServiceDesc, Impl: impl, DefaultTimeout: timeout, OnPanic: onPanic})
	// Health tells the truth (docs/architecture.md §8.2): admin and peer
	// calls work without a leader, so those services serve while the
	// process does; the whole server and the consensus service follow the
	// readiness predicate, set before the first connection is accepted.
	s.grpc.SetServing(adminpb.Admin_ServiceDesc.ServiceName, true)
	s.grpc.SetServing(peerpb.Peer_ServiceDesc.ServiceName, true)
	var bg context.Context
	bg, s.stopBackground = context.WithCancel(context.Background())
	s.healthDone = s.grpc.FollowReadiness(bg, func() bool { return s.replica.Readiness().Ready }, s.replica.ReadinessChanged)
	s.statsDone = make(chan struct{})
	stats := statslog.New(s.registry, cfg.Logger, cfg.StatsInterval)
	go func() {
		defer close(s.statsDone)
		stats.Run(bg)
	}()
	go s.serve(func() error { return s.grpc.Serve(s.grpcLis) })
	if s.httpLis != nil {
		s.http = &http.Server{
			Handler:           guardOps(opshttp.Handler(s.replica, s.registry), cfg.EnablePprof, cfg.TLS != nil && cfg.TLS.ClientCAs()),
			ReadHeaderTimeout: 10 * time.Second,
		}
		lis := s.httpLis
		if cfg.TLS != nil {
			lis = tls.NewListener(lis, cfg.TLS.HTTP())
		}
		go s.serve(func() error { return s.http.Serve(lis) })
	} else {
		s.served <- nil
	}
	if cfg.UnsafeSkipFence {
		s.log.Warn("UNSAFE: this replica serves as leader without fencing the backend; for correctness testing only")
	}
	if cfg.UnsafeSkipShardExclusion {
		s.log.Warn("UNSAFE: this replica lets writes to one shard reach the backend concurrently; for correctness testing only")
	}
	if cfg.UnsafeJoinInflightReads {
		s.log.Warn("UNSAFE: this replica lets reads join a leadership confirmation round already in flight; for correctness testing only")
	}
	if cfg.Cache.UnsafeSkipGeneration {
		s.log.Warn("UNSAFE: this replica's cache fills versions read before their shard was dropped or evicted; for correctness testing only")
	}
	if cfg.UnsafeDeterminateForward {
		s.log.Warn("UNSAFE: this replica reports forwarded calls that broke after they were sent as determinate; for correctness testing only")
	}
	if len(cfg.FaultDelays) > 0 {
		s.log.Warn("FAULT INJECTION: this replica waits at named points; for correctness testing only", "fault_delays", cfg.FaultDelays.String())
	}
	s.log.Info("serving persist consensus API", "id", cfg.ID, "grpc_addr", s.grpcLis.Addr().String(), "grpc_advertise", s.grpcAddr,
		"raft_advertise", s.replica.Self().RaftAddr, "http_addr", s.httpAddr, "read_consistency", s.replica.ReadConsistency(),
		"tls", cfg.TLS != nil, "client_certificates", cfg.TLS != nil && cfg.TLS.ClientCAs())
	return s, nil
}

// serve runs fn (a Serve call) and records its result.
func (s *Server) serve(fn func() error) {
	err := fn()
	s.served <- err
	s.stopOnce.Do(func() { close(s.stopped) })
}

// Replica returns the Raft replica.
func (s *Server) Replica() *cluster.Replica { return s.replica }

// ID returns the replica id.
func (s *Server) ID() string { return s.cfg.ID }

// GRPCAddr returns the advertised gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcAddr }

// HTTPAddr returns the advertised HTTP address, or "" when it is off.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Registry returns the replica's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Stopped is closed when a server stops serving on its own (or at
// Shutdown).
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Shutdown leaves gracefully: hand leadership away while the gRPC server
// still forwards, drain in-flight calls for up to timeout (then cancel
// them), then stop Raft and the HTTP server. It is idempotent.
func (s *Server) Shutdown(timeout time.Duration) error {
	s.shutOnce.Do(func() { s.shutErr = s.shutdown(timeout) })
	return s.shutErr
}

func (s *Server) shutdown(timeout time.Duration) error {
	s.replica.HandOff()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Followers' relay streams never end on their own; ask their senders
	// to close them so the graceful stop can drain.
	s.peer.Drain()
	if !s.grpc.Shutdown(ctx) {
		s.log.Warn("shutdown timeout expired; cancelled the remaining calls", "timeout", timeout)
	}
	// The health service reports NOT_SERVING for good since Shutdown.
	s.stopBackground()
	<-s.healthDone
	<-s.statsDone
	var errs []error
	if err := s.replica.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing replica: %w", err))
	}
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing http: %w", err))
		}
	}
	for range 2 {
		if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Advertised turns a listen address into one peers can dial: advertise if
// set, else listen with an empty or unspecified host replaced by this
// machine's host name.
func Advertised(listen, advertise string) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("deriving an advertise address for %q: %w", listen, err)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// raftAdvertise is the Raft address to advertise. Raft binds inside the
// replica, so an explicit host is advertised as bound (port 0 included) and
// an unspecified one as this host's name, which needs a fixed port.
func raftAdvertise(bind, advertise string) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("raft address %q: %w", bind, err)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return "", nil // the bound address
	}
	if port == "0" {
		return "", errors.New("a raft address with an unspecified host needs a fixed port or a raft advertise address")
	}
	return Advertised(bind, "")
}

// coalesceConfig is cfg.Coalesce validating members against the server's
// payload limit.
func coalesceConfig(cfg Config) coalesce.Config {
	c := cfg.Coalesce
	c.MaxDataBytes = cfg.MaxDataBytes
	return c
}

// raftTLS is the Raft port's TLS for t (nil: plaintext).
func raftTLS(t *tlsconfig.Server) *cluster.RaftTLS {
	if t == nil {
		return nil
	}
	return &cluster.RaftTLS{Server: t.Raft(), Client: t.PeerClient(nil)}
}

// peerDialOptions are the transport credentials replicas dial each other's
// gRPC port with: the peer identity, offered with tlsconfig.PeerALPN.
func peerDialOptions(t *tlsconfig.Server) []grpc.DialOption {
	if t == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(t.PeerClient([]string{tlsconfig.PeerALPN})))}
}
