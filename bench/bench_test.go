package bench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/bench"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m, &srv)) }

// The scenarios do what they say against a store whose answers are known:
// on private shards every CaS commits; heads never fail.
func TestScenariosOnMemory(t *testing.T) {
	cfg := bench.Config{Workers: 4, Shards: 2, ValueBytes: 16, Duration: 200 * time.Millisecond, Rounds: 2}
	segs, err := bench.Run(t.Context(), cfg, []bench.Target{{Name: "a", Store: bench.NewMemory()}, {Name: "b", Store: bench.NewMemory()}},
		bench.Scenarios())
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 20 {
		t.Fatalf("%d segments, want 5 scenarios x 2 rounds x 2 targets", len(segs))
	}
	// Rounds rotate the order: a b, then b a.
	if segs[0].Target != "a" || segs[1].Target != "b" || segs[2].Target != "b" || segs[3].Target != "a" {
		t.Errorf("order %s %s %s %s, want a b b a", segs[0].Target, segs[1].Target, segs[2].Target, segs[3].Target)
	}
	for _, s := range segs {
		switch {
		case s.Ops == 0 || s.Errors != 0:
			t.Errorf("%s on %s: %d ops, %d errors (%s)", s.Scenario, s.Target, s.Ops, s.Errors, s.FirstError)
		case (s.Scenario == bench.CAS || s.Scenario == bench.Mix) && s.Mismatches != 0:
			t.Errorf("%s on private shards had %d mismatches", s.Scenario, s.Mismatches)
		case int64(len(s.Latencies)) > s.Ops+s.Mismatches:
			t.Errorf("%s: %d latencies for %d operations", s.Scenario, len(s.Latencies), s.Ops+s.Mismatches)
		}
	}
	rows := bench.Summarize(segs, map[bench.Scenario]string{bench.CAS: "a"})
	if len(rows) != 10 || rows[1].Target != "b" || rows[1].Baseline != "a" || rows[1].Ratio <= 0 || rows[0].Baseline != "" {
		t.Fatalf("rows = %+v", rows)
	}
	var b strings.Builder
	if err := bench.WriteTable(&b, rows); err != nil || !strings.Contains(b.String(), "cas-contended") {
		t.Fatalf("table %q, %v", b.String(), err)
	}
}

func TestSummarizeMediansAndRatios(t *testing.T) {
	seg := func(target string, ops int64, secs float64, txns int64) bench.Segment {
		return bench.Segment{Target: target, Scenario: bench.CAS, Ops: ops, Elapsed: time.Duration(secs * float64(time.Second)), Transactions: txns,
			Latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}}
	}
	rows := bench.Summarize([]bench.Segment{
		seg("pg", 100, 1, 100), seg("c", 300, 1, 10),
		seg("pg", 200, 1, 200), seg("c", 500, 1, 20),
		seg("pg", 150, 1, 150), seg("c", 400, 1, -1),
	}, map[bench.Scenario]string{bench.CAS: "pg"})
	pg, c := rows[0], rows[1]
	if pg.OpsPerSecond != 150 || c.OpsPerSecond != 400 || c.Ratio != 400.0/150 || c.Baseline != "pg" {
		t.Fatalf("medians %v and %v, ratio %v", pg.OpsPerSecond, c.OpsPerSecond, c.Ratio)
	}
	if pg.TransactionsPerOp != 1 || c.TransactionsPerOp != -1 {
		t.Fatalf("transactions per op %v and %v; want 1, and -1 where a round was not measured", pg.TransactionsPerOp, c.TransactionsPerOp)
	}
	if time.Duration(pg.P50) != 2*time.Millisecond || time.Duration(pg.P99) != 3*time.Millisecond {
		t.Fatalf("p50 %v p99 %v", time.Duration(pg.P50), time.Duration(pg.P99))
	}
}

// The direct target is persist's CaS: it commits after the head, mismatches
// otherwise, and counts one write transaction per commit.
func TestDirectPostgres(t *testing.T) {
	url := pgtest.Require(t, srv).CreateDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := bench.OpenDirect(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before, err := d.Transactions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		seq  uint64
		want bool
	}{{0, true}, {0, false}, {2, false}, {1, true}, {2, true}} {
		ok, err := d.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: tc.seq, Data: []byte{byte(i)}})
		if err != nil || ok != tc.want {
			t.Fatalf("cas %d at seqno %d = %v, %v; want %v", i, tc.seq, ok, err, tc.want)
		}
	}
	h, err := d.Head(ctx, "k")
	if err != nil || h == nil || h.SeqNo != 2 || h.Data[0] != 4 {
		t.Fatalf("head = %+v, %v", h, err)
	}
	after, err := d.Transactions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Five statements: three inserted and took an id each; the two that
	// inserted nothing wrote nothing and took none. Plus the first count's
	// own.
	if got := after - before; got != 4 {
		t.Fatalf("%d transaction ids taken, want 4", got)
	}
}

// shortScans answers every scan one version short, as a store that lost
// its newest write would.
type shortScans struct{ backend.Consensus }

func (s shortScans) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	vs, err := s.Consensus.Scan(ctx, shard, from, limit)
	if len(vs) > 0 {
		vs = vs[:len(vs)-1]
	}
	return vs, err
}

// The scan scenarios check what they read: a store that answers short is
// counted as failing, with the reason.
func TestScanScenariosCheckTheirResults(t *testing.T) {
	cfg := bench.Config{Workers: 2, ValueBytes: 8, Duration: 100 * time.Millisecond, Rounds: 1}
	segs, err := bench.Run(t.Context(), cfg, []bench.Target{{Name: "short", Store: shortScans{bench.NewMemory()}}},
		[]bench.Scenario{bench.ScanTail, bench.Mix})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s.Errors == 0 || !strings.Contains(s.FirstError, "versions, want") {
			t.Errorf("%s on a store with short scans: %d errors, first %q; want scan errors", s.Scenario, s.Errors, s.FirstError)
		}
	}
}

// Every scenario runs against the database directly, as the benchmark
// drives it.
func TestScenariosOnDirectPostgres(t *testing.T) {
	url := pgtest.Require(t, srv).CreateDatabase(t)
	d, err := bench.OpenDirect(t.Context(), url, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := bench.Config{Workers: 4, Shards: 2, ValueBytes: 16, Duration: 200 * time.Millisecond, Rounds: 1}
	segs, err := bench.Run(t.Context(), cfg, []bench.Target{{Name: "postgres", Store: d, Transactions: d.Transactions}}, bench.Scenarios())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s.Ops == 0 || s.Errors != 0 {
			t.Errorf("%s: %d ops, %d errors (%s)", s.Scenario, s.Ops, s.Errors, s.FirstError)
		}
		if s.Scenario == bench.ScanTail && s.Transactions != 0 {
			t.Errorf("scan-tail took %d transaction ids, want 0 (reads only)", s.Transactions)
		}
	}
}
