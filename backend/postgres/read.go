package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/hacommit/committer/backend"
)

// Head returns the shard's latest version, or nil.
func (b *Backend) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	if err := backend.ValidateShard(shard); err != nil {
		return nil, err
	}
	var head *backend.VersionedData
	err := b.shared.read(ctx, "head", func(ctx context.Context, conn *pgx.Conn) error {
		head = nil
		return b.query(ctx, conn, sqlHead, []any{shard}, func(rows pgx.Rows) error {
			var seqno int64
			var data []byte
			_, err := pgx.ForEachRow(rows, []any{&seqno, &data}, func() error {
				head = &backend.VersionedData{SeqNo: uint64(seqno), Data: data}
				return nil
			})
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return head, nil
}

// HeadMany returns the heads of shards in one statement (sqlHeadMany).
func (b *Backend) HeadMany(ctx context.Context, shards []string) ([]*backend.VersionedData, error) {
	for _, s := range shards {
		if err := backend.ValidateShard(s); err != nil {
			return nil, err
		}
	}
	var heads map[string]*backend.VersionedData
	err := b.shared.read(ctx, "head many", func(ctx context.Context, conn *pgx.Conn) error {
		heads = make(map[string]*backend.VersionedData, len(shards))
		return b.query(ctx, conn, sqlHeadMany, []any{shards}, func(rows pgx.Rows) error {
			var shard string
			var seqno int64
			var data []byte
			_, err := pgx.ForEachRow(rows, []any{&shard, &seqno, &data}, func() error {
				heads[shard] = &backend.VersionedData{SeqNo: uint64(seqno), Data: data}
				return nil
			})
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]*backend.VersionedData, len(shards))
	for i, s := range shards {
		out[i] = heads[s]
	}
	return out, nil
}

// Scan returns up to limit versions with seqno >= from, ascending.
func (b *Backend) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := backend.ValidateScan(shard, from); err != nil {
		return nil, err
	}
	var out []backend.VersionedData
	err := b.shared.read(ctx, "scan", func(ctx context.Context, conn *pgx.Conn) error {
		out = nil
		return b.query(ctx, conn, sqlScan, []any{shard, int64(from), backend.ClampLimit(limit)}, func(rows pgx.Rows) error {
			var seqno int64
			var data []byte
			_, err := pgx.ForEachRow(rows, []any{&seqno, &data}, func() error {
				// pgx decodes each bytea into a fresh slice, so rows never
				// share a buffer.
				out = append(out, backend.VersionedData{SeqNo: uint64(seqno), Data: data})
				return nil
			})
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListKeys returns every shard that has a version, in byte order.
func (b *Backend) ListKeys(ctx context.Context) ([]string, error) {
	var keys []string
	err := b.shared.read(ctx, "list keys", func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sqlListKeys)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return keys, nil
}

// query runs one read statement and hands its rows to read. On a handle
// bound to an epoch (the leader's, whose reads fill its cache) the statement
// is preceded by sqlReadFence in the same implicit transaction, so that the
// database orders the read after the fence that made this epoch current
// (see sqlReadFence); the epoch read is not compared: reads need no epoch.
func (b *Backend) query(ctx context.Context, conn *pgx.Conn, sql string, args []any, read func(pgx.Rows) error) error {
	if b.epoch == 0 {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		return read(rows)
	}
	batch := &pgx.Batch{}
	batch.Queue(sqlReadFence)
	batch.Queue(sql, args...)
	br := conn.SendBatch(ctx, batch)
	var stored int64
	err := br.QueryRow().Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil // a vanished fence row: the writes report it
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			err = read(rows)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// read runs a read-only statement with the same recovery as writes: the
// schema is recreated once if it vanished, a stale cached plan is retried
// once, and a serialization failure is retried with backoff. A read has no
// effect, so every failure is determinate.
func (s *shared) read(ctx context.Context, op string, run func(ctx context.Context, conn *pgx.Conn) error) error {
	err := s.withRecovery(ctx, op, func(ctx context.Context) error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		return run(ctx, conn.Conn())
	})
	if err == nil {
		return nil
	}
	var be *backend.Error
	if errors.As(err, &be) {
		return err
	}
	return backend.NewDeterminate(s.redact(fmt.Errorf("postgres: %s: %w", op, err)))
}
