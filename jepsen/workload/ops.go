package workload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// AboveHead is the Error of a truncate that the service refused because the
// shard was empty or the seqno above its head: a determinate answer, so the
// operation is recorded as ok and the checker's model decides whether the
// refusal was right.
const AboveHead = checker.AboveHead

// role is what a worker does and how it reaches the cluster.
type role int

const (
	// routed: every kind of operation, through the routing client, which
	// follows the leader a replica names.
	routed role = iota
	// pinned: every kind of operation, always on one replica.
	pinned
	// reader: heads only, always on one replica.
	reader
)

func (r role) String() string {
	switch r {
	case routed:
		return "routed"
	case pinned:
		return "pinned"
	}
	return "reader"
}

// op is one operation's arguments.
type op struct {
	f     string
	key   string // head, scan, truncate
	seqno uint64 // truncate
	from  uint64 // scan
	limit uint64 // scan
	cas   *history.CASOp
	multi []history.CASOp
}

func (o op) write() bool {
	return o.f == history.FCAS || o.f == history.FMultiCAS || o.f == history.FTruncate
}

// keys returns the keys the operation names.
func (o op) keys() []string {
	switch {
	case o.cas != nil:
		return []string{o.cas.Key}
	case o.multi != nil:
		ks := make([]string, len(o.multi))
		for i, m := range o.multi {
			ks[i] = m.Key
		}
		return ks
	case o.key != "":
		return []string{o.key}
	}
	return nil
}

// invocation returns the invoke event of o.
func (o op) invocation(process int, node string) history.Event {
	e := history.Event{Process: process, Type: history.Invoke, F: o.f, Node: node, Key: o.key, SeqNo: o.seqno}
	if o.f == history.FScan {
		e.From, e.Limit = o.from, o.limit
	}
	if o.cas != nil {
		c := *o.cas
		e.CAS = &c
	}
	if o.multi != nil {
		e.Multi = append([]history.CASOp(nil), o.multi...)
	}
	return e
}

// knowledge is what a worker believes about a key's head.
type knowledge struct {
	seqno uint64
	has   bool // false: believed empty, or unknown
}

// chooser picks operations; its fields are a worker's state.
type chooser struct {
	rng   *rand.Rand
	role  role
	group int
	keys  *keyspace
	known map[string]knowledge
	// needRead: the worker's knowledge may be wrong (an indeterminate
	// operation, or a mismatch), so it reads before writing again.
	needRead bool
	// data numbers this worker's values; with the worker's index it makes
	// every value unique in the run.
	data   uint64
	worker int
}

// next returns the next operation.
func (c *chooser) next() op {
	key := c.keys.current(c.group)
	k := c.known[key]
	if c.needRead {
		return op{f: history.FHead, key: key}
	}
	p := c.rng.IntN(100)
	if c.role == reader {
		// Heads only: answered from the leader's cache, they never wait
		// on the backend, so a reader keeps reading through a stalled
		// backend and sees what a stale cache says.
		return op{f: history.FHead, key: key}
	}
	switch {
	case p < 20:
		return op{f: history.FHead, key: key}
	case p < 65:
		return op{f: history.FCAS, cas: c.casOp(key, k)}
	case p < 75:
		return c.scan(key, k)
	case p < 84:
		return c.truncate(key, k)
	case p < 97:
		return c.multiCAS(key, k)
	default:
		return op{f: history.FListKeys}
	}
}

// value returns a value no other operation of the run writes.
func (c *chooser) value(key string) string {
	c.data++
	return fmt.Sprintf("%s/w%d/%d", key, c.worker, c.data)
}

// casOp mostly expects the head the worker knows; sometimes a stale or a
// future one, which must not commit.
func (c *chooser) casOp(key string, k knowledge) *history.CASOp {
	next := uint64(0)
	if k.has {
		next = k.seqno + 1
	}
	switch p := c.rng.IntN(100); {
	case p < 8 && next > 0:
		next -= 1 + c.rng.Uint64N(min(next, 3)) // stale: at or below the head
	case p < 14:
		next += 1 + c.rng.Uint64N(2) // beyond the head
	}
	return &history.CASOp{Key: key, SeqNo: next, Data: c.value(key)}
}

func (c *chooser) scan(key string, k knowledge) op {
	from := uint64(0)
	if k.has && c.rng.IntN(2) == 0 {
		from = k.seqno - min(k.seqno, c.rng.Uint64N(5))
	}
	limit := uint64(math.MaxUint64)
	if c.rng.IntN(2) == 0 {
		limit = 1 + c.rng.Uint64N(5)
	}
	return op{f: history.FScan, key: key, from: from, limit: limit}
}

// truncate mostly truncates a little below the known head; sometimes above
// it, which the service must refuse.
func (c *chooser) truncate(key string, k knowledge) op {
	if !k.has {
		return op{f: history.FTruncate, key: key, seqno: 0}
	}
	if c.rng.IntN(100) < 20 {
		return op{f: history.FTruncate, key: key, seqno: k.seqno + 1 + c.rng.Uint64N(2)}
	}
	return op{f: history.FTruncate, key: key, seqno: k.seqno - min(k.seqno, c.rng.Uint64N(4))}
}

// multiCAS writes the worker's key and one or two keys of other groups,
// each expecting the highest head any worker saw.
func (c *chooser) multiCAS(key string, k knowledge) op {
	ops := []history.CASOp{*c.casOp(key, k)}
	for _, other := range c.keys.others(c.group, 1+c.rng.IntN(2), c.rng) {
		next := uint64(0)
		if s, ok := c.keys.latestOf(other); ok {
			next = s + 1
		}
		ops = append(ops, history.CASOp{Key: other, SeqNo: next, Data: c.value(other)})
	}
	if len(ops) == 1 {
		return op{f: history.FCAS, cas: &ops[0]}
	}
	return op{f: history.FMultiCAS, multi: ops}
}

// learn updates the worker's knowledge from a completed operation.
func (c *chooser) learn(o op, done history.Event) {
	switch done.Type {
	case history.Info:
		c.needRead = true
		return
	case history.Fail:
		return
	}
	set := func(key string, seqno uint64) {
		c.known[key] = knowledge{seqno: seqno, has: true}
		c.keys.saw(key, seqno)
	}
	switch o.f {
	case history.FHead:
		c.needRead = false
		if done.Head == nil {
			c.known[o.key] = knowledge{}
		} else {
			set(o.key, done.Head.SeqNo)
		}
	case history.FScan:
		if n := len(done.Versions); n > 0 {
			last := done.Versions[n-1].SeqNo
			if k := c.known[o.key]; !k.has || last > k.seqno || uint64(n) < o.limit {
				// Fewer versions than the limit: the last one is the head.
				set(o.key, last)
			}
		}
	case history.FCAS:
		if done.Committed {
			set(o.cas.Key, o.cas.SeqNo)
		} else {
			c.needRead = c.rng.IntN(100) < 70
		}
	case history.FMultiCAS:
		for i, m := range o.multi {
			if i < len(done.MultiCommitted) && done.MultiCommitted[i] {
				set(m.Key, m.SeqNo)
			}
		}
	case history.FTruncate:
		if done.Error == AboveHead {
			if k := c.known[o.key]; k.has && k.seqno >= o.seqno {
				c.needRead = true // the head is below what the worker believed
			}
		} else {
			// A successful truncate to s proves a head at or above s.
			if k := c.known[o.key]; !k.has || k.seqno < o.seqno {
				set(o.key, o.seqno)
			}
		}
	}
}

// execute runs o on store and returns its completion event and the error
// behind it.
func execute(ctx context.Context, store backend.Consensus, o op, inv history.Event) (history.Event, error) {
	done := inv
	var err error
	switch o.f {
	case history.FHead:
		var v *backend.VersionedData
		if v, err = store.Head(ctx, o.key); err == nil && v != nil {
			done.Head = &history.Version{SeqNo: v.SeqNo, Data: string(v.Data)}
		}
	case history.FScan:
		var vs []backend.VersionedData
		if vs, err = store.Scan(ctx, o.key, o.from, o.limit); err == nil {
			done.Versions = make([]history.Version, len(vs))
			for i, v := range vs {
				done.Versions[i] = history.Version{SeqNo: v.SeqNo, Data: string(v.Data)}
			}
		}
	case history.FCAS:
		done.Committed, err = store.CompareAndSet(ctx, o.cas.Key, backend.VersionedData{SeqNo: o.cas.SeqNo, Data: []byte(o.cas.Data)})
	case history.FMultiCAS:
		ops := make([]backend.CASOp, len(o.multi))
		for i, m := range o.multi {
			ops[i] = backend.CASOp{Shard: m.Key, New: backend.VersionedData{SeqNo: m.SeqNo, Data: []byte(m.Data)}}
		}
		done.MultiCommitted, err = store.CompareAndSetMulti(ctx, ops)
	case history.FTruncate:
		done.Deleted, err = store.Truncate(ctx, o.key, o.seqno)
	case history.FListKeys:
		if done.Keys, err = store.ListKeys(ctx); err == nil && done.Keys == nil {
			done.Keys = []string{}
		}
	default:
		err = backend.Determinatef("unknown operation %q", o.f)
	}
	done.Type, done.Error = classify(o.f, err)
	if done.Type != history.OK || done.Error != "" {
		// A failed operation carries no result.
		done.Head, done.Versions, done.Committed, done.MultiCommitted, done.Deleted, done.Keys = nil, nil, false, nil, 0, nil
	}
	return done, err
}

// classify maps an operation's error onto the history's types.
func classify(f string, err error) (history.Type, string) {
	switch {
	case err == nil:
		return history.OK, ""
	case f == history.FTruncate && backend.IsDeterminate(err) && errors.Is(err, backend.ErrTruncateAboveHead):
		return history.OK, AboveHead
	case backend.IsDeterminate(err):
		return history.Fail, err.Error()
	default:
		return history.Info, err.Error()
	}
}
