package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hacommit/committer/backend"
)

// applicationName identifies the service's sessions in pg_stat_activity and
// crdb_internal, so operators (and the fault tests) can find them.
const applicationName = "committer"

// defaultConnectTimeout bounds one connection attempt when the URL does not
// set connect_timeout, so a black-holed host fails a call instead of hanging
// until its context expires.
const defaultConnectTimeout = 10 * time.Second

// Backend is a backend.Fencer on PostgreSQL or CockroachDB. Handles returned
// by AtEpoch share one pool; Close any one of them once.
type Backend struct {
	shared *shared
	owner  string
	epoch  uint64
}

// shared is the state every handle of one Open has in common.
type shared struct {
	pool      *pgxpool.Pool
	logger    *slog.Logger
	maxData   int
	cockroach bool
	secrets   []string // password spellings to scrub from error text

	// schemaMu serialises schema (re)creation so that a vanished table seen
	// by many calls at once is recreated once, not by all of them racing.
	schemaMu sync.Mutex

	closeOnce sync.Once
}

var _ backend.Fencer = (*Backend)(nil)

// Open connects, detects CockroachDB, creates the schema if it is missing and
// returns the handle at epoch 0.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	level, err := cfg.Isolation.sqlLevel()
	if err != nil {
		return nil, err
	}
	if cfg.MaxDataBytes < 0 || cfg.MaxConns < 0 {
		return nil, fmt.Errorf("postgres: MaxDataBytes (%d) and MaxConns (%d) must not be negative", cfg.MaxDataBytes, cfg.MaxConns)
	}
	if cfg.URL == "" {
		return nil, errors.New("postgres: empty database URL")
	}
	secrets := passwordCandidates(cfg.URL)
	poolCfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The parse error quotes the URL (pgx redacts on a best-effort
		// basis only), so scrub it and keep no reference to the original.
		return nil, fmt.Errorf("postgres: invalid database URL: %s", scrub(err.Error(), secrets))
	}
	secrets = append(secrets, passwordSpellings(poolCfg.ConnConfig.Password)...)
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	poolCfg.MaxConns = maxConns
	poolCfg.ShouldPing = shouldPing
	if poolCfg.ConnConfig.ConnectTimeout == 0 {
		poolCfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, set := poolCfg.ConnConfig.RuntimeParams["application_name"]; !set {
		poolCfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	// Session characteristics, not a per-statement SET: every implicit
	// transaction (including a pipelined batch) then runs at this level, with
	// no extra round trip per call. Valid on PostgreSQL and CockroachDB.
	setIsolation := "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL " + level
	poolCfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, setIsolation)
		return err
	}

	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, &redactedError{msg: "postgres: create pool: " + scrub(err.Error(), secrets), err: err}
	}
	s := &shared{pool: pool, logger: logger, maxData: cfg.MaxDataBytes, secrets: secrets}
	if s.maxData == 0 {
		s.maxData = backend.DefaultMaxDataBytes
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, s.redact(fmt.Errorf("postgres: connect to %s: %w", describeTarget(poolCfg), err))
	}
	// CockroachDB announces itself in a parameter status on every
	// connection; server_version imitates PostgreSQL and must not be used,
	// and error codes are never used to tell the databases apart.
	crdbVersion := conn.Conn().PgConn().ParameterStatus("crdb_version")
	conn.Release()
	s.cockroach = crdbVersion != ""

	if err := s.ensureSchema(ctx); err != nil {
		pool.Close()
		return nil, s.redact(fmt.Errorf("postgres: prepare schema: %w", err))
	}
	attrs := []any{
		"target", describeTarget(poolCfg),
		"isolation", cfg.Isolation.String(),
		"max_conns", maxConns,
	}
	if s.cockroach {
		attrs = append(attrs, "cockroachdb", crdbVersion)
	}
	logger.Info("postgres backend ready", attrs...)
	return &Backend{shared: s}, nil
}

// describeTarget names the database without credentials, for logs and errors.
func describeTarget(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("user=%s host=%s port=%s database=%s", c.User, c.Host, strconv.Itoa(int(c.Port)), c.Database)
}

// IsCockroach reports whether the database is CockroachDB.
func (b *Backend) IsCockroach() bool { return b.shared.cockroach }

// AtEpoch returns a handle on the same pool, for the same owner, whose
// writes are bound to epoch.
func (b *Backend) AtEpoch(epoch uint64) backend.Fencer {
	return &Backend{shared: b.shared, owner: b.owner, epoch: epoch}
}

// Owned returns a handle on the same pool acting for owner, at epoch 0.
func (b *Backend) Owned(owner string) backend.Fencer {
	return &Backend{shared: b.shared, owner: owner}
}

// Close closes the pool shared by every handle.
func (b *Backend) Close() error {
	b.shared.closeOnce.Do(b.shared.pool.Close)
	return nil
}

// sqlEpoch converts an epoch to the signed column, rejecting values that do
// not fit (a Raft term never gets there, but a bad caller might).
func sqlEpoch(epoch uint64) (int64, error) {
	if epoch > math.MaxInt64 {
		return 0, backend.Determinatef("%w: epoch %d exceeds %d", backend.ErrInvalidArgument, epoch, int64(math.MaxInt64))
	}
	return int64(epoch), nil
}
