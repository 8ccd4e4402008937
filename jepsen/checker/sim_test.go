package checker_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// simStore is a plain in-memory persist consensus store, written
// independently of the checker's model, that simulated histories run against.
type simStore map[string][]history.Version // live versions, ascending

func (s simStore) head(key string) *history.Version {
	vs := s[key]
	if len(vs) == 0 {
		return nil
	}
	last := vs[len(vs)-1]
	return &last
}

func (s simStore) cas(key string, seqno uint64, data string) bool {
	vs := s[key]
	if (len(vs) == 0 && seqno == 0) || (len(vs) > 0 && vs[len(vs)-1].SeqNo+1 == seqno) {
		s[key] = append(vs, history.Version{SeqNo: seqno, Data: data})
		return true
	}
	return false
}

func (s simStore) scan(key string, from, limit uint64) []history.Version {
	var out []history.Version
	for _, v := range s[key] {
		if v.SeqNo >= from && uint64(len(out)) < limit {
			out = append(out, v)
		}
	}
	return out
}

func (s simStore) truncate(key string, seqno uint64) (deleted uint64, aboveHead bool) {
	vs := s[key]
	if len(vs) == 0 || seqno > vs[len(vs)-1].SeqNo {
		return 0, true
	}
	keep := slices.DeleteFunc(slices.Clone(vs), func(v history.Version) bool { return v.SeqNo < seqno })
	s[key] = keep
	return uint64(len(vs) - len(keep)), false
}

func (s simStore) listKeys() []string {
	var out []string
	for k, vs := range s {
		if len(vs) > 0 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// simOp is one simulated operation: it takes effect at point, inside
// [call, ret]; an indeterminate write takes effect only if applied is set.
type simOp struct {
	process          int
	call, point, ret int64
	invoke           history.Event
	outcome          history.Type
	applied          bool
	result           history.Event
}

// simulate records a linearizable history of clients issuing random
// operations over keys against a simStore, each operation taking effect at a
// random moment of its interval, followed by final reads.
func simulate(seed uint64, clients, opsPerClient, nkeys int) []history.Event {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keyName := func() string { return fmt.Sprintf("k%d", rng.IntN(nkeys)) }
	store := simStore{}
	var ops []*simOp
	nextProcess := clients
	writes := 0
	for c := range clients {
		process := c
		var t int64
		for range opsPerClient {
			call := t + 1 + rng.Int64N(5)
			ret := call + 1 + rng.Int64N(20)
			op := &simOp{process: process, call: call, ret: ret, point: call + rng.Int64N(ret-call+1), outcome: history.OK}
			key := keyName()
			// seqnos near the current head, so that many CaS commit
			near := func() uint64 {
				h := store.head(key) // a guess: the store moves on before the op takes effect
				base := uint64(0)
				if h != nil {
					base = h.SeqNo + 1
				}
				return base + uint64(rng.IntN(3)) - min(base, 1)
			}
			switch r := rng.IntN(100); {
			case r < 25:
				op.invoke = history.Event{F: history.FHead, Key: key}
			case r < 55:
				writes++
				op.invoke = history.Event{F: history.FCAS, CAS: &history.CASOp{Key: key, SeqNo: near(), Data: fmt.Sprintf("w%d", writes)}}
			case r < 70:
				from := uint64(rng.IntN(4))
				if h := store.head(key); h != nil {
					from = h.SeqNo - min(h.SeqNo, uint64(rng.IntN(4)))
				}
				limit := []uint64{0, 1, 2, 5, all}[rng.IntN(5)]
				op.invoke = history.Event{F: history.FScan, Key: key, From: from, Limit: limit}
			case r < 80:
				seqno := uint64(0)
				if h := store.head(key); h != nil {
					seqno = h.SeqNo + 1 - min(h.SeqNo+1, uint64(rng.IntN(4)))
				}
				op.invoke = history.Event{F: history.FTruncate, Key: key, SeqNo: seqno}
			case r < 92:
				other := keyName()
				if other == key {
					other = key + "m"
				}
				writes++
				first := near()
				op.invoke = history.Event{F: history.FMultiCAS, Multi: []history.CASOp{
					{Key: key, SeqNo: first, Data: fmt.Sprintf("w%d", writes)},
					{Key: other, SeqNo: uint64(rng.IntN(3)), Data: fmt.Sprintf("w%d'", writes)},
				}}
			default:
				op.invoke = history.Event{F: history.FListKeys}
			}
			isWrite := op.invoke.F == history.FCAS || op.invoke.F == history.FMultiCAS || op.invoke.F == history.FTruncate
			switch r := rng.IntN(100); {
			case r < 4 && isWrite:
				op.outcome = history.Info
				op.applied = rng.IntN(2) == 0
				if !op.applied {
					op.point = -1
				}
			case r < 7:
				op.outcome = history.Fail
				op.point = -1
			}
			ops = append(ops, op)
			t = ret
			if op.outcome == history.Info {
				process = nextProcess
				nextProcess++
			}
		}
	}
	// Apply in linearization order; ops without effect are skipped.
	byPoint := slices.Clone(ops)
	slices.SortStableFunc(byPoint, func(a, b *simOp) int { return int(a.point - b.point) })
	for _, op := range byPoint {
		if op.point < 0 {
			continue
		}
		res := op.invoke
		switch op.invoke.F {
		case history.FHead:
			res.Head = store.head(op.invoke.Key)
		case history.FCAS:
			res.Committed = store.cas(op.invoke.CAS.Key, op.invoke.CAS.SeqNo, op.invoke.CAS.Data)
		case history.FMultiCAS:
			for _, e := range op.invoke.Multi {
				res.MultiCommitted = append(res.MultiCommitted, store.cas(e.Key, e.SeqNo, e.Data))
			}
		case history.FScan:
			res.Versions = store.scan(op.invoke.Key, op.invoke.From, op.invoke.Limit)
		case history.FTruncate:
			d, above := store.truncate(op.invoke.Key, op.invoke.SeqNo)
			res.Deleted = d
			if above {
				res.Error = checker.AboveHead
			}
		case history.FListKeys:
			res.Keys = store.listKeys()
		}
		op.result = res
	}

	type stamped struct {
		t int64
		e history.Event
	}
	var evs []stamped
	var end int64
	for _, op := range ops {
		inv := op.invoke
		inv.Process, inv.Type = op.process, history.Invoke
		evs = append(evs, stamped{op.call, inv})
		done := op.result
		if op.outcome != history.OK {
			done = op.invoke
			done.Error = "simulated"
		}
		done.Process, done.Type = op.process, op.outcome
		evs = append(evs, stamped{op.ret, done})
		end = max(end, op.ret)
	}
	// calls before returns at equal times, as porcupine reads closed intervals
	slices.SortStableFunc(evs, func(a, b stamped) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		return boolInt(a.e.Type != history.Invoke) - boolInt(b.e.Type != history.Invoke)
	})
	// final reads, one client after healing
	t := end + 10
	final := func(e history.Event) {
		inv := e
		inv.Process, inv.Type = nextProcess, history.Invoke
		evs = append(evs, stamped{t, inv})
		switch e.F {
		case history.FScan:
			e.Versions = store.scan(e.Key, 0, all)
		case history.FHead:
			e.Head = store.head(e.Key)
		}
		e.Process, e.Type = nextProcess, history.OK
		evs = append(evs, stamped{t + 1, e})
		t += 2
	}
	for _, k := range store.listKeys() {
		final(history.Event{F: history.FScan, Key: k, From: 0, Limit: all})
		final(history.Event{F: history.FHead, Key: k})
	}
	out := make([]history.Event, len(evs))
	for i, s := range evs {
		s.e.Index, s.e.Time = i, s.t*1e5
		out[i] = s.e
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSimulatedLinearizableHistoriesPass(t *testing.T) {
	for seed := range uint64(20) {
		events := simulate(seed, 5, 200, 4)
		r := checker.Check(events, checker.Options{})
		if r.Verdict != checker.Pass {
			t.Fatalf("seed %d: %s: %q", seed, r.Verdict, r.Problems)
		}
		if r.Keys < 4 || r.Ops < 1000 || r.Indeterminate == 0 || r.Failed == 0 || r.DurabilityKeys < 4 {
			t.Fatalf("seed %d: thin coverage: %d keys, %d ops, %d info, %d failed, %d durability keys",
				seed, r.Keys, r.Ops, r.Indeterminate, r.Failed, r.DurabilityKeys)
		}
	}
}

// Changing one observed result of a simulated history must be caught. Both
// corruptions are ones no interleaving can explain: data never written, and a
// scan with a hole.
func TestSimulatedHistoriesWithOneCorruptReadFail(t *testing.T) {
	corruptions := []struct {
		name    string
		applies func(e history.Event) bool
		corrupt func(e *history.Event)
	}{
		{
			name:    "head data",
			applies: func(e history.Event) bool { return e.F == history.FHead && e.Head != nil },
			corrupt: func(e *history.Event) {
				h := *e.Head
				h.Data += "-corrupt"
				e.Head = &h
			},
		},
		{
			name:    "scan hole",
			applies: func(e history.Event) bool { return e.F == history.FScan && len(e.Versions) >= 3 },
			corrupt: func(e *history.Event) { e.Versions = slices.Delete(slices.Clone(e.Versions), 1, 2) },
		},
	}
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			for seed := range uint64(20) {
				events := simulate(seed, 5, 200, 4)
				var candidates []int
				for i, e := range events {
					if e.Type == history.OK && c.applies(e) {
						candidates = append(candidates, i)
					}
				}
				i := candidates[len(candidates)/2]
				c.corrupt(&events[i])
				r := checker.Check(events, checker.Options{})
				if r.Verdict != checker.Fail || r.Linearizable != porcupine.Illegal {
					t.Fatalf("seed %d: corrupt event #%d: %s, %s", seed, i, r.Verdict, r.Linearizable)
				}
				// multi_cas links the simulated keys, but the corrupt read
				// already fails its key searched alone, and the keys linked
				// to it are not searched together then
				if !slices.Equal(r.IllegalKeys, []string{events[i].Key}) {
					t.Fatalf("seed %d: illegal keys %q; want [%s]", seed, r.IllegalKeys, events[i].Key)
				}
			}
		})
	}
}

func BenchmarkCheckSimulated(b *testing.B) {
	events := simulate(7, 8, 2000, 8)
	b.ResetTimer()
	for b.Loop() {
		r := checker.Check(events, checker.Options{})
		if r.Verdict != checker.Pass {
			b.Fatalf("%s: %q", r.Verdict, r.Problems)
		}
	}
	b.ReportMetric(float64(len(events)/2), "ops/history")
}
