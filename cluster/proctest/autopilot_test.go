package proctest_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

// stabilization is the --autopilot-server-stabilization-time of these
// tests: long enough that a member is seen staged, short enough to wait
// for.
const stabilization = 2 * time.Second

// apMembers is what the current leader's autopilot says of the members.
func apMembers(t testing.TB, c *proctest.Cluster) (*adminpb.ListMembersResponse, *proctest.Replica) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := leader(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := l.Admin().ListMembers(ctx, &adminpb.ListMembersRequest{})
		cancel()
		if err == nil && resp.GetHealthKnown() {
			return resp, l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader %s has no autopilot assessment (%v, %v)", l.ID(), resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func apMember(resp *adminpb.ListMembersResponse, id string) *adminpb.Member {
	for _, m := range resp.GetMembers() {
		if m.GetId() == id {
			return m
		}
	}
	return nil
}

// waitAP polls the leader's autopilot view until cond holds, failing with
// the last view after within.
func waitAP(t testing.TB, c *proctest.Cluster, within time.Duration, what string, cond func(*adminpb.ListMembersResponse) bool) *adminpb.ListMembersResponse {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, _ := apMembers(t, c)
		if cond(resp) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last view %v", what, within, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logRecords collects the records with msg and field id = id from every
// replica's log.
func logRecords(t testing.TB, c *proctest.Cluster, msg, id string) []proctest.LogRecord {
	t.Helper()
	var out []proctest.LogRecord
	seen := map[string]bool{}
	for _, r := range c.Replicas() {
		if seen[r.LogPath()] {
			continue
		}
		seen[r.LogPath()] = true
		recs, err := r.LogRecords(msg)
		must(t, err)
		for _, rec := range recs {
			if rec.Fields["id"] == id {
				out = append(out, rec)
			}
		}
	}
	return out
}

// promotedAfterStabilization checks that id's promotion was autopilot's,
// made after it had been healthy for the stabilization time (the leader
// logs how long at the moment it promotes).
func promotedAfterStabilization(t testing.TB, c *proctest.Cluster, id string) {
	t.Helper()
	recs := logRecords(t, c, "autopilot: promoted member to voter", id)
	if len(recs) != 1 {
		t.Fatalf("%d promotion records for %s, want 1", len(recs), id)
	}
	healthyFor, ok := recs[0].Fields["healthy_for"].(float64)
	if !ok || time.Duration(healthyFor) < stabilization {
		t.Fatalf("%s was promoted healthy for %v (%v), before the stabilization time %v", id, time.Duration(healthyFor), recs[0].Fields["healthy_for"], stabilization)
	}
}

// 3 -> 5 -> 3 under CaS load with staged joins. r4 is added (the `members
// add` path) while it is paused: it cannot catch up, and it stays staged
// for well over the stabilization time, as the leader's own assessment
// proves (unhealthy since long before its last look). Resumed, it is
// promoted once it has been healthy for the stabilization time. r5 joins by
// itself (--join) and goes the same way. Then the leader and another voter
// are removed. No acknowledged write is lost, and the leader's per-member
// metrics follow the membership.
func TestAutopilotStagesJoinsUnderLoad(t *testing.T) {
	c := startCluster(t, proctest.Options{Args: []string{"--autopilot-server-stabilization-time=" + stabilization.String()}})
	l := leader(t, c)
	orig := c.Replicas()
	ld := startLoad(t, "autopilot", 5*time.Second, loadClients(t, c, 4, orig...)...)
	ld.waitProgress(t, 3, 20*time.Second)

	// r4 starts with only a paused follower to join through, so that it
	// cannot join by itself before it is paused too.
	f := without(orig, l)[0]
	must(t, f.Pause())
	r4, err := c.AddReplica(timeout(t, 20*time.Second), proctest.JoinSpec{ID: "r4", Via: []*proctest.Replica{f}})
	must(t, err)
	must(t, r4.Pause())
	_, err = l.Admin().AddVoter(timeout(t, 15*time.Second), &adminpb.AddVoterRequest{
		Id: r4.ID(), RaftAddr: r4.RaftAddr(), GrpcAddr: r4.GRPCAddr(), HttpAddr: r4.HTTPAddr()})
	must(t, err)
	must(t, f.Resume())

	waitAP(t, c, 30*time.Second, "r4 staged and unhealthy for three stabilization times", func(resp *adminpb.ListMembersResponse) bool {
		m := apMember(resp, "r4")
		if m == nil {
			return false
		}
		if m.GetSuffrage() != adminpb.Suffrage_SUFFRAGE_STAGING {
			t.Fatalf("paused r4 is %v, want staged: %v", m.GetSuffrage(), m)
		}
		return m.GetHealth() == adminpb.Health_HEALTH_UNHEALTHY &&
			resp.GetAssessedAt().AsTime().Sub(m.GetHealthSince().AsTime()) >= 3*stabilization
	})
	must(t, r4.Resume())
	waitAP(t, c, 30*time.Second, "r4's promotion", func(resp *adminpb.ListMembersResponse) bool {
		m := apMember(resp, "r4")
		return m != nil && m.GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER
	})
	promotedAfterStabilization(t, c, "r4")

	r5, err := c.AddReplica(timeout(t, 20*time.Second), proctest.JoinSpec{ID: "r5"})
	must(t, err)
	waitAP(t, c, 30*time.Second, "r5 joining", func(resp *adminpb.ListMembersResponse) bool { return apMember(resp, "r5") != nil })
	waitAP(t, c, 30*time.Second, "r5's promotion", func(resp *adminpb.ListMembersResponse) bool {
		return apMember(resp, "r5").GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER
	})
	promotedAfterStabilization(t, c, "r5")

	five := append(slices.Clone(orig), r4, r5)
	for _, r := range five {
		waitMembers(t, r, votersOf(five...))
	}
	// The assessment trails the configuration by up to a round.
	waitAP(t, c, 20*time.Second, "five healthy voters, two of which may fail", func(resp *adminpb.ListMembersResponse) bool {
		return resp.GetHealthy() && len(resp.GetMembers()) == 5 && resp.GetFailureTolerance() == 2
	})
	ld.waitProgress(t, 3, 20*time.Second)

	// 5 -> 3: the leader, then a follower.
	cur := leader(t, c)
	removeServer(t, without(five, cur)[0], cur)
	next := leader(t, c, without(five, cur)...)
	gone := without(five, cur, next)[0]
	rest := without(five, cur, gone)
	removeServer(t, without(rest, next)[0], gone)
	for _, r := range rest {
		waitMembers(t, r, votersOf(rest...))
	}
	ld.waitProgress(t, 3, 20*time.Second)

	// The leader's metrics name exactly the three members; a follower
	// exports no autopilot series.
	waitAP(t, c, 20*time.Second, "three healthy members", func(resp *adminpb.ListMembersResponse) bool {
		return resp.GetHealthy() && len(resp.GetMembers()) == 3
	})
	_, l3 := apMembers(t, c)
	deadline := time.Now().Add(20 * time.Second)
	for {
		sum, n, err := l3.Metric(timeout(t, 5*time.Second), "committer_autopilot_member_healthy", nil)
		must(t, err)
		if n == 3 && sum == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %s exports %d committer_autopilot_member_healthy series summing to %v, want 3 and 3", l3.ID(), n, sum)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range ids(rest) {
		if _, n, err := l3.Metric(timeout(t, 5*time.Second), "committer_autopilot_member_trailing_logs", map[string]string{"id": id}); err != nil || n != 1 {
			t.Fatalf("leader exports %d trailing-logs series for %s (%v), want 1", n, id, err)
		}
	}
	for _, id := range []string{cur.ID(), gone.ID()} {
		if _, n, err := l3.Metric(timeout(t, 5*time.Second), "committer_autopilot_member_trailing_logs", map[string]string{"id": id}); err != nil || n != 0 {
			t.Fatalf("leader exports %d trailing-logs series for the removed %s (%v), want none", n, id, err)
		}
	}
	if _, n, err := without(rest, l3)[0].Metric(timeout(t, 5*time.Second), "committer_autopilot_healthy", nil); err != nil || n != 0 {
		t.Fatalf("a follower exports %d committer_autopilot_healthy series (%v), want none", n, err)
	}

	ld.verify(t, pinned(t, c, l3))
	for _, r := range []*proctest.Replica{cur, gone} {
		must(t, r.Stop(timeout(t, 20*time.Second)))
	}
}

// Dead-server cleanup with real processes: of five voters, a killed one is
// removed once the leader has not reached it for the threshold, then a
// second; at three voters, the minimum quorum, a third killed one stays.
// That is shown by state, not by waiting: the leader logs that it keeps the
// dead member and why, and the member is still a voter after the leader's
// assessments of two more rounds.
func TestAutopilotRemovesDeadServersOnlyWhenQuorumAllows(t *testing.T) {
	c := startCluster(t, proctest.Options{Replicas: 5, Args: []string{
		"--autopilot-cleanup-dead-servers", "--autopilot-dead-server-threshold=3s", "--autopilot-min-quorum=3",
	}})
	all := c.Replicas()
	waitAP(t, c, 30*time.Second, "five healthy members", func(resp *adminpb.ListMembersResponse) bool {
		return resp.GetHealthy() && len(resp.GetMembers()) == 5
	})
	_, l := apMembers(t, c)
	ld := startLoad(t, "cleanup", 5*time.Second, loadClients(t, c, 2, l)...)
	ld.waitProgress(t, 3, 20*time.Second)

	alive := slices.Clone(all)
	for range 2 {
		dead := without(alive, l)[0]
		must(t, dead.Kill())
		alive = without(alive, dead)
		for _, r := range alive {
			waitMembers(t, r, votersOf(alive...))
		}
		if recs := logRecords(t, c, "autopilot: removed dead member", dead.ID()); len(recs) != 1 {
			t.Fatalf("%d removal records for %s, want 1", len(recs), dead.ID())
		}
		ld.waitProgress(t, 3, 20*time.Second)
	}

	dead := without(alive, l)[0]
	must(t, dead.Kill())
	var kept proctest.LogRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		if recs := logRecords(t, c, "autopilot: keeping dead member", dead.ID()); len(recs) > 0 {
			kept = recs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never decided about the dead %s", dead.ID())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if why, _ := kept.Fields["reason"].(string); !strings.Contains(why, "fewer than the minimum quorum of 3") {
		t.Fatalf("kept %s because %q, want the minimum quorum", dead.ID(), why)
	}
	// The assessments are made apart from the removal rounds, a round
	// behind them at most.
	waitAP(t, c, 30*time.Second, "two more assessments", func(resp *adminpb.ListMembersResponse) bool {
		m := apMember(resp, dead.ID())
		if m == nil || m.GetSuffrage() != adminpb.Suffrage_SUFFRAGE_VOTER {
			t.Fatalf("%s left the voters below the minimum quorum: %v", dead.ID(), resp)
		}
		after := resp.GetAssessedAt().AsTime().Sub(kept.Time)
		if after > 1500*time.Millisecond && (!m.GetFailed() || m.GetHealth() != adminpb.Health_HEALTH_UNHEALTHY) {
			t.Fatalf("leader's view of the dead %s %v after keeping it: %v", dead.ID(), after, m)
		}
		return after > 3*time.Second
	})
	for _, r := range without(alive, dead) {
		checkMembers(t, r, votersOf(alive...))
	}

	// `committer members list` through a follower shows the leader's view.
	follower := without(alive, l, dead)[0]
	out, err := exec.Command(committerBin, "members", "list", "--addr", follower.GRPCAddr()).CombinedOutput()
	must(t, err)
	for _, want := range []string{
		"HEALTH", "TRAILING", "LAST INDEX",
		fmt.Sprintf("autopilot of leader %s (%s)", l.ID(), l.GRPCAddr()),
		"NOT healthy, failure tolerance 0",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("members list via %s lacks %q:\n%s", follower.ID(), want, out)
		}
	}
	if line := lineOf(string(out), dead.ID()+" "); !strings.Contains(line, "dead (") {
		t.Fatalf("members list shows the dead %s as %q", dead.ID(), line)
	}
	ld.verify(t, pinned(t, c, l))
}

func lineOf(text, prefix string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
