package client_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/backend/postgres"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestConformanceOverBolt runs the whole consensus contract through
// client -> gRPC over TCP -> server -> bolt.
func TestConformanceOverBolt(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
		srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
		return rpctest.Dial(t, []string{srv.Addr})
	})
}

// TestConformanceOverPostgres runs the whole consensus contract through
// client -> gRPC over TCP -> server -> PostgreSQL.
func TestConformanceOverPostgres(t *testing.T) {
	pgSrv := pgtest.Require(t, pg)
	for _, isolation := range []postgres.Isolation{postgres.Serializable, postgres.ReadCommitted} {
		t.Run(isolation.String(), func(t *testing.T) {
			conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
				store := openPostgres(t, pgSrv.CreateDatabase(t), isolation, 0)
				srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
				return rpctest.Dial(t, []string{srv.Addr})
			})
		})
	}
}

func openPostgres(t *testing.T, url string, isolation postgres.Isolation, maxConns int32) *postgres.Backend {
	t.Helper()
	store, err := postgres.Open(context.Background(), postgres.Config{URL: url, Isolation: isolation, MaxConns: maxConns, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close postgres: %v", err)
		}
	})
	return store
}
