package proctest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/client"
)

// queuedOp is a call sent to a paused replica: it waits in the replica's
// socket until the process runs again.
type queuedOp struct {
	kind     string // cas, head, scan or list
	shard    string
	v        backend.VersionedData
	invoked  time.Time
	returned time.Time
	ok       bool
	head     *backend.VersionedData
	scan     []backend.VersionedData
	keys     []string
	err      error
}

func (q *queuedOp) String() string {
	s := fmt.Sprintf("%s(%s", q.kind, q.shard)
	if q.kind == "cas" {
		s += fmt.Sprintf(",{%d %q}", q.v.SeqNo, q.v.Data)
	}
	return s + ")"
}

// queue runs calls on one client, each in its own goroutine.
type queue struct {
	cl  backend.Consensus
	wg  sync.WaitGroup
	ops []*queuedOp
}

func (q *queue) send(op *queuedOp) {
	q.ops = append(q.ops, op)
	op.invoked = time.Now()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		// Longer than the pause and the failover together.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		switch op.kind {
		case "cas":
			op.ok, op.err = q.cl.CompareAndSet(ctx, op.shard, op.v)
		case "head":
			op.head, op.err = q.cl.Head(ctx, op.shard)
		case "scan":
			op.scan, op.err = q.cl.Scan(ctx, op.shard, 0, backend.MaxSeqNo)
		case "list":
			op.keys, op.err = q.cl.ListKeys(ctx)
		}
		op.returned = time.Now()
	}()
}

// A leader paused (SIGSTOP) for longer than the election timeout, with
// writes and reads queued in its sockets, resumes deposed: the others have
// elected a leader, which fenced the backend and took writes. Every queued
// write either fails determinately or takes effect consistently (through
// the new leader), and no queued read answers older than a write
// acknowledged before the read was sent.
func TestPausedLeaderIsFenced(t *testing.T) {
	const pause = 3 * time.Second // default heartbeat timeout: 400ms
	c := startCluster(t, proctest.Options{})
	old := leader(t, c)
	others := c.Others(old)
	before, err := old.Status(timeout(t, 5*time.Second))
	must(t, err)

	oldClient := pinned(t, c, old, client.WithCallTimeout(30*time.Second))
	// Connect before the pause: a paused process cannot finish the gRPC
	// handshake, only the kernel's TCP one.
	ops{t: t, cl: oldClient, via: old.ID()}.cas("warm", vd(0, "w"), true)

	contested := []string{"contested-0", "contested-1"} // also written by the new side
	private := []string{"private-0", "private-1"}       // written only by queued writes
	q := &queue{cl: oldClient}
	t.Cleanup(q.wg.Wait)

	must(t, old.Pause())
	paused := time.Now()
	for _, s := range contested {
		q.send(&queuedOp{kind: "cas", shard: s, v: vd(0, "old/"+s)})
		q.send(&queuedOp{kind: "head", shard: s})
	}
	for _, s := range private {
		q.send(&queuedOp{kind: "cas", shard: s, v: vd(0, "old/"+s)})
		q.send(&queuedOp{kind: "head", shard: s})
	}

	next := leader(t, c, others...)
	var writers []backend.Consensus
	for i := range contested {
		writers = append(writers, pinned(t, c, others[i%len(others)], client.WithCallTimeout(2*time.Second)))
	}
	ld := &load{stop: make(chan struct{})}
	for i, s := range contested {
		w := &shardWriter{shard: s, cl: writers[i], callTimeout: 2 * time.Second}
		ld.writers = append(ld.writers, w)
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			w.run(ld.stop)
		}()
	}
	t.Cleanup(ld.halt)
	ld.waitProgress(t, 3, 15*time.Second)

	// Reads sent to the paused leader after the new side acknowledged
	// writes: answering them from the old leader's state would be stale.
	for _, s := range contested {
		q.send(&queuedOp{kind: "head", shard: s})
		q.send(&queuedOp{kind: "scan", shard: s})
	}
	q.send(&queuedOp{kind: "list"})
	if d := pause - time.Since(paused); d > 0 {
		time.Sleep(d)
	}
	must(t, old.Resume())
	t.Logf("%s paused from %v for %v", old.ID(), paused.Format(time.StampMicro), time.Since(paused).Round(time.Millisecond))
	q.wg.Wait()

	ld.waitProgress(t, 2, 15*time.Second)
	survivor := pinned(t, c, others[0])
	final := ld.verify(t, survivor)
	for _, s := range private {
		vs, err := survivor.Scan(timeout(t, 10*time.Second), s, 0, backend.MaxSeqNo)
		must(t, err)
		final[s] = vs
	}

	// The queued writes.
	succeeded := 0
	for _, op := range q.ops {
		if op.kind != "cas" {
			continue
		}
		vs := final[op.shard]
		present := slices.ContainsFunc(vs, func(v backend.VersionedData) bool { return string(v.Data) == string(op.v.Data) })
		switch {
		case op.err != nil && !backend.IsDeterminate(op.err):
			t.Errorf("queued %v: indeterminate error %v; a deposed leader must fail determinately or forward", op, op.err)
		case op.err != nil:
			if !errors.Is(op.err, backend.ErrFenced) && !errors.Is(op.err, backend.ErrNotLeader) && !errors.Is(op.err, backend.ErrUnavailable) {
				t.Errorf("queued %v: determinate error %v is neither fenced, not-leader nor unavailable", op, op.err)
			}
			if present {
				t.Errorf("queued %v failed determinately (%v) but is in the final state %s", op, op.err, fmtVersions(vs))
			}
		case op.ok:
			succeeded++
			if !present || vs[0].SeqNo != 0 || string(vs[0].Data) != string(op.v.Data) {
				t.Errorf("queued %v was acknowledged but the final state is %s", op, fmtVersions(vs))
			}
		default:
			succeeded++
			if present {
				t.Errorf("queued %v answered mismatch but is in the final state %s", op, fmtVersions(vs))
			}
			if slices.Contains(private, op.shard) {
				t.Errorf("queued %v answered mismatch on a shard nothing else writes: final %s", op, fmtVersions(vs))
			}
		}
		t.Logf("queued %v: committed=%v err=%v, sent %v, answered after %v", op, op.ok, op.err,
			op.invoked.Format(time.StampMicro), op.returned.Sub(op.invoked).Round(time.Millisecond))
	}

	// The queued reads: never older than a write acknowledged before they
	// were sent, and only ever data that was committed.
	acks := map[string][]attempt{}
	for _, w := range ld.writers {
		for _, a := range w.snapshot() {
			if a.outcome == committed {
				acks[w.shard] = append(acks[w.shard], a)
			}
		}
	}
	floor := func(shard string, at time.Time) int64 {
		f := int64(-1)
		for _, a := range acks[shard] {
			if a.returned.Before(at) {
				f = max(f, int64(a.seqno))
			}
		}
		return f
	}
	committedAs := func(shard string, v backend.VersionedData) bool {
		vs := final[shard]
		return v.SeqNo < uint64(len(vs)) && string(vs[v.SeqNo].Data) == string(v.Data)
	}
	for _, op := range q.ops {
		if op.kind == "cas" {
			continue
		}
		if op.err != nil {
			t.Errorf("queued %v failed: %v", op, op.err)
			continue
		}
		succeeded++
		switch op.kind {
		case "head":
			got := int64(-1)
			if op.head != nil {
				got = int64(op.head.SeqNo)
				if !committedAs(op.shard, *op.head) {
					t.Errorf("queued %v returned {%d %q}, which was never committed (final %s)", op, op.head.SeqNo, op.head.Data, fmtVersions(final[op.shard]))
				}
			}
			if f := floor(op.shard, op.invoked); got < f {
				t.Errorf("queued %v sent at %v returned seqno %d, older than seqno %d acknowledged before", op, op.invoked.Format(time.StampMicro), got, f)
			}
			t.Logf("queued %v: seqno %d (floor %d)", op, got, floor(op.shard, op.invoked))
		case "scan":
			for i, v := range op.scan {
				if v.SeqNo != uint64(i) || !committedAs(op.shard, v) {
					t.Errorf("queued %v returned %s, which is not a prefix of the final %s", op, fmtVersions(op.scan), fmtVersions(final[op.shard]))
					break
				}
			}
			if got, f := int64(len(op.scan))-1, floor(op.shard, op.invoked); got < f {
				t.Errorf("queued %v sent at %v ends at seqno %d, older than seqno %d acknowledged before", op, op.invoked.Format(time.StampMicro), got, f)
			}
		case "list":
			for _, s := range contested {
				if !slices.Contains(op.keys, s) {
					t.Errorf("queued %v = %q lacks %s, written before it was sent", op, op.keys, s)
				}
			}
			for _, k := range op.keys {
				if !slices.Contains(append(append([]string{"warm"}, contested...), private...), k) {
					t.Errorf("queued %v lists %q, never written", op, k)
				}
			}
		}
	}

	// The new leader is in a later term and fenced the backend with it; the
	// old one follows it, and answered its queued calls by forwarding them.
	st, err := next.Status(timeout(t, 5*time.Second))
	must(t, err)
	if st.GetTerm() <= before.GetTerm() {
		t.Errorf("new leader's term %d is not above the paused leader's term %d", st.GetTerm(), before.GetTerm())
	}
	fences, _, err := next.Metric(timeout(t, 5*time.Second), "committer_fence_events_total", map[string]string{"result": "ok"})
	must(t, err)
	if fences < 1 {
		t.Errorf("new leader %s reports %v successful fences", next.ID(), fences)
	}
	ost := waitFollowerOf(t, old, next)
	if ost.GetTerm() != st.GetTerm() {
		t.Errorf("old leader's term %d, new leader's %d", ost.GetTerm(), st.GetTerm())
	}
	text, err := old.Metrics(timeout(t, 5*time.Second))
	must(t, err)
	forwarded := 0.0
	for _, result := range []string{"ok", "committed", "mismatch"} {
		v, _ := proctest.MetricValue(text, "committer_forwarded_requests_total", map[string]string{"result": result})
		forwarded += v
	}
	if forwarded < float64(succeeded) {
		t.Errorf("old leader forwarded %v calls successfully, but %d queued calls succeeded", forwarded, succeeded)
	}
	fencedWrites, _ := proctest.MetricValue(text, "mz_persist_committer_backing_total", map[string]string{"result": "determinate_error"})
	t.Logf("term %d -> %d; old leader forwarded %v calls, storage refused %v of its writes", before.GetTerm(), st.GetTerm(), forwarded, fencedWrites)
}
