package checker_test

import (
	"math"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// all is the scan limit meaning "no limit".
const all = math.MaxUint64

// builder writes histories by hand the way the workload records them: an
// invocation, later a completion repeating the invocation's fields. Times are
// given in milliseconds.
type builder struct {
	events  []history.Event
	pending map[int]history.Event
	clock   int64 // next time used by seq, in ms
}

func newBuilder() *builder { return &builder{pending: make(map[int]history.Event)} }

func (b *builder) add(ms int64, e history.Event) {
	e.Index = len(b.events)
	e.Time = ms * 1e6
	b.events = append(b.events, e)
	b.clock = max(b.clock, ms+1)
}

// invoke records process p starting op at ms.
func (b *builder) invoke(ms int64, p int, op history.Event) {
	op.Process = p
	op.Type = history.Invoke
	op.Node = "n1"
	b.pending[p] = op
	b.add(ms, op)
}

func (b *builder) complete(ms int64, p int, typ history.Type, result func(*history.Event)) {
	e, ok := b.pending[p]
	if !ok {
		panic("no pending operation")
	}
	delete(b.pending, p)
	e.Type = typ
	if result != nil {
		result(&e)
	}
	b.add(ms, e)
}

func (b *builder) ok(ms int64, p int, result func(*history.Event)) {
	b.complete(ms, p, history.OK, result)
}

func (b *builder) fail(ms int64, p int) {
	b.complete(ms, p, history.Fail, func(e *history.Event) { e.Error = "determinate: unavailable" })
}

func (b *builder) info(ms int64, p int) {
	b.complete(ms, p, history.Info, func(e *history.Event) { e.Error = "indeterminate: deadline exceeded" })
}

// seq records op by process p as invoked and acknowledged right after
// everything recorded so far.
func (b *builder) seq(p int, op history.Event, result func(*history.Event)) {
	at := b.clock
	b.invoke(at, p, op)
	b.ok(at+1, p, result)
}

func (b *builder) faultStart(ms int64, kind string, targets ...string) {
	b.add(ms, history.Event{Process: history.NemesisProcess, Type: history.Invoke, F: history.FNemesis, Fault: kind, Targets: targets})
}

func (b *builder) faultEnd(ms int64, kind string, targets ...string) {
	b.add(ms, history.Event{Process: history.NemesisProcess, Type: history.OK, F: history.FNemesis, Fault: kind, Targets: targets})
}

func head(key string) history.Event { return history.Event{F: history.FHead, Key: key} }

func cas(key string, seqno uint64, data string) history.Event {
	return history.Event{F: history.FCAS, CAS: &history.CASOp{Key: key, SeqNo: seqno, Data: data}}
}

func multi(ops ...history.CASOp) history.Event {
	return history.Event{F: history.FMultiCAS, Multi: ops}
}

func el(key string, seqno uint64, data string) history.CASOp {
	return history.CASOp{Key: key, SeqNo: seqno, Data: data}
}

func scan(key string, from, limit uint64) history.Event {
	return history.Event{F: history.FScan, Key: key, From: from, Limit: limit}
}

func truncate(key string, seqno uint64) history.Event {
	return history.Event{F: history.FTruncate, Key: key, SeqNo: seqno}
}

func listKeys() history.Event { return history.Event{F: history.FListKeys} }

func committed(c bool) func(*history.Event) { return func(e *history.Event) { e.Committed = c } }

func multiCommitted(c ...bool) func(*history.Event) {
	return func(e *history.Event) { e.MultiCommitted = c }
}

func absent() func(*history.Event) { return func(e *history.Event) { e.Head = nil } }

func headIs(seqno uint64, data string) func(*history.Event) {
	return func(e *history.Event) { e.Head = &history.Version{SeqNo: seqno, Data: data} }
}

func versions(vs ...history.Version) func(*history.Event) {
	return func(e *history.Event) { e.Versions = vs }
}

func v(seqno uint64, data string) history.Version { return history.Version{SeqNo: seqno, Data: data} }

func deleted(n uint64) func(*history.Event) { return func(e *history.Event) { e.Deleted = n } }

func aboveHead() func(*history.Event) { return func(e *history.Event) { e.Error = checker.AboveHead } }

func keys(ks ...string) func(*history.Event) { return func(e *history.Event) { e.Keys = ks } }
