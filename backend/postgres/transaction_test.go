package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hacommit/committer/backend"
)

// TestBatchIsOneTransaction checks the assumption fencedBatch rests on: pgx
// v5 sends a batch as one pipeline with a single Sync, which PostgreSQL runs
// as one implicit transaction.
func TestBatchIsOneTransaction(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			b, _ := newStore(t, Config{Isolation: iso})
			ctx := context.Background()
			conn, err := b.shared.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()

			// Same transaction id in every statement, and the fence row's
			// share lock (xmax) belongs to that transaction.
			batch := &pgx.Batch{}
			batch.Queue(sqlLockFence)
			batch.Queue(`SELECT txid_current()::text`)
			batch.Queue(`SELECT (SELECT xmax FROM consensus.committer_fence WHERE id = 1)::text, txid_current()::text`)
			br := conn.SendBatch(ctx, batch)
			var epoch int64
			var owner, txid1, lockXmax, txid2 string
			if err := br.QueryRow().Scan(&epoch, &owner); err != nil {
				t.Fatal(err)
			}
			if err := br.QueryRow().Scan(&txid1); err != nil {
				t.Fatal(err)
			}
			if err := br.QueryRow().Scan(&lockXmax, &txid2); err != nil {
				t.Fatal(err)
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			if epoch != 0 || txid1 != txid2 || lockXmax != txid1 {
				t.Fatalf("epoch %d, txids %s/%s, fence row locked by %s: want epoch 0 and one transaction holding the lock", epoch, txid1, txid2, lockXmax)
			}

			// An error in a later statement rolls back an earlier one.
			batch = &pgx.Batch{}
			batch.Queue(`INSERT INTO consensus.consensus VALUES ('rollback', 0, 'first')`)
			batch.Queue(`INSERT INTO consensus.consensus VALUES ('rollback', 0, 'duplicate')`)
			err = conn.SendBatch(ctx, batch).Close()
			if sqlState(err) != codeUniqueViolation || !isDeterminate(err) {
				t.Fatalf("duplicate insert batch: %v, want a determinate 23505", err)
			}
			wantHead(t, b, "rollback", nil)
			wantKeys(t, b)
		})
	}
}

// TestFenceWaitsForWriteInFlight holds a write batch open after its fence
// read (its second statement waits for an advisory lock the test holds) and
// checks that Fence queues behind the batch's lock on the fence row, then
// succeeds once the batch commits, after which the old epoch is refused.
func TestFenceWaitsForWriteInFlight(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			b, url := newStore(t, Config{Isolation: iso})
			admin := adminConn(t, url)
			ctx := context.Background()
			mustExec(t, admin, `SELECT pg_advisory_lock(42)`)

			conn, err := b.shared.pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			batchDone := make(chan error, 1)
			go func() {
				defer conn.Release()
				_, err := fencedBatch(ctx, conn.Conn(), `SELECT pg_advisory_xact_lock_shared(42)`, nil, func(rows pgx.Rows) error {
					rows.Close()
					return rows.Err()
				})
				batchDone <- err
			}()
			waitForActivity(t, admin, `SELECT pg_advisory_xact_lock_shared`, "Lock")

			fenceDone := make(chan error, 1)
			go func() { fenceDone <- b.Fence(ctx, 1) }()
			// The fence update must be blocked on the writer's row lock.
			waitForActivity(t, admin, `UPDATE consensus.committer_fence`, "Lock")
			select {
			case err := <-fenceDone:
				t.Fatalf("fence returned (%v) while a write batch held the fence row", err)
			default:
			}
			mustExec(t, admin, `SELECT pg_advisory_unlock(42)`)
			if err := <-batchDone; err != nil {
				t.Fatalf("write batch: %v", err)
			}
			if err := <-fenceDone; err != nil {
				t.Fatalf("fence(1): %v", err)
			}
			_, err = b.CompareAndSet(ctx, "K", vd(0, "epoch 0 after fence(1)"))
			wantDeterminate(t, "epoch 0 cas after fence(1)", err, backend.ErrFenced)
		})
	}
}

// waitForActivity polls pg_stat_activity until a committer session runs a
// statement starting with prefix (and, if waitType is set, waits on it).
func waitForActivity(t *testing.T, admin *pgx.Conn, prefix, waitType string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'committer' AND state = 'active'
			AND starts_with(query, $1) AND ($2 = '' OR wait_event_type = $2)`, prefix, waitType).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no committer session running %q (wait %q)", prefix, waitType)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIsolationAndApplicationName checks what every pooled connection runs
// at, including inside a pipelined write batch.
func TestIsolationAndApplicationName(t *testing.T) {
	for _, tc := range []struct {
		iso  Isolation
		want string
	}{{Serializable, "serializable"}, {ReadCommitted, "read committed"}} {
		t.Run(tc.iso.String(), func(t *testing.T) {
			b, _ := newStore(t, Config{Isolation: tc.iso, MaxConns: 3})
			ctx := context.Background()
			if b.IsCockroach() {
				t.Fatal("IsCockroach() = true on PostgreSQL")
			}
			// Hold every connection at once, so each is checked.
			var conns []interface{ Release() }
			for i := 0; i < 3; i++ {
				conn, err := b.shared.pool.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, conn)
				var iso, app string
				if err := conn.QueryRow(ctx, `SHOW transaction_isolation`).Scan(&iso); err != nil {
					t.Fatal(err)
				}
				if err := conn.QueryRow(ctx, `SHOW application_name`).Scan(&app); err != nil {
					t.Fatal(err)
				}
				if iso != tc.want || app != applicationName {
					t.Fatalf("connection %d: isolation %q, application_name %q; want %q, %q", i, iso, app, tc.want, applicationName)
				}
				batch := &pgx.Batch{}
				batch.Queue(sqlLockFence)
				batch.Queue(`SELECT current_setting('transaction_isolation')`)
				br := conn.SendBatch(ctx, batch)
				var epoch int64
				var owner string
				if err := br.QueryRow().Scan(&epoch, &owner); err != nil {
					t.Fatal(err)
				}
				if err := br.QueryRow().Scan(&iso); err != nil {
					t.Fatal(err)
				}
				if err := br.Close(); err != nil {
					t.Fatal(err)
				}
				if iso != tc.want {
					t.Fatalf("connection %d: batch isolation %q, want %q", i, iso, tc.want)
				}
			}
			for _, c := range conns {
				c.Release()
			}
		})
	}
}

// TestPlansStayOnPrimaryKey fills the table with many shards, analyzes it,
// and forces PostgreSQL's generic plans (the plans prepared statements use
// after five executions, built without parameter values) for a shard that
// does not exist: no per-shard statement may scan the table.
func TestPlansStayOnPrimaryKey(t *testing.T) {
	_, url := newStore(t, Config{})
	admin := adminConn(t, url)
	ctx := context.Background()
	mustExec(t, admin, `INSERT INTO consensus.consensus
		SELECT 'shard-' || s, n, decode(repeat('ab', 64), 'hex')
		FROM generate_series(1, 2000) AS s, generate_series(0, 9) AS n`)
	mustExec(t, admin, `INSERT INTO consensus.consensus SELECT 'shard-' || s, -1, '' FROM generate_series(1, 2000, 7) AS s`)
	mustExec(t, admin, `ANALYZE consensus.consensus`)
	mustExec(t, admin, `SET plan_cache_mode = force_generic_plan`)

	seqScan := regexp.MustCompile(`Seq Scan on consensus\b`)
	// Control: the pattern does match a plan that scans the table.
	rows, err := admin.Query(ctx, `EXPLAIN SELECT DISTINCT shard FROM consensus.consensus WHERE data = '\x00'`)
	if err != nil {
		t.Fatal(err)
	}
	control, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !seqScan.MatchString(strings.Join(control, "\n")) {
		t.Fatalf("control plan does not match %v:\n%s", seqScan, strings.Join(control, "\n"))
	}
	for _, tc := range []struct {
		name, sql, execute string
	}{
		{"head", sqlHead, `EXECUTE head('no-such-shard')`},
		{"scan", sqlScan, `EXECUTE scan('no-such-shard', 0, 9223372036854775807)`},
		{"cas", sqlCAS, `EXECUTE cas('no-such-shard', 0, '\x00', 0, '')`},
		{"cas_multi", sqlCASMulti, `EXECUTE cas_multi(ARRAY['no-such-shard', 'another'], ARRAY[0, 0]::int8[], ARRAY['\x00', '\x01']::bytea[], 0, '')`},
		{"truncate", sqlTruncate, `EXECUTE truncate('no-such-shard', 5, 0, '')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustExec(t, admin, `PREPARE `+tc.name+` AS `+tc.sql)
			rows, err := admin.Query(ctx, `EXPLAIN `+tc.execute)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if seqScan.MatchString(plan) || !strings.Contains(plan, "consensus_pkey") {
				t.Fatalf("generic plan of %s scans the table or misses the primary key:\n%s", tc.name, plan)
			}
			if !strings.Contains(plan, "$1") && tc.name != "cas_multi" {
				t.Fatalf("plan of %s is not generic (no $1 in it):\n%s", tc.name, plan)
			}
			t.Logf("%s:\n%s", tc.name, plan)
		})
	}
}

// TestNilDataIsStoredAsEmpty: the wire cannot tell nil from empty, and the
// column is NOT NULL.
func TestNilDataIsStoredAsEmpty(t *testing.T) {
	b, _ := newStore(t, Config{})
	ctx := context.Background()
	if ok, err := b.CompareAndSet(ctx, "K", backend.VersionedData{SeqNo: 0}); err != nil || !ok {
		t.Fatalf("cas with nil data = %v, %v; want committed", ok, err)
	}
	got, err := b.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "K", New: backend.VersionedData{SeqNo: 1}}, {Shard: "L", New: backend.VersionedData{SeqNo: 0}}})
	if err != nil || len(got) != 2 || !got[0] || !got[1] {
		t.Fatalf("multi with nil data = %v, %v; want [true true]", got, err)
	}
	wantScan(t, b, "K", 0, vd(0, ""), vd(1, ""))
}

// TestEpochAboveColumnRange: epochs live in a signed column.
func TestEpochAboveColumnRange(t *testing.T) {
	b, _ := newStore(t, Config{})
	ctx := context.Background()
	err := b.Fence(ctx, 1<<63)
	wantDeterminate(t, "fence(2^63)", err, backend.ErrInvalidArgument)
	_, err = b.AtEpoch(1<<63).CompareAndSet(ctx, "K", vd(0, "x"))
	wantDeterminate(t, "cas at epoch 2^63", err, backend.ErrInvalidArgument)
	if err := b.Fence(ctx, 1<<63-1); err != nil {
		t.Fatalf("fence(2^63-1): %v", err)
	}
	wantCAS(t, b.AtEpoch(1<<63-1), "K", 0, "max epoch", true)
	if err := b.Fence(ctx, 7); !errors.Is(err, backend.ErrFenced) || !strings.Contains(err.Error(), "stored epoch 9223372036854775807 is above 7") {
		t.Fatalf("fence(7) after the maximum: %v, want fenced naming the stored epoch", err)
	}
}

// The leader's reads (a handle bound to an epoch) read the fence row in the
// same transaction as the shard, so that CockroachDB orders them after the
// fence (see sqlReadFence); unbound reads do not. Proof by lock: while
// another session holds the fence table in ACCESS EXCLUSIVE mode, a bound
// Head or Scan waits, and an unbound one answers.
func TestBoundReadsReadTheFenceRow(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			b, url := newStore(t, Config{Isolation: iso})
			ctx := t.Context()
			if err := b.Fence(ctx, 3); err != nil {
				t.Fatal(err)
			}
			bound := b.AtEpoch(3)
			if ok, err := bound.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("v0")}); !ok || err != nil {
				t.Fatalf("cas = %v, %v", ok, err)
			}
			locker, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Close(context.WithoutCancel(ctx))
			tx, err := locker.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE consensus.committer_fence IN ACCESS EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}

			if v, err := b.Head(ctx, "k"); err != nil || v == nil || string(v.Data) != "v0" {
				t.Fatalf("unbound head while the fence is locked = %+v, %v; want v0 at once", v, err)
			}
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = bound.Head(short, "k")
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !backend.IsDeterminate(err) {
				t.Fatalf("bound head while the fence is locked: %v; want it to wait on the fence row (a determinate deadline error)", err)
			}
			short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = bound.Scan(short, "k", 0, 10)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("bound scan while the fence is locked: %v; want it to wait on the fence row", err)
			}
			short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = bound.(backend.BulkHeader).HeadMany(short, []string{"k"})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("bound head-many while the fence is locked: %v; want it to wait on the fence row", err)
			}

			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if v, err := bound.Head(ctx, "k"); err != nil || v == nil || string(v.Data) != "v0" {
				t.Fatalf("bound head after the lock = %+v, %v; want v0", v, err)
			}
			if vs, err := bound.Scan(ctx, "k", 0, 10); err != nil || len(vs) != 1 || string(vs[0].Data) != "v0" {
				t.Fatalf("bound scan after the lock = %+v, %v; want [v0]", vs, err)
			}
		})
	}
}

// HeadMany answers like Head for each shard, in order, nil where a shard
// has no version, on unbound and bound handles.
func TestHeadMany(t *testing.T) {
	b, _ := newStore(t, Config{})
	ctx := t.Context()
	for _, w := range []struct {
		shard string
		seqs  int
	}{{"a", 1}, {"b", 3}, {"c", 2}} {
		for i := range w.seqs {
			if ok, err := b.CompareAndSet(ctx, w.shard, backend.VersionedData{SeqNo: uint64(i), Data: []byte(fmt.Sprintf("%s%d", w.shard, i))}); !ok || err != nil {
				t.Fatalf("cas %s %d = %v, %v", w.shard, i, ok, err)
			}
		}
	}
	if _, err := b.Truncate(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Fence(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]backend.BulkHeader{"unbound": b, "bound": b.AtEpoch(4).(backend.BulkHeader)} {
		got, err := h.HeadMany(ctx, []string{"c", "missing", "b", "a", "c"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := []string{"1:c1", "-", "2:b2", "0:a0", "1:c1"}
		for i, v := range got {
			s := "-"
			if v != nil {
				s = fmt.Sprintf("%d:%s", v.SeqNo, v.Data)
			}
			if s != want[i] {
				t.Fatalf("%s: element %d = %s, want %s", name, i, s, want[i])
			}
		}
	}
	if _, err := b.HeadMany(ctx, []string{"a", ""}); !errors.Is(err, backend.ErrInvalidArgument) {
		t.Fatalf("an empty shard name: %v", err)
	}
	if got, err := b.HeadMany(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no shards = %v, %v", got, err)
	}
}
