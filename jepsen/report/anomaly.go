package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hacommit/committer/jepsen/checker"
)

// AnomalyKind names the kind of violation a problem of the checker reports,
// so that a caller can tell, say, a stale read from a lost write without
// reading the prose.
type AnomalyKind string

const (
	// NotLinearizable: a key's history, or that of keys linked through
	// multi_cas, has no linearization (a stale read, a write that took
	// effect twice or not at all, a multi_cas that was not atomic, ...). One
	// per label in checker.Result.IllegalKeys.
	NotLinearizable AnomalyKind = "not-linearizable"
	// LostWrite: a final read after healing lacks an acknowledged write
	// (durability): the last full scan misses one of its versions or holds
	// other data at its seqno, or the last head is below it.
	LostWrite AnomalyKind = "lost-write"
	// DuplicateCommit: two writes acknowledged as committed at one seqno.
	DuplicateCommit AnomalyKind = "duplicate-commit"
	// ListKeys: a list_keys missed an existing key or returned a phantom.
	ListKeys AnomalyKind = "list-keys"
	// MalformedHistory: the history itself is inconsistent (a harness bug).
	MalformedHistory AnomalyKind = "malformed-history"
	// OtherProblem: a problem none of the kinds above describes.
	OtherProblem AnomalyKind = "other"
)

// Anomalies counts the violations in a checker result by kind. A
// linearizability search that ran out of time is not a violation and is
// not counted (it is in the result's UnknownKeys). Nil when there is none.
//
// checker.Result names the non-linearizable keys and the timed-out ones;
// every other check only adds a line to Problems, so those lines are
// classified by the wording the checker gives them (TestAnomalies runs the
// real checker, so a change of wording fails there, not in a campaign).
func Anomalies(res *checker.Result) map[AnomalyKind]int {
	counts := make(map[AnomalyKind]int)
	if n := len(res.IllegalKeys); n > 0 {
		counts[NotLinearizable] = n
	}
	// The problems of the searches counted above, and of the timed-out
	// ones. A search is of one key ("key \"k\": ...") or of keys linked
	// through multi_cas, labelled by their names joined ("keys \"a+b\": ...").
	var structured []string
	for _, label := range res.IllegalKeys {
		structured = append(structured, fmt.Sprintf("key %q: not linearizable", label), fmt.Sprintf("keys %q: not linearizable", label))
	}
	for _, label := range res.UnknownKeys {
		structured = append(structured, fmt.Sprintf("key %q: linearizability search", label), fmt.Sprintf("keys %q: linearizability search", label))
	}
	for _, p := range res.Problems {
		if !slices.ContainsFunc(structured, func(prefix string) bool { return strings.HasPrefix(p, prefix) }) {
			counts[classify(p)]++
		}
	}
	if len(counts) == 0 {
		return nil
	}
	return counts
}

// classify names the kind of one problem line that is not about a
// non-linearizable or timed-out key.
func classify(problem string) AnomalyKind {
	switch {
	case strings.HasPrefix(problem, "malformed history:"):
		return MalformedHistory
	case strings.HasPrefix(problem, "list_keys "):
		return ListKeys
	case strings.Contains(problem, "acknowledged as committed twice"):
		return DuplicateCommit
	case strings.Contains(problem, ": last full scan,") && strings.Contains(problem, " acknowledged writes: "),
		strings.Contains(problem, ": last head,") && strings.Contains(problem, "below the acknowledged seqno"):
		return LostWrite
	default:
		return OtherProblem
	}
}

// FormatAnomalies shows counts by kind, kinds in alphabetical order, e.g.
// "lost-write 1, not-linearizable 12", or "none".
func FormatAnomalies(counts map[AnomalyKind]int) string {
	kinds := make([]AnomalyKind, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
