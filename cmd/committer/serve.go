package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/backendurl"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/cluster/coalesce"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/server"
)

// Default listen addresses: every interface on committer's ports.
const (
	defaultGRPCAddr = ":6882"
	defaultRaftAddr = ":6883"
	defaultHTTPAddr = ":6884"
)

// serveConfig is everything `committer serve` needs.
type serveConfig struct {
	// Backend is the storage URL (see package backendurl).
	Backend string
	// MaxDataBytes bounds one version's data, in the server and the backend.
	MaxDataBytes int
	// Isolation is the PostgreSQL isolation level's name.
	Isolation string
	// PGMaxConns bounds the PostgreSQL pool; 0 is the backend's default.
	PGMaxConns int32
	// ShutdownTimeout bounds the wait for in-flight calls on shutdown.
	ShutdownTimeout time.Duration
	// GCPercent is the garbage collector's target (debug.SetGCPercent);
	// 0 leaves Go's default, or GOGC when it is set.
	GCPercent int
	// Peers, Join and ReadConsistency are the raw flag values, parsed into
	// Replica.
	Peers           string
	Join            string
	ReadConsistency string
	// FaultDelays are the raw --fault-delay values (POINT=DURATION).
	FaultDelays []string
	// TLS holds the TLS and admission flags, loaded into Replica.
	TLS serverTLSFlags
	// Replica is the replica's configuration; the backend is opened from
	// Backend.
	Replica embed.Config
}

func newServeCommand(logCfg *logConfig) *cobra.Command {
	cfg := serveConfig{}
	hostname, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a committer replica serving the persist consensus API over gRPC",
		Long: "serve runs one replica of a committer cluster in front of the backend named by\n" +
			"--backend. A new cluster is formed by starting every initial replica with\n" +
			"--bootstrap-expect N and the same --peers list; a new replica joins a running\n" +
			"cluster with --join. A replica restarted on its --data-dir rejoins by itself.\n" +
			"With neither flag and an empty data dir, serve forms a one-replica cluster.\n" +
			"It stops on SIGINT or SIGTERM, handing leadership to another replica first\n" +
			"and letting in-flight calls finish for up to --shutdown-timeout.",
		Args: cobra.NoArgs,
		RunE: untilSignal(logCfg, func(ctx context.Context, stop func(), cmd *cobra.Command, log *slog.Logger) error {
			return runServe(ctx, stop, cfg, log)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Backend, "backend", "", "storage URL: bolt:///path/to/file.db or postgres://user@host:5432/database (required)")
	fs.IntVar(&cfg.MaxDataBytes, "max-data-bytes", backend.DefaultMaxDataBytes, "largest version payload accepted, in bytes")
	fs.StringVar(&cfg.Isolation, "isolation", "serializable", "PostgreSQL transaction isolation: serializable or read-committed")
	fs.Int32Var(&cfg.PGMaxConns, "pg-max-conns", 0, "PostgreSQL connection pool size (0: the backend's default)")
	fs.DurationVar(&cfg.Replica.RequestTimeout, "request-timeout", server.DefaultRequestTimeout, "deadline given to calls that arrive without one, so an unresponsive database cannot hold them forever")
	fs.IntVar(&cfg.GCPercent, "gc-percent", defaultGCPercent, "garbage collector target, as GOGC (0: Go's default or the GOGC variable); the leader allocates per request, and collecting less often buys throughput for memory")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight calls before cancelling them")

	r := &cfg.Replica
	fs.StringVar(&r.ID, "id", hostname, "replica id, unique and stable across restarts")
	fs.StringVar(&r.DataDir, "data-dir", "committer-data", "directory for the Raft log, stable store and snapshots")
	fs.StringVar(&r.GRPCAddr, "grpc-addr", defaultGRPCAddr, "address the gRPC API listens on (host:port; an empty host means every interface)")
	fs.StringVar(&r.GRPCAdvertise, "grpc-advertise", "", "gRPC address other replicas and clients dial (default: --grpc-addr, with this host's name for an unspecified host)")
	fs.StringVar(&r.RaftAddr, "raft-addr", defaultRaftAddr, "address Raft listens on")
	fs.StringVar(&r.RaftAdvertise, "raft-advertise", "", "Raft address peers dial, may be a DNS name (default: derived like --grpc-advertise)")
	fs.StringVar(&r.HTTPAddr, "http-addr", defaultHTTPAddr, "address of /healthz, /readyz, /metrics and /debug/pprof (empty: off)")
	fs.IntVar(&r.BootstrapExpect, "bootstrap-expect", 0, "form a new cluster of this many voters, listed in --peers (ignored once the data dir holds state)")
	fs.StringVar(&cfg.Peers, "peers", "", "initial voters as id=raft-host:port,... (this replica included), with --bootstrap-expect")
	fs.StringVar(&cfg.Join, "join", "", "gRPC addresses (host:port,...) of running replicas to join through (ignored once the data dir holds state; given with --peers, only a replica missing from --peers joins, so every pod of a StatefulSet can share one command line)")
	fs.StringVar(&cfg.ReadConsistency, "read-consistency", string(cluster.Linearizable), "linearizable, or leader (skips the leadership check: a documented stale-read window)")
	fs.BoolVar(&r.UnsafeSkipFence, "unsafe-skip-fence", false, "serve as leader without fencing the backend; breaks safety, exists only for correctness testing")
	_ = fs.MarkHidden("unsafe-skip-fence")
	fs.BoolVar(&r.UnsafeSkipShardExclusion, "unsafe-skip-shard-exclusion", false, "let writes to one shard reach the backend concurrently (multi-CaS no longer atomic under read-committed); breaks safety, exists only for correctness testing")
	_ = fs.MarkHidden("unsafe-skip-shard-exclusion")
	fs.BoolVar(&r.UnsafeJoinInflightReads, "unsafe-join-inflight-reads", false, "let a read join the leadership confirmation round already in flight, whose evidence may predate the read (stale reads); breaks safety, exists only for correctness testing")
	_ = fs.MarkHidden("unsafe-join-inflight-reads")
	fs.BoolVar(&r.Cache.UnsafeSkipGeneration, "unsafe-skip-cache-generation", false, "let the leader's cache fill a version read before its shard was dropped or evicted (stale cached heads); breaks safety, exists only for correctness testing")
	_ = fs.MarkHidden("unsafe-skip-cache-generation")
	fs.BoolVar(&r.UnsafeDeterminateForward, "unsafe-determinate-forward-errors", false, "report a forwarded call that broke after it was sent as determinate unavailable, so clients retry a write that may have committed; breaks safety, exists only for correctness testing")
	_ = fs.MarkHidden("unsafe-determinate-forward-errors")
	fs.StringArrayVar(&cfg.FaultDelays, "fault-delay", nil, "hold the replica at a named point for a while, as POINT=DURATION (repeatable; points: "+strings.Join(faultdelay.Names(), ", ")+"); widens a timing window for the correctness harness without changing what the replica decides")
	_ = fs.MarkHidden("fault-delay")
	fs.IntVar(&r.Cache.TailVersions, "cache-tail-versions", cache.DefaultTailVersions, "recent versions the leader keeps per cached shard to answer scans from (a negative value: none)")
	fs.IntVar(&r.Cache.TailBytes, "cache-tail-bytes", cache.DefaultTailBytes, "payload bytes of one shard's kept versions, beyond its head")
	fs.IntVar(&r.Cache.MaxKeys, "cache-max-keys", cache.DefaultMaxKeys, "shard names the leader keeps to answer list-keys without reading every row (a negative value: none)")
	fs.IntVar(&r.HotShards, "hot-shards", cluster.DefaultHotShards, "how many recently used shards the leader records for the next leader to prefetch (at most 4096)")
	fs.DurationVar(&r.HotShardInterval, "hot-shard-interval", cluster.DefaultHotShardInterval, "how often the leader records its hot shards (a negative value: never)")
	fs.IntVar(&r.Coalesce.MaxOps, "batch-max-ops", coalesce.DefaultMaxOps, "most operations the leader sends to the backend in one write transaction")
	fs.IntVar(&r.Coalesce.MaxBytes, "batch-max-bytes", coalesce.DefaultMaxBytes, "most payload bytes in one write transaction (a larger write goes alone)")
	fs.IntVar(&r.Coalesce.MaxInFlight, "batch-max-in-flight", coalesce.DefaultMaxInFlight, "most write transactions the leader has on the backend at once; writes arriving meanwhile fill the next one")
	fs.IntVar(&r.Cache.MaxEntries, "cache-max-entries", cache.DefaultMaxEntries, "most shard heads the leader caches; a tiny cache evicts all the time, which the cache canary uses")
	_ = fs.MarkHidden("cache-max-entries")
	fs.DurationVar(&r.Timeouts.Heartbeat, "raft-heartbeat-timeout", cluster.DefaultTimeouts().Heartbeat, "Raft heartbeat timeout: a follower starts an election after this long without a leader")
	fs.DurationVar(&r.Timeouts.Election, "raft-election-timeout", cluster.DefaultTimeouts().Election, "Raft election timeout")
	ap := &r.Autopilot
	fs.BoolVar(&ap.CleanupDeadServers, "autopilot-cleanup-dead-servers", false, "let the leader remove members that have been dead (unreachable) for --autopilot-dead-server-threshold, never leaving fewer than --autopilot-min-quorum voters and only while a majority of the voters is healthy")
	fs.DurationVar(&ap.LastContactThreshold, "autopilot-last-contact-threshold", cluster.DefaultAutopilotLastContactThreshold, "a member that has not heard from the leader for longer is unhealthy (0: the default)")
	fs.Uint64Var(&ap.MaxTrailingLogs, "autopilot-max-trailing-logs", cluster.DefaultAutopilotMaxTrailingLogs, "a member whose Raft log trails the leader's by more entries is unhealthy (0: the default)")
	fs.IntVar(&ap.MinQuorum, "autopilot-min-quorum", cluster.DefaultAutopilotMinQuorum, "dead-server cleanup never leaves fewer voters than this (0: the default)")
	fs.DurationVar(&ap.ServerStabilizationTime, "autopilot-server-stabilization-time", cluster.DefaultAutopilotServerStabilizationTime, "a joining replica stays a staged non-voter until it has been healthy this long, then the leader promotes it to voter (0: the default)")
	fs.DurationVar(&ap.DeadServerThreshold, "autopilot-dead-server-threshold", cluster.DefaultAutopilotDeadServerThreshold, "a member the leader has not reached for this long is dead, which cleanup acts on (0: the default; at least 2s)")
	fs.DurationVar(&r.StatsInterval, "stats-interval", time.Minute, "how often to log one line of stats for the interval: calls and mean latency per operation, CaS outcomes, errors, cache hit rate, forwards, calls in flight (0: off)")
	cfg.TLS.register(fs)
	_ = cmd.MarkFlagRequired("backend") // the flag exists: cannot fail
	return cmd
}

// untilSignal builds a RunE for a long-running command: it sets up logging
// and runs fn with a context that SIGINT or SIGTERM cancels. fn calls stop
// once it starts shutting down, so that a second signal ends the process.
func untilSignal(logCfg *logConfig, fn func(ctx context.Context, stop func(), cmd *cobra.Command, log *slog.Logger) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		log, err := logCfg.logger(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return fn(ctx, stop, cmd, log)
	}
}

// runServe serves until ctx is done, then shuts down gracefully. stop is
// called once shutdown begins, so that a second signal ends the process at
// once instead of waiting for the drain.
func runServe(ctx context.Context, stop func(), cfg serveConfig, log *slog.Logger) error {
	if cfg.GCPercent < 0 {
		return fmt.Errorf("--gc-percent must not be negative, got %d", cfg.GCPercent)
	}
	if cfg.GCPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	peers, err := parsePeers(cfg.Peers)
	if err != nil {
		return err
	}
	rc := cfg.Replica
	rc.Peers = peers
	rc.Join = splitList(cfg.Join)
	rc.MaxDataBytes = cfg.MaxDataBytes
	rc.Logger = log
	if rc.ReadConsistency, err = cluster.ParseReadConsistency(cfg.ReadConsistency); err != nil {
		return fmt.Errorf("--read-consistency: %w", err)
	}
	if rc.FaultDelays, err = faultdelay.Parse(cfg.FaultDelays); err != nil {
		return fmt.Errorf("--fault-delay: %w", err)
	}
	if rc.ID == "" {
		return errors.New("--id is required (the host name could not be read)")
	}
	if rc.TLS, rc.Admission, err = cfg.TLS.build(log); err != nil {
		return err
	}
	rc.EnablePprof = cfg.TLS.EnablePprof
	if rc.Coalesce.MaxOps <= 0 || rc.Coalesce.MaxBytes <= 0 || rc.Coalesce.MaxInFlight <= 0 {
		return fmt.Errorf("--batch-max-ops, --batch-max-bytes and --batch-max-in-flight must be positive, got %d, %d and %d",
			rc.Coalesce.MaxOps, rc.Coalesce.MaxBytes, rc.Coalesce.MaxInFlight)
	}
	if rc.StatsInterval < 0 {
		return fmt.Errorf("--stats-interval must not be negative (0 turns the stats log off), got %v", rc.StatsInterval)
	}
	if rc.RequestTimeout <= 0 {
		return fmt.Errorf("--request-timeout must be positive, got %v", rc.RequestTimeout)
	}
	if err := rc.Autopilot.Validate(); err != nil {
		return err
	}
	if rc.BootstrapExpect == 0 && len(rc.Join) == 0 && len(rc.Peers) == 0 {
		// Without cluster flags a fresh data dir forms a one-replica cluster
		// (a data dir with state ignores this).
		rc.BootstrapExpect = 1
	}
	if strings.HasPrefix(cfg.Backend, "bolt:") && (rc.BootstrapExpect > 1 || len(rc.Join) > 0) {
		// Each process would get its own file: a failover would lose data.
		return errors.New("the embedded bolt backend cannot be shared between processes: a multi-replica cluster needs a postgres:// backend (committer dev runs a local cluster on bolt in one process)")
	}
	store, err := openBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the backend failed", "err", err)
		}
	}()
	rc.Backend = store
	// One replica per process: it owns the process-wide Raft metrics.
	if rc.RaftMetrics, err = metrics.InstallRaftMetrics(); err != nil {
		return err
	}
	srv, err := embed.Start(rc)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case <-srv.Stopped():
		log.Error("a server stopped serving; shutting down")
	}
	stop()
	if err := srv.Shutdown(cfg.ShutdownTimeout); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// openBackend opens the storage cfg names.
func openBackend(ctx context.Context, cfg serveConfig, log *slog.Logger) (backend.Fencer, error) {
	if cfg.MaxDataBytes <= 0 {
		return nil, fmt.Errorf("--max-data-bytes must be positive, got %d", cfg.MaxDataBytes)
	}
	if cfg.PGMaxConns < 0 {
		return nil, fmt.Errorf("--pg-max-conns must not be negative, got %d", cfg.PGMaxConns)
	}
	isolation, err := backendurl.ParseIsolation(cfg.Isolation)
	if err != nil {
		return nil, fmt.Errorf("--isolation: %w", err)
	}
	log.Info("opening backend", "backend", backendurl.Describe(cfg.Backend))
	store, err := backendurl.Open(ctx, cfg.Backend, backendurl.Options{
		MaxDataBytes: cfg.MaxDataBytes,
		Isolation:    isolation,
		MaxConns:     cfg.PGMaxConns,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("open backend: %w", err)
	}
	return store, nil
}

// defaultGCPercent: measured with committer bench (docs/benchmarks.md), a
// leader under 64 writers spent about a sixth of its CPU allocating and
// collecting at Go's default of 100; at 400 the same run went from 0.91x to
// 1.02x of direct PostgreSQL. The heap may grow to five times what is live
// (the head cache is most of it).
const defaultGCPercent = 400
