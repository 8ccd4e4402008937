package checker

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/history"
)

// opKind is the shard operation a model step performs.
type opKind uint8

const (
	kindHead opKind = iota
	kindCAS
	kindScan
	kindTruncate
)

// shardInput is the argument of one operation on one shard. A multi_cas
// element is a kindCAS input with multi set, so the visualization can tell
// the two apart.
type shardInput struct {
	key   string
	kind  opKind
	seqno uint64 // cas: the new version's seqno; truncate: the bound
	data  string // cas
	from  uint64 // scan
	limit uint64 // scan
	multi bool
}

// shardOutput is the observed result of one operation on one shard.
type shardOutput struct {
	// unknown marks an indeterminate write: it returns at the end of time and
	// may or may not have taken effect.
	unknown   bool
	committed bool              // cas
	head      *history.Version  // head; nil is "absent"
	versions  []history.Version // scan
	aboveHead bool              // truncate answered "above head"
	deleted   uint64            // truncate
}

// version is one node of an immutable list of a shard's versions, newest
// first. States share their tails, so a committed cas costs one node rather
// than a copy of the shard, and porcupine may keep thousands of states.
type version struct {
	seqno uint64
	data  string
	prev  *version
}

// shardState is the model state of one shard. Because a cas only appends
// latest+1 and a truncate never removes the latest version, the live versions
// are always the contiguous range [floor, top.seqno]; nodes below floor stay
// in the list but are gone from the shard's point of view.
type shardState struct {
	top   *version // nil: the shard has no version
	floor uint64
}

// shardModel is the sequential specification of one shard
// (docs/architecture.md §2.2, Semantics). It is partitioned by key so that
// porcupine checks each shard on its own.
func shardModel() porcupine.Model {
	return porcupine.Model{
		Partition:                 partitionByKey,
		Init:                      func() interface{} { return shardState{} },
		Step:                      step,
		Equal:                     equalStates,
		Hash:                      hashState,
		DescribeOperation:         describeOperation,
		DescribeState:             describeState,
		DescribeOperationMetadata: describeMetadata,
	}
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	index := make(map[string]int)
	var out [][]porcupine.Operation
	for _, op := range ops {
		key := op.Input.(shardInput).key
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], op)
	}
	return out
}

func step(st, in, out interface{}) (bool, interface{}) {
	s := st.(shardState)
	input := in.(shardInput)
	output := out.(shardOutput)
	switch input.kind {
	case kindHead:
		return stepHead(s, output), s
	case kindCAS:
		return stepCAS(s, input, output)
	case kindScan:
		return stepScan(s, input, output), s
	case kindTruncate:
		return stepTruncate(s, input, output)
	default:
		return false, s
	}
}

func stepHead(s shardState, out shardOutput) bool {
	if s.top == nil || out.head == nil {
		return s.top == nil && out.head == nil
	}
	return out.head.SeqNo == s.top.seqno && out.head.Data == s.top.data
}

// casMatches is the persist CaS condition: the new seqno directly follows the
// head, or the shard is empty and the new seqno is 0.
func casMatches(s shardState, seqno uint64) bool {
	if s.top == nil {
		return seqno == 0
	}
	return s.top.seqno != math.MaxUint64 && s.top.seqno+1 == seqno
}

func stepCAS(s shardState, in shardInput, out shardOutput) (bool, interface{}) {
	matches := casMatches(s, in.seqno)
	switch {
	case out.unknown:
		// An indeterminate cas returns at the end of time, so porcupine may
		// place it after every other operation, where its effect is
		// unobservable. Applying it whenever it matches therefore covers
		// both "it took effect here" and "it never took effect".
		if matches {
			return true, appendVersion(s, in)
		}
		return true, s
	case out.committed:
		if !matches {
			return false, s
		}
		return true, appendVersion(s, in)
	default:
		return !matches, s
	}
}

func appendVersion(s shardState, in shardInput) shardState {
	return shardState{top: &version{seqno: in.seqno, data: in.data, prev: s.top}, floor: s.floor}
}

func stepScan(s shardState, in shardInput, out shardOutput) bool {
	if s.top == nil {
		return len(out.versions) == 0
	}
	start := max(in.from, s.floor)
	if start > s.top.seqno {
		return len(out.versions) == 0
	}
	want := min(in.limit, s.top.seqno-start+1)
	if uint64(len(out.versions)) != want {
		return false
	}
	if want == 0 {
		return true
	}
	last := start + want - 1
	for v := s.top; v != nil && v.seqno >= start; v = v.prev {
		if v.seqno > last {
			continue
		}
		got := out.versions[v.seqno-start]
		if got.SeqNo != v.seqno || got.Data != v.data {
			return false
		}
	}
	return true
}

func stepTruncate(s shardState, in shardInput, out shardOutput) (bool, interface{}) {
	valid := s.top != nil && in.seqno <= s.top.seqno
	switch {
	case out.unknown:
		// Same argument as for an indeterminate cas: truncation is
		// idempotent, so applying it whenever it is valid covers both cases.
		if !valid {
			return true, s
		}
		return true, truncated(s, in.seqno)
	case out.aboveHead:
		return !valid, s
	default:
		if !valid {
			return false, s
		}
		// Only versions that still exist count: [floor, seqno) after an
		// earlier truncation, nothing if seqno is at or below the floor.
		var deleted uint64
		if in.seqno > s.floor {
			deleted = in.seqno - s.floor
		}
		if out.deleted != deleted {
			return false, s
		}
		return true, truncated(s, in.seqno)
	}
}

func truncated(s shardState, seqno uint64) shardState {
	return shardState{top: s.top, floor: max(s.floor, seqno)}
}

func equalStates(a, b interface{}) bool {
	x, y := a.(shardState), b.(shardState)
	if x.top == nil || y.top == nil {
		return x.top == nil && y.top == nil && x.floor == y.floor
	}
	if x.floor != y.floor || x.top.seqno != y.top.seqno {
		return false
	}
	// Both lists are contiguous and equally long above the floor; shared
	// tails end the walk early.
	for p, q := x.top, y.top; p != q && p != nil && q != nil && p.seqno >= x.floor; p, q = p.prev, q.prev {
		if p.data != q.data {
			return false
		}
	}
	return true
}

func hashState(st interface{}) uint64 {
	s := st.(shardState)
	h := fnv.New64a()
	var buf [16]byte
	putUint64(buf[0:8], s.floor)
	if s.top != nil {
		putUint64(buf[8:16], s.top.seqno+1)
		h.Write(buf[:])
		h.Write([]byte(s.top.data))
	} else {
		h.Write(buf[:])
	}
	return h.Sum64()
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// maxShownData bounds how much of a version's data a description shows.
const maxShownData = 24

func showData(d string) string {
	if len(d) > maxShownData {
		return strconv.Quote(d[:maxShownData]) + "…"
	}
	return strconv.Quote(d)
}

func showVersion(v history.Version) string {
	return fmt.Sprintf("%d:%s", v.SeqNo, showData(v.Data))
}

func showLimit(limit uint64) string {
	if limit > math.MaxInt64 {
		return "all"
	}
	return strconv.FormatUint(limit, 10)
}

func describeOperation(in, out interface{}) string {
	input := in.(shardInput)
	output := out.(shardOutput)
	var call, result string
	switch input.kind {
	case kindHead:
		call = "head()"
		if output.head == nil {
			result = "absent"
		} else {
			result = showVersion(*output.head)
		}
	case kindCAS:
		name := "cas"
		if input.multi {
			name = "multi_cas element"
		}
		call = fmt.Sprintf("%s(%s)", name, showVersion(history.Version{SeqNo: input.seqno, Data: input.data}))
		switch {
		case output.unknown:
			result = "?"
		case output.committed:
			result = "committed"
		default:
			result = "mismatch"
		}
	case kindScan:
		call = fmt.Sprintf("scan(from=%d, limit=%s)", input.from, showLimit(input.limit))
		result = showVersions(output.versions)
	case kindTruncate:
		call = fmt.Sprintf("truncate(%d)", input.seqno)
		switch {
		case output.unknown:
			result = "?"
		case output.aboveHead:
			result = "above head"
		default:
			result = fmt.Sprintf("deleted %d", output.deleted)
		}
	}
	return fmt.Sprintf("%s -> %s", call, result)
}

// showVersions lists a scan result, abbreviating long ones.
func showVersions(vs []history.Version) string {
	const shown = 6
	parts := make([]string, 0, shown+1)
	for i, v := range vs {
		if i == shown-1 && len(vs) > shown {
			parts = append(parts, fmt.Sprintf("… %d more …", len(vs)-shown), showVersion(vs[len(vs)-1]))
			break
		}
		parts = append(parts, showVersion(v))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func describeState(st interface{}) string {
	s := st.(shardState)
	if s.top == nil {
		return "empty"
	}
	if s.floor == s.top.seqno {
		return fmt.Sprintf("[%s]", showVersion(history.Version{SeqNo: s.top.seqno, Data: s.top.data}))
	}
	return fmt.Sprintf("[%d … %s]", s.floor, showVersion(history.Version{SeqNo: s.top.seqno, Data: s.top.data}))
}

// opMeta identifies the history events an operation came from.
type opMeta struct {
	process     int
	node        string
	invokeIndex int
	doneIndex   int // -1: never completed
	outcome     history.Type
}

func describeMetadata(m interface{}) string {
	meta, ok := m.(opMeta)
	if !ok {
		return ""
	}
	return meta.String()
}

func (m opMeta) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "process %d", m.process)
	if m.node != "" {
		fmt.Fprintf(&b, " via %s", m.node)
	}
	if m.doneIndex < 0 {
		fmt.Fprintf(&b, ", event #%d, never completed", m.invokeIndex)
	} else {
		fmt.Fprintf(&b, ", events #%d-#%d, %s", m.invokeIndex, m.doneIndex, m.outcome)
	}
	return b.String()
}
