package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/rpc/adminserver"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/server"
)

// node is one in-process replica with its gRPC server on real TCP.
type node struct {
	id       string
	replica  *cluster.Replica
	srv      *server.Server
	grpcAddr string
	raftAddr string
	dataDir  string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type testCluster struct {
	t     *testing.T
	store backend.Fencer
	nodes []*node
}

// startCluster bootstraps n replicas sharing one bolt store (one process, so
// the embedded backend can be shared as in `committer dev`).
func startCluster(t *testing.T, n int, opts ...func(*cluster.Config)) *testCluster {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "data.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, store: store}
	var peers []cluster.Peer
	for i := range n {
		nd := &node{id: fmt.Sprintf("r%d", i+1), raftAddr: freeAddr(t), dataDir: t.TempDir()}
		peers = append(peers, cluster.Peer{ID: nd.id, RaftAddr: nd.raftAddr})
		tc.nodes = append(tc.nodes, nd)
	}
	for _, nd := range tc.nodes {
		cfg := cluster.Config{ID: nd.id, DataDir: nd.dataDir, RaftBind: nd.raftAddr, Backend: store, BootstrapExpect: n, Peers: peers, Logger: quiet()}
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

func (tc *testCluster) start(nd *node, cfg cluster.Config) {
	t := tc.t
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nd.grpcAddr = lis.Addr().String()
	cfg.GRPCAddr = nd.grpcAddr
	rep, err := cluster.Open(cfg)
	if err != nil {
		lis.Close()
		t.Fatalf("open %s: %v", nd.id, err)
	}
	nd.replica = rep
	nd.srv = server.New(rep, server.Config{Logger: quiet()})
	adminserver.Register(nd.srv.GRPC(), rep)
	go nd.srv.Serve(lis)
}

func (tc *testCluster) stop(nd *node) {
	if nd.replica == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nd.srv.Shutdown(ctx)
	if err := nd.replica.Close(); err != nil {
		tc.t.Logf("close %s: %v", nd.id, err)
	}
	nd.replica = nil
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
