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

// opKind is the operation a model step performs.
type opKind uint8

const (
	kindHead opKind = iota
	kindCAS
	kindMultiCAS
	kindScan
	kindTruncate
)

// keyGroup is one partition of the linearizability check: a key of its own,
// or keys linked through multi_cas operations, which must be checked
// together because a multi_cas is one atomic step on all of them. Every
// input of the partition points to the same keyGroup; it is never modified
// after the histories are built.
type keyGroup struct {
	index  int      // position among the partitions, for partitionByGroup
	label  string   // the keys joined by "+"
	keys   []string // sorted; a key's slot is its position here
	height int      // levels of inner nodes above the leaves of a state's shardTrie
}

// newKeyGroup builds the partition of sorted keys; its index is set once
// the partitions are sorted.
func newKeyGroup(keys []string) *keyGroup {
	height := 0
	for capacity := trieFanout; capacity < len(keys); capacity *= trieFanout {
		height++
	}
	return &keyGroup{label: strings.Join(keys, "+"), keys: keys, height: height}
}

func (g *keyGroup) multiKey() bool { return len(g.keys) > 1 }

// name is how problems refer to the partition.
func (g *keyGroup) name() string {
	if g.multiKey() {
		return fmt.Sprintf("keys %q", g.label)
	}
	return fmt.Sprintf("key %q", g.label)
}

// modelInput is the argument of one operation. Single-key operations name
// their key and its slot in the partition's state; a multi_cas lists its
// elements instead. A multi_cas element checked as an independent cas, in a
// projection, is a kindCAS input with element set, so descriptions can tell
// the two apart.
type modelInput struct {
	group    *keyGroup
	kind     opKind
	key      string
	slot     int
	seqno    uint64 // cas: the new version's seqno; truncate: the bound
	data     string // cas
	from     uint64 // scan
	limit    uint64 // scan
	elements []multiElement
	// omitted counts the elements of a multi_cas restricted to some of its
	// keys (see project) that name other keys.
	omitted int
	element bool
}

// multiElement is one (key, seqno, data) element of a multi_cas.
type multiElement struct {
	key   string
	slot  int
	seqno uint64
	data  string
	// lost marks an element of an indeterminate multi_cas that certainly did
	// not commit: an acknowledged commit of other data took its seqno.
	lost bool
}

// modelOutput is the observed result of one operation.
type modelOutput struct {
	// unknown marks an indeterminate write: it returns at the end of time and
	// may or may not have taken effect.
	unknown        bool
	committed      bool              // cas
	multiCommitted []bool            // multi_cas, one per element
	head           *history.Version  // head; nil is "absent"
	versions       []history.Version // scan
	aboveHead      bool              // truncate answered "above head"
	deleted        uint64            // truncate
}

// version is one node of an immutable list of a shard's versions, newest
// first. States share their tails, so a committed cas costs one node rather
// than a copy of the shard, and porcupine may keep thousands of states.
type version struct {
	seqno uint64
	data  string
	prev  *version
	// hash covers seqno and data, computed once so that hashing a state
	// never reads the data again.
	hash uint64
}

// shardState is the model state of one shard. Because a cas only appends
// latest+1 and a truncate never removes the latest version, the live versions
// are always the contiguous range [floor, top.seqno]; nodes below floor stay
// in the list but are gone from the shard's point of view. A shard that was
// ever written never becomes empty again.
type shardState struct {
	top   *version // nil: the shard has no version
	floor uint64
}

// trieFanout is the branching of a shardTrie: a partition of up to this many
// keys is a single leaf.
const (
	trieBits   = 4
	trieFanout = 1 << trieBits
)

// shardTrie is a persistent array of the shard states of a partition,
// indexed by slot. An update copies one path, so a step costs O(log n) in
// the partition's size however many keys multi_cas operations linked, and
// states share every subtree they did not change. A nil subtree is all
// empty shards.
type shardTrie struct {
	children []*shardTrie // inner node: trieFanout subtries
	shards   []shardState // leaf
}

// groupState is the model state of a partition: the state of each of its
// keys. States are immutable and handled by pointer, so a step that changes
// nothing returns its state without allocating.
type groupState struct {
	group *keyGroup // nil before the first write: no partition is known yet
	root  *shardTrie
	// hash is the sum of slotHash over the non-empty shards, kept up to date
	// on every write so that porcupine's hashing of a state is O(1).
	hash uint64
}

func (s *groupState) shard(slot int) shardState {
	t := s.root
	if t == nil {
		return shardState{}
	}
	for level := s.group.height; level > 0; level-- {
		t = t.children[(slot>>(trieBits*level))&(trieFanout-1)]
		if t == nil {
			return shardState{}
		}
	}
	return t.shards[slot&(trieFanout-1)]
}

// with returns the state with the shard at slot replaced; g is the
// partition, which the initial state does not know.
func (s *groupState) with(g *keyGroup, slot int, shard shardState) *groupState {
	old := s.shard(slot)
	return &groupState{
		group: g,
		root:  setShard(s.root, g.height, slot, shard, len(g.keys)),
		hash:  s.hash - slotHash(slot, old) + slotHash(slot, shard),
	}
}

// setShard copies the path to slot. A leaf of a single-leaf trie holds
// exactly the partition's keys, so a key of its own costs one element.
func setShard(t *shardTrie, level, slot int, shard shardState, size int) *shardTrie {
	if level == 0 {
		leaf := &shardTrie{}
		if t != nil {
			leaf.shards = append(make([]shardState, 0, len(t.shards)), t.shards...)
		} else {
			leaf.shards = make([]shardState, min(size, trieFanout))
		}
		leaf.shards[slot&(trieFanout-1)] = shard
		return leaf
	}
	node := &shardTrie{children: make([]*shardTrie, trieFanout)}
	if t != nil {
		copy(node.children, t.children)
	}
	i := (slot >> (trieBits * level)) & (trieFanout - 1)
	node.children[i] = setShard(node.children[i], level-1, slot, shard, trieFanout)
	return node
}

// partitionModel is the sequential specification of a partition of shards
// (docs/architecture.md §2.2, Semantics). It is partitioned by keyGroup so
// that porcupine checks each partition on its own. nameEveryKey makes every
// operation's description name its key, for a page that shows several
// partitions; otherwise only operations of multi-key partitions do.
func partitionModel(nameEveryKey bool) porcupine.Model {
	return porcupine.Model{
		Partition: partitionByGroup,
		Init:      func() interface{} { return &groupState{} },
		Step:      step,
		Equal:     equalStates,
		Hash:      func(st interface{}) uint64 { return st.(*groupState).hash },
		DescribeOperation: func(in, out interface{}) string {
			return describeOperation(in.(modelInput), out.(modelOutput), nameEveryKey)
		},
		DescribeState:             func(st interface{}) string { return describeState(st.(*groupState)) },
		DescribeOperationMetadata: describeMetadata,
	}
}

func partitionByGroup(ops []porcupine.Operation) [][]porcupine.Operation {
	index := make(map[int]int)
	var out [][]porcupine.Operation
	for _, op := range ops {
		g := op.Input.(modelInput).group.index
		i, ok := index[g]
		if !ok {
			i = len(out)
			index[g] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], op)
	}
	return out
}

func step(st, in, out interface{}) (bool, interface{}) {
	s := st.(*groupState)
	input := in.(modelInput)
	output := out.(modelOutput)
	if input.kind == kindMultiCAS {
		return stepMultiCAS(s, input, output)
	}
	cur := s.shard(input.slot)
	var ok bool
	next := cur
	switch input.kind {
	case kindHead:
		ok = stepHead(cur, output)
	case kindCAS:
		ok, next = stepCAS(cur, input, output)
	case kindScan:
		ok = stepScan(cur, input, output)
	case kindTruncate:
		ok, next = stepTruncate(cur, input, output)
	}
	if !ok || next == cur {
		return ok, s
	}
	return true, s.with(input.group, input.slot, next)
}

func stepHead(s shardState, out modelOutput) bool {
	if s.top == nil || out.head == nil {
		return s.top == nil && out.head == nil
	}
	return out.head.SeqNo == s.top.seqno && out.head.Data == s.top.data
}

// casMatches is the persist CaS condition: the new seqno directly follows the
// head, or the shard is empty and the new seqno is 0. Truncation does not
// change it: the head is never truncated.
func casMatches(s shardState, seqno uint64) bool {
	if s.top == nil {
		return seqno == 0
	}
	return s.top.seqno != math.MaxUint64 && s.top.seqno+1 == seqno
}

func stepCAS(s shardState, in modelInput, out modelOutput) (bool, shardState) {
	matches := casMatches(s, in.seqno)
	switch {
	case out.unknown:
		// An indeterminate cas returns at the end of time, so porcupine may
		// place it after every other operation, where its effect is
		// unobservable. Applying it whenever it matches therefore covers
		// both "it took effect here" and "it never took effect".
		if matches {
			return true, appendVersion(s, in.seqno, in.data)
		}
		return true, s
	case out.committed:
		if !matches {
			return false, s
		}
		return true, appendVersion(s, in.seqno, in.data)
	default:
		return !matches, s
	}
}

// stepMultiCAS applies a multi_cas as one atomic step: every element's
// verdict is read off the state at this single point (committed exactly if
// casMatches holds for its key), and the committed elements take effect
// together. Elements name distinct keys, so no element's effect can change
// another's verdict.
//
// An acknowledged multi_cas must have had its observed verdict vector at
// that point, element by element; committing some elements and mismatching
// others is a legitimate outcome when the state says so.
//
// An indeterminate one either took effect at one point or never did. If it
// did, what it did there is not a choice: the state at the point decides
// each element, so the step applies exactly that effect, and never an
// arbitrary subset of the elements. "Never" needs no step of its own: the
// operation returns at the end of time, so porcupine may place it after
// every other operation, where its effect is unobservable, as for an
// indeterminate cas. An element known to be lost (its seqno went to other
// data) rules out every point where it would have committed; at the end it
// mismatches, since its seqno is then taken, so "never" stays possible.
func stepMultiCAS(s *groupState, in modelInput, out modelOutput) (bool, interface{}) {
	next := s
	for i, el := range in.elements {
		shard := s.shard(el.slot)
		matches := casMatches(shard, el.seqno)
		switch {
		case out.unknown:
			if matches && el.lost {
				return false, s
			}
		case matches != out.multiCommitted[i]:
			return false, s
		}
		if matches {
			next = next.with(in.group, el.slot, appendVersion(shard, el.seqno, el.data))
		}
	}
	return true, next
}

func appendVersion(s shardState, seqno uint64, data string) shardState {
	return shardState{top: &version{seqno: seqno, data: data, prev: s.top, hash: versionHash(seqno, data)}, floor: s.floor}
}

func stepScan(s shardState, in modelInput, out modelOutput) bool {
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

func stepTruncate(s shardState, in modelInput, out modelOutput) (bool, shardState) {
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
	x, y := a.(*groupState), b.(*groupState)
	if x == y {
		return true
	}
	if x.hash != y.hash {
		return false
	}
	height := 0
	if x.group != nil {
		height = x.group.height
	} else if y.group != nil {
		height = y.group.height
	}
	return equalTries(x.root, y.root, height)
}

// equalTries compares two tries of one partition; subtrees they share end
// the walk early, so comparing two states one step apart is cheap.
func equalTries(x, y *shardTrie, level int) bool {
	switch {
	case x == y:
		return true
	case x == nil || y == nil:
		return allEmpty(x) && allEmpty(y)
	case level == 0:
		for i := range max(len(x.shards), len(y.shards)) {
			if !equalShards(leafShard(x, i), leafShard(y, i)) {
				return false
			}
		}
		return true
	default:
		for i := range x.children {
			if !equalTries(x.children[i], y.children[i], level-1) {
				return false
			}
		}
		return true
	}
}

func leafShard(t *shardTrie, i int) shardState {
	if i < len(t.shards) {
		return t.shards[i]
	}
	return shardState{}
}

// allEmpty reports whether every shard of a subtree is empty. A trie node is
// only made to hold a written shard, which never becomes empty, so this is
// false for every non-nil subtree the model builds; it keeps equalTries
// correct without relying on that.
func allEmpty(t *shardTrie) bool {
	if t == nil {
		return true
	}
	for _, c := range t.children {
		if !allEmpty(c) {
			return false
		}
	}
	for _, s := range t.shards {
		if s.top != nil {
			return false
		}
	}
	return true
}

func equalShards(x, y shardState) bool {
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

func versionHash(seqno uint64, data string) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	putUint64(buf[:], seqno)
	h.Write(buf[:])
	h.Write([]byte(data))
	return h.Sum64()
}

// slotHash is a shard's share of its partition's hash: it depends on what
// equalShards compares (the floor, the head's seqno and data) and on the
// slot, so that two keys swapping states changes the sum. An empty shard
// counts zero, which makes the initial state's hash zero whatever the
// partition.
func slotHash(slot int, s shardState) uint64 {
	if s.top == nil {
		return 0
	}
	return mix64(s.top.hash ^ mix64(s.floor^uint64(slot)*0x9e3779b97f4a7c15))
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
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

func showVerdict(committed bool) string {
	if committed {
		return "committed"
	}
	return "mismatch"
}

// describeOperation names the operation's key when its partition has
// several, or when nameEveryKey asks for it: porcupine's page draws every
// partition on the same rows and labels none of them.
func describeOperation(in modelInput, out modelOutput, nameEveryKey bool) string {
	var call, result string
	switch in.kind {
	case kindHead:
		call = "head()"
		if out.head == nil {
			result = "absent"
		} else {
			result = showVersion(*out.head)
		}
	case kindCAS:
		name := "cas"
		if in.element {
			name = "multi_cas element"
		}
		call = fmt.Sprintf("%s(%s)", name, showVersion(history.Version{SeqNo: in.seqno, Data: in.data}))
		switch {
		case out.unknown:
			result = "?"
		default:
			result = showVerdict(out.committed)
		}
	case kindMultiCAS:
		// Its elements name their keys, so it needs no prefix.
		elems := make([]string, len(in.elements))
		for i, el := range in.elements {
			elems[i] = el.key + "=" + showVersion(history.Version{SeqNo: el.seqno, Data: el.data})
		}
		result = "?"
		if !out.unknown {
			verdicts := make([]string, len(out.multiCommitted))
			for i, c := range out.multiCommitted {
				verdicts[i] = showVerdict(c)
			}
			result = "[" + strings.Join(verdicts, " ") + "]"
		}
		if in.omitted > 0 {
			elems = append(elems, fmt.Sprintf("and %d more", in.omitted))
		}
		return fmt.Sprintf("multi_cas(%s) -> %s", strings.Join(elems, ", "), result)
	case kindScan:
		call = fmt.Sprintf("scan(from=%d, limit=%s)", in.from, showLimit(in.limit))
		result = showVersions(out.versions)
	case kindTruncate:
		call = fmt.Sprintf("truncate(%d)", in.seqno)
		switch {
		case out.unknown:
			result = "?"
		case out.aboveHead:
			result = "above head"
		default:
			result = fmt.Sprintf("deleted %d", out.deleted)
		}
	}
	if nameEveryKey || in.group.multiKey() {
		call = in.key + ": " + call
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

func describeShard(s shardState) string {
	if s.top == nil {
		return "empty"
	}
	if s.floor == s.top.seqno {
		return fmt.Sprintf("[%s]", showVersion(history.Version{SeqNo: s.top.seqno, Data: s.top.data}))
	}
	return fmt.Sprintf("[%d … %s]", s.floor, showVersion(history.Version{SeqNo: s.top.seqno, Data: s.top.data}))
}

// maxShownShards bounds how many shards the description of a state names:
// multi_cas may link thousands of keys into one partition.
const maxShownShards = 8

// describeState shows the shard of a single-key partition as it is, and the
// written shards of a multi-key one by key.
func describeState(s *groupState) string {
	if s.group == nil {
		return "empty"
	}
	if !s.group.multiKey() {
		return describeShard(s.shard(0))
	}
	var parts []string
	written := 0
	for slot, key := range s.group.keys {
		shard := s.shard(slot)
		if shard.top == nil {
			continue
		}
		written++
		if len(parts) < maxShownShards {
			parts = append(parts, key+"="+describeShard(shard))
		}
	}
	if written > len(parts) {
		parts = append(parts, fmt.Sprintf("and %d more", written-len(parts)))
	}
	if written < len(s.group.keys) {
		parts = append(parts, "others empty")
	}
	return strings.Join(parts, " ")
}

// describeShardsOf shows the shards an operation names in state s.
func describeShardsOf(s *groupState, in modelInput) string {
	if !in.group.multiKey() {
		return "the shard " + describeShard(s.shard(in.slot))
	}
	if in.kind != kindMultiCAS {
		return "the shard " + in.key + "=" + describeShard(s.shard(in.slot))
	}
	parts := make([]string, len(in.elements))
	for i, el := range in.elements {
		parts[i] = el.key + "=" + describeShard(s.shard(el.slot))
	}
	return "the shards " + strings.Join(parts, " ")
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
