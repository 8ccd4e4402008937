package checker

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/history"
)

// Verdict is the outcome of a check.
type Verdict string

const (
	// Pass: every check passed.
	Pass Verdict = "PASS"
	// Fail: at least one violation was found.
	Fail Verdict = "FAIL"
	// Unknown: no violation was found, but the linearizability search did
	// not finish within its budget; callers count it as a failure.
	Unknown Verdict = "UNKNOWN"
)

// DefaultTimeout is the linearizability budget when Options.Timeout is 0.
const DefaultTimeout = 60 * time.Second

// Options tune Check.
type Options struct {
	// Timeout bounds the whole linearizability search, across all keys;
	// 0 means DefaultTimeout.
	Timeout time.Duration
}

// KeyResult is the linearizability outcome of one search: of a key, or of
// keys linked through multi_cas operations, searched together because a
// multi_cas is one atomic step on all of them (see searchPartitions).
type KeyResult struct {
	// Key is the search's label: its keys joined by "+".
	Key string `json:"key"`
	// Keys are the keys searched, sorted.
	Keys     []string              `json:"keys"`
	Ops      int                   `json:"ops"`
	Result   porcupine.CheckResult `json:"result"`
	Duration time.Duration         `json:"duration_ns"`
}

// Result is the outcome of Check.
type Result struct {
	Verdict Verdict
	// Problems has one human-readable line per violation or anomaly; it is
	// empty on PASS and names the timed-out keys on UNKNOWN.
	Problems []string
	// Keys is the number of shards checked for linearizability; Ops the
	// number of client operations in the history.
	Keys, Ops int
	// Linearizable is Ok only if every partition is Ok, Illegal if any is.
	Linearizable porcupine.CheckResult
	// Duration is the checker's wall time.
	Duration time.Duration

	// PerKey has one result per search, sorted by label: one per key, and
	// for keys linked through multi_cas whose keys each passed alone, one
	// per linked partition or, above maxJointOps, one per key set of a
	// multi_cas (see searchPartitions). IllegalKeys and UnknownKeys hold the
	// labels of the searches that were not Ok.
	PerKey      []KeyResult
	IllegalKeys []string
	UnknownKeys []string
	// Failed counts operations that failed determinately; Indeterminate
	// those that completed info or never completed.
	Failed, Indeterminate int
	// Pruned counts elements of indeterminate writes proven to have had no
	// effect because an acknowledged commit of other data took their seqno.
	// They are left out of the search of their key; a multi_cas with other
	// elements still in the search keeps them only as a constraint on where
	// it took effect.
	Pruned int
	// ListKeysChecked counts acknowledged list_keys checked;
	// DurabilityKeys the keys whose final scan was checked.
	ListKeysChecked, DurabilityKeys int
	// Notes are observations that are not violations, such as a key
	// without a final read to check durability against.
	Notes  []string
	Faults []Fault

	histories []partitionHistory
	timeout   time.Duration
}

// Check checks a history: linearizability with porcupine, of every key on
// its own or, for keys linked through multi_cas, of those keys together;
// duplicate commits, list_keys, and durability of acknowledged writes in the
// final reads. It never fails: a malformed history is a problem in the
// result.
func Check(events []history.Event, opts Options) Result {
	return check(events, opts, maxJointOps)
}

// check is Check with maxOps for maxJointOps, so that tests can reach the
// search of a partition too large to search whole with a small history.
func check(events []history.Event, opts Options, maxOps int) Result {
	began := time.Now()
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	deadline := began.Add(timeout)

	p := parse(events)
	hs, malformed, pruned := partitionHistories(p)
	r := Result{
		Pruned:  pruned,
		Ops:     len(p.ops),
		Faults:  p.faults,
		timeout: timeout,
	}
	for _, h := range hs {
		r.Keys += len(h.group.keys)
	}
	for _, o := range p.ops {
		switch o.outcome() {
		case history.Fail:
			r.Failed++
		case history.Info:
			r.Indeterminate++
		}
	}
	r.Problems = append(r.Problems, p.malformed...)
	r.Problems = append(r.Problems, malformed...)
	violated := len(r.Problems) > 0

	searched := searchPartitions(hs, deadline, maxOps)
	r.histories, r.PerKey = searched.histories, searched.results
	var timedOut []string
	for i, kr := range r.PerKey {
		h := r.histories[i]
		switch kr.Result {
		case porcupine.Illegal:
			r.IllegalKeys = append(r.IllegalKeys, kr.Key)
			what := "not linearizable"
			if h.group.multiKey() {
				what = "not linearizable with each multi_cas as one atomic step, though every key is linearizable alone"
			}
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %s (%d operations)%s",
				h.group.name(), what, kr.Ops, explainIllegal(h, deadline)))
		case porcupine.Unknown:
			r.UnknownKeys = append(r.UnknownKeys, kr.Key)
			timedOut = append(timedOut, fmt.Sprintf("%s: linearizability search did not finish within the %s budget (%d operations)",
				h.group.name(), timeout, kr.Ops))
		}
	}
	switch {
	case len(r.IllegalKeys) > 0:
		r.Linearizable = porcupine.Illegal
		violated = true
	case len(r.UnknownKeys) > 0:
		r.Linearizable = porcupine.Unknown
	default:
		r.Linearizable = porcupine.Ok
	}

	acked := ackedWrites(p.ops)
	others := checkDuplicateCommits(acked)
	listProblems, listStats := checkListKeys(p.ops)
	others = append(others, listProblems...)
	durabilityProblems, durStats := checkDurability(p.ops, acked)
	others = append(others, durabilityProblems...)
	r.ListKeysChecked = listStats.checked
	r.DurabilityKeys = durStats.keys
	r.Notes = append(searched.notes, durStats.notes...)
	r.Problems = append(r.Problems, others...)
	violated = violated || len(others) > 0
	r.Problems = append(r.Problems, timedOut...)

	switch {
	case violated:
		r.Verdict = Fail
	case len(r.UnknownKeys) > 0:
		r.Verdict = Unknown
	default:
		r.Verdict = Pass
	}
	r.Duration = time.Since(began)
	return r
}

// checkLinearizable checks every partition on its own, largest first across
// GOMAXPROCS workers, all sharing one deadline. A partition whose turn comes
// after the deadline is Unknown.
func checkLinearizable(hs []partitionHistory, deadline time.Time) []KeyResult {
	results := make([]KeyResult, len(hs))
	order := make([]int, len(hs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(hs[b].ops) - len(hs[a].ops) })

	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(hs)) {
		wg.Go(func() {
			for i := range work {
				results[i] = checkPartition(hs[i], deadline)
			}
		})
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	return results
}

func checkPartition(h partitionHistory, deadline time.Time) KeyResult {
	began := time.Now()
	kr := KeyResult{Key: h.group.label, Keys: h.group.keys, Ops: len(h.ops), Result: porcupine.Unknown}
	// porcupine reads a zero timeout as "no limit".
	if remaining := time.Until(deadline); remaining > 0 {
		kr.Result = porcupine.CheckOperationsTimeout(partitionModel(false), h.ops, remaining)
	}
	kr.Duration = time.Since(began)
	return kr
}

// explainIllegal searches a non-linearizable partition again, keeping partial
// linearizations, and names the operation the longest one could not be
// extended with: the unplaced operation that returned first. Of several
// longest orders it takes the one that got furthest in time, so the answer
// does not depend on the order porcupine reports them in.
func explainIllegal(h partitionHistory, deadline time.Time) string {
	remaining := time.Until(deadline)
	if remaining <= 0 {
		return ""
	}
	model := partitionModel(false)
	res, info := porcupine.CheckOperationsVerbose(model, h.ops, remaining)
	partials := info.PartialLinearizations()
	if res != porcupine.Illegal || len(partials) != 1 {
		return ""
	}
	var longest []int
	stuck := -1
	for _, l := range partials[0] {
		s := stuckAfter(h.ops, l)
		if s < 0 {
			continue
		}
		better := longest == nil || len(l) > len(longest)
		if !better && len(l) == len(longest) {
			a, b := h.ops[s], h.ops[stuck]
			better = a.Return > b.Return || (a.Return == b.Return && slices.Compare(l, longest) < 0)
		}
		if better {
			longest, stuck = l, s
		}
	}
	if stuck < 0 {
		return ""
	}
	state := model.Init()
	for _, id := range longest {
		_, state = model.Step(state, h.ops[id].Input, h.ops[id].Output)
	}
	op := h.ops[stuck]
	// Of a partition's state, the shards the stuck operation names are the
	// ones that tell why it fits nowhere.
	return fmt.Sprintf(": the longest valid order places %d of them and leaves %s; no order admits %s (%s, invoked at %s, returned at %s)",
		len(longest), describeShardsOf(state.(*groupState), op.Input.(modelInput)), model.DescribeOperation(op.Input, op.Output),
		describeMetadata(op.Metadata), seconds(op.Call), seconds(op.Return))
}

// stuckAfter is the operation outside a partial linearization that returned
// first (earliest invoked on a tie), or -1 if it places every operation.
func stuckAfter(ops []porcupine.Operation, partial []int) int {
	placed := make([]bool, len(ops))
	for _, id := range partial {
		placed[id] = true
	}
	stuck := -1
	for i, op := range ops {
		if placed[i] {
			continue
		}
		if stuck < 0 || op.Return < ops[stuck].Return || (op.Return == ops[stuck].Return && op.Call < ops[stuck].Call) {
			stuck = i
		}
	}
	return stuck
}
