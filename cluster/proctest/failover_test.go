package proctest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
)

// loadClients returns n clients of every replica, each starting at a
// different replica, so that the load enters the cluster everywhere.
func loadClients(t testing.TB, c *proctest.Cluster, n int, rs ...*proctest.Replica) []backend.Consensus {
	t.Helper()
	var out []backend.Consensus
	for i := range n {
		order := append(append([]*proctest.Replica(nil), rs[i%len(rs):]...), rs[:i%len(rs)]...)
		out = append(out, anyClient(t, c, order...))
	}
	return out
}

// SIGKILL of the leader under CaS load: a survivor takes over, every
// acknowledged write survives with its exact data, and the old leader,
// restarted on its data dir, rejoins as a follower and serves the latest
// data.
func TestKillLeaderUnderLoad(t *testing.T) {
	c := startCluster(t, proctest.Options{})
	old := leader(t, c)
	rs := c.Replicas()
	before, err := old.Status(timeout(t, 5*time.Second))
	must(t, err)

	ld := startLoad(t, "kill", 5*time.Second, loadClients(t, c, 4, rs...)...)
	ld.waitProgress(t, 5, 20*time.Second)

	must(t, old.Kill())
	survivors := c.Others(old)
	next := leader(t, c, survivors...)
	if next == old {
		t.Fatal("the killed replica is still the leader")
	}
	// A write through each survivor commits: the new leader serves, and the
	// other survivor forwards to it.
	for i, r := range survivors {
		ops{t: t, cl: pinned(t, c, r), via: r.ID()}.cas(fmt.Sprintf("after-kill-%d", i), vd(0, "x"), true)
	}
	ld.waitProgress(t, 5, 20*time.Second)
	final := ld.verify(t, pinned(t, c, survivors[0]))

	st, err := next.Status(timeout(t, 5*time.Second))
	must(t, err)
	if st.GetTerm() <= before.GetTerm() {
		t.Fatalf("new leader's term %d is not above the old term %d", st.GetTerm(), before.GetTerm())
	}

	// The old leader rejoins on its data dir as a follower of the new one.
	must(t, old.Restart(timeout(t, 20*time.Second)))
	waitFollowerOf(t, old, next)
	if l := leader(t, c); l != next {
		t.Fatalf("leader after the restart is %s, want %s", l.ID(), next.ID())
	}
	o := ops{t: t, cl: pinned(t, c, old), via: old.ID() + " (restarted)"}
	for shard, vs := range final {
		if len(vs) == 0 {
			t.Fatalf("%s has no versions", shard)
		}
		last := vs[len(vs)-1]
		o.head(shard, &last)
		o.scan(shard, 0, backend.MaxSeqNo, vs...)
	}
}
