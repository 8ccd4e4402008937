package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/metrics"
)

// devReplicas is the size of the development cluster: the smallest that
// tolerates a failure.
const devReplicas = 3

type devConfig struct {
	Dir             string
	Host            string
	BasePort        int
	ReadConsistency string
	MaxDataBytes    int
	ShutdownTimeout time.Duration
}

func newDevCommand(logCfg *logConfig) *cobra.Command {
	cfg := devConfig{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local 3-replica cluster on the embedded backend",
		Long: "dev runs three replicas in one process, sharing one embedded bbolt file under\n" +
			"--dir, and prints the addresses to dial. Replica i (0, 1, 2) listens on\n" +
			"gRPC --base-port+10*i, Raft +1 and HTTP +2. Restarting it keeps the data.\n" +
			"It stops on SIGINT or SIGTERM.",
		Args: cobra.NoArgs,
		RunE: untilSignal(logCfg, func(ctx context.Context, _ func(), cmd *cobra.Command, log *slog.Logger) error {
			return runDev(ctx, cfg, cmd.OutOrStdout(), log)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Dir, "dir", ".committer-dev", "directory for the embedded database and the replicas' Raft data")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address the replicas listen on")
	fs.IntVar(&cfg.BasePort, "base-port", 6882, "first replica's gRPC port")
	fs.StringVar(&cfg.ReadConsistency, "read-consistency", string(cluster.Linearizable), "linearizable or leader")
	fs.IntVar(&cfg.MaxDataBytes, "max-data-bytes", backend.DefaultMaxDataBytes, "largest version payload accepted, in bytes")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for in-flight calls")
	return cmd
}

func runDev(ctx context.Context, cfg devConfig, out io.Writer, log *slog.Logger) error {
	if cfg.BasePort <= 0 || cfg.BasePort+10*devReplicas > 65535 {
		return fmt.Errorf("--base-port %d leaves no room for %d replicas", cfg.BasePort, devReplicas)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return err
	}
	dbPath := filepath.Join(cfg.Dir, "data.db")
	// One process, so the replicas can share the embedded file: only the
	// leader writes it, exactly as they would share a PostgreSQL database.
	store, err := bolt.Open(dbPath, bolt.Options{MaxDataBytes: cfg.MaxDataBytes, Logger: log, LockTimeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("embedded backend %s: %w", dbPath, err)
	}
	defer store.Close()

	addr := func(i, offset int) string { return net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.BasePort+10*i+offset)) }
	var peers []cluster.Peer
	for i := range devReplicas {
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("r%d", i+1), RaftAddr: addr(i, 1)})
	}
	rc, err := cluster.ParseReadConsistency(cfg.ReadConsistency)
	if err != nil {
		return fmt.Errorf("--read-consistency: %w", err)
	}
	// Raft's metrics are process-wide: the three replicas share them, and
	// each one's /metrics shows the same raft_* series, summed over all.
	raftMetrics, err := metrics.InstallRaftMetrics()
	if err != nil {
		return err
	}
	var running []*embed.Server
	defer func() {
		for _, srv := range running {
			if err := srv.Shutdown(cfg.ShutdownTimeout); err != nil {
				log.Error("replica shutdown", "id", srv.ID(), "err", err)
			}
		}
	}()
	for i, p := range peers {
		srv, err := embed.Start(embed.Config{
			ID:              p.ID,
			DataDir:         filepath.Join(cfg.Dir, p.ID),
			GRPCAddr:        addr(i, 0),
			RaftAddr:        p.RaftAddr,
			HTTPAddr:        addr(i, 2),
			BootstrapExpect: devReplicas,
			Peers:           peers,
			ReadConsistency: rc,
			MaxDataBytes:    cfg.MaxDataBytes,
			Backend:         store,
			RaftMetrics:     raftMetrics,
			Logger:          log.With("replica", p.ID),
		})
		if err != nil {
			return err
		}
		running = append(running, srv)
	}

	fmt.Fprintf(out, "committer dev: %d replicas on the embedded backend %s\n", devReplicas, dbPath)
	for i, p := range peers {
		fmt.Fprintf(out, "  %s  grpc %s  http http://%s\n", p.ID, addr(i, 0), addr(i, 2))
	}
	fmt.Fprintf(out, "Dial any of them, e.g.\n  grpcurl -plaintext %s list\n  committer status --addr %s\nCtrl-C stops the cluster.\n", addr(0, 0), addr(0, 0))

	select {
	case <-ctx.Done():
		log.Info("stopping the dev cluster")
	case err = <-firstFailure(ctx, running):
	}
	for _, srv := range running {
		if serr := srv.Shutdown(cfg.ShutdownTimeout); serr != nil {
			log.Error("replica shutdown", "id", srv.ID(), "err", serr)
		}
	}
	running = nil
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// firstFailure delivers the first replica whose server stops on its own.
// Its goroutines end with ctx.
func firstFailure(ctx context.Context, rs []*embed.Server) <-chan error {
	ch := make(chan error, len(rs))
	for _, srv := range rs {
		go func() {
			select {
			case <-srv.Stopped():
				ch <- fmt.Errorf("replica %s: a server stopped serving", srv.ID())
			case <-ctx.Done():
			}
		}()
	}
	return ch
}
