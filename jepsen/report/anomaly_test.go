package report_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/jepsen/report"
)

func TestAnomaliesOfHandMadeResults(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  checker.Result
		want map[report.AnomalyKind]int
	}{
		{"pass", checker.Result{Verdict: checker.Pass}, nil},
		{
			"timed out only",
			checker.Result{Verdict: checker.Unknown, UnknownKeys: []string{"k1"},
				Problems: []string{`key "k1": linearizability search did not finish within the 1s budget (9 operations)`}},
			nil,
		},
		{
			"two keys not linearizable, one lost write, one unknown",
			checker.Result{Verdict: checker.Fail, IllegalKeys: []string{"k1", "k2"}, UnknownKeys: []string{"k3"}, Problems: []string{
				`key "k1": not linearizable (5 operations): the longest valid order places 2 of them`,
				`key "k2": not linearizable (7 operations)`,
				`key "k2": last full scan, scan (process 2 via n1), returned [0:"a"] and lost 1 of 2 acknowledged writes: seqno 1 missing (acknowledged at 0.006s)`,
				`key "k2": last head, head (process 2 via n1), returned 0:"a", below the acknowledged seqno 1 (acknowledged at 0.006s)`,
				`key "k3": linearizability search did not finish within the 1s budget (9 operations)`,
			}},
			map[report.AnomalyKind]int{report.NotLinearizable: 2, report.LostWrite: 2},
		},
		{
			"list_keys, duplicate, malformed and something new",
			checker.Result{Verdict: checker.Fail, Problems: []string{
				`list_keys list_keys (process 2) missed 1 existing keys: "j"`,
				`list_keys list_keys (process 2) returned 1 keys no write could have created before it completed: "g"`,
				`key "k": seqno 0 acknowledged as committed twice: data "a" by cas and data "b" by cas`,
				`malformed history: event #2: ok completion of process 7 without an invocation`,
				`key "k": something the classifier has never heard of`,
			}},
			map[report.AnomalyKind]int{report.ListKeys: 2, report.DuplicateCommit: 1, report.MalformedHistory: 1, report.OtherProblem: 1},
		},
		{
			"keys linked through multi_cas",
			checker.Result{Verdict: checker.Fail, IllegalKeys: []string{"a+b"}, UnknownKeys: []string{"c+d"}, Problems: []string{
				`keys "a+b": not linearizable with each multi_cas as one atomic step, though every key is linearizable alone (4 operations)`,
				`keys "c+d": linearizability search did not finish within the 1s budget (9 operations)`,
			}},
			map[report.AnomalyKind]int{report.NotLinearizable: 1},
		},
	} {
		if got := report.Anomalies(&tc.res); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Anomalies = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestAnomaliesOfTheCheckersOwnWords runs the real checker, so that a change
// in how it words a problem shows up here as OtherProblem instead of making
// a campaign's canary look uncaught.
func TestAnomaliesOfTheCheckersOwnWords(t *testing.T) {
	type step struct {
		process int
		inv     history.Event
		done    history.Event
	}
	build := func(steps ...step) []history.Event {
		var evs []history.Event
		for _, s := range steps {
			s.inv.Process, s.inv.Type = s.process, history.Invoke
			s.done.Process, s.done.F = s.process, s.inv.F
			for _, e := range []history.Event{s.inv, s.done} {
				e.Index, e.Time = len(evs), int64(len(evs))*1e6
				evs = append(evs, e)
			}
		}
		return evs
	}
	cas := func(p int, key string, seqno uint64, data string) step {
		op := &history.CASOp{Key: key, SeqNo: seqno, Data: data}
		return step{p, history.Event{F: history.FCAS, CAS: op}, history.Event{Type: history.OK, CAS: op, Committed: true}}
	}
	finalScan := func(p int, key string, vs ...history.Version) step {
		return step{p, history.Event{F: history.FScan, Key: key, Limit: math.MaxUint64},
			history.Event{Type: history.OK, Key: key, Limit: math.MaxUint64, Versions: vs}}
	}
	head := func(p int, key string, v *history.Version) step {
		return step{p, history.Event{F: history.FHead, Key: key}, history.Event{Type: history.OK, Key: key, Head: v}}
	}
	listKeys := func(p int, keys ...string) step {
		return step{p, history.Event{F: history.FListKeys}, history.Event{Type: history.OK, Keys: keys}}
	}
	a, b := history.Version{SeqNo: 0, Data: "a"}, history.Version{SeqNo: 1, Data: "b"}

	for _, tc := range []struct {
		name   string
		events []history.Event
		want   map[report.AnomalyKind]int
	}{
		{
			"an acknowledged write missing from the final reads",
			build(cas(1, "k", 0, "a"), cas(1, "k", 1, "b"), finalScan(2, "k", a), head(2, "k", &a)),
			map[report.AnomalyKind]int{report.NotLinearizable: 1, report.LostWrite: 2},
		},
		{
			"a stale head",
			build(cas(1, "k", 0, "a"), cas(1, "k", 1, "b"), head(2, "k", &a), finalScan(2, "k", a, b), head(2, "k", &b)),
			map[report.AnomalyKind]int{report.NotLinearizable: 1},
		},
		{
			"two commits at one seqno",
			build(cas(1, "k", 0, "a"), cas(2, "k", 0, "b")),
			map[report.AnomalyKind]int{report.NotLinearizable: 1, report.DuplicateCommit: 1},
		},
		{
			"a phantom key",
			build(cas(1, "k", 0, "a"), listKeys(2, "ghost", "k")),
			map[report.AnomalyKind]int{report.ListKeys: 1},
		},
	} {
		res := checker.Check(tc.events, checker.Options{})
		if res.Verdict != checker.Fail {
			t.Errorf("%s: verdict %s, want FAIL", tc.name, res.Verdict)
			continue
		}
		if got := report.Anomalies(&res); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Anomalies = %v, want %v; problems:\n%q", tc.name, got, tc.want, res.Problems)
		}
	}
}

func TestFormatAnomalies(t *testing.T) {
	if got := report.FormatAnomalies(nil); got != "none" {
		t.Errorf("FormatAnomalies(nil) = %q, want none", got)
	}
	got := report.FormatAnomalies(map[report.AnomalyKind]int{report.NotLinearizable: 12, report.LostWrite: 1})
	if want := "lost-write 1, not-linearizable 12"; got != want {
		t.Errorf("FormatAnomalies = %q, want %q", got, want)
	}
}
