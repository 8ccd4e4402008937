package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/backendurl"
	"github.com/hacommit/committer/rpc/server"
)

// defaultGRPCAddr listens on every interface on committer's gRPC port.
const defaultGRPCAddr = ":6882"

// serveConfig is everything a single-replica server needs.
type serveConfig struct {
	// Backend is the storage URL (see package backendurl).
	Backend string
	// GRPCAddr is the address the consensus gRPC service listens on.
	GRPCAddr string
	// MaxDataBytes bounds one version's data, in the server and the backend.
	MaxDataBytes int
	// Isolation is the PostgreSQL isolation level's name.
	Isolation string
	// PGMaxConns bounds the PostgreSQL pool; 0 is the backend's default.
	PGMaxConns int32
	// ShutdownTimeout bounds the wait for in-flight calls on shutdown.
	ShutdownTimeout time.Duration
}

func newServeCommand(logCfg *logConfig) *cobra.Command {
	cfg := serveConfig{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the persist consensus API over gRPC (single replica)",
		Long: "serve runs one committer replica that serves the persist consensus API over\n" +
			"gRPC in front of the backend named by --backend. It stops on SIGINT or\n" +
			"SIGTERM, letting in-flight calls finish for up to --shutdown-timeout.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logCfg.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, stop, cfg, log)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Backend, "backend", "", "storage URL: bolt:///path/to/file.db or postgres://user@host:5432/database (required)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", defaultGRPCAddr, "address the gRPC API listens on (host:port; an empty host means every interface)")
	fs.IntVar(&cfg.MaxDataBytes, "max-data-bytes", backend.DefaultMaxDataBytes, "largest version payload accepted, in bytes")
	fs.StringVar(&cfg.Isolation, "isolation", "serializable", "PostgreSQL transaction isolation: serializable or read-committed")
	fs.Int32Var(&cfg.PGMaxConns, "pg-max-conns", 0, "PostgreSQL connection pool size (0: the backend's default)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight calls before cancelling them")
	_ = cmd.MarkFlagRequired("backend") // the flag exists: cannot fail
	return cmd
}

// runServe serves until ctx is done, then shuts down gracefully. stop is
// called once shutdown begins, so that a second signal ends the process at
// once instead of waiting for the drain.
func runServe(ctx context.Context, stop func(), cfg serveConfig, log *slog.Logger) error {
	store, err := openBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the backend failed", "err", err)
		}
	}()
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen on --grpc-addr %s: %w", cfg.GRPCAddr, err)
	}
	srv := server.New(store, server.Config{MaxDataBytes: cfg.MaxDataBytes, Logger: log})
	return serveUntilDone(ctx, stop, srv, lis, cfg.ShutdownTimeout, log)
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

// serveUntilDone serves srv on lis until ctx is done or serving fails, then
// shuts it down, waiting up to shutdownTimeout for in-flight calls.
func serveUntilDone(ctx context.Context, stop func(), srv *server.Server, lis net.Listener, shutdownTimeout time.Duration, log *slog.Logger) error {
	// Buffered: Serve's result is delivered even if nobody waits for it.
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving persist consensus API", "grpc_addr", lis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case serveErr = <-served:
		log.Error("gRPC server failed", "err", serveErr)
	}
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if srv.Shutdown(shutdownCtx) {
		log.Info("in-flight calls finished")
	} else {
		log.Warn("shutdown timeout expired; cancelled the remaining calls", "timeout", shutdownTimeout)
	}
	if serveErr == nil {
		serveErr = <-served
	}
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) {
		return fmt.Errorf("serve gRPC: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}
