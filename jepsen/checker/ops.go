package checker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/history"
)

// clientOp is one client operation: its invocation and its completion.
type clientOp struct {
	invoke history.Event
	done   *history.Event // nil: the history ended before it completed
}

// outcome is ok, fail or info; an operation that never completed is info.
func (o clientOp) outcome() history.Type {
	if o.done == nil {
		return history.Info
	}
	return o.done.Type
}

// acked reports whether the operation completed ok.
func (o clientOp) acked() bool { return o.done != nil && o.done.Type == history.OK }

// returned is when the operation completed, or end for one that did not.
func (o clientOp) returned(end int64) int64 {
	if o.done == nil {
		return end
	}
	return o.done.Time
}

func (o clientOp) meta() opMeta {
	m := opMeta{process: o.invoke.Process, node: o.invoke.Node, invokeIndex: o.invoke.Index, doneIndex: -1, outcome: o.outcome()}
	if o.done != nil {
		m.doneIndex = o.done.Index
		if o.done.Node != "" {
			m.node = o.done.Node
		}
	}
	return m
}

func (o clientOp) String() string {
	return fmt.Sprintf("%s (%s, invoked at %s)", o.invoke.F, o.meta(), seconds(o.invoke.Time))
}

// casElements returns the (key, seqno, data) elements an operation writes,
// and for an acknowledged call which of them committed.
func (o clientOp) casElements() ([]history.CASOp, []bool, error) {
	switch o.invoke.F {
	case history.FCAS:
		if o.invoke.CAS == nil {
			return nil, nil, fmt.Errorf("event #%d: cas without an argument", o.invoke.Index)
		}
		var committed []bool
		if o.acked() {
			committed = []bool{o.done.Committed}
		}
		return []history.CASOp{*o.invoke.CAS}, committed, nil
	case history.FMultiCAS:
		// One atomic step cannot apply two elements to one shard; the
		// workload never asks for it.
		seen := make(map[string]bool, len(o.invoke.Multi))
		for _, el := range o.invoke.Multi {
			if seen[el.Key] {
				return nil, nil, fmt.Errorf("event #%d: multi_cas names key %q twice", o.invoke.Index, el.Key)
			}
			seen[el.Key] = true
		}
		var committed []bool
		if o.acked() {
			committed = o.done.MultiCommitted
			if len(committed) != len(o.invoke.Multi) {
				return nil, nil, fmt.Errorf("event #%d: multi_cas of %d elements answered %d results",
					o.done.Index, len(o.invoke.Multi), len(committed))
			}
		}
		return o.invoke.Multi, committed, nil
	default:
		return nil, nil, nil
	}
}

// parsed is a history split into client operations and faults.
type parsed struct {
	ops []clientOp // in invocation order
	// end is a time after every event: the "infinity" at which operations
	// with an unknown outcome return.
	end       int64
	faults    []Fault
	malformed []string
}

func parse(events []history.Event) parsed {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b history.Event) int { return a.Index - b.Index })

	var p parsed
	pending := make(map[int]int) // process -> index into p.ops
	for _, e := range sorted {
		p.end = max(p.end, e.Time+1)
		if e.F == history.FNemesis || e.Process == history.NemesisProcess {
			continue
		}
		if e.Type == history.Invoke {
			if prev, ok := pending[e.Process]; ok {
				p.malformed = append(p.malformed, fmt.Sprintf(
					"malformed history: event #%d: process %d invoked %s while its %s from event #%d was pending",
					e.Index, e.Process, e.F, p.ops[prev].invoke.F, p.ops[prev].invoke.Index))
			}
			pending[e.Process] = len(p.ops)
			p.ops = append(p.ops, clientOp{invoke: e})
			continue
		}
		i, ok := pending[e.Process]
		if !ok {
			p.malformed = append(p.malformed, fmt.Sprintf(
				"malformed history: event #%d: %s completion of process %d without an invocation", e.Index, e.Type, e.Process))
			continue
		}
		delete(pending, e.Process)
		if e.F != p.ops[i].invoke.F {
			p.malformed = append(p.malformed, fmt.Sprintf(
				"malformed history: event #%d: %s completion of process %d answers the %s invoked at event #%d",
				e.Index, e.F, e.Process, p.ops[i].invoke.F, p.ops[i].invoke.Index))
			continue
		}
		done := e
		p.ops[i].done = &done
	}
	p.faults = faults(sorted, p.end)
	return p
}

// partitionHistories turns client operations into porcupine histories, one
// per partition, sorted by label. Keys linked through multi_cas operations
// that may have taken effect share a partition, in which a multi_cas is one
// atomic step; every other key is a partition of its own. Failed operations
// had no effect and are dropped; reads that failed or timed out observed
// nothing and are dropped; writes with an unknown outcome return at p.end.
//
// An element of an indeterminate write whose seqno was taken by an
// acknowledged commit of other data certainly did not commit (a seqno holds
// one version, forever). A write all of whose elements are such is dropped:
// left in, it could be linearized as a no-op at any point, and every such
// choice multiplies porcupine's search. An indeterminate multi_cas with only
// some such elements stays, with those marked lost: whether its other
// elements may have committed depends on the point where it happened, which
// the lost ones constrain. It returns how many elements were found lost.
func partitionHistories(p parsed) ([]partitionHistory, []string, int) {
	var problems []string
	type slot struct {
		key   string
		seqno uint64
	}
	taken := make(map[slot]string)
	for _, o := range p.ops {
		elems, committed, err := o.casElements()
		if err != nil || committed == nil {
			continue
		}
		for i, el := range elems {
			if _, ok := taken[slot{el.Key, el.SeqNo}]; committed[i] && !ok {
				taken[slot{el.Key, el.SeqNo}] = el.Data
			}
		}
	}

	// Operations are staged without their partition, which is known only
	// once every multi_cas has been seen.
	var staged []porcupine.Operation
	keys := keyUnion{parent: make(map[string]string)}
	pruned := 0
	add := func(o clientOp, in modelInput, out modelOutput) {
		ret := o.returned(p.end)
		if out.unknown {
			ret = p.end
		}
		if in.kind == kindMultiCAS {
			keys.find(in.elements[0].key)
			for _, el := range in.elements[1:] {
				keys.union(in.elements[0].key, el.key)
			}
		} else {
			keys.find(in.key)
		}
		staged = append(staged, porcupine.Operation{
			ClientId: o.invoke.Process,
			Input:    in,
			Call:     o.invoke.Time,
			Output:   out,
			Return:   ret,
			Metadata: o.meta(),
		})
	}
	for _, o := range p.ops {
		outcome := o.outcome()
		if outcome == history.Fail {
			continue
		}
		in, d := o.invoke, o.done
		switch in.F {
		case history.FHead:
			if o.acked() {
				add(o, modelInput{key: in.Key, kind: kindHead}, modelOutput{head: d.Head})
			}
		case history.FScan:
			if o.acked() {
				add(o, modelInput{key: in.Key, kind: kindScan, from: in.From, limit: in.Limit}, modelOutput{versions: d.Versions})
			}
		case history.FTruncate:
			input := modelInput{key: in.Key, kind: kindTruncate, seqno: in.SeqNo}
			switch {
			case !o.acked():
				add(o, input, modelOutput{unknown: true})
			case d.Error == AboveHead:
				add(o, input, modelOutput{aboveHead: true})
			default:
				add(o, input, modelOutput{deleted: d.Deleted})
			}
		case history.FCAS, history.FMultiCAS:
			elems, committed, err := o.casElements()
			if err != nil {
				problems = append(problems, "malformed history: "+err.Error())
				continue
			}
			if len(elems) == 0 {
				continue // an empty multi_cas writes nothing
			}
			lost := make([]bool, len(elems))
			nLost := 0
			if committed == nil {
				for i, el := range elems {
					if data, ok := taken[slot{el.Key, el.SeqNo}]; ok && data != el.Data {
						lost[i] = true
						nLost++
					}
				}
			}
			pruned += nLost
			if nLost == len(elems) {
				continue
			}
			out := modelOutput{unknown: committed == nil}
			if in.F == history.FCAS {
				el := elems[0]
				if !out.unknown {
					out.committed = committed[0]
				}
				add(o, modelInput{key: el.Key, kind: kindCAS, seqno: el.SeqNo, data: el.Data}, out)
				continue
			}
			input := modelInput{kind: kindMultiCAS, elements: make([]multiElement, len(elems))}
			for i, el := range elems {
				input.elements[i] = multiElement{key: el.Key, seqno: el.SeqNo, data: el.Data, lost: lost[i]}
			}
			out.multiCommitted = committed
			add(o, input, out)
		case history.FListKeys:
			// Checked on its own: it spans every shard.
		default:
			problems = append(problems, fmt.Sprintf("malformed history: event #%d: unknown operation %q", in.Index, in.F))
		}
	}

	members := make(map[string][]string) // class representative -> keys
	for key := range keys.parent {
		root := keys.find(key)
		members[root] = append(members[root], key)
	}
	out := make([]partitionHistory, 0, len(members))
	for _, ks := range members {
		slices.Sort(ks)
		out = append(out, partitionHistory{group: newKeyGroup(ks)})
	}
	slices.SortFunc(out, func(a, b partitionHistory) int { return strings.Compare(a.group.label, b.group.label) })
	type place struct {
		partition, slot int
	}
	placeOf := make(map[string]place, len(keys.parent))
	for i, h := range out {
		h.group.index = i
		for s, key := range h.group.keys {
			placeOf[key] = place{partition: i, slot: s}
		}
	}
	for _, op := range staged {
		in := op.Input.(modelInput)
		var at place
		if in.kind == kindMultiCAS {
			at = placeOf[in.elements[0].key]
			for i := range in.elements {
				in.elements[i].slot = placeOf[in.elements[i].key].slot
			}
		} else {
			at = placeOf[in.key]
			in.slot = at.slot
		}
		in.group = out[at.partition].group
		op.Input = in
		out[at.partition].ops = append(out[at.partition].ops, op)
	}
	return out, problems, pruned
}

// AboveHead is the Error of an ok truncate whose answer was "truncate above
// head": the shard is empty or the bound is above its head.
const AboveHead = "above_head"

func seconds(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }
