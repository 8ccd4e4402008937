package checker

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hacommit/committer/jepsen/history"
)

// ackedWrite is a cas or multi_cas element acknowledged as committed.
type ackedWrite struct {
	key   string
	seqno uint64
	data  string
	op    clientOp
}

// ackedWrites lists acknowledged commits per key, in completion order.
func ackedWrites(ops []clientOp) map[string][]ackedWrite {
	out := make(map[string][]ackedWrite)
	for _, o := range ops {
		if !o.acked() {
			continue
		}
		elems, committed, err := o.casElements()
		if err != nil {
			continue // reported as malformed by shardHistories
		}
		for i, el := range elems {
			if committed[i] {
				out[el.Key] = append(out[el.Key], ackedWrite{key: el.Key, seqno: el.SeqNo, data: el.Data, op: o})
			}
		}
	}
	for _, ws := range out {
		slices.SortStableFunc(ws, func(a, b ackedWrite) int { return cmp.Compare(a.op.done.Time, b.op.done.Time) })
	}
	return out
}

// checkDuplicateCommits finds two acknowledged commits of the same seqno on
// one shard. Linearizability rejects them too; this names them plainly.
func checkDuplicateCommits(acked map[string][]ackedWrite) []string {
	var problems []string
	for _, key := range sortedKeys(acked) {
		first := make(map[uint64]ackedWrite)
		for _, w := range acked[key] {
			prev, seen := first[w.seqno]
			if !seen {
				first[w.seqno] = w
				continue
			}
			problems = append(problems, fmt.Sprintf(
				"key %q: seqno %d acknowledged as committed twice: data %s by %s and data %s by %s",
				key, w.seqno, showData(prev.data), prev.op, showData(w.data), w.op))
		}
	}
	return problems
}

// listKeysStats says how much the list_keys check covered.
type listKeysStats struct{ checked int }

// checkListKeys checks every acknowledged list_keys against the rest of the
// history. A key is known to exist from the moment a write to it was
// acknowledged committed, a read returned one of its versions, or an earlier
// list_keys returned it; every list_keys invoked after that moment must
// return it (keys are never removed). A returned key is a phantom unless a
// write that may have committed it (acknowledged committed, or of unknown
// outcome; not failed, not a mismatch) was invoked before the list_keys
// completed.
func checkListKeys(ops []clientOp) ([]string, listKeysStats) {
	type known struct {
		at  int64
		why string
	}
	knownSince := make(map[string]known)
	learn := func(key string, at int64, why string) {
		if k, ok := knownSince[key]; !ok || at < k.at {
			knownSince[key] = known{at: at, why: why}
		}
	}
	firstWrite := make(map[string]int64)
	var lists []clientOp
	for _, o := range ops {
		elems, committed, err := o.casElements()
		if err == nil {
			for i, el := range elems {
				mayHaveCommitted := o.outcome() == history.Info || (committed != nil && committed[i])
				if t, ok := firstWrite[el.Key]; mayHaveCommitted && (!ok || o.invoke.Time < t) {
					firstWrite[el.Key] = o.invoke.Time
				}
				if committed != nil && committed[i] {
					learn(el.Key, o.done.Time, fmt.Sprintf("its write of seqno %d was acknowledged at %s", el.SeqNo, seconds(o.done.Time)))
				}
			}
		}
		if !o.acked() {
			continue
		}
		switch o.invoke.F {
		case history.FHead:
			if o.done.Head != nil {
				learn(o.invoke.Key, o.done.Time, fmt.Sprintf("a head returned seqno %d at %s", o.done.Head.SeqNo, seconds(o.done.Time)))
			}
		case history.FScan:
			if len(o.done.Versions) > 0 {
				learn(o.invoke.Key, o.done.Time, fmt.Sprintf("a scan returned its versions at %s", seconds(o.done.Time)))
			}
		case history.FListKeys:
			lists = append(lists, o)
		}
	}
	for _, l := range lists {
		for _, key := range l.done.Keys {
			learn(key, l.done.Time, fmt.Sprintf("list_keys returned it at %s", seconds(l.done.Time)))
		}
	}

	var problems []string
	for _, l := range lists {
		returned := make(map[string]bool, len(l.done.Keys))
		var phantoms []string
		for _, key := range l.done.Keys {
			returned[key] = true
			if t, ok := firstWrite[key]; !ok || t > l.done.Time {
				phantoms = append(phantoms, key)
			}
		}
		var missing []string
		for _, key := range sortedKeys(knownSince) {
			if k := knownSince[key]; k.at < l.invoke.Time && !returned[key] {
				missing = append(missing, fmt.Sprintf("%q (%s)", key, k.why))
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("list_keys %s missed %d existing keys: %s",
				l, len(missing), abbreviate(missing)))
		}
		if len(phantoms) > 0 {
			slices.Sort(phantoms)
			quoted := make([]string, len(phantoms))
			for i, k := range phantoms {
				quoted[i] = fmt.Sprintf("%q", k)
			}
			problems = append(problems, fmt.Sprintf("list_keys %s returned %d keys no write could have created before it completed: %s",
				l, len(phantoms), abbreviate(quoted)))
		}
	}
	return problems, listKeysStats{checked: len(lists)}
}

// durabilityStats says how much the durability check covered.
type durabilityStats struct {
	keys  int      // keys with acknowledged writes and a final scan
	notes []string // keys that could not be checked
}

// checkDurability checks the final reads taken after healing: for every key
// with acknowledged commits, the last ok full scan must hold every
// acknowledged version at or above its first returned seqno (lower ones may
// have been truncated) with the acknowledged data, and the last ok head must
// be at least the highest acknowledged seqno. Only writes acknowledged before
// the read was invoked are held against it.
func checkDurability(ops []clientOp, acked map[string][]ackedWrite) ([]string, durabilityStats) {
	finalScan := make(map[string]clientOp)
	finalHead := make(map[string]clientOp)
	for _, o := range ops {
		if !o.acked() {
			continue
		}
		switch o.invoke.F {
		case history.FScan:
			if o.invoke.From == 0 && o.invoke.Limit >= math.MaxInt64 {
				if prev, ok := finalScan[o.invoke.Key]; !ok || prev.done.Index < o.done.Index {
					finalScan[o.invoke.Key] = o
				}
			}
		case history.FHead:
			if prev, ok := finalHead[o.invoke.Key]; !ok || prev.done.Index < o.done.Index {
				finalHead[o.invoke.Key] = o
			}
		}
	}

	var problems []string
	var stats durabilityStats
	for _, key := range sortedKeys(acked) {
		writes := acked[key]
		scan, ok := finalScan[key]
		if !ok {
			stats.notes = append(stats.notes, fmt.Sprintf("key %q: no successful full scan to check the durability of %d acknowledged writes", key, len(writes)))
		} else {
			stats.keys++
			if p := checkFinalScan(key, scan, writes); p != "" {
				problems = append(problems, p)
			}
		}
		if head, ok := finalHead[key]; ok {
			if p := checkFinalHead(key, head, writes); p != "" {
				problems = append(problems, p)
			}
		}
	}
	return problems, stats
}

func checkFinalScan(key string, scan clientOp, writes []ackedWrite) string {
	found := make(map[uint64]string, len(scan.done.Versions))
	for _, v := range scan.done.Versions {
		found[v.SeqNo] = v.Data
	}
	// The latest version is never truncated, so an empty scan loses every
	// acknowledged write; otherwise versions below the first may be gone.
	var first uint64
	if len(scan.done.Versions) > 0 {
		first = scan.done.Versions[0].SeqNo
	}
	var lost []string
	checked := 0
	for _, w := range writes {
		if w.op.done.Time >= scan.invoke.Time || w.seqno < first {
			continue
		}
		checked++
		data, ok := found[w.seqno]
		switch {
		case !ok:
			lost = append(lost, fmt.Sprintf("seqno %d missing (acknowledged at %s)", w.seqno, seconds(w.op.done.Time)))
		case data != w.data:
			lost = append(lost, fmt.Sprintf("seqno %d holds %s instead of %s (acknowledged at %s)",
				w.seqno, showData(data), showData(w.data), seconds(w.op.done.Time)))
		}
	}
	if len(lost) == 0 {
		return ""
	}
	return fmt.Sprintf("key %q: last full scan, %s, returned %s and lost %d of %d acknowledged writes: %s",
		key, scan, showVersions(scan.done.Versions), len(lost), checked, abbreviate(lost))
}

func checkFinalHead(key string, head clientOp, writes []ackedWrite) string {
	var highest *ackedWrite
	for i, w := range writes {
		if w.op.done.Time < head.invoke.Time && (highest == nil || w.seqno > highest.seqno) {
			highest = &writes[i]
		}
	}
	if highest == nil {
		return ""
	}
	got := "absent"
	if h := head.done.Head; h != nil {
		if h.SeqNo >= highest.seqno {
			return ""
		}
		got = showVersion(*h)
	}
	return fmt.Sprintf("key %q: last head, %s, returned %s, below the acknowledged seqno %d (acknowledged at %s)",
		key, head, got, highest.seqno, seconds(highest.op.done.Time))
}

// abbreviate joins items, keeping a message readable when there are many.
func abbreviate(items []string) string {
	const shown = 10
	if len(items) <= shown {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:shown], "; ") + fmt.Sprintf("; and %d more", len(items)-shown)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
