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
		var seqno int64
		var data []byte
		err := conn.QueryRow(ctx, sqlHead, shard).Scan(&seqno, &data)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			head = nil
			return nil
		case err != nil:
			return err
		}
		head = &backend.VersionedData{SeqNo: uint64(seqno), Data: data}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return head, nil
}

// Scan returns up to limit versions with seqno >= from, ascending.
func (b *Backend) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := backend.ValidateScan(shard, from); err != nil {
		return nil, err
	}
	var out []backend.VersionedData
	err := b.shared.read(ctx, "scan", func(ctx context.Context, conn *pgx.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, sqlScan, shard, int64(from), backend.ClampLimit(limit))
		if err != nil {
			return err
		}
		var seqno int64
		var data []byte
		_, err = pgx.ForEachRow(rows, []any{&seqno, &data}, func() error {
			// pgx decodes each bytea into a fresh slice, so rows never share
			// a buffer.
			out = append(out, backend.VersionedData{SeqNo: uint64(seqno), Data: data})
			return nil
		})
		return err
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
