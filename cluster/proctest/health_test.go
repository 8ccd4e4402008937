package proctest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/server"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

func healthOf(t testing.TB, r *proctest.Replica) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(r.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// surfaces is what a replica says of itself: /readyz and the gRPC health of
// the whole server and of each service.
type surfaces struct {
	readyz                        opshttp.Readiness
	whole, consensus, admin, peer healthpb.HealthCheckResponse_ServingStatus
}

func lookAt(ctx context.Context, r *proctest.Replica, health healthpb.HealthClient) (surfaces, error) {
	var s surfaces
	var err error
	if s.readyz, err = r.Readyz(ctx); err != nil {
		return s, err
	}
	for svc, dst := range map[string]*healthpb.HealthCheckResponse_ServingStatus{
		"": &s.whole, server.ConsensusServiceName: &s.consensus, "committer.admin.v1.Admin": &s.admin, "committer.peer.v1.Peer": &s.peer,
	} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return s, fmt.Errorf("health check %q: %w", svc, err)
		}
		*dst = resp.GetStatus()
	}
	return s, nil
}

// waitAgreement waits until r's /readyz says exactly want and its gRPC
// health agrees: the whole server and the consensus service SERVING
// exactly when ready, admin and peer SERVING whatever the leadership.
func waitAgreement(t testing.TB, r *proctest.Replica, want opshttp.Readiness) {
	t.Helper()
	st := notServing
	if want.Ready {
		st = serving
	}
	wantS := surfaces{readyz: want, whole: st, consensus: st, admin: serving, peer: serving}
	health := healthOf(t, r)
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := lookAt(ctx, r, health)
		cancel()
		if err == nil && s == wantS {
			return
		}
		last = fmt.Sprintf("%+v (%v)", s, err)
		if time.Now().After(deadline) {
			t.Fatalf("%s: never %+v; last %s", r.ID(), wantS, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// healthWatch is one replica's Watch streams of the whole server and the
// consensus service.
type healthWatch struct {
	t              testing.TB
	r              *proctest.Replica
	whole, service healthpb.Health_WatchClient
}

func watchHealth(t testing.TB, r *proctest.Replica) *healthWatch {
	t.Helper()
	health := healthOf(t, r)
	ctx := timeout(t, 3*time.Minute)
	w := &healthWatch{t: t, r: r}
	var err error
	w.whole, err = health.Watch(ctx, &healthpb.HealthCheckRequest{})
	must(t, err)
	w.service, err = health.Watch(ctx, &healthpb.HealthCheckRequest{Service: server.ConsensusServiceName})
	must(t, err)
	return w
}

// next asserts that the next update of both streams is want.
func (w *healthWatch) next(want healthpb.HealthCheckResponse_ServingStatus, when string) {
	w.t.Helper()
	for name, s := range map[string]healthpb.Health_WatchClient{"": w.whole, server.ConsensusServiceName: w.service} {
		resp, err := s.Recv()
		if err != nil || resp.GetStatus() != want {
			w.t.Fatalf("%s %s: next health of %q = %v, %v; want %v", w.r.ID(), when, name, resp.GetStatus(), err, want)
		}
	}
}

var noLeader = opshttp.Readiness{Reason: "no leader known"}

// The gRPC health of a replica tells the truth and says it on Watch
// streams as it changes: NOT_SERVING while its cluster has no quorum, then
// SERVING once a quorum forms and elects a ready leader; SERVING to
// NOT_SERVING when the leader dies and no other can be elected (the third
// replica is paused), and back once one is. /readyz agrees every time, and
// the admin and peer services serve throughout.
func TestHealthFollowsQuorumAndLeader(t *testing.T) {
	c := startCluster(t, proctest.Options{})
	l := leader(t, c)
	followers := c.Others(l)
	w, x := followers[0], followers[1]
	for _, r := range c.Replicas() {
		waitAgreement(t, r, opshttp.Readiness{Ready: true, Leader: r == l, LeaderKnown: true})
	}

	// No quorum: w alone cannot elect anyone.
	must(t, l.Kill())
	must(t, x.Kill())
	waitAgreement(t, w, noLeader)
	watch := watchHealth(t, w)
	watch.next(notServing, "without a quorum")
	// A quorum forms again: a leader is elected, fences, records its epoch.
	must(t, x.Restart(timeout(t, 30*time.Second)))
	watch.next(serving, "once a quorum formed")
	l2 := leader(t, c, w, x)
	waitAgreement(t, w, opshttp.Readiness{Ready: true, Leader: w == l2, LeaderKnown: true})

	must(t, l.Restart(timeout(t, 30*time.Second)))
	for _, r := range c.Replicas() {
		waitAgreement(t, r, opshttp.Readiness{Ready: true, Leader: r == l2, LeaderKnown: true})
	}
	others := c.Others(l2)
	w2, a2 := others[0], others[1]
	watch2 := watchHealth(t, w2)
	watch2.next(serving, "with a ready leader")
	before, _, err := w2.Metric(timeout(t, 5*time.Second), "committer_raft_transition_heartbeat_timeout", nil)
	must(t, err)

	// The leader dies; with a2 paused nobody can win an election.
	must(t, a2.Pause())
	must(t, l2.Kill())
	watch2.next(notServing, "after its leader died")
	waitAgreement(t, w2, noLeader)
	st, err := w2.Status(timeout(t, 5*time.Second))
	if err != nil || st.GetReady() || st.GetLeader().GetId() != "" {
		t.Fatalf("status of %s without a leader = %v, %v; want an answer: not ready, no leader", w2.ID(), st, err)
	}
	if v, n, err := w2.Metric(timeout(t, 5*time.Second), "committer_ready", nil); err != nil || n != 1 || v != 0 {
		t.Fatalf("committer_ready of %s without a leader = %v (%d samples), %v; want 0", w2.ID(), v, n, err)
	}
	if v, n, err := w2.Metric(timeout(t, 5*time.Second), "committer_raft_transition_heartbeat_timeout", nil); err != nil || n != 1 || v <= before {
		t.Fatalf("committer_raft_transition_heartbeat_timeout of %s = %v (%d samples, %v before), %v; want it counted", w2.ID(), v, n, before, err)
	}

	must(t, a2.Resume())
	watch2.next(serving, "once a new leader was elected")
	l3 := leader(t, c, w2, a2)
	waitAgreement(t, w2, opshttp.Readiness{Ready: true, Leader: w2 == l3, LeaderKnown: true})
}

// Raft's own metrics are exported on /metrics of a real replica under CaS
// load, next to the committer_* ones they complement: commit and FSM apply
// times, per-peer replication and heartbeat timings, and the leader's
// failed heartbeats to a peer that died.
func TestRaftMetricsAreExported(t *testing.T) {
	c := startCluster(t, proctest.Options{})
	l := leader(t, c)
	followers := c.Others(l)
	ld := startLoad(t, "metrics", 5*time.Second, loadClients(t, c, 3, c.Replicas()...)...)
	ld.waitProgress(t, 20, 30*time.Second)
	for _, r := range c.Replicas() {
		waitAgreement(t, r, opshttp.Readiness{Ready: true, Leader: r == l, LeaderKnown: true})
	}
	st, err := l.Status(timeout(t, 5*time.Second))
	must(t, err)
	term := float64(st.GetTerm())
	build := buildInfoOf(t)

	type series struct {
		name   string
		labels map[string]string
		// samples is how many must match; atLeast bounds their sum.
		samples int
		atLeast float64
		exactly *float64
	}
	one, zero := 1.0, 0.0
	check := func(r *proctest.Replica, want []series) {
		t.Helper()
		text, err := r.Metrics(timeout(t, 5*time.Second))
		must(t, err)
		for _, s := range want {
			v, n := proctest.MetricValue(text, s.name, s.labels)
			switch {
			case n != s.samples:
				t.Errorf("%s: %s%v has %d samples, want %d", r.ID(), s.name, s.labels, n, s.samples)
			case s.exactly != nil && v != *s.exactly:
				t.Errorf("%s: %s%v = %v, want %v", r.ID(), s.name, s.labels, v, *s.exactly)
			case s.exactly == nil && v < s.atLeast:
				t.Errorf("%s: %s%v = %v, want at least %v", r.ID(), s.name, s.labels, v, s.atLeast)
			}
		}
	}
	common := func(state string) []series {
		return []series{
			{name: "committer_raft_fsm_apply_count", samples: 1, atLeast: 1},
			{name: "committer_raft_state", labels: map[string]string{"state": state}, samples: 1, exactly: &one},
			{name: "committer_raft_state", samples: 4, exactly: &one},
			{name: "committer_raft_term", samples: 1, exactly: &term},
			{name: "committer_ready", samples: 1, exactly: &one},
			{name: "committer_build_info", labels: map[string]string{"version": build.Version, "revision": build.Revision, "go_version": build.GoVersion}, samples: 1, exactly: &one},
		}
	}
	leaderWants := append(common(metrics.StateLeader),
		series{name: "committer_raft_commitTime_count", samples: 1, atLeast: 1},
		series{name: "committer_leader_changes_total", samples: 1, atLeast: 1},
		// One series per follower, and none for anything else.
		series{name: "committer_raft_replication_heartbeat_count", samples: 2, atLeast: 2},
		series{name: "committer_raft_replication_appendEntries_rpc_count", samples: 2, atLeast: 2},
	)
	for _, f := range followers {
		leaderWants = append(leaderWants,
			series{name: "committer_raft_replication_heartbeat_count", labels: map[string]string{"peer_id": f.ID()}, samples: 1, atLeast: 1},
			series{name: "committer_raft_replication_appendEntries_rpc_count", labels: map[string]string{"peer_id": f.ID()}, samples: 1, atLeast: 1},
			series{name: "committer_raft_replication_appendEntries_logs", labels: map[string]string{"peer_id": f.ID()}, samples: 1, atLeast: 1},
			series{name: "committer_raft_heartbeat_failures_total", labels: map[string]string{"peer_id": f.ID()}, samples: 0, exactly: &zero},
		)
	}
	check(l, leaderWants)
	for _, f := range followers {
		check(f, append(common(metrics.StateFollower),
			series{name: "committer_raft_rpc_appendEntries_count", samples: 1, atLeast: 1},
			series{name: "committer_raft_replication_heartbeat_count", samples: 0, exactly: &zero},
		))
	}

	// A follower dies: the leader counts its failed heartbeats to it, and
	// only to it.
	dead, alive := followers[0], followers[1]
	must(t, dead.Kill())
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, n, err := l.Metric(timeout(t, 5*time.Second), "committer_raft_heartbeat_failures_total", map[string]string{"peer_id": dead.ID()})
		must(t, err)
		if n == 1 && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader counted no failed heartbeat to %s (%v, %d samples)", dead.ID(), v, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(l, []series{{name: "committer_raft_heartbeat_failures_total", labels: map[string]string{"peer_id": alive.ID()}, samples: 0, exactly: &zero}})
	ld.verify(t, pinned(t, c, l))
}

// buildInfoOf returns what the replicas' binary says of its build.
func buildInfoOf(t testing.TB) metrics.BuildInfo {
	t.Helper()
	out, err := exec.Command(committerBin, "version", "--json").Output()
	must(t, err)
	var b metrics.BuildInfo
	if err := json.Unmarshal(out, &b); err != nil || b.Version == "" || b.Revision == "" || b.GoVersion == "" {
		t.Fatalf("committer version --json = %q, %v", out, err)
	}
	return b
}
