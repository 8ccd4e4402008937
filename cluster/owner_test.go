package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A second cluster pointed by mistake at a database another cluster owns
// never fences or writes it: its leader stays not ready and says whose the
// database is. Taking it over is an explicit act that needs --force; after
// it, the old owner cannot fence or write.
func TestADatabaseBelongsToOneCluster(t *testing.T) {
	a := startCluster(t, 3)
	la := a.leader()
	idA := la.replica.FSMState().ClusterID
	if idA == "" {
		t.Fatal("the ready leader of a has no cluster id")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ca := dial(t, la.grpcAddr)
	if ok, err := ca.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("from a")}); !ok || err != nil {
		t.Fatalf("cas through a = %v, %v", ok, err)
	}

	// Cluster b: fresh data dirs, the same database.
	b := startCluster(t, 1, func(c *embed.Config) { c.Backend = a.store })
	nb := b.nodes[0]
	waitFor(t, "b's leader to report whose the database is", func() bool {
		return nb.replica.IsLeader() && strings.Contains(nb.replica.FenceProblem(), idA)
	})
	idB := nb.replica.FSMState().ClusterID
	if idB == "" || idB == idA {
		t.Fatalf("cluster ids a=%q b=%q; want two different ids", idA, idB)
	}
	if nb.replica.Ready() {
		t.Fatal("b's leader is ready on a database a owns")
	}
	st, err := nb.replica.Status(ctx, false)
	if err != nil || st.ClusterID != idB || !strings.Contains(st.FenceProblem, idA) || !strings.Contains(st.FenceProblem, "fence adopt") {
		t.Fatalf("b's status = %+v, %v; want its id and a problem naming %s and the way out", st, err, idA)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	ok, err := nb.replica.CompareAndSet(short, "k", backend.VersionedData{SeqNo: 1, Data: []byte("from b")})
	cancelShort()
	if ok || err == nil || !backend.IsDeterminate(err) {
		t.Fatalf("cas through b = %v, %v; want a determinate error, nothing written", ok, err)
	}
	// a goes on serving.
	if ok, err := ca.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 1, Data: []byte("a again")}); !ok || err != nil {
		t.Fatalf("cas through a while b is up = %v, %v", ok, err)
	}

	// Taking over needs force.
	_, err = nb.replica.AdoptFence(ctx, false)
	if !errors.Is(err, cluster.ErrAdoptRefused) || !strings.Contains(err.Error(), idA) {
		t.Fatalf("adopt without force = %v; want ErrAdoptRefused naming %s", err, idA)
	}
	if v, _ := a.store.Head(ctx, "k"); v == nil || string(v.Data) != "a again" {
		t.Fatalf("head after the refused adoption = %+v; want a's write", v)
	}
	for _, nd := range a.nodes {
		a.stop(nd)
	}
	ch, err := nb.replica.AdoptFence(ctx, true)
	if err != nil || ch.Before.Owner != idA || ch.Owner != idB {
		t.Fatalf("adopt with force = %+v, %v; want %s -> %s", ch, err, idA, idB)
	}
	waitFor(t, "b to become ready", nb.replica.Ready)
	if nb.replica.FenceProblem() != "" {
		t.Fatalf("b still reports %q after adopting", nb.replica.FenceProblem())
	}
	cb := dial(t, nb.grpcAddr)
	if ok, err := cb.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 2, Data: []byte("from b")}); !ok || err != nil {
		t.Fatalf("cas through b after adopting = %v, %v", ok, err)
	}

	// a comes back: it no longer owns the database.
	for _, nd := range a.nodes {
		a.start(nd, embed.Config{ID: nd.id, DataDir: nd.dataDir, RaftAddr: nd.raftAddr})
	}
	var back *node
	waitFor(t, "a's new leader to report that b owns the database", func() bool {
		for _, nd := range a.nodes {
			if nd.replica.IsLeader() && strings.Contains(nd.replica.FenceProblem(), idB) {
				back = nd
				return true
			}
		}
		return false
	})
	if back.replica.Ready() {
		t.Fatal("a's leader is ready on the database b adopted")
	}
	if v, err := cb.Head(ctx, "k"); err != nil || v == nil || v.SeqNo != 2 || string(v.Data) != "from b" {
		t.Fatalf("head through b = %+v, %v; want b's write", v, err)
	}
}
