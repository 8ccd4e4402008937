package postgres

import (
	"context"
	"fmt"
	"time"
)

// Schema statements. They run once per Open and again when a call finds a
// table gone (42P01); each is idempotent, and each runs as its own implicit
// transaction because CockroachDB handles DDL inside explicit transactions
// poorly.

// sqlCountTables tells which of the two tables exist, so that a deployment
// whose role may not CREATE in the database can still run against tables an
// operator created (PostgreSQL checks the CREATE privilege of CREATE SCHEMA
// IF NOT EXISTS before it checks existence). information_schema exists on
// both databases.
const sqlCountTables = `SELECT count(*) FROM information_schema.tables
WHERE table_schema = 'consensus' AND table_name IN ('consensus', 'committer_fence')`

// User-defined schemas exist on CockroachDB since v20.2.
const sqlCreateSchema = `CREATE SCHEMA IF NOT EXISTS consensus`

// The data table is exactly persist's consensus table, so the service can
// front an existing persist consensus database. The primary key (shard,
// sequence_number) is the only index: every per-shard statement is an
// equality on its leading column plus a range/order on the second.
const sqlCreateTable = `CREATE TABLE IF NOT EXISTS consensus.consensus (
	shard text NOT NULL,
	sequence_number bigint NOT NULL,
	data bytea NOT NULL,
	PRIMARY KEY (shard, sequence_number)
)`

// CockroachDB only (PostgreSQL answers 22023): automatic statistics on a
// table whose rows churn constantly cost more than they help, and the plans
// here do not depend on statistics.
const sqlCreateTableCockroachOptions = ` WITH (sql_stats_automatic_collection_enabled = false)`

// CockroachDB only (PostgreSQL answers 42601): truncated versions are
// garbage collected after 10 minutes instead of the default, keeping the MVCC
// history of a hot table small. Needs a privilege; 42501 without it is fine.
const sqlConfigureZone = `ALTER TABLE consensus.consensus CONFIGURE ZONE USING gc.ttlseconds = 600`

// The fencing table holds exactly one row (id = 1, enforced by the CHECK) so
// that every writer has a row to read or lock, and Fence is a one-row write.
// The row names the owning cluster (empty: unowned, claimable by the first
// fence) and when it was last fenced, by the database's clock.
const sqlCreateFenceTable = `CREATE TABLE IF NOT EXISTS consensus.committer_fence (
	id int8 NOT NULL PRIMARY KEY,
	epoch int8 NOT NULL,
	owner text NOT NULL DEFAULT '',
	fenced_at timestamptz,
	CHECK (id = 1)
)`

// A fence table made by an older release lacks the owner columns.
const (
	sqlCountFenceColumns = `SELECT count(*) FROM information_schema.columns
WHERE table_schema = 'consensus' AND table_name = 'committer_fence' AND column_name IN ('owner', 'fenced_at')`
	sqlAddFenceOwner    = `ALTER TABLE consensus.committer_fence ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT ''`
	sqlAddFenceFencedAt = `ALTER TABLE consensus.committer_fence ADD COLUMN IF NOT EXISTS fenced_at timestamptz`
)

// fenceMarkerShard names the marker row that records, in the data table,
// that this database has had a fence. Its seqno is negative, so the API never
// returns, counts or deletes it (every statement filters sequence_number >=
// 0), whatever shard names clients use.
const (
	fenceMarkerShard = "committer/fence-marker"
	fenceMarkerSeqNo = -2
)

// sqlHasFenceMarker reports whether the marker row exists.
const sqlHasFenceMarker = `SELECT count(*) FROM consensus.consensus
WHERE shard = $1::text AND sequence_number = $2::int8`

// sqlInsertFenceMarker writes the marker row; idempotent.
const sqlInsertFenceMarker = `INSERT INTO consensus.consensus (shard, sequence_number, data) VALUES ($1::text, $2::int8, ''::bytea)
ON CONFLICT DO NOTHING`

// The row starts unowned at epoch 0, the epoch of the handle Open returns.
// ON CONFLICT DO NOTHING keeps an existing row. It is inserted only for a
// database that never had a fence (no marker row): a fence row that vanished
// from a database that had one is not recreated, since the new row could not
// know the epoch the old one held, and a deposed leader could then fence
// and write again (docs/architecture.md §5.6); Adopt recreates it. Valid on
// both databases.
const sqlInsertFenceRow = `INSERT INTO consensus.committer_fence (id, epoch) VALUES (1, 0)
ON CONFLICT (id) DO NOTHING`

// sqlHasFenceRow reports whether the fence row exists.
const sqlHasFenceRow = `SELECT count(*) FROM consensus.committer_fence WHERE id = 1`

// schemaAttempts bounds retries when several replicas create the schema at
// once: PostgreSQL's IF NOT EXISTS is not race-free (23505 on a catalog
// index, 42P06/42P07, or 42710 for the table's row type), and the loser
// succeeds on the next attempt.
const schemaAttempts = 5

// ensureSchema creates whatever part of the schema is missing and makes sure
// the fence row exists.
func (s *shared) ensureSchema(ctx context.Context) error {
	s.schemaMu.Lock()
	defer s.schemaMu.Unlock()
	var err error
	for attempt := 1; attempt <= schemaAttempts; attempt++ {
		if err = s.ensureSchemaOnce(ctx); err == nil {
			return nil
		}
		switch sqlState(err) {
		case codeUniqueViolation, codeDuplicateSchema, codeDuplicateTable, codeDuplicateObject, codeSerializationFailure:
			s.logger.Debug("postgres: concurrent schema creation, retrying", "err", s.redact(err))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		default:
			return err
		}
	}
	return err
}

func (s *shared) ensureSchemaOnce(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var present int
	if err := conn.QueryRow(ctx, sqlCountTables).Scan(&present); err != nil {
		return fmt.Errorf("look for tables: %w", err)
	}
	if present < 2 {
		createTable := sqlCreateTable
		if s.cockroach {
			createTable += sqlCreateTableCockroachOptions
		}
		for _, stmt := range []string{sqlCreateSchema, createTable, sqlCreateFenceTable} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", firstLine(stmt), err)
			}
		}
		s.logger.Info("postgres: created consensus schema", "cockroachdb", s.cockroach)
		if s.cockroach {
			if _, err := conn.Exec(ctx, sqlConfigureZone); err != nil {
				if sqlState(err) == codeInsufficientPrivilege {
					s.logger.Info("postgres: no privilege to set gc.ttlseconds on consensus.consensus; keeping the zone default")
				} else {
					// A tuning knob, not a correctness requirement (some
					// managed clusters refuse zone changes): keep going.
					s.logger.Warn("postgres: cannot set gc.ttlseconds on consensus.consensus", "err", s.redact(err))
				}
			}
		}
	}
	var columns int
	if err := conn.QueryRow(ctx, sqlCountFenceColumns).Scan(&columns); err != nil {
		return fmt.Errorf("look for fence columns: %w", err)
	}
	if columns < 2 {
		for _, stmt := range []string{sqlAddFenceOwner, sqlAddFenceFencedAt} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", firstLine(stmt), err)
			}
		}
		s.logger.Info("postgres: added the owner columns to the fence table")
	}
	var rows, markers int
	if err := conn.QueryRow(ctx, sqlHasFenceRow).Scan(&rows); err != nil {
		return fmt.Errorf("look for the fence row: %w", err)
	}
	if err := conn.QueryRow(ctx, sqlHasFenceMarker, fenceMarkerShard, fenceMarkerSeqNo).Scan(&markers); err != nil {
		return fmt.Errorf("look for the fence marker: %w", err)
	}
	switch {
	case rows == 0 && markers > 0:
		// The database had a fence and lost it: writes stay refused until
		// an operator adopts the database.
		s.logger.Error("postgres: the fence row is missing from a database that had one; no leader can write until an operator runs `committer fence adopt --force`")
		return nil
	case rows == 0:
		if _, err := conn.Exec(ctx, sqlInsertFenceRow); err != nil {
			return fmt.Errorf("insert fence row: %w", err)
		}
	}
	if markers == 0 {
		if _, err := conn.Exec(ctx, sqlInsertFenceMarker, fenceMarkerShard, fenceMarkerSeqNo); err != nil {
			return fmt.Errorf("insert fence marker: %w", err)
		}
	}
	return nil
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}
