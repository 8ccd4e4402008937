package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/internal/faultdelay"
)

// A replica slow to notice that it lost leadership (the leadership-lost
// fault delay) still believes it is the ready leader of its old term for a
// while. Its reads and writes in that time must not act on that belief: the
// read confirmation refuses the read, the backend fence refuses the write,
// and both go on to the new leader. This is what the join-inflight-reads
// canary's control relies on: the delay alone breaks nothing.
func TestALeaderSlowToNoticeItsDepositionServesNothingStale(t *testing.T) {
	const hold = 20 * time.Second
	var cut *freezingTransport
	tc := startCluster(t, 3, func(c *embed.Config) {
		if c.ID == "r1" {
			// Only r1: the delay holds every later notification of the
			// replica too, so a replica that becomes leader meanwhile
			// would become ready only once it ends.
			c.FaultDelays = faultdelay.Delays{faultdelay.LeadershipLost: hold}
			c.WrapRaftTransport = func(inner raft.Transport) raft.Transport {
				// No peer is held: once frozen, every Raft RPC to or from
				// r1 fails, while its gRPC port still serves and forwards.
				cut = newFreezingTransport(inner, "")
				return cut
			}
		}
	})
	old := tc.nodes[0]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tc.makeLeader(ctx, old)
	for !old.replica.Ready() || len(old.replica.FSMState().Members) != 3 {
		if ctx.Err() != nil {
			t.Fatalf("%s never became the ready leader with every member registered", old.id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ok, err := old.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("v0")}); !ok || err != nil {
		t.Fatalf("cas v0 = %v, %v", ok, err)
	}
	if v, err := old.replica.Head(ctx, "k"); err != nil || v == nil || string(v.Data) != "v0" {
		t.Fatalf("head = %+v, %v; want v0 (and v0 cached on the old leader)", v, err)
	}

	// Cut r1 off Raft: its lease runs out and Raft steps it down, but the
	// delay keeps the replica serving its old term meanwhile; r2 and r3
	// elect a new leader, which fences and commits v1.
	cut.freeze()
	var next *node
	for next == nil {
		if ctx.Err() != nil {
			t.Fatal("no new leader was elected")
		}
		for _, nd := range tc.nodes[1:] {
			if nd.replica.Ready() {
				next = nd
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, err := next.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 1, Data: []byte("v1")}); !ok || err != nil {
		t.Fatalf("cas v1 on the new leader = %v, %v", ok, err)
	}
	stillReady := func(when string) {
		t.Helper()
		if !old.replica.Ready() {
			t.Fatalf("%s, the old leader no longer serves its term: the %v fault delay did not hold, so nothing was shown", when, hold)
		}
	}
	stillReady("after the new leader committed")
	// Reconnected, r1 hears of the new leader (so it can forward to it) but
	// still serves its old term: the delay holds the notification back.
	cut.unfreeze()
	for {
		st, err := old.replica.Status(ctx, false)
		if err == nil && st.Leader != nil && st.Leader.ID == next.id {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never heard of the new leader %s", old.id, next.id)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stillReady("once it heard of the new leader")

	// The read: the old leader's confirmation round cannot succeed (Raft no
	// longer leads there), so the read goes to the new leader.
	if v, err := old.replica.Head(ctx, "k"); err != nil || v == nil || v.SeqNo != 1 || string(v.Data) != "v1" {
		t.Fatalf("head via the old leader = %+v, %v; want v1 at seqno 1", v, err)
	}
	stillReady("after the read")
	// The write: the backend fence refuses the old term's write, and the
	// request goes on to the new leader.
	if ok, err := old.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 2, Data: []byte("v2")}); !ok || err != nil {
		t.Fatalf("cas v2 via the old leader = %v, %v; want it applied through the new leader", ok, err)
	}
	if v, err := tc.store.Head(ctx, "k"); err != nil || v == nil || v.SeqNo != 2 || string(v.Data) != "v2" {
		t.Fatalf("backend head = %+v, %v; want v2 at seqno 2", v, err)
	}
	if old.replica.Ready() {
		t.Fatal("the old leader still serves its term after a write of it was fenced")
	}
}
