package proctest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

// Three replicas elect exactly one ready leader, agree on it, and every
// operation gives the same exact results through every replica: the leader
// serves it, a follower forwards it, and errors keep their kind and
// determinacy on the way back.
func TestThreeReplicasElectOneLeader(t *testing.T) {
	c := startCluster(t, proctest.Options{})
	l := leader(t, c)
	rs := c.Replicas()

	// Every replica agrees on the leader and the term, and knows every
	// member's addresses.
	want := votersOf(rs...)
	waitMembers(t, l, want)
	var term uint64
	for _, r := range rs {
		st, err := r.WaitStatus(timeout(t, 20*time.Second), func(st *adminpb.StatusResponse) bool {
			return st.GetLeader().GetId() == l.ID() && slices.Equal(viewOf(st.GetMembers()), want)
		})
		must(t, err)
		if term == 0 {
			term = st.GetTerm()
		}
		wantState := adminpb.RaftState_RAFT_STATE_FOLLOWER
		if r == l {
			wantState = adminpb.RaftState_RAFT_STATE_LEADER
		}
		if st.GetId() != r.ID() || st.GetState() != wantState || st.GetReady() != (r == l) || st.GetTerm() != term {
			t.Fatalf("status of %s: id %s state %v ready %v term %d; want id %s state %v ready %v term %d",
				r.ID(), st.GetId(), st.GetState(), st.GetReady(), st.GetTerm(), r.ID(), wantState, r == l, term)
		}
		if sl := st.GetLeader(); sl.GetGrpcAddr() != l.GRPCAddr() || sl.GetRaftAddr() != l.RaftAddr() {
			t.Fatalf("%s knows the leader at grpc %q raft %q, want %q %q", r.ID(), sl.GetGrpcAddr(), sl.GetRaftAddr(), l.GRPCAddr(), l.RaftAddr())
		}
		for _, m := range st.GetMembers() {
			if m.GetLeader() != (m.GetId() == l.ID()) {
				t.Fatalf("%s marks member %s leader=%v", r.ID(), m.GetId(), m.GetLeader())
			}
		}
		// A follower is ready to serve (by forwarding) once the leader's
		// epoch of this term has reached it, which may be just after the
		// members did; only the leader says it leads. The gRPC health
		// agrees.
		waitAgreement(t, r, opshttp.Readiness{Ready: true, Leader: r == l, LeaderKnown: true})
	}

	via := make([]ops, len(rs))
	for i, r := range rs {
		via[i] = ops{t: t, cl: pinned(t, c, r), via: r.ID()}
	}
	var keys []string
	for i, r := range rs {
		o, next, third := via[i], via[(i+1)%len(rs)], via[(i+2)%len(rs)]
		k, f, other := "k-"+r.ID(), "f-"+r.ID(), "o-"+r.ID()
		keys = append(keys, k, f)

		// An empty shard, through this replica.
		o.head(k, nil)
		o.scan(k, 0, backend.MaxSeqNo)
		_, err := o.cl.Truncate(o.ctx(), k, 0)
		wantErr(t, "truncate of an empty shard via "+o.via, err, backend.ErrTruncateAboveHead)
		o.cas(k, vd(1, "abc"), false)
		o.cas(k, vd(0, "abc"), true)

		// Read back, and lose races, through the two others.
		for _, x := range []ops{next, third} {
			x.head(k, &backend.VersionedData{SeqNo: 0, Data: []byte("abc")})
			x.scan(k, 0, backend.MaxSeqNo, vd(0, "abc"))
			x.scan(k, 1, backend.MaxSeqNo)
			x.cas(k, vd(0, "lost"), false)
		}
		next.cas(k, vd(1, "def"), true)
		third.cas(k, vd(1, "lost"), false)
		third.cas(k, vd(3, "gap"), false)
		o.head(k, &backend.VersionedData{SeqNo: 1, Data: []byte("def")})
		o.scan(k, 0, 1, vd(0, "abc"))
		o.scan(k, 0, 0)
		o.scan(k, 1, 2, vd(1, "def"))
		o.scan(k, 0, backend.MaxSeqNo, vd(0, "abc"), vd(1, "def"))

		// Multi-CaS: per-element outcomes, in order, through two replicas.
		next.multi([]backend.CASOp{
			{Shard: k, New: vd(2, "ghi")},
			{Shard: other, New: vd(7, "nope")},
			{Shard: f, New: vd(0, "fff")},
		}, true, false, true)
		third.multi([]backend.CASOp{
			{Shard: k, New: vd(3, "jkl")},
			{Shard: f, New: vd(2, "skip")},
		}, true, false)
		o.head(k, &backend.VersionedData{SeqNo: 3, Data: []byte("jkl")})
		o.head(f, &backend.VersionedData{SeqNo: 0, Data: []byte("fff")})
		o.head(other, nil)
		_, err = third.cl.CompareAndSetMulti(third.ctx(), []backend.CASOp{{Shard: f, New: vd(1, "a")}, {Shard: f, New: vd(1, "b")}})
		wantErr(t, "multi-CaS with a duplicate shard via "+third.via, err, backend.ErrInvalidArgument)
		o.head(f, &backend.VersionedData{SeqNo: 0, Data: []byte("fff")})

		// Truncate: counts, idempotence, and its error through a follower.
		third.truncate(k, 2, 2)
		o.scan(k, 0, backend.MaxSeqNo, vd(2, "ghi"), vd(3, "jkl"))
		next.truncate(k, 2, 0)
		_, err = next.cl.Truncate(next.ctx(), k, 5)
		wantErr(t, "truncate above the head via "+next.via, err, backend.ErrTruncateAboveHead)
		_, err = next.cl.CompareAndSet(next.ctx(), "", vd(0, "x"))
		wantErr(t, "cas on an empty shard name via "+next.via, err, backend.ErrInvalidArgument)
		o.scan(k, 0, backend.MaxSeqNo, vd(2, "ghi"), vd(3, "jkl"))
	}
	slices.Sort(keys)
	for _, o := range via {
		o.listKeys(keys...)
	}

	// Still the same single leader in the same term: nothing above caused
	// an election.
	if l2 := leader(t, c); l2 != l {
		t.Fatalf("leader changed from %s to %s", l.ID(), l2.ID())
	}
	st, err := l.Status(timeout(t, 5*time.Second))
	must(t, err)
	if st.GetTerm() != term {
		t.Fatalf("term changed from %d to %d", term, st.GetTerm())
	}
}
