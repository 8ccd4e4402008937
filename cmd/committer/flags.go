package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/adminserver"
	"github.com/hacommit/committer/rpc/server"
)

// replicaConfig is everything one replica needs besides its backend.
type replicaConfig struct {
	ID              string
	DataDir         string
	GRPCAddr        string // listen
	GRPCAdvertise   string // what peers and clients dial; derived when empty
	RaftAddr        string // listen
	RaftAdvertise   string // derived when empty
	HTTPAddr        string // listen; empty disables the HTTP endpoint
	BootstrapExpect int
	Peers           []cluster.Peer
	Join            []string
	ReadConsistency string
	UnsafeSkipFence bool
	MaxDataBytes    int
	Timeouts        cluster.Timeouts
}

// runningReplica is a replica with its gRPC and HTTP servers.
type runningReplica struct {
	cfg     replicaConfig
	log     *slog.Logger
	replica *cluster.Replica
	grpc    *server.Server
	grpcLis net.Listener
	http    *http.Server
	httpLis net.Listener
	served  chan error // gRPC and HTTP Serve results; buffered for both
	// stopped is closed when the first server stops serving.
	stopped  chan struct{}
	stopOnce sync.Once
	grpcAddr string
}

// serve runs fn (a Serve call) and records its result.
func (rr *runningReplica) serve(fn func() error) {
	err := fn()
	rr.served <- err
	rr.stopOnce.Do(func() { close(rr.stopped) })
}

// advertised turns a listen address into one peers can dial: an empty or
// unspecified host becomes this machine's host name.
func advertised(listen, advertise string) (string, error) {
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

// parsePeers parses "id=raftaddr,id=raftaddr".
func parsePeers(s string) ([]cluster.Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []cluster.Peer
	for _, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers entry %q: want id=raft-host:port", item)
		}
		peers = append(peers, cluster.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

// splitList parses a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// startReplica opens the replica over store and starts serving. The caller
// keeps ownership of store.
func startReplica(cfg replicaConfig, store backend.Fencer, log *slog.Logger) (_ *runningReplica, err error) {
	rc, err := cluster.ParseReadConsistency(cfg.ReadConsistency)
	if err != nil {
		return nil, fmt.Errorf("--read-consistency: %w", err)
	}
	rr := &runningReplica{cfg: cfg, log: log, served: make(chan error, 2), stopped: make(chan struct{})}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	rr.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	closers = append(closers, func() { rr.grpcLis.Close() })
	// Advertise what was bound, so that port 0 works in tests.
	if rr.grpcAddr, err = advertised(rr.grpcLis.Addr().String(), cfg.GRPCAdvertise); err != nil {
		return nil, err
	}
	httpAdv := ""
	if cfg.HTTPAddr != "" {
		rr.httpLis, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
		}
		closers = append(closers, func() { rr.httpLis.Close() })
		if httpAdv, err = advertised(rr.httpLis.Addr().String(), ""); err != nil {
			return nil, err
		}
	}
	// Raft binds inside the replica; an explicit host is advertised as bound
	// (port 0 included), an unspecified one as this host's name.
	raftAdv := cfg.RaftAdvertise
	if host, port, err := net.SplitHostPort(cfg.RaftAddr); err != nil {
		return nil, fmt.Errorf("--raft-addr %q: %w", cfg.RaftAddr, err)
	} else if ip := net.ParseIP(host); raftAdv == "" && (host == "" || (ip != nil && ip.IsUnspecified())) {
		if port == "0" {
			return nil, errors.New("--raft-addr with an unspecified host needs a fixed port or --raft-advertise")
		}
		if raftAdv, err = advertised(cfg.RaftAddr, ""); err != nil {
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	rr.replica, err = cluster.Open(cluster.Config{
		ID:              cfg.ID,
		DataDir:         cfg.DataDir,
		RaftBind:        cfg.RaftAddr,
		RaftAdvertise:   raftAdv,
		GRPCAddr:        rr.grpcAddr,
		HTTPAddr:        httpAdv,
		Backend:         m.InstrumentBacking(store),
		ReadConsistency: rc,
		BootstrapExpect: cfg.BootstrapExpect,
		Peers:           cfg.Peers,
		Join:            cfg.Join,
		Timeouts:        cfg.Timeouts,
		UnsafeSkipFence: cfg.UnsafeSkipFence,
		Metrics:         m,
		Logger:          log,
	})
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", cfg.ID, err)
	}
	rr.grpc = server.New(m.InstrumentRPC(rr.replica), server.Config{MaxDataBytes: cfg.MaxDataBytes, Logger: log})
	adminserver.Register(rr.grpc.GRPC(), rr.replica)
	go rr.serve(func() error { return rr.grpc.Serve(rr.grpcLis) })
	if rr.httpLis != nil {
		rr.http = &http.Server{Handler: opshttp.Handler(rr.replica, reg), ReadHeaderTimeout: 10 * time.Second}
		go rr.serve(func() error { return rr.http.Serve(rr.httpLis) })
	} else {
		rr.served <- nil
	}
	if cfg.UnsafeSkipFence {
		log.Warn("UNSAFE: this replica serves as leader without fencing the backend; for correctness testing only")
	}
	log.Info("serving persist consensus API", "id", cfg.ID, "grpc_addr", rr.grpcLis.Addr().String(), "grpc_advertise", rr.grpcAddr,
		"raft_advertise", rr.replica.Self().RaftAddr, "http_addr", httpAdv, "read_consistency", rc)
	return rr, nil
}

// shutdown leaves gracefully: hand leadership away while the gRPC server
// still forwards, drain in-flight calls, then stop Raft and the HTTP server.
func (rr *runningReplica) shutdown(timeout time.Duration) error {
	rr.replica.HandOff()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !rr.grpc.Shutdown(ctx) {
		rr.log.Warn("shutdown timeout expired; cancelled the remaining calls", "timeout", timeout)
	}
	var errs []error
	if err := rr.replica.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing replica: %w", err))
	}
	if rr.http != nil {
		if err := rr.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing http: %w", err))
		}
	}
	for range 2 {
		if err := <-rr.served; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
