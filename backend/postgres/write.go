package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/internal/backoff"
)

// Serialization failures (40001) abort a transaction before it takes effect,
// so the whole batch is retried, a bounded number of times with jittered
// exponential backoff (so racing writers spread out), before the caller gets a
// determinate ErrRetryable.
const (
	maxAbortRetries = 8
	retryBaseDelay  = time.Millisecond
	retryMaxDelay   = 64 * time.Millisecond
)

// acquireError marks a failure to get a connection: nothing was sent.
type acquireError struct{ err error }

func (e *acquireError) Error() string { return "acquire connection: " + e.err.Error() }
func (e *acquireError) Unwrap() error { return e.err }

// CompareAndSet appends v to shard iff v.SeqNo directly follows the head.
func (b *Backend) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := backend.ValidateCAS(shard, v, b.shared.maxData); err != nil {
		return false, err
	}
	epoch, err := sqlEpoch(b.epoch)
	if err != nil {
		return false, err
	}
	var committed bool
	err = b.shared.write(ctx, "compare-and-set", func(ctx context.Context, conn *pgx.Conn) error {
		committed = false
		var inserted int
		out, err := fencedBatch(ctx, conn, sqlCAS, []any{shard, int64(v.SeqNo), nonNil(v.Data), epoch, b.owner},
			func(rows pgx.Rows) (err error) {
				inserted, err = countRows(rows)
				return err
			})
		if err != nil && sqlState(err) == codeUniqueViolation && out.fenceRow {
			// Another writer inserted (shard, seqno) first; the transaction
			// rolled back. The head has moved to at least seqno, so a
			// mismatch is the truthful answer (unless the epoch was stale).
			err, inserted = nil, 0
		}
		if err != nil {
			return err
		}
		if inserted == 1 {
			committed = true
			return nil
		}
		return out.nothingWritten(b.owner, epoch)
	})
	if err != nil {
		return false, err
	}
	return committed, nil
}

// CompareAndSetMulti applies every op in one statement: one round trip, one
// transaction, one outcome per op in order.
func (b *Backend) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := backend.ValidateCASMulti(ops, b.shared.maxData); err != nil {
		return nil, err
	}
	epoch, err := sqlEpoch(b.epoch)
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return []bool{}, nil
	}
	// Rows go in shard order, so concurrent multi-row inserts take their
	// index locks in one order and do not deadlock each other (40P01);
	// results are matched by shard, not position.
	sorted := slices.Clone(ops)
	slices.SortFunc(sorted, func(a, b backend.CASOp) int { return strings.Compare(a.Shard, b.Shard) })
	shards := make([]string, len(sorted))
	seqs := make([]int64, len(sorted))
	datas := make([][]byte, len(sorted))
	for i, op := range sorted {
		shards[i], seqs[i], datas[i] = op.Shard, int64(op.New.SeqNo), nonNil(op.New.Data)
	}
	var committed map[string]bool
	err = b.shared.write(ctx, "compare-and-set-multi", func(ctx context.Context, conn *pgx.Conn) error {
		committed = make(map[string]bool, len(ops))
		out, err := fencedBatch(ctx, conn, sqlCASMulti, []any{shards, seqs, datas, epoch, b.owner},
			func(rows pgx.Rows) error {
				var shard string
				_, err := pgx.ForEachRow(rows, []any{&shard}, func() error {
					committed[shard] = true
					return nil
				})
				return err
			})
		if err != nil {
			// 23505 here fails the statement for every element, including
			// ones that would have committed: withRecovery retries the batch,
			// and the next attempt sees the conflicting row.
			return err
		}
		if len(committed) > 0 {
			return nil
		}
		return out.nothingWritten(b.owner, epoch)
	})
	if err != nil {
		return nil, err
	}
	result := make([]bool, len(ops))
	for i, op := range ops {
		result[i] = committed[op.Shard]
	}
	return result, nil
}

// Truncate deletes the versions below seqno if the head is at least seqno.
func (b *Backend) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	if err := backend.ValidateTruncate(shard, seqno); err != nil {
		return 0, err
	}
	epoch, err := sqlEpoch(b.epoch)
	if err != nil {
		return 0, err
	}
	var deleted int64
	err = b.shared.write(ctx, "truncate", func(ctx context.Context, conn *pgx.Conn) error {
		var head *int64
		deleted = 0
		out, err := fencedBatch(ctx, conn, sqlTruncate, []any{shard, int64(seqno), epoch, b.owner},
			func(rows pgx.Rows) error {
				n := 0
				_, err := pgx.ForEachRow(rows, []any{&head, &deleted}, func() error {
					n++
					return nil
				})
				if err == nil && n != 1 {
					err = fmt.Errorf("truncate returned %d rows, want 1", n)
				}
				return err
			})
		if err != nil {
			return err
		}
		if deleted > 0 {
			return nil
		}
		if err := out.nothingWritten(b.owner, epoch); err != nil {
			return err
		}
		if head == nil {
			return backend.Determinatef("%w: shard %q is empty, cannot truncate to %d", backend.ErrTruncateAboveHead, shard, seqno)
		}
		if *head < int64(seqno) {
			return backend.Determinatef("%w: shard %q: truncate to %d, head is %d", backend.ErrTruncateAboveHead, shard, seqno, *head)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return uint64(deleted), nil
}

// Fence raises the stored epoch to epoch for the handle's owner (see
// backend.Fencer). It is one statement (sqlFence), so the window in which
// writers wait for it is one short row update.
func (b *Backend) Fence(ctx context.Context, epoch uint64) error {
	e, err := sqlEpoch(epoch)
	if err != nil {
		return err
	}
	return b.shared.write(ctx, "fence", func(ctx context.Context, conn *pgx.Conn) error {
		var stored int64
		err := conn.QueryRow(ctx, sqlFence, e, b.owner).Scan(&stored)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Nothing was written. The row is read only to explain the
		// refusal; the refusal itself was decided by the update.
		st, serr := readFenceState(ctx, conn)
		switch {
		case serr != nil:
			return backend.Determinatef("%w: the fence refused epoch %d (%v)", backend.ErrFenced, epoch, serr)
		case st.Lost:
			return backend.Determinatef("%w: the fence row is missing from a database that had one; run `committer fence adopt --force`", backend.ErrFenceLost)
		case st.Owner != "" && st.Owner != b.owner:
			return backend.Determinatef("%w: the database belongs to cluster %s (epoch %d, fenced %s); this cluster is %s; to take it over, stop that cluster and run `committer fence adopt --force`",
				backend.ErrForeignOwner, st.Owner, st.Epoch, fencedAgo(st), ownerName(b.owner))
		}
		return backend.Determinatef("%w: stored epoch %d is above %d", backend.ErrFenced, st.Epoch, epoch)
	})
}

// FenceState reads the fence row.
func (b *Backend) FenceState(ctx context.Context) (backend.FenceState, error) {
	var st backend.FenceState
	err := b.shared.read(ctx, "fence state", func(ctx context.Context, conn *pgx.Conn) (err error) {
		st, err = readFenceState(ctx, conn)
		return err
	})
	return st, err
}

// Adopt makes the handle's owner the owner of the fence at epoch (sqlAdopt),
// recreating a lost row.
func (b *Backend) Adopt(ctx context.Context, epoch uint64) error {
	e, err := sqlEpoch(epoch)
	if err != nil {
		return err
	}
	if b.owner == "" {
		return backend.Determinatef("%w: adopting a database needs an owner", backend.ErrInvalidArgument)
	}
	err = b.shared.write(ctx, "adopt fence", func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sqlAdopt, e, b.owner)
		return err
	})
	if err == nil {
		b.shared.logger.Warn("postgres: fence adopted", "owner", b.owner, "epoch", epoch)
	}
	return err
}

func readFenceState(ctx context.Context, conn *pgx.Conn) (backend.FenceState, error) {
	var st backend.FenceState
	var epoch int64
	var at *time.Time
	err := conn.QueryRow(ctx, sqlFenceState).Scan(&epoch, &st.Owner, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return backend.FenceState{Lost: true}, nil
	}
	if err != nil {
		return st, err
	}
	st.Epoch = uint64(epoch)
	if at != nil {
		st.FencedAt = *at
	}
	return st, nil
}

// ownerName spells an owner for messages.
func ownerName(owner string) string {
	if owner == "" {
		return "no cluster (unowned)"
	}
	return owner
}

func fencedAgo(st backend.FenceState) string {
	if st.FencedAt.IsZero() {
		return "at an unknown time"
	}
	return time.Since(st.FencedAt).Round(time.Second).String() + " ago"
}

// batchOutcome is what the fence read of a write batch saw.
type batchOutcome struct {
	stored      int64  // the stored epoch
	storedOwner string // the stored owner
	fenceRow    bool   // false if the fence row did not exist
}

// nothingWritten explains a write batch that wrote nothing: another owner
// or a stale epoch (ErrFenced), a missing fence row (errFenceRowMissing), or
// nil for an ordinary mismatch.
func (o batchOutcome) nothingWritten(owner string, epoch int64) error {
	if !o.fenceRow {
		return errFenceRowMissing
	}
	if o.storedOwner != owner {
		return backend.Determinatef("%w: the fence belongs to %s, this handle writes for %s", backend.ErrFenced, ownerName(o.storedOwner), ownerName(owner))
	}
	if o.stored != epoch {
		return backend.Determinatef("%w: stored epoch %d, this handle writes at epoch %d", backend.ErrFenced, o.stored, epoch)
	}
	return nil
}

// fencedBatch sends the fence read (sqlLockFence) and the write as ONE pgx
// batch: the extended-protocol messages of both statements followed by a
// single Sync. Both databases run everything up to a Sync as one implicit
// transaction, so the fence read and the write commit or abort together, and
// the whole write costs one round trip (plus one for preparing the
// statements the first time a connection sees them, in its own Sync).
// TestBatchIsOneTransaction checks this on PostgreSQL.
//
// The write statement also checks the epoch itself, because it is already in
// the pipeline when the fence read's result comes back: a fenced batch must
// write nothing without any client-side decision.
//
// The outcome is only trusted once Close returned nil: the commit happens at
// the Sync, after the write's rows were sent, so rows followed by a broken
// connection mean "maybe committed".
func fencedBatch(ctx context.Context, conn *pgx.Conn, sql string, args []any, read func(pgx.Rows) error) (batchOutcome, error) {
	batch := &pgx.Batch{}
	batch.Queue(sqlLockFence)
	batch.Queue(sql, args...)
	br := conn.SendBatch(ctx, batch)
	var out batchOutcome
	err := br.QueryRow().Scan(&out.stored, &out.storedOwner)
	switch {
	case err == nil:
		out.fenceRow = true
	case errors.Is(err, pgx.ErrNoRows):
		// No fence row: the write's epoch predicate compares with NULL
		// and writes nothing; its result is still read to be sure.
		err = nil
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
	return out, err
}

// write runs one write attempt function with recovery and classifies the
// final error as determinate or indeterminate.
func (s *shared) write(ctx context.Context, op string, run func(ctx context.Context, conn *pgx.Conn) error) error {
	err := s.withRecovery(ctx, op, func(ctx context.Context) error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return &acquireError{err: err}
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
	if errors.Is(err, errFenceRowMissing) {
		return backend.Determinatef("postgres: %s: %w: the fence row is missing from a database that had one; run `committer fence adopt --force`", op, backend.ErrFenceLost)
	}
	wrapped := s.redact(fmt.Errorf("postgres: %s: %w", op, err))
	var ae *acquireError
	if errors.As(err, &ae) || isDeterminate(err) {
		return backend.NewDeterminate(wrapped)
	}
	return backend.NewIndeterminate(wrapped)
}

// withRecovery runs attempt until it succeeds or fails in a way that retrying
// cannot fix. It only retries failures known to have had no effect:
//   - 42P01 (a table vanished) or a missing fence row: recreate the schema,
//     retry once;
//   - 0A000 "cached plan must not change result type": retry once (pgx has
//     dropped the stale prepared statement);
//   - 40001, 40P01 (a deadlock victim) and 23505 on a multi-row insert:
//     retry with backoff, at most maxAbortRetries times, then a determinate
//     ErrRetryable.
//
// All three are server ERRORs, which roll the implicit transaction back.
func (s *shared) withRecovery(ctx context.Context, op string, attempt func(ctx context.Context) error) error {
	recreated, replanned := false, false
	aborts := 0
	for {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		code := sqlState(err)
		switch {
		case !recreated && (code == codeUndefinedTable || errors.Is(err, errFenceRowMissing)):
			recreated = true
			s.logger.Warn("postgres: consensus schema missing, recreating it", "op", op, "err", s.redact(err))
			if serr := s.ensureSchema(ctx); serr != nil {
				return backend.NewDeterminate(s.redact(fmt.Errorf("postgres: %s: recreate schema after %v: %w", op, err, serr)))
			}
		case !replanned && isCachedPlanChanged(err):
			replanned = true
			s.logger.Debug("postgres: cached plan changed, retrying", "op", op)
		case code == codeSerializationFailure || code == codeDeadlockDetected || code == codeUniqueViolation:
			aborts++
			if aborts > maxAbortRetries {
				return backend.NewDeterminate(s.redact(fmt.Errorf("postgres: %s: %w: gave up after %d aborts: %w", op, backend.ErrRetryable, aborts, err)))
			}
			if !backoff.Sleep(ctx, backoff.Policy{Initial: retryBaseDelay, Max: retryMaxDelay}.Delay(aborts)) {
				return backend.NewDeterminate(s.redact(fmt.Errorf("postgres: %s: %w: %w (last abort: %v)", op, backend.ErrRetryable, ctx.Err(), err)))
			}
		default:
			return err
		}
	}
}

// countRows consumes rows and returns how many there were.
func countRows(rows pgx.Rows) (int, error) {
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	return n, rows.Err()
}

// nonNil maps nil to an empty slice: pgx sends a nil []byte as NULL, and
// data is NOT NULL (an empty version is empty bytes).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
