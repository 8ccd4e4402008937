package postgres

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hacommit/committer/backend"
)

const all = math.MaxUint64

func wantHead(t *testing.T, b backend.Consensus, shard string, want *backend.VersionedData) {
	t.Helper()
	got, err := b.Head(context.Background(), shard)
	if err != nil {
		t.Fatalf("head(%q): %v", shard, err)
	}
	if (got == nil) != (want == nil) || (got != nil && (got.SeqNo != want.SeqNo || !bytes.Equal(got.Data, want.Data))) {
		t.Fatalf("head(%q) = %+v, want %+v", shard, got, want)
	}
}

func wantScan(t *testing.T, b backend.Consensus, shard string, from uint64, want ...backend.VersionedData) {
	t.Helper()
	got, err := b.Scan(context.Background(), shard, from, all)
	if err != nil {
		t.Fatalf("scan(%q, %d): %v", shard, from, err)
	}
	if !slices.EqualFunc(got, want, func(a, b backend.VersionedData) bool {
		return a.SeqNo == b.SeqNo && bytes.Equal(a.Data, b.Data)
	}) {
		t.Fatalf("scan(%q, %d) = %+v, want %+v", shard, from, got, want)
	}
}

func wantCAS(t *testing.T, b backend.Consensus, shard string, seqno uint64, data string, want bool) {
	t.Helper()
	got, err := b.CompareAndSet(context.Background(), shard, backend.VersionedData{SeqNo: seqno, Data: []byte(data)})
	if err != nil {
		t.Fatalf("cas(%q, %d): %v", shard, seqno, err)
	}
	if got != want {
		t.Fatalf("cas(%q, %d) = %v, want %v", shard, seqno, got, want)
	}
}

func wantKeys(t *testing.T, b backend.Consensus, want ...string) {
	t.Helper()
	got, err := b.ListKeys(context.Background())
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("list keys = %q, want %q", got, want)
	}
}

func wantTruncate(t *testing.T, b backend.Consensus, shard string, seqno, want uint64) {
	t.Helper()
	got, err := b.Truncate(context.Background(), shard, seqno)
	if err != nil {
		t.Fatalf("truncate(%q, %d): %v", shard, seqno, err)
	}
	if got != want {
		t.Fatalf("truncate(%q, %d) deleted %d, want %d", shard, seqno, got, want)
	}
}

func wantDeterminate(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if err == nil || !errors.Is(err, sentinel) || !backend.IsDeterminate(err) {
		t.Fatalf("%s: error %v, want a determinate %q", what, err, sentinel)
	}
}

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

// TestSentinelRowsAreInvisible plants persist's -1 sentinel rows directly and
// checks that no operation returns, counts, deletes or builds on them.
func TestSentinelRowsAreInvisible(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			b, url := newStore(t, Config{Isolation: iso})
			admin := adminConn(t, url)
			ctx := context.Background()
			mustExec(t, admin, `INSERT INTO consensus.consensus VALUES ('K', -1, 'sentinel K'), ('E', -1, 'sentinel E')`)

			wantHead(t, b, "K", nil)
			wantScan(t, b, "K", 0)
			wantKeys(t, b)
			_, err := b.Truncate(ctx, "K", 0)
			wantDeterminate(t, "truncate(K, 0) with only a sentinel", err, backend.ErrTruncateAboveHead)

			wantCAS(t, b, "K", 1, "K1", false)
			wantCAS(t, b, "K", 0, "K0", true)
			wantCAS(t, b, "K", 1, "K1", true)
			wantHead(t, b, "K", &backend.VersionedData{SeqNo: 1, Data: []byte("K1")})
			wantScan(t, b, "K", 0, vd(0, "K0"), vd(1, "K1"))
			wantKeys(t, b, "K")

			got, err := b.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "E", New: vd(0, "E0")}, {Shard: "K", New: vd(2, "K2")}})
			if err != nil || !slices.Equal(got, []bool{true, true}) {
				t.Fatalf("multi over sentinel shards = %v, %v; want [true true]", got, err)
			}
			// Truncate counts and deletes only non-negative seqnos.
			wantTruncate(t, b, "K", 2, 2)
			wantTruncate(t, b, "K", 2, 0)
			wantScan(t, b, "K", 0, vd(2, "K2"))
			wantKeys(t, b, "E", "K")

			var sentinels []string
			rows, err := admin.Query(ctx, `SELECT shard || '=' || encode(data, 'escape') FROM consensus.consensus WHERE sequence_number = -1 ORDER BY shard`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				sentinels = append(sentinels, s)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if want := []string{"E=sentinel E", "K=sentinel K"}; !slices.Equal(sentinels, want) {
				t.Fatalf("sentinel rows after the test = %q, want %q", sentinels, want)
			}
		})
	}
}

// TestVanishedSchemaIsRecreated drops the table (and later the whole schema,
// and the fence row) between calls; the next call of every kind works.
func TestVanishedSchemaIsRecreated(t *testing.T) {
	var logs logCapture
	b, url := newStore(t, Config{Logger: logs.logger()})
	admin := adminConn(t, url)
	ctx := context.Background()

	wantCAS(t, b, "K", 0, "before drop", true)
	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	wantCAS(t, b, "K", 0, "after drop", true)
	wantHead(t, b, "K", &backend.VersionedData{SeqNo: 0, Data: []byte("after drop")})

	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	wantHead(t, b, "K", nil)
	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	wantScan(t, b, "K", 0)
	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	wantKeys(t, b)
	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	got, err := b.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "A", New: vd(0, "A0")}, {Shard: "B", New: vd(0, "B0")}})
	if err != nil || !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("multi after drop = %v, %v; want [true true]", got, err)
	}
	mustExec(t, admin, `DROP TABLE consensus.consensus`)
	_, err = b.Truncate(ctx, "A", 0)
	wantDeterminate(t, "truncate after drop (empty shard)", err, backend.ErrTruncateAboveHead)

	// The whole schema, fence table included: the fence row comes back at
	// epoch 0, so the epoch-0 handle writes and Fence works.
	mustExec(t, admin, `DROP SCHEMA consensus CASCADE`)
	wantCAS(t, b, "K", 0, "after schema drop", true)
	mustExec(t, admin, `DROP SCHEMA consensus CASCADE`)
	if err := b.Fence(ctx, 3); err != nil {
		t.Fatalf("fence(3) after schema drop: %v", err)
	}
	wantCAS(t, b.AtEpoch(3), "K", 0, "epoch 3", true)

	// A fence row deleted from a database that had one is not recreated: a
	// new row could not know the epoch the old one held, and a deposed
	// leader could fence and write again. Every write and every fence is
	// refused (fence lost) until an operator adopts the database.
	mustExec(t, admin, `DELETE FROM consensus.committer_fence`)
	_, err = b.CompareAndSet(ctx, "K", vd(1, "epoch 0 after fence row loss"))
	wantDeterminate(t, "epoch 0 cas after fence row loss", err, backend.ErrFenceLost)
	_, err = b.AtEpoch(3).CompareAndSet(ctx, "K", vd(1, "epoch 3 after fence row loss"))
	wantDeterminate(t, "epoch 3 cas after fence row loss", err, backend.ErrFenceLost)
	wantDeterminate(t, "fence(4) after fence row loss", b.Fence(ctx, 4), backend.ErrFenceLost)
	if st, err := b.FenceState(ctx); err != nil || !st.Lost {
		t.Fatalf("fence state after fence row loss = %+v, %v; want lost", st, err)
	}
	adopter := b.Owned("cluster-c")
	if err := adopter.Adopt(ctx, 4); err != nil {
		t.Fatalf("adopt after fence row loss: %v", err)
	}
	wantCAS(t, adopter.AtEpoch(4), "K", 1, "epoch 4", true)
	// The same for a dropped fence table, while the data table stays.
	mustExec(t, admin, `DROP TABLE consensus.committer_fence`)
	_, err = adopter.AtEpoch(4).CompareAndSet(ctx, "K", vd(2, "after fence table drop"))
	wantDeterminate(t, "cas after fence table drop", err, backend.ErrFenceLost)
	if err := adopter.Adopt(ctx, 5); err != nil {
		t.Fatalf("adopt after fence table drop: %v", err)
	}
	wantCAS(t, adopter.AtEpoch(5), "K", 2, "epoch 5", true)
	wantScan(t, b, "K", 0, vd(0, "epoch 3"), vd(1, "epoch 4"), vd(2, "epoch 5"))
	// One recreation attempt per drop or delete above.
	if n := strings.Count(logs.String(), "consensus schema missing, recreating it"); n != 11 {
		t.Fatalf("%d schema recreations logged, want 11; log:\n%s", n, logs.String())
	}
}

// TestCachedPlanResultTypeChangeIsRetried changes a column type under the
// prepared statements; both databases then answer 0A000 "cached plan must not
// change result type" once, and the call is retried.
func TestCachedPlanResultTypeChangeIsRetried(t *testing.T) {
	var logs logCapture
	b, url := newStore(t, Config{MaxConns: 1, Logger: logs.logger()})
	admin := adminConn(t, url)
	wantCAS(t, b, "K", 0, "v0", true)
	wantHead(t, b, "K", &backend.VersionedData{SeqNo: 0, Data: []byte("v0")})
	wantScan(t, b, "K", 0, vd(0, "v0"))
	mustExec(t, admin, `ALTER TABLE consensus.consensus ALTER COLUMN sequence_number TYPE int4`)
	wantHead(t, b, "K", &backend.VersionedData{SeqNo: 0, Data: []byte("v0")})
	wantScan(t, b, "K", 0, vd(0, "v0"))
	mustExec(t, admin, `ALTER TABLE consensus.consensus ALTER COLUMN sequence_number TYPE int8`)
	wantCAS(t, b, "K", 1, "v1", true)
	wantScan(t, b, "K", 0, vd(0, "v0"), vd(1, "v1"))
	// Head and scan after the first ALTER, scan (re-prepared under int4)
	// after the second; the CaS statement was prepared under int8 and sees
	// int8 again, so it needs none.
	if n := strings.Count(logs.String(), "cached plan changed"); n != 3 {
		t.Fatalf("%d cached-plan retries logged, want 3; log:\n%s", n, logs.String())
	}
}

// TestConcurrentOpensShareOneSchema opens many backends on one empty
// database at once, as replicas starting together do.
func TestConcurrentOpensShareOneSchema(t *testing.T) {
	url := pgtestURL(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*Backend, n)
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = Open(context.Background(), Config{URL: url, MaxConns: 2, Logger: discardLogger()})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	for i, s := range stores {
		wantCAS(t, s, "K", uint64(i), "from store", true)
	}
	wantHead(t, stores[0], "K", &backend.VersionedData{SeqNo: n - 1, Data: []byte("from store")})
}

// TestListKeysByteOrderUnderLinguisticCollation: an existing persist database
// may use a linguistic collation; ListKeys still returns byte order.
func TestListKeysByteOrderUnderLinguisticCollation(t *testing.T) {
	b, url := newStore(t, Config{})
	admin := adminConn(t, url)
	ctx := context.Background()
	mustExec(t, admin, `ALTER TABLE consensus.consensus ALTER COLUMN shard TYPE text COLLATE "und-x-icu"`)
	shards := []string{"b", "B", "a", "A", "_", "Z", "ß", "shard-10", "shard-9"}
	for _, s := range shards {
		wantCAS(t, b, s, 0, s, true)
	}
	want := slices.Clone(shards)
	slices.Sort(want)
	wantKeys(t, b, want...)

	// Control: the database's own order differs, so the test means something.
	rows, err := admin.Query(ctx, `SELECT DISTINCT shard FROM consensus.consensus ORDER BY shard`)
	if err != nil {
		t.Fatal(err)
	}
	dbOrder, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(dbOrder, want) {
		t.Fatalf("ICU collation orders %q like bytes; the control is void", dbOrder)
	}
}

// A database made by a release whose fence had no owner is upgraded in
// place at Open: the epoch is kept, the fence is unowned (claimable by the
// first cluster to fence above it), and existing data is untouched.
func TestFenceTableWithoutOwnerIsUpgraded(t *testing.T) {
	url := pgtestURL(t)
	admin := adminConn(t, url)
	mustExec(t, admin, `CREATE SCHEMA consensus`)
	mustExec(t, admin, `CREATE TABLE consensus.consensus (shard text NOT NULL, sequence_number bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (shard, sequence_number))`)
	mustExec(t, admin, `CREATE TABLE consensus.committer_fence (id int8 NOT NULL PRIMARY KEY, epoch int8 NOT NULL, CHECK (id = 1))`)
	mustExec(t, admin, `INSERT INTO consensus.committer_fence VALUES (1, 7)`)
	mustExec(t, admin, `INSERT INTO consensus.consensus VALUES ('K', 0, 'old')`)

	b, err := Open(t.Context(), Config{URL: url, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("open over the old schema: %v", err)
	}
	defer b.Close()
	ctx := t.Context()
	st, err := b.FenceState(ctx)
	if err != nil || st.Lost || st.Owner != "" || st.Epoch != 7 {
		t.Fatalf("fence after the upgrade = %+v, %v; want unowned at 7", st, err)
	}
	a := b.Owned("cluster-a")
	wantDeterminate(t, "fence(6) below the kept epoch", a.Fence(ctx, 6), backend.ErrFenced)
	if err := a.Fence(ctx, 8); err != nil {
		t.Fatalf("claim at 8: %v", err)
	}
	wantCAS(t, a.AtEpoch(8), "K", 1, "new", true)
	wantScan(t, b, "K", 0, vd(0, "old"), vd(1, "new"))
	wantKeys(t, b, "K")
}
