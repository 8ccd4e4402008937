package proctest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

// Leadership moves to a named replica, then to whichever replica Raft
// picks; each move is a new term, and data written before is read back
// exactly through every replica after it.
func TestLeadershipTransfer(t *testing.T) {
	c := startCluster(t, proctest.Options{})
	first := leader(t, c)
	rs := c.Replicas()
	followers := without(rs, first)
	target, bystander := followers[0], followers[1]
	st, err := first.Status(timeout(t, 5*time.Second))
	must(t, err)
	term := st.GetTerm()

	write := func(round int) {
		o := ops{t: t, cl: anyClient(t, c), via: "any replica"}
		for i := range 3 {
			o.cas(fmt.Sprintf("shard-%d", i), vd(uint64(round), fmt.Sprintf("round %d", round)), true)
		}
	}
	readAll := func(round int) {
		for _, r := range rs {
			o := ops{t: t, cl: pinned(t, c, r), via: r.ID()}
			for i := range 3 {
				var want []backend.VersionedData
				for k := 0; k <= round; k++ {
					want = append(want, vd(uint64(k), fmt.Sprintf("round %d", k)))
				}
				o.scan(fmt.Sprintf("shard-%d", i), 0, backend.MaxSeqNo, want...)
			}
		}
	}
	write(0)

	// To a named replica, asked through the replica that is neither the
	// leader nor the target (the call is forwarded to the leader).
	resp, err := bystander.Admin().TransferLeadership(timeout(t, 15*time.Second), &adminpb.TransferLeadershipRequest{TargetId: target.ID()})
	must(t, err)
	if got := resp.GetLeader(); got.GetId() != target.ID() || got.GetGrpcAddr() != target.GRPCAddr() || got.GetRaftAddr() != target.RaftAddr() {
		t.Fatalf("transfer to %s answered leader %v", target.ID(), got)
	}
	if resp.GetTerm() <= term {
		t.Fatalf("transfer answered term %d, not above %d", resp.GetTerm(), term)
	}
	if l := leader(t, c); l != target {
		t.Fatalf("ready leader after the transfer is %s, want %s", l.ID(), target.ID())
	}
	for _, r := range rs {
		if r != target {
			waitFollowerOf(t, r, target)
		}
	}
	readAll(0)
	write(1)

	// Without a target, asked through the leader itself.
	resp, err = target.Admin().TransferLeadership(timeout(t, 15*time.Second), &adminpb.TransferLeadershipRequest{})
	must(t, err)
	third := leader(t, c)
	if third == target {
		t.Fatalf("leadership stayed on %s after a transfer without target", target.ID())
	}
	if resp.GetLeader().GetId() != third.ID() {
		t.Fatalf("transfer answered leader %s, but %s is the ready leader", resp.GetLeader().GetId(), third.ID())
	}
	readAll(1)
	write(2)
	readAll(2)

	// A transfer to a replica that is not a member fails and moves nothing.
	_, err = third.Admin().TransferLeadership(timeout(t, 15*time.Second), &adminpb.TransferLeadershipRequest{TargetId: "nobody"})
	if err == nil {
		t.Fatal("transfer to an unknown replica succeeded")
	}
	if l := leader(t, c); l != third {
		t.Fatalf("leader moved from %s to %s after a failed transfer", third.ID(), l.ID())
	}
}
