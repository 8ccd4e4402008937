package proctest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

func without(rs []*proctest.Replica, drop ...*proctest.Replica) []*proctest.Replica {
	var out []*proctest.Replica
	for _, r := range rs {
		if !slices.Contains(drop, r) {
			out = append(out, r)
		}
	}
	return out
}

func removeServer(t testing.TB, via, target *proctest.Replica) {
	t.Helper()
	resp, err := via.Admin().RemoveServer(timeout(t, 15*time.Second), &adminpb.RemoveServerRequest{Id: target.ID()})
	if err != nil {
		t.Fatalf("remove %s via %s: %v", target.ID(), via.ID(), err)
	}
	if resp.GetIndex() == 0 {
		t.Fatalf("remove %s via %s: configuration index 0", target.ID(), via.ID())
	}
}

// Under CaS load: 3 -> 5 voters by joining, 5 -> 3 by removing the leader
// and another voter, then replacing a voter whose data dir was wiped by a
// new replica with a new id on its addresses. Membership is exact after
// every step, removed replicas stay removed, and no acknowledged write is
// lost. Joined replicas become voters through autopilot's staging
// (docs/architecture.md §8.1), so "exact" waits for their promotion.
func TestMembershipChangesUnderLoad(t *testing.T) {
	c := startCluster(t, proctest.Options{Args: []string{"--autopilot-server-stabilization-time=" + stabilization.String()}})
	l := leader(t, c)
	orig := c.Replicas()
	ld := startLoad(t, "members", 5*time.Second, loadClients(t, c, 4, orig...)...)
	ld.waitProgress(t, 3, 20*time.Second)

	// 3 -> 5.
	r4, err := c.AddReplica(timeout(t, 20*time.Second), proctest.JoinSpec{ID: "r4"})
	must(t, err)
	r5, err := c.AddReplica(timeout(t, 20*time.Second), proctest.JoinSpec{ID: "r5", Via: orig[1:]})
	must(t, err)
	five := append(slices.Clone(orig), r4, r5)
	waitMembers(t, l, votersOf(five...))
	promotedAfterStabilization(t, c, "r4")
	promotedAfterStabilization(t, c, "r5")
	for _, r := range five {
		if r != l {
			waitFollowerOf(t, r, l)
		}
		waitMembers(t, r, votersOf(five...))
	}
	ld.waitProgress(t, 3, 20*time.Second)

	// 5 -> 3: remove the leader, then a follower (a joined one if
	// possible), each through a replica that is neither.
	cur := leader(t, c)
	removeServer(t, without(five, cur)[0], cur)
	next := leader(t, c, without(five, cur)...)
	gone := without([]*proctest.Replica{r4, r5, orig[0], orig[1], orig[2]}, cur, next)[0]
	rest := without(five, cur, gone)
	removeServer(t, without(rest, next)[0], gone)
	for _, r := range rest {
		waitMembers(t, r, votersOf(rest...))
	}
	// The removed replicas still run; they must not find their way back.
	ld.waitProgress(t, 3, 20*time.Second)
	time.Sleep(2 * time.Second) // a few rounds of any background re-registration
	for _, r := range rest {
		checkMembers(t, r, votersOf(rest...))
	}
	for _, r := range []*proctest.Replica{cur, gone} {
		must(t, r.Stop(timeout(t, 20*time.Second)))
	}
	for _, r := range rest {
		checkMembers(t, r, votersOf(rest...))
	}
	ld.waitProgress(t, 3, 20*time.Second)

	// Replace a follower whose disk was lost: remove it, kill it, wipe its
	// data dir, and join a new replica with a new id on its addresses.
	next = leader(t, c, rest...)
	lost := without(rest, next)[0]
	removeServer(t, next, lost)
	must(t, lost.Kill())
	must(t, lost.WipeDataDir())
	stay := without(rest, lost)
	r6, err := c.AddReplica(timeout(t, 20*time.Second), proctest.JoinSpec{ID: "r6", Via: stay, Replaces: lost})
	must(t, err)
	if r6.RaftAddr() != lost.RaftAddr() || r6.GRPCAddr() != lost.GRPCAddr() || r6.DataDir() != lost.DataDir() {
		t.Fatalf("replacement does not take over the addresses and data dir of %s", lost.ID())
	}
	final3 := append(slices.Clone(stay), r6)
	waitMembers(t, next, votersOf(final3...))
	promotedAfterStabilization(t, c, "r6")
	waitFollowerOf(t, r6, next)
	for _, r := range final3 {
		waitMembers(t, r, votersOf(final3...))
	}
	ld.waitProgress(t, 3, 20*time.Second)

	final := ld.verify(t, pinned(t, c, next))
	// The new replica serves reads of everything written before it existed.
	o := ops{t: t, cl: pinned(t, c, r6), via: r6.ID()}
	for shard, vs := range final {
		last := vs[len(vs)-1]
		o.head(shard, &last)
	}
}
