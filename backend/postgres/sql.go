package postgres

// The statements the service runs, with the argument for each.
//
// Common ground for every comment below:
//
//   - Every statement runs in an implicit transaction (autocommit, or one
//     pipelined batch ending in a single Sync, which both databases run as
//     one implicit transaction). A statement therefore reads one snapshot
//     taken after it arrived and before it answered: under READ COMMITTED
//     that snapshot includes every transaction committed before the
//     statement started; under SERIALIZABLE (PostgreSQL SSI, CockroachDB)
//     the database additionally orders the transaction with every
//     conflicting one or aborts it with 40001, which is determinate.
//   - A shard's latest non-negative seqno never decreases: CaS appends
//     latest+1 only, and truncate never deletes the latest version.
//   - Rows with a negative seqno (persist deployments may keep a sentinel at
//     -1) are excluded by "sequence_number >= 0" everywhere, so they are
//     never returned, counted, deleted, or taken for a head.
//   - Index: pgx prepares every statement (its statement cache), and
//     PostgreSQL switches a prepared statement to a generic plan, built
//     without the parameter values, after five executions. A generic plan
//     that estimated rows per shard from statistics could choose a table scan
//     for a shard the statistics have never seen; these statements avoid
//     that by always putting an equality on the leading primary-key column
//     (shard) and ordering or bounding only the second (sequence_number), for
//     which the primary-key index scan is the cheapest plan whatever the
//     estimate (TestPlansStayOnPrimaryKey proves it with
//     plan_cache_mode = force_generic_plan). CockroachDB plans the same
//     shape as a constrained scan of the primary index.
//   - Placeholders are always cast ($1::text): CockroachDB infers types less
//     eagerly than PostgreSQL, and the casts make the prepared types explicit.

// sqlHead reads the latest version.
//
// Linearizable: one statement, one snapshot; the result is the latest
// committed version at that instant under both isolation levels (no write of
// this service spans more than one statement in a way a reader could observe:
// writes are single implicit transactions). ORDER BY ... DESC LIMIT 1, not
// max(): neither database allows max() with a locking clause, and the
// limit form is a backward index scan that stops after one row.
//
// Index: shard = $1 on the leading key column plus ORDER BY the second is an
// index range scan (backward) in any plan, generic or custom.
const sqlHead = `SELECT sequence_number, data FROM consensus.consensus
WHERE shard = $1::text AND sequence_number >= 0
ORDER BY sequence_number DESC
LIMIT 1`

// sqlHeadMany is sqlHead for many shards in one statement: each element of
// $1 joined with its latest version (shards without one are left out).
//
// Linearizable: one statement, one snapshot, like sqlHead; on a bound
// handle it runs after sqlReadFence in the same transaction.
//
// Index: the lateral subquery is sqlHead per shard, a backward index range
// scan that stops after one row. LATERAL and unnest are valid on
// CockroachDB too.
const sqlHeadMany = `SELECT s.shard, h.sequence_number, h.data
FROM unnest($1::text[]) AS s(shard)
CROSS JOIN LATERAL (SELECT c.sequence_number, c.data FROM consensus.consensus AS c
                    WHERE c.shard = s.shard AND c.sequence_number >= 0
                    ORDER BY c.sequence_number DESC
                    LIMIT 1) AS h`

// sqlScan reads versions from $2 on, ascending, at most $3 of them.
//
// Linearizable: one statement, one snapshot, under both isolation levels.
// $2 is never negative (validated), so the sentinel rows are excluded by it.
//
// Index: shard = $1 plus a range on sequence_number, in key order: a forward
// index range scan with the limit applied as rows stream out.
const sqlScan = `SELECT sequence_number, data FROM consensus.consensus
WHERE shard = $1::text AND sequence_number >= $2::int8
ORDER BY sequence_number ASC
LIMIT $3::int8`

// sqlListKeys lists every shard with a version.
//
// Linearizable: one statement, one snapshot. A shard once written always
// keeps its head (truncate never deletes it), so "has a non-negative row" is
// "was ever written". The result is sorted in Go, not by ORDER BY: a database
// collation (en_US, ICU) would not give the byte order the API promises, and
// COLLATE "C" is not portable to CockroachDB.
//
// Index: this is the one statement that reads the whole table by nature
// (every shard), as an index scan of the primary key or a table scan; it
// does not run on any write path.
const sqlListKeys = `SELECT DISTINCT shard FROM consensus.consensus
WHERE sequence_number >= 0`

// sqlLockFence is the first statement of every write batch. It reads the
// stored epoch, which the caller compares to its own to tell "fenced" from
// "mismatch" when the write itself (the second statement, which checks the
// epoch on its own) wrote nothing.
//
// Why FOR SHARE (and not FOR KEY SHARE, which PostgreSQL does not make
// conflict with a non-key UPDATE):
//   - PostgreSQL READ COMMITTED: the lock is held to the end of the implicit
//     transaction, so Fence's upsert of this row waits for every write in
//     flight, and a write that arrives after Fence committed blocks on it, then
//     reads the new epoch (locking reads see the latest committed version);
//     the second statement takes its snapshot after this one, while the lock
//     still holds, so it sees the very same epoch.
//   - PostgreSQL SERIALIZABLE: the same waiting, plus: a write whose snapshot
//     predates a committed Fence fails here with 40001 ("could not serialize
//     access due to concurrent update") and is retried, then sees the new
//     epoch. Without the lock, SSI could legally order a deposed leader's
//     write before a Fence that finished earlier in real time.
//   - CockroachDB SERIALIZABLE: FOR SHARE is a no-op unless shared locks are
//     enabled by a session setting; the plain read is enough there
//     (docs/architecture.md §5.2, SERIALIZABLE on CockroachDB): the bump is ordered
//     after every read of the row, and a writer pushed past the bump fails its
//     refresh with 40001 and sees the new epoch on retry.
//   - CockroachDB READ COMMITTED: a real replicated shared lock, with the
//     same effect as on PostgreSQL READ COMMITTED.
//
// Index: primary-key point lookup (id = 1).
const sqlLockFence = `SELECT epoch, owner FROM consensus.committer_fence WHERE id = 1 FOR SHARE`

// sqlReadFence reads the stored epoch. Fence uses it for its error message;
// and it precedes, in the same implicit transaction, every read of a handle
// bound to an epoch: the leader's Head and Scan, whose results fill its head
// cache. There the result is not compared with the handle's epoch.
//
// Why read the row at all (the CockroachDB rule: a read whose result is
// trusted as "the head after my fence" must read the fence row too):
//   - CockroachDB SERIALIZABLE: a deposed leader's write whose transaction
//     read the fence row before the new leader's bump can still commit at a
//     timestamp above a read of the shard made by the new leader through a
//     gateway with a lagging clock, if that read touched only the shard: the
//     read misses the write, and the write's refresh span (the fence row)
//     missed nothing it saw. The new leader's cache would then hold an old
//     head. Reading the fence row in the read's transaction puts the read
//     above the bump (it must observe it, uncertainty intervals included),
//     and a deposed write either commits below the bump, and so below the
//     read, which sees it, or fails its refresh across the bump with 40001.
//   - PostgreSQL (both levels): a committed transaction is visible to every
//     statement that starts later, so the shard read alone would do; the
//     extra statement costs no round trip (one pipelined batch).
//
// Index: primary-key point lookup (id = 1).
const sqlReadFence = `SELECT epoch FROM consensus.committer_fence WHERE id = 1`

// sqlFence raises the stored epoch to $1 for owner $2, unless a higher epoch
// is stored or another owner holds the fence; no row returned means refused
// (the caller reads sqlFenceState to say why). An empty owner is unowned and
// claimable: a fresh database needs no extra step.
//
// An UPDATE, not an upsert: a vanished fence row must never be recreated by
// a leader's fence, since the recreated row could not know the epoch it had
// (docs/architecture.md §5.6); Adopt is the operator's way to recreate it.
// The UPDATE locks the row (waiting for writers' FOR SHARE locks) and, under
// READ COMMITTED, re-evaluates its WHERE against the latest committed
// version, so the comparison is never made on a stale epoch; under
// SERIALIZABLE a concurrent committed change of the row makes it fail with
// 40001 instead, and it is retried. On CockroachDB a one-row UPDATE in an
// implicit transaction takes the one-phase-commit fast path.
//
// Index: primary-key point write (id = 1).
const sqlFence = `UPDATE consensus.committer_fence
SET epoch = $1::int8, owner = $2::text, fenced_at = now()
WHERE id = 1 AND epoch <= $1::int8 AND (owner = $2::text OR owner = '')
RETURNING epoch`

// sqlFenceState reads the whole fence row, for refusals, status and Adopt.
// fenced_at is the database's clock, the same for every cluster that reads
// it.
//
// Index: primary-key point lookup (id = 1).
const sqlFenceState = `SELECT epoch, owner, fenced_at FROM consensus.committer_fence WHERE id = 1`

// sqlAdopt makes $2 the owner of the fence at epoch $1, whoever owned it,
// and recreates a lost fence row. It is the operator's explicit takeover
// (committer fence adopt); no leader ever runs it on its own.
const sqlAdopt = `INSERT INTO consensus.committer_fence AS f (id, epoch, owner, fenced_at) VALUES (1, $1::int8, $2::text, now())
ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, owner = excluded.owner, fenced_at = excluded.fenced_at`

// sqlCAS appends ($1, $2, $3) iff the fence holds owner $5 at epoch $4 and
// the shard's
// latest non-negative seqno is $2 - 1 (-1 standing for "no version", so that
// seqno 0 commits exactly on an empty shard). RETURNING yields one row iff it
// committed.
//
// Linearizable:
//   - READ COMMITTED (both databases): the expectation is read on the
//     statement's snapshot. If it holds, $2 was absent at that instant; a
//     concurrent writer of the same ($1, $2) makes the INSERT wait for it and
//     then do nothing (ON CONFLICT), which the caller reports as a mismatch,
//     true because the head has already moved past $2 - 1. So a row is
//     inserted only directly after the head the snapshot saw, and the head
//     cannot move between that snapshot and the insert without the insert
//     conflicting. A mismatch is true at the snapshot's instant.
//   - SERIALIZABLE: the read of the head and the insert are one serializable
//     transaction; PostgreSQL SSI raises 40001 (or 23505, also determinate
//     and a true mismatch) for a conflicting concurrent insert, and
//     CockroachDB orders or aborts it.
//   - The fence predicate reads the same epoch the batch's first statement
//     locked (see sqlLockFence), so a fenced batch writes nothing even though
//     this statement was already in the pipeline.
//
// CockroachDB: INSERT ... SELECT ... WHERE (subquery) ON CONFLICT DO NOTHING
// RETURNING is supported with PostgreSQL's row counting; the top node is
// the single insert and RETURNING names a plain column, so it keeps the
// one-phase-commit fast path (the subqueries are reads).
//
// Index: the expectation subquery is shard = $1 with ORDER BY sequence_number
// DESC LIMIT 1, a backward primary-key range scan, also for a shard that does
// not exist yet (the generic-plan trap); the fence subquery is a point
// lookup; the insert's conflict check is the primary key itself.
const sqlCAS = `INSERT INTO consensus.consensus (shard, sequence_number, data)
SELECT $1::text, $2::int8, $3::bytea
WHERE (SELECT f.epoch FROM consensus.committer_fence AS f WHERE f.id = 1 AND f.owner = $5::text) = $4::int8
  AND COALESCE((SELECT c.sequence_number FROM consensus.consensus AS c
                WHERE c.shard = $1::text AND c.sequence_number >= 0
                ORDER BY c.sequence_number DESC
                LIMIT 1), -1) = $2::int8 - 1
ON CONFLICT DO NOTHING
RETURNING sequence_number`

// sqlCASMulti is sqlCAS for many distinct shards in one statement: element i
// is (shards[i], seqs[i], datas[i]); RETURNING names the shards that
// committed. All elements are decided by one statement in one transaction,
// so they commit or fail together.
//
// Linearizable: the per-row argument of sqlCAS, on one snapshot for all rows
// (shards are distinct, validated before sending, so no two rows of the
// statement conflict with each other).
//
// CockroachDB: multi-array unnest in FROM is supported, and its columns are
// all named "unnest", hence the alias u(shard, seq, data). The correlated
// ORDER BY ... LIMIT 1 subquery is decorrelated by its optimizer (a lookup
// into the primary index per element). A multi-shard insert that spans
// ranges loses the one-phase commit; that is the price of atomicity.
//
// Index: per element, the same backward primary-key range scan as sqlCAS,
// executed as a correlated subplan keyed on u.shard (PostgreSQL evaluates it
// per row with an index scan; it cannot become a table scan because the only
// predicate is equality on the leading key column).
const sqlCASMulti = `INSERT INTO consensus.consensus (shard, sequence_number, data)
SELECT u.shard, u.seq, u.data
FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS u (shard, seq, data)
WHERE (SELECT f.epoch FROM consensus.committer_fence AS f WHERE f.id = 1 AND f.owner = $5::text) = $4::int8
  AND COALESCE((SELECT c.sequence_number FROM consensus.consensus AS c
                WHERE c.shard = u.shard AND c.sequence_number >= 0
                ORDER BY c.sequence_number DESC
                LIMIT 1), -1) = u.seq - 1
ON CONFLICT DO NOTHING
RETURNING shard`

// sqlTruncate deletes the non-negative versions of $1 below $2, only if the
// head is at least $2 and the fence holds owner $4 at epoch $3, and returns
// (head,
// number deleted). A NULL head (empty shard) or a head below $2 means
// ErrTruncateAboveHead, and nothing was deleted.
//
// Linearizable: the head and the delete are evaluated in one statement on
// one snapshot (PostgreSQL runs all CTEs of a statement on the statement's
// snapshot; CockroachDB likewise within the statement's transaction). Since
// the head never decreases, "head >= $2" true at the snapshot stays true, and
// the head row itself (>= $2) is never among the deleted. Concurrent
// truncates of the same rows: under READ COMMITTED the later DELETE waits and
// skips rows already deleted (counting only its own); under SERIALIZABLE one
// of them fails with 40001 and is retried. Deleting what is already gone is
// a no-op, so the call is idempotent.
//
// CockroachDB: the data-modifying CTE is at the top level and is the only
// modification in the statement; the main query reads only its RETURNING
// (never the table it modified).
//
// Index: the head CTE is shard = $1 ORDER BY sequence_number DESC LIMIT 1 (a
// backward primary-key range scan); the delete is shard = $1 plus a range on
// sequence_number (a forward primary-key range scan).
const sqlTruncate = `WITH head AS (
	SELECT c.sequence_number FROM consensus.consensus AS c
	WHERE c.shard = $1::text AND c.sequence_number >= 0
	ORDER BY c.sequence_number DESC
	LIMIT 1
), deleted AS (
	DELETE FROM consensus.consensus AS d
	WHERE d.shard = $1::text AND d.sequence_number >= 0 AND d.sequence_number < $2::int8
	  AND (SELECT h.sequence_number FROM head AS h) >= $2::int8
	  AND (SELECT f.epoch FROM consensus.committer_fence AS f WHERE f.id = 1 AND f.owner = $4::text) = $3::int8
	RETURNING d.sequence_number
)
SELECT (SELECT h.sequence_number FROM head AS h), (SELECT count(*) FROM deleted)`
