package checker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// maxJointOps bounds the operations of one search of keys linked through
// multi_cas. Porcupine's memory grows with the square of a search's size (it
// keeps a set of the operations placed so far with every state it visits),
// and a linked partition can hold a whole run: the workload's multi_cas link
// the current keys of its groups, and groups move on to fresh keys, so the
// links chain every key of a run together. A search of this many operations
// is about as large as a busy key of its own.
const maxJointOps = 10_000

// partitionHistory is the porcupine history of one search: a key, keys
// linked through multi_cas, or a projection of the latter.
type partitionHistory struct {
	group *keyGroup
	ops   []porcupine.Operation
	// whole is set on a projection: the linked partition it was cut from.
	whole *keyGroup
}

// keyUnion is a union-find over keys: the keys of one multi_cas are united,
// so its classes are the keys connected through multi_cas operations.
type keyUnion struct{ parent map[string]string }

func (u keyUnion) find(key string) string {
	for {
		parent, ok := u.parent[key]
		if !ok {
			u.parent[key] = key
			return key
		}
		if parent == key {
			return key
		}
		// Path halving keeps chains short without recursion.
		grand := u.parent[parent]
		u.parent[key] = grand
		key = grand
	}
}

func (u keyUnion) union(a, b string) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u.parent[rb] = ra
	}
}

// searched is what searchPartitions did: the histories it searched with
// their results, sorted by label, and notes on what it left unsearched.
type searched struct {
	histories []partitionHistory
	results   []KeyResult
	notes     []string
}

// searchPartitions searches every partition. A key of its own is one
// search. Keys linked through multi_cas take two phases.
//
// First each linked key is searched alone, every multi_cas cut into
// independent elements. That is a relaxation of the atomic model: a
// linearization of the whole partition, restricted to one key, is a
// linearization of that key's projection, so a key that fails alone fails
// the partition too. It finds every anomaly of a single key at the cost of a
// search per key, with the same explanation as for a key of its own, where a
// search of the whole partition would have to exhaust the interleavings of
// all its keys before it could say Illegal.
//
// Then, if every key of the partition passed alone, the whole partition is
// searched, with each multi_cas one atomic step: what it can still find is
// what atomicity adds. A partition above maxOps is instead searched on
// the keys of each multi_cas (each distinct key set, leaving out sets inside
// larger ones), with every multi_cas restricted to its elements on those
// keys. That is again a relaxation, so what it finds is a violation, but it
// misses anomalies that only show across more keys than one multi_cas
// names; a note says so.
func searchPartitions(hs []partitionHistory, deadline time.Time, maxOps int) searched {
	nextIndex := len(hs)
	newIndex := func() int {
		nextIndex++
		return nextIndex - 1
	}
	var first, linked []partitionHistory
	opsOfKey := make(map[*keyGroup]map[string][]int)
	for _, h := range hs {
		if !h.group.multiKey() {
			first = append(first, h)
			continue
		}
		linked = append(linked, h)
		opsOf := opsByKey(h)
		opsOfKey[h.group] = opsOf
		for _, key := range h.group.keys {
			first = append(first, project(h, []string{key}, opsOf, newIndex()))
		}
	}
	results := checkLinearizable(first, deadline)
	passedAlone := make(map[string]bool, len(first))
	for i, kr := range results {
		if first[i].whole != nil && kr.Result == porcupine.Ok {
			passedAlone[kr.Key] = true
		}
	}

	var second []partitionHistory
	var notes []string
	for _, h := range linked {
		if slices.ContainsFunc(h.group.keys, func(key string) bool { return !passedAlone[key] }) {
			continue
		}
		if len(h.ops) <= maxOps {
			second = append(second, h)
			continue
		}
		sets := multiKeySets(h)
		for _, keys := range sets {
			second = append(second, project(h, keys, opsOfKey[h.group], newIndex()))
		}
		notes = append(notes, fmt.Sprintf(
			"%d keys (%s) are linked through multi_cas, with %d operations, more than the %d one search may hold: "+
				"multi_cas atomicity was checked on the keys of each multi_cas (%d searches), not across all of them",
			len(h.group.keys), abbreviateKeys(h.group.keys), len(h.ops), maxOps, len(sets)))
	}
	all := append(first, second...)
	results = append(results, checkLinearizable(second, deadline)...)

	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(all[a].group.label, all[b].group.label) })
	out := searched{histories: make([]partitionHistory, len(order)), results: make([]KeyResult, len(order)), notes: notes}
	for i, j := range order {
		out.histories[i], out.results[i] = all[j], results[j]
	}
	return out
}

// opsByKey indexes a linked partition's operations by the keys they name,
// in order.
func opsByKey(h partitionHistory) map[string][]int {
	out := make(map[string][]int, len(h.group.keys))
	for id, op := range h.ops {
		in := op.Input.(modelInput)
		if in.kind != kindMultiCAS {
			out[in.key] = append(out[in.key], id)
			continue
		}
		for _, el := range in.elements {
			out[el.key] = append(out[el.key], id)
		}
	}
	return out
}

// multiKeySets lists the distinct key sets of a partition's multi_cas
// operations, sorted, leaving out sets contained in another: a projection on
// more keys checks everything one on fewer does.
func multiKeySets(h partitionHistory) [][]string {
	byLabel := make(map[string][]string)
	for _, op := range h.ops {
		in := op.Input.(modelInput)
		if in.kind != kindMultiCAS || len(in.elements) < 2 {
			continue
		}
		keys := make([]string, len(in.elements))
		for i, el := range in.elements {
			keys[i] = el.key
		}
		slices.Sort(keys)
		byLabel[strings.Join(keys, "+")] = keys
	}
	containing := make(map[string][][]string) // key -> sets that name it
	for _, keys := range byLabel {
		for _, k := range keys {
			containing[k] = append(containing[k], keys)
		}
	}
	var out [][]string
	for _, keys := range byLabel {
		covered := slices.ContainsFunc(containing[keys[0]], func(other []string) bool {
			return len(other) > len(keys) && isSubset(keys, other)
		})
		if !covered {
			out = append(out, keys)
		}
	}
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out
}

// isSubset reports whether every key of sorted a is in sorted b.
func isSubset(a, b []string) bool {
	i := 0
	for _, k := range b {
		if i < len(a) && a[i] == k {
			i++
		}
	}
	return i == len(a)
}

// project is the history of some keys of a linked partition: their
// operations, with every multi_cas restricted to its elements on them. On
// one key, a multi_cas element becomes an independent cas with the call and
// return of the whole operation, and a lost element is left out, as an
// indeterminate cas that lost its seqno is. On several, a restricted
// multi_cas stays one atomic step, lost elements stay as constraints, and
// one left with only lost elements is dropped: it could have had no effect
// on these keys, and placed last it constrains nothing. index numbers the
// projection's partition; opsOf is opsByKey(h).
func project(h partitionHistory, keys []string, opsOf map[string][]int, index int) partitionHistory {
	g := newKeyGroup(keys)
	g.index = index
	slotOf := make(map[string]int, len(keys))
	var ids []int
	for slot, key := range keys {
		slotOf[key] = slot
		ids = append(ids, opsOf[key]...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	out := partitionHistory{group: g, whole: h.group}
	for _, id := range ids {
		op := h.ops[id]
		in := op.Input.(modelInput)
		if in.kind != kindMultiCAS {
			in.group, in.slot = g, slotOf[in.key]
			op.Input = in
			out.ops = append(out.ops, op)
			continue
		}
		result := op.Output.(modelOutput)
		restricted := modelInput{group: g, kind: kindMultiCAS, omitted: in.omitted}
		var verdicts []bool
		onlyLost := true
		for i, el := range in.elements {
			slot, ok := slotOf[el.key]
			if !ok {
				restricted.omitted++
				continue
			}
			el.slot = slot
			restricted.elements = append(restricted.elements, el)
			onlyLost = onlyLost && el.lost
			if !result.unknown {
				verdicts = append(verdicts, result.multiCommitted[i])
			}
		}
		if onlyLost {
			continue
		}
		if g.multiKey() {
			op.Input = restricted
			op.Output = modelOutput{unknown: result.unknown, multiCommitted: verdicts}
			out.ops = append(out.ops, op)
			continue
		}
		el := restricted.elements[0]
		op.Input = modelInput{group: g, kind: kindCAS, key: el.key, seqno: el.seqno, data: el.data, element: true}
		verdict := modelOutput{unknown: result.unknown}
		if !result.unknown {
			verdict.committed = verdicts[0]
		}
		op.Output = verdict
		out.ops = append(out.ops, op)
	}
	return out
}

// abbreviateKeys names a few keys of a long list.
func abbreviateKeys(keys []string) string {
	const shown = 4
	if len(keys) <= shown {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:shown], ", ") + fmt.Sprintf(" and %d more", len(keys)-shown)
}
