package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/freeport"
)

// autopilotLeader returns the node whose autopilot has an assessment (the
// leader), or nil.
func autopilotLeader(tc *testCluster) (*node, cluster.ClusterHealth) {
	for _, nd := range tc.nodes {
		if nd.replica == nil {
			continue
		}
		if h, ok := nd.replica.Health(); ok {
			return nd, h
		}
	}
	return nil, cluster.ClusterHealth{}
}

// waitHealthy waits until the leader's autopilot sees n healthy members
// with their records, and returns the leader.
func waitHealthy(t *testing.T, tc *testCluster, n int) *node {
	t.Helper()
	var l *node
	waitWithin(t, 20*time.Second, fmt.Sprintf("%d healthy members", n), func() bool {
		nd, h := autopilotLeader(tc)
		l = nd
		return nd != nil && nd.replica.Ready() && h.Healthy && len(h.Members) == n && len(nd.replica.FSMState().Members) == n
	})
	return l
}

// join starts a new replica that joins through via.
func (tc *testCluster) join(id string, via *node, opts ...func(*embed.Config)) *node {
	tc.t.Helper()
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		tc.t.Fatal(err)
	}
	nd := &node{id: id, raftAddr: addrs[0], dataDir: tc.t.TempDir()}
	cfg := embed.Config{ID: id, DataDir: nd.dataDir, RaftAddr: nd.raftAddr, Join: []string{via.grpcAddr}}
	for _, o := range opts {
		o(&cfg)
	}
	tc.start(nd, cfg)
	tc.nodes = append(tc.nodes, nd)
	return nd
}

func memberOf(t *testing.T, r *cluster.Replica, id string) (cluster.MemberStatus, bool) {
	t.Helper()
	ms, _, err := r.Members()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m cluster.MemberStatus) bool { return m.ID == id })
	if i < 0 {
		return cluster.MemberStatus{}, false
	}
	return ms[i], true
}

// waitWithin polls cond every 20ms until it holds, failing the test with what
// after within.
func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A replica that joins is a staged non-voter first and becomes a voter only
// once the leader's autopilot has seen it healthy for the stabilization
// time. The leader's clock is this test's clock, so "promoted at least the
// stabilization time after it was last seen becoming healthy" is exact:
// autopilot promotes only at StableSince + stabilization or later, and the
// voter is observed after the promotion.
func TestJoinedReplicaIsStagedThenPromotedAfterStabilization(t *testing.T) {
	const stab = 2 * time.Second
	opt := func(c *embed.Config) { c.Autopilot.ServerStabilizationTime = stab }
	tc := startCluster(t, 3, opt)
	waitHealthy(t, tc, 3)
	tc.join("r4", tc.follower(), opt)

	// Only the current leader's view counts: a new leader judges r4 anew.
	var healthySince time.Time
	var by *node
	staged := false
	waitWithin(t, 30*time.Second, "r4's promotion", func() bool {
		l, h := autopilotLeader(tc)
		if l == nil {
			return false
		}
		if l != by {
			by, healthySince = l, time.Time{}
		}
		m, ok := memberOf(t, l.replica, "r4")
		if !ok {
			return false
		}
		if m.Voter {
			return true
		}
		staged = true
		if mh, ok := h.Members["r4"]; ok && mh.Healthy {
			healthySince = mh.Since
		}
		return false
	})
	promotedBy := time.Now()
	if !staged {
		t.Fatal("r4 was a voter the first time it was seen: not staged")
	}
	if healthySince.IsZero() {
		t.Fatal("r4 was promoted without ever being seen healthy as a staged member")
	}
	if got := promotedBy.Sub(healthySince); got < stab {
		t.Fatalf("r4 was promoted %v after becoming healthy, before the stabilization time %v", got, stab)
	}
	// Once promoted, it is a voter in every sense: leadership can move to it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := by.replica.TransferLeadership(ctx, "r4"); err != nil {
		t.Fatalf("transfer to the promoted r4: %v", err)
	}
}

// Asking to add a member that is already staged does not promote it: only
// autopilot does, so a repeated join or `members add` cannot skip the
// stabilization time.
func TestAddingAStagedMemberAgainKeepsItStaged(t *testing.T) {
	opt := func(c *embed.Config) { c.Autopilot.ServerStabilizationTime = time.Hour }
	tc := startCluster(t, 3, opt)
	l := waitHealthy(t, tc, 3)
	r4 := tc.join("r4", l, opt)
	waitWithin(t, 20*time.Second, "r4 joining", func() bool { _, ok := memberOf(t, l.replica, "r4"); return ok })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.replica.AddVoter(ctx, r4.replica.Self()); err != nil {
		t.Fatal(err)
	}
	if m, _ := memberOf(t, l.replica, "r4"); m.Voter {
		t.Fatal("adding the staged r4 again made it a voter")
	}
	// Nor can leadership be handed to it.
	if _, _, err := l.replica.TransferLeadership(ctx, "r4"); err == nil {
		t.Fatal("leadership moved to a staged member")
	}
}

// With cleanup on, a stopped member is removed once the leader has not
// reached it for the dead-server threshold: out of the configuration first,
// its record second, as RemoveServer does. Cleanup stops at the minimum
// quorum: with three voters left, a dead one stays, and the leader says
// why.
func TestDeadServerCleanupRemovesDownToTheMinimumQuorum(t *testing.T) {
	opt := func(c *embed.Config) {
		c.Autopilot.CleanupDeadServers = true
		c.Autopilot.DeadServerThreshold = 2 * time.Second
		c.Autopilot.MinQuorum = 3
	}
	tc := startCluster(t, 5, opt)
	// Every member registered and seen healthy first: a member the leader
	// never reached counts as dead from the start.
	l := waitHealthy(t, tc, 5)
	var followers []*node
	for _, nd := range tc.nodes {
		if nd != l {
			followers = append(followers, nd)
		}
	}

	for _, dead := range followers[:2] {
		tc.stop(dead)
		waitWithin(t, 30*time.Second, dead.id+"'s removal", func() bool {
			_, inConfig := memberOf(t, l.replica, dead.id)
			_, recorded := l.replica.FSMState().Members[dead.id]
			return !inConfig && !recorded
		})
		configAt, recordAt := removalIndexes(t, l.replica, dead.id)
		if configAt == 0 || recordAt == 0 || configAt > recordAt {
			t.Fatalf("%s left the configuration at index %d and its record at %d: want the configuration first", dead.id, configAt, recordAt)
		}
	}

	// Three voters left, the minimum quorum: the third dead one stays.
	dead := followers[2]
	tc.stop(dead)
	waitWithin(t, 30*time.Second, "autopilot keeping "+dead.id, func() bool {
		return strings.Contains(l.replica.AutopilotKept()[dead.id], "fewer than the minimum quorum of 3")
	})
	// The assessment is made apart from the removal rounds and may trail
	// them by a round.
	waitWithin(t, 10*time.Second, "the assessment of "+dead.id+" as dead", func() bool {
		h, ok := l.replica.Health()
		return ok && h.Members[dead.id].Failed && !h.Members[dead.id].Healthy
	})
	if m, ok := memberOf(t, l.replica, dead.id); !ok || !m.Voter {
		t.Fatalf("%s left the configuration below the minimum quorum", dead.id)
	}
	if _, recorded := l.replica.FSMState().Members[dead.id]; !recorded {
		t.Fatalf("%s's record was forgotten below the minimum quorum", dead.id)
	}
}

// removalIndexes finds, in r's Raft log, the configuration entry that took
// id out and the command that forgot its record.
func removalIndexes(t *testing.T, r *cluster.Replica, id string) (configAt, recordAt uint64) {
	t.Helper()
	log, err := r.RaftLog()
	if err != nil {
		t.Fatal(err)
	}
	wasIn := false
	for _, e := range log {
		switch e.Type {
		case raft.LogConfiguration:
			in := slices.ContainsFunc(raft.DecodeConfiguration(e.Data).Servers, func(s raft.Server) bool { return string(s.ID) == id })
			if wasIn && !in {
				configAt = e.Index
			}
			wasIn = in
		case raft.LogCommand:
			if c, err := fsm.Decode(e.Data); err == nil && c.Op == fsm.OpRemoveMember && c.MemberID == id {
				recordAt = e.Index
			}
		}
	}
	return configAt, recordAt
}
