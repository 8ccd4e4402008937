package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/rpc/client"
)

// node is one in-process replica, assembled as `committer serve` assembles
// it, with its gRPC server on real TCP.
type node struct {
	id       string
	replica  *cluster.Replica
	srv      *embed.Server
	grpcAddr string
	raftAddr string
	dataDir  string
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type testCluster struct {
	t     testing.TB
	store backend.Fencer
	nodes []*node
}

// startCluster bootstraps n replicas sharing one bolt store (one process, so
// the embedded backend can be shared as in `committer dev`).
func startCluster(t testing.TB, n int, opts ...func(*embed.Config)) *testCluster {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "data.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, store: store}
	raftAddrs, err := freeport.Addrs("127.0.0.1", n)
	if err != nil {
		t.Fatal(err)
	}
	var peers []cluster.Peer
	for i := range n {
		nd := &node{id: fmt.Sprintf("r%d", i+1), raftAddr: raftAddrs[i], dataDir: t.TempDir()}
		peers = append(peers, cluster.Peer{ID: nd.id, RaftAddr: nd.raftAddr})
		tc.nodes = append(tc.nodes, nd)
	}
	for _, nd := range tc.nodes {
		cfg := embed.Config{ID: nd.id, DataDir: nd.dataDir, RaftAddr: nd.raftAddr, BootstrapExpect: n, Peers: peers, Backend: store}
		for _, o := range opts {
			o(&cfg)
		}
		tc.start(nd, cfg)
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			tc.stop(nd)
		}
		store.Close()
	})
	return tc
}

// start runs nd on a fresh gRPC port with cfg, over the cluster's store
// unless cfg names a backend.
func (tc *testCluster) start(nd *node, cfg embed.Config) {
	t := tc.t
	cfg.GRPCAddr = "127.0.0.1:0"
	if cfg.Backend == nil {
		cfg.Backend = tc.store
	}
	cfg.Logger = quiet()
	srv, err := embed.Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", nd.id, err)
	}
	nd.srv, nd.replica, nd.grpcAddr = srv, srv.Replica(), srv.GRPCAddr()
}

func (tc *testCluster) stop(nd *node) {
	if nd.srv == nil {
		return
	}
	if err := nd.srv.Shutdown(5 * time.Second); err != nil {
		tc.t.Logf("stop %s: %v", nd.id, err)
	}
	nd.srv, nd.replica = nil, nil
}

// leader waits for exactly one ready leader and returns it.
func (tc *testCluster) leader() *node {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var ready []*node
		for _, nd := range tc.nodes {
			if nd.replica != nil && nd.replica.Ready() {
				ready = append(ready, nd)
			}
		}
		if len(ready) == 1 {
			return ready[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatal("no single ready leader within 15s")
	return nil
}

// makeLeader hands leadership to nd unless it already leads.
func (tc *testCluster) makeLeader(ctx context.Context, nd *node) {
	tc.t.Helper()
	if l := tc.leader(); l != nd {
		if _, _, err := l.replica.TransferLeadership(ctx, nd.id); err != nil {
			tc.t.Fatalf("transfer to %s: %v", nd.id, err)
		}
	}
}

func (tc *testCluster) follower() *node {
	l := tc.leader()
	for _, nd := range tc.nodes {
		if nd != l && nd.replica != nil {
			return nd
		}
	}
	tc.t.Fatal("no follower")
	return nil
}

func dial(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(addrs, client.WithLogger(quiet()), client.WithCallTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The whole contract holds through a follower (every call forwarded) and
// through the leader (cache and read gate).
func TestConformanceThroughFollowerAndLeader(t *testing.T) {
	for _, via := range []string{"follower", "leader"} {
		t.Run(via, func(t *testing.T) {
			conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
				tc := startCluster(t, 3)
				nd := tc.leader()
				if via == "follower" {
					nd = tc.follower()
				}
				return dial(t, nd.grpcAddr)
			})
		})
	}
}

func TestSingleReplicaCluster(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		tc := startCluster(t, 1)
		return dial(t, tc.leader().grpcAddr)
	})
}

func TestForwardedRequestIsNotForwardedAgain(t *testing.T) {
	tc := startCluster(t, 3)
	f := tc.follower()
	// A forwarded request that lands on a follower must be answered "not
	// leader" (one hop only), determinate.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.replica.Head(cluster.MarkForwardedIncoming(ctx), "k")
	if !errors.Is(err, backend.ErrNotLeader) || !backend.IsDeterminate(err) {
		t.Fatalf("forwarded head on a follower: err = %v, want determinate ErrNotLeader", err)
	}
}

// The FSM survives a snapshot and a restart that restores from it.
func TestFSMSurvivesSnapshotAndRestart(t *testing.T) {
	tc := startCluster(t, 3)
	l := tc.leader()
	c := dial(t, l.grpcAddr)
	if ok, err := c.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 0, Data: []byte("v0")}); !ok || err != nil {
		t.Fatalf("cas = %v, %v", ok, err)
	}
	// Every member registers its addresses; wait until all three are known.
	f := tc.follower()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.replica.FSMState().Members) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("members never registered: %+v", f.replica.FSMState().Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := f.replica.FSMState()
	if len(before.Epochs) == 0 {
		t.Fatal("no leader epoch recorded")
	}
	if err := f.replica.ForceSnapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if got := f.replica.LastSnapshotIndex(); got == "0" || got == "" {
		t.Fatalf("last snapshot index %q after a snapshot", got)
	}

	// Restart the follower on its data dir: the FSM comes back from the
	// snapshot (and the log after it) with the same members and epochs.
	tc.stop(f)
	tc.start(f, embed.Config{ID: f.id, DataDir: f.dataDir, RaftAddr: f.raftAddr})
	deadline = time.Now().Add(10 * time.Second)
	for {
		got := f.replica.FSMState()
		// The restarted follower re-registers its new gRPC address, so
		// compare everything else exactly.
		want := before
		want.Members = maps.Clone(before.Members)
		m := want.Members[f.id]
		m.GRPCAddr = f.grpcAddr
		want.Members[f.id] = m
		if reflect.DeepEqual(got.Members, want.Members) && slices.Equal(got.Epochs[:len(before.Epochs)], before.Epochs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %+v, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, err := dial(t, f.grpcAddr).Head(t.Context(), "k"); err != nil || v == nil || string(v.Data) != "v0" {
		t.Fatalf("head through the restarted replica = %+v, %v", v, err)
	}
}

// With --unsafe-skip-fence a leader serves without fencing: the stored epoch
// stays 0 and writes go through unbound.
func TestUnsafeSkipFenceServesUnfenced(t *testing.T) {
	tc := startCluster(t, 1, func(c *embed.Config) { c.UnsafeSkipFence = true })
	c := dial(t, tc.leader().grpcAddr)
	if ok, err := c.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 0, Data: []byte("a")}); !ok || err != nil {
		t.Fatalf("cas = %v, %v", ok, err)
	}
	// Nothing was fenced: a handle at epoch 0 can still write.
	if ok, err := tc.store.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 1, Data: []byte("b")}); !ok || err != nil {
		t.Fatalf("epoch-0 cas after an unfenced leader = %v, %v; want committed", ok, err)
	}
}

// A normal leader fences: afterwards an epoch-0 writer is refused.
func TestLeaderFencesTheBackend(t *testing.T) {
	tc := startCluster(t, 1)
	c := dial(t, tc.leader().grpcAddr)
	if ok, err := c.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 0, Data: []byte("a")}); !ok || err != nil {
		t.Fatalf("cas = %v, %v", ok, err)
	}
	_, err := tc.store.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 1, Data: []byte("b")})
	if !errors.Is(err, backend.ErrFenced) || !backend.IsDeterminate(err) {
		t.Fatalf("epoch-0 cas after a fenced leader: err = %v, want determinate ErrFenced", err)
	}
}

// A write that finds a later epoch in the backend makes the leader stop
// serving at once; the caller gets a determinate "fenced".
func TestFencedWriteStepsTheLeaderDown(t *testing.T) {
	tc := startCluster(t, 1)
	l := tc.leader()
	c := dial(t, l.grpcAddr)
	if ok, err := c.CompareAndSet(t.Context(), "k", backend.VersionedData{SeqNo: 0, Data: []byte("a")}); !ok || err != nil {
		t.Fatalf("cas = %v, %v", ok, err)
	}
	// Another leader of a much later term fences the backend.
	if err := tc.store.Owned(l.replica.FSMState().ClusterID).Fence(t.Context(), 1000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := l.replica.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 1, Data: []byte("b")})
	if !errors.Is(err, backend.ErrFenced) || !backend.IsDeterminate(err) {
		t.Fatalf("cas after a later fence: err = %v, want determinate ErrFenced", err)
	}
	if l.replica.Ready() {
		t.Fatal("the fenced leader still reports ready")
	}
	if v, err := tc.store.Head(t.Context(), "k"); err != nil || v.SeqNo != 0 {
		t.Fatalf("head = %+v, %v; the fenced write must not land", v, err)
	}
}

// Admin calls take the same forwarder as data calls: through a follower they
// run on the leader, the leader's answer comes back as it was given, and a
// forwarded call that lands on a follower is refused, determinate, instead of
// taking a second hop.
func TestAdminCallsTakeTheForwarder(t *testing.T) {
	tc := startCluster(t, 3)
	l, f := tc.leader(), tc.follower()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	_, err := f.replica.AddVoter(cluster.MarkForwardedIncoming(ctx), fsm.Member{ID: "r9", RaftAddr: "127.0.0.1:1"})
	if !errors.Is(err, backend.ErrNotLeader) || !backend.IsDeterminate(err) {
		t.Fatalf("forwarded AddVoter on a follower: %v, want a determinate ErrNotLeader", err)
	}

	m, _, err := f.replica.TransferLeadership(ctx, f.id)
	if err != nil || m.ID != f.id {
		t.Fatalf("transfer to %s through itself as a follower = %+v, %v", f.id, m, err)
	}
	if got := tc.leader(); got != f {
		t.Fatalf("ready leader %s after the transfer, want %s", got.id, f.id)
	}

	// l is a follower now: its RemoveServer runs on f, whose refusal of an
	// unknown member comes back as the admin service's NotFound.
	_, err = l.replica.RemoveServer(ctx, "nobody")
	if status.Code(err) != codes.NotFound {
		t.Fatalf("RemoveServer(nobody) through a follower: %v, want NotFound from the leader", err)
	}
	members, _, err := l.replica.Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members after the calls = %+v, %v; want the three replicas", members, err)
	}
}
