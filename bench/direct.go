package bench

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hacommit/committer/backend"
)

// Direct is PostgreSQL driven the way persist drives it without a
// committer: every process with its own pool, every CaS one statement in
// its own implicit transaction, no fence. Its table lives in its own schema,
// so it can share a database with a cluster under test.
type Direct struct {
	pool *pgxpool.Pool
}

var _ backend.Consensus = (*Direct)(nil)

// The statements, after persist's PostgresConsensus: the CaS inserts iff
// the shard's latest seqno is the expected one (or the shard is empty and
// the seqno is 0), and a concurrent winner makes it insert nothing.
const (
	directSchema = `CREATE SCHEMA IF NOT EXISTS committer_bench_direct`
	directTable  = `CREATE TABLE IF NOT EXISTS committer_bench_direct.consensus (
  shard text NOT NULL, sequence_number bigint NOT NULL, data bytea NOT NULL,
  PRIMARY KEY (shard, sequence_number))`
	directCAS = `INSERT INTO committer_bench_direct.consensus (shard, sequence_number, data)
SELECT $1::text, $2::bigint, $3::bytea
WHERE COALESCE((SELECT sequence_number FROM committer_bench_direct.consensus
                WHERE shard = $1::text ORDER BY sequence_number DESC LIMIT 1), -1) = $2::bigint - 1
ON CONFLICT DO NOTHING`
	directHead = `SELECT sequence_number, data FROM committer_bench_direct.consensus
WHERE shard = $1 ORDER BY sequence_number DESC LIMIT 1`
	directScan = `SELECT sequence_number, data FROM committer_bench_direct.consensus
WHERE shard = $1 AND sequence_number >= $2 ORDER BY sequence_number LIMIT $3`
	directTruncate = `DELETE FROM committer_bench_direct.consensus WHERE shard = $1 AND sequence_number < $2`
	directKeys     = `SELECT DISTINCT shard FROM committer_bench_direct.consensus ORDER BY shard`
)

// OpenDirect connects to url with a pool of maxConns and creates the
// benchmark's table.
func OpenDirect(ctx context.Context, url string, maxConns int32) (*Direct, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("direct postgres: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("direct postgres: %w", err)
	}
	for _, stmt := range []string{directSchema, directTable} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			pool.Close()
			return nil, fmt.Errorf("direct postgres: create the benchmark table: %w", err)
		}
	}
	return &Direct{pool: pool}, nil
}

// Close closes the pool.
func (d *Direct) Close() { d.pool.Close() }

// Head returns the shard's latest version.
func (d *Direct) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	var v backend.VersionedData
	var seq int64
	err := d.pool.QueryRow(ctx, directHead, shard).Scan(&seq, &v.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v.SeqNo = uint64(seq)
	return &v, nil
}

// Scan returns versions from from on.
func (d *Direct) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if limit > math.MaxInt64 {
		limit = math.MaxInt64
	}
	rows, err := d.pool.Query(ctx, directScan, shard, int64(from), int64(limit))
	if err != nil {
		return nil, err
	}
	var out []backend.VersionedData
	var seq int64
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
		out = append(out, backend.VersionedData{SeqNo: uint64(seq), Data: data})
		return nil
	})
	return out, err
}

// CompareAndSet runs the single statement.
func (d *Direct) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	data := v.Data
	if data == nil {
		data = []byte{}
	}
	tag, err := d.pool.Exec(ctx, directCAS, shard, int64(v.SeqNo), data)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// CompareAndSetMulti is not something persist does directly.
func (d *Direct) CompareAndSetMulti(context.Context, []backend.CASOp) ([]bool, error) {
	return nil, backend.Determinatef("%w: the direct target has no multi-CaS", backend.ErrInvalidArgument)
}

// Truncate deletes versions below seqno.
func (d *Direct) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	tag, err := d.pool.Exec(ctx, directTruncate, shard, int64(seqno))
	if err != nil {
		return 0, err
	}
	return uint64(tag.RowsAffected()), nil
}

// ListKeys lists the shards.
func (d *Direct) ListKeys(ctx context.Context) ([]string, error) {
	rows, err := d.pool.Query(ctx, directKeys)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Transactions returns the next transaction id the database will assign:
// the difference over a run is how many write transactions it ran (every
// transaction that wrote or locked a row takes one; reads, and a CaS that
// inserted nothing, take none), and this call takes one itself. pg_stat_database's
// counters would count reads too, but a backend flushes them up to 10s
// late, so they cannot bracket a run of a few seconds.
func (d *Direct) Transactions(ctx context.Context) (int64, error) {
	var n int64
	err := d.pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&n)
	return n, err
}
