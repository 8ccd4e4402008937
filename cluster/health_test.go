package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/rpc/server"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

func withHTTP(c *embed.Config) { c.HTTPAddr = "127.0.0.1:0" }

// healthView is what a replica says of itself on every surface: /readyz,
// and the gRPC health of the whole server and of each service.
type healthView struct {
	readyz                        opshttp.Readiness
	whole, consensus, admin, peer healthpb.HealthCheckResponse_ServingStatus
}

func (v healthView) String() string {
	return fmt.Sprintf("/readyz %+v, health: %q %v, consensus %v, admin %v, peer %v", v.readyz, "", v.whole, v.consensus, v.admin, v.peer)
}

func dialHealth(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// look reads every surface of nd once.
func look(ctx context.Context, nd *node, health healthpb.HealthClient) (healthView, error) {
	var v healthView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.srv.HTTPAddr()+"/readyz", nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(body, &v.readyz); err != nil {
		return v, fmt.Errorf("/readyz body %q: %w", body, err)
	}
	if (resp.StatusCode == http.StatusOK) != v.readyz.Ready {
		return v, fmt.Errorf("/readyz answered %d with %s", resp.StatusCode, body)
	}
	for svc, dst := range map[string]*healthpb.HealthCheckResponse_ServingStatus{
		"": &v.whole, server.ConsensusServiceName: &v.consensus, "committer.admin.v1.Admin": &v.admin, "committer.peer.v1.Peer": &v.peer,
	} {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			return v, fmt.Errorf("health check %q: %w", svc, err)
		}
		*dst = r.GetStatus()
	}
	return v, nil
}

// waitHealth waits until /readyz says exactly want and the gRPC health
// agrees with it (the whole server and consensus SERVING exactly when
// ready; admin and peer SERVING, since they work without a leader).
func waitHealth(t *testing.T, nd *node, want opshttp.Readiness) {
	t.Helper()
	st := notServing
	if want.Ready {
		st = serving
	}
	wantView := healthView{readyz: want, whole: st, consensus: st, admin: serving, peer: serving}
	health := dialHealth(t, nd.grpcAddr)
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		v, err := look(ctx, nd, health)
		cancel()
		if err == nil && v == wantView {
			return
		}
		last = v.String()
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never %s; last %s", nd.id, wantView, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The predicate on a healthy cluster, a removed replica and a replica
// that lost its quorum: the ready leader and its followers (which hold the
// leader's epoch of the current term) are ready; a removed replica never
// is; a replica whose peers are gone knows no leader and is not ready.
// /readyz and the gRPC health say the same each time.
func TestReadinessOfLeaderFollowersAndRemovedReplica(t *testing.T) {
	tc := startCluster(t, 3, withHTTP)
	l := tc.leader()
	term := l.replica.CurrentTerm()
	for _, nd := range tc.nodes {
		waitHealth(t, nd, opshttp.Readiness{Ready: true, Leader: nd == l, LeaderKnown: true})
		if got, want := nd.replica.Readiness(), (cluster.Readiness{Ready: true, Leader: nd == l, LeaderKnown: true, LeaderID: l.id, Term: term}); got != want {
			t.Fatalf("readiness of %s = %+v, want %+v", nd.id, got, want)
		}
		if e, ok := nd.replica.FSMState().LatestEpoch(); !ok || e != (fsm.Epoch{Term: term, LeaderID: l.id}) {
			t.Fatalf("latest epoch on %s = %+v, %v; want term %d by %s", nd.id, e, ok, term, l.id)
		}
	}

	var removed, other *node
	for _, nd := range tc.nodes {
		switch {
		case nd == l:
		case removed == nil:
			removed = nd
		default:
			other = nd
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := l.replica.RemoveServer(ctx, removed.id); err != nil {
		t.Fatalf("remove %s: %v", removed.id, err)
	}
	// Once the leader stops contacting it, it knows no leader either.
	waitHealth(t, removed, opshttp.Readiness{Reason: "removed from the cluster"})
	waitHealth(t, l, opshttp.Readiness{Ready: true, Leader: true, LeaderKnown: true})
	waitHealth(t, other, opshttp.Readiness{Ready: true, LeaderKnown: true})

	// Two voters left; without the other one the leader loses its quorum,
	// steps down, and nobody can be elected.
	tc.stop(other)
	waitHealth(t, l, opshttp.Readiness{Reason: "no leader known"})
	if rd := l.replica.Readiness(); rd.Ready || rd.Leader || rd.LeaderKnown || rd.LeaderID != "" || rd.Reason != "no leader known" || rd.Term < term {
		t.Fatalf("readiness without a quorum = %+v", rd)
	}
}

// A follower whose leader cannot fence (the database belongs to another
// cluster) is not ready: the leader records no epoch, so the follower has
// no proof that it serves, though it knows it and its address. Once the
// operator adopts the database, the leader becomes ready, records its
// epoch, and every health watch sees NOT_SERVING turn SERVING.
func TestReadinessWhenTheLeaderCannotFence(t *testing.T) {
	a := startCluster(t, 1)
	la := a.leader()
	idA := la.replica.FSMState().ClusterID

	b := startCluster(t, 3, withHTTP, func(c *embed.Config) { c.Backend = a.store })
	var bl *node
	waitFor(t, "b's leader to report whose the database is", func() bool {
		for _, nd := range b.nodes {
			if nd.replica.IsLeader() && strings.Contains(nd.replica.FenceProblem(), idA) {
				bl = nd
				return true
			}
		}
		return false
	})
	term := bl.replica.CurrentTerm()
	waitHealth(t, bl, opshttp.Readiness{Leader: true, LeaderKnown: true, Reason: "this leader cannot fence the database: " + bl.replica.FenceProblem()})
	type watched struct {
		nd             *node
		whole, service healthpb.Health_WatchClient
	}
	var watches []watched
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, nd := range b.nodes {
		if nd == bl {
			continue
		}
		reason := fmt.Sprintf("leader %s has not become ready in term %d (no epoch recorded yet)", bl.id, term)
		waitHealth(t, nd, opshttp.Readiness{LeaderKnown: true, Reason: reason})
		if got, want := nd.replica.Readiness(), (cluster.Readiness{LeaderKnown: true, LeaderID: bl.id, Term: term, Reason: reason}); got != want {
			t.Fatalf("readiness of %s = %+v, want %+v", nd.id, got, want)
		}
		if m, ok := nd.replica.FSMState().Members[bl.id]; !ok || m.GRPCAddr != bl.grpcAddr {
			t.Fatalf("%s's record of the leader = %+v, %v; want its gRPC address %s", nd.id, m, ok, bl.grpcAddr)
		}
		health := dialHealth(t, nd.grpcAddr)
		w := watched{nd: nd}
		var err error
		if w.whole, err = health.Watch(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		if w.service, err = health.Watch(ctx, &healthpb.HealthCheckRequest{Service: server.ConsensusServiceName}); err != nil {
			t.Fatal(err)
		}
		watches = append(watches, w)
	}
	for _, w := range watches {
		for name, s := range map[string]healthpb.Health_WatchClient{"": w.whole, server.ConsensusServiceName: w.service} {
			if resp, err := s.Recv(); err != nil || resp.GetStatus() != notServing {
				t.Fatalf("%s: first health of %q = %v, %v; want NOT_SERVING", w.nd.id, name, resp.GetStatus(), err)
			}
		}
	}

	for _, nd := range a.nodes {
		a.stop(nd)
	}
	if _, err := bl.replica.AdoptFence(ctx, true); err != nil {
		t.Fatalf("adopt with force: %v", err)
	}
	for _, w := range watches {
		for name, s := range map[string]healthpb.Health_WatchClient{"": w.whole, server.ConsensusServiceName: w.service} {
			if resp, err := s.Recv(); err != nil || resp.GetStatus() != serving {
				t.Fatalf("%s: health of %q after the adoption = %v, %v; want SERVING", w.nd.id, name, resp.GetStatus(), err)
			}
		}
	}
	for _, nd := range b.nodes {
		waitHealth(t, nd, opshttp.Readiness{Ready: true, Leader: nd == bl, LeaderKnown: true})
	}
	if e, ok := bl.replica.FSMState().LatestEpoch(); !ok || e != (fsm.Epoch{Term: term, LeaderID: bl.id}) {
		t.Fatalf("latest epoch after the adoption = %+v, %v; want term %d by %s", e, ok, term, bl.id)
	}
}
