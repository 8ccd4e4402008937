package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/embed"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/freeport"
)

// waitUntil polls cond for up to 15 seconds and fails the test with what()
// if it never holds.
func waitUntil(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func memberIDs(ms []cluster.MemberStatus) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func recordIDs(s fsm.State) []string {
	var out []string
	for id := range s.Members {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func serversOf(nodes ...*node) []raft.Server {
	var out []raft.Server
	for _, nd := range nodes {
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(nd.id), Address: raft.ServerAddress(nd.raftAddr)})
	}
	return out
}

// A 3-replica cluster loses two replicas; the third is recovered on its data
// dir. It then leads alone at a term above the database's fence, with the
// cluster id, the epochs and the data kept and the lost members' records
// gone, and the lost replicas come back under their old id (wiped data dir)
// and under a new id.
func TestRecoverFromALostQuorum(t *testing.T) {
	tc := startCluster(t, 3)
	l := tc.leader()
	ctx := t.Context()
	if ok, err := dial(t, l.grpcAddr).CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 0, Data: []byte("v0")}); !ok || err != nil {
		t.Fatalf("cas = %v, %v", ok, err)
	}
	survivor := tc.follower()
	lost := []*node{}
	for _, nd := range tc.nodes {
		if nd != survivor {
			lost = append(lost, nd)
		}
	}
	// Every member registered its addresses and the leader its epoch, as the
	// survivor sees it.
	waitUntil(t, func() bool {
		st := survivor.replica.FSMState()
		if len(st.Members) != 3 || len(st.Epochs) == 0 || st.ClusterID == "" {
			return false
		}
		for _, nd := range tc.nodes {
			if st.Members[nd.id].GRPCAddr != nd.grpcAddr {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("survivor's state %+v", survivor.replica.FSMState()) })
	before := survivor.replica.FSMState()
	termBefore := l.replica.CurrentTerm()

	peers := []cluster.Peer{{ID: survivor.id, RaftAddr: survivor.raftAddr}}
	// A running replica holds its data dir: recover refuses it at once.
	_, err := cluster.Recover(ctx, cluster.RecoverConfig{DataDir: survivor.dataDir, ID: survivor.id, Peers: peers, LockTimeout: 100 * time.Millisecond})
	wantErr := fmt.Sprintf("data dir in use: %s is locked (is a replica still running on %s?)", filepath.Join(survivor.dataDir, "raft.db"), survivor.dataDir)
	if !errors.Is(err, cluster.ErrDataDirInUse) || err.Error() != wantErr {
		t.Fatalf("recover of a running replica: %v, want %q", err, wantErr)
	}

	for _, nd := range append(lost, survivor) {
		tc.stop(nd)
	}
	// A leader this replica never heard of fenced the database at a much
	// later term: the recovered replica must start above it to serve.
	epoch := termBefore + 100
	if err := tc.store.Owned(before.ClusterID).Fence(ctx, epoch); err != nil {
		t.Fatal(err)
	}
	res, err := cluster.Recover(ctx, cluster.RecoverConfig{DataDir: survivor.dataDir, ID: survivor.id, Peers: peers, ReadFence: tc.store.FenceState})
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	oldServers := slices.Clone(res.Old.Servers)
	slices.SortFunc(oldServers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	if !reflect.DeepEqual(oldServers, serversOf(tc.nodes...)) || !reflect.DeepEqual(res.New.Servers, serversOf(survivor)) {
		t.Fatalf("configuration %+v -> %+v, want %+v -> %+v", res.Old.Servers, res.New.Servers, serversOf(tc.nodes...), serversOf(survivor))
	}
	var wantForgotten []fsm.Member
	for _, nd := range lost {
		wantForgotten = append(wantForgotten, before.Members[nd.id])
	}
	if !reflect.DeepEqual(res.Forgotten, wantForgotten) {
		t.Fatalf("forgotten %+v, want %+v", res.Forgotten, wantForgotten)
	}
	if res.ClusterID != before.ClusterID || len(res.Epochs) < len(before.Epochs) || !slices.Equal(res.Epochs[:len(before.Epochs)], before.Epochs) {
		t.Fatalf("recovered cluster id %q, epochs %+v; want %q and epochs starting with %+v", res.ClusterID, res.Epochs, before.ClusterID, before.Epochs)
	}
	if res.Term < termBefore || res.Term >= epoch || res.NewTerm != epoch || res.LastIndex == 0 || res.LastTerm > res.Term {
		t.Fatalf("term %d -> %d, last entry %d in term %d; want the term raised to the fence epoch %d", res.Term, res.NewTerm, res.LastIndex, res.LastTerm, epoch)
	}
	if res.Fence == nil || res.Fence.Owner != before.ClusterID || res.Fence.Epoch != epoch || res.Fence.Lost || len(res.Warnings) != 0 {
		t.Fatalf("fence %+v, warnings %q; want owned by %s at %d, no warnings", res.Fence, res.Warnings, before.ClusterID, epoch)
	}

	// Recovering the recovered data dir again changes nothing; a fence that
	// another cluster owns is reported.
	again, err := cluster.Recover(ctx, cluster.RecoverConfig{DataDir: survivor.dataDir, ID: survivor.id, Peers: peers,
		ReadFence: func(context.Context) (backend.FenceState, error) {
			return backend.FenceState{Owner: "elsewhere", Epoch: 3}, nil
		}})
	if err != nil {
		t.Fatalf("second recover: %v", err)
	}
	wantWarning := fmt.Sprintf("the database belongs to cluster elsewhere, not to the recovered cluster %q: it serves only after `committer fence adopt --force`", before.ClusterID)
	if !reflect.DeepEqual(again.Old.Servers, serversOf(survivor)) || len(again.Forgotten) != 0 || again.Term != epoch || again.NewTerm != epoch ||
		again.LastIndex != res.LastIndex || again.ClusterID != res.ClusterID || !slices.Equal(again.Warnings, []string{wantWarning}) {
		t.Fatalf("second recover = %+v; want the first one's state, term %d and the warning %q", again, epoch, wantWarning)
	}

	// Restarted as before, on its data dir only: it leads alone, fenced
	// above the epoch, and serves what was written.
	tc.start(survivor, embed.Config{ID: survivor.id, DataDir: survivor.dataDir, RaftAddr: survivor.raftAddr})
	if got := tc.leader(); got != survivor {
		t.Fatalf("ready leader %s, want %s", got.id, survivor.id)
	}
	if term := survivor.replica.CurrentTerm(); term <= epoch {
		t.Fatalf("term %d after recovery, want above the fence epoch %d", term, epoch)
	}
	members, _, err := survivor.replica.Members()
	if err != nil || !slices.Equal(memberIDs(members), []string{survivor.id}) {
		t.Fatalf("members %+v, %v; want %s alone", members, err, survivor.id)
	}
	waitUntil(t, func() bool {
		st := survivor.replica.FSMState()
		return slices.Equal(recordIDs(st), []string{survivor.id}) && st.Members[survivor.id] == survivor.replica.Self() &&
			len(st.Epochs) > len(res.Epochs) && st.Epochs[len(st.Epochs)-1] == fsm.Epoch{Term: survivor.replica.CurrentTerm(), LeaderID: survivor.id}
	}, func() string { return fmt.Sprintf("recovered state %+v", survivor.replica.FSMState()) })
	st := survivor.replica.FSMState()
	if st.ClusterID != before.ClusterID || !slices.Equal(st.Epochs[:len(res.Epochs)], res.Epochs) {
		t.Fatalf("recovered state %+v: want cluster id %s and epochs starting with %+v", st, before.ClusterID, res.Epochs)
	}
	c := dial(t, survivor.grpcAddr)
	if v, err := c.Head(ctx, "k"); err != nil || v == nil || v.SeqNo != 0 || string(v.Data) != "v0" {
		t.Fatalf("head after recovery = %+v, %v; want {0 v0}", v, err)
	}
	if ok, err := c.CompareAndSet(ctx, "k", backend.VersionedData{SeqNo: 1, Data: []byte("v1")}); !ok || err != nil {
		t.Fatalf("cas after recovery = %v, %v", ok, err)
	}

	// One lost replica comes back under its old id with a wiped data dir,
	// the other is replaced by a new id; both join through the survivor.
	old := lost[0]
	old.dataDir = t.TempDir()
	tc.start(old, embed.Config{ID: old.id, DataDir: old.dataDir, RaftAddr: old.raftAddr, Join: []string{survivor.grpcAddr}})
	addrs, err := freeport.Addrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	fresh := &node{id: "r9", raftAddr: addrs[0], dataDir: t.TempDir()}
	tc.nodes = append(tc.nodes, fresh)
	tc.start(fresh, embed.Config{ID: fresh.id, DataDir: fresh.dataDir, RaftAddr: fresh.raftAddr, Join: []string{survivor.grpcAddr}})
	want := []string{old.id, fresh.id, survivor.id}
	slices.Sort(want)
	for _, nd := range []*node{survivor, old, fresh} {
		waitUntil(t, func() bool {
			ms, _, err := nd.replica.Members()
			st := nd.replica.FSMState()
			return err == nil && slices.Equal(memberIDs(ms), want) && slices.Equal(recordIDs(st), want) &&
				st.Members[old.id] == old.replica.Self() && st.Members[fresh.id] == fresh.replica.Self()
		}, func() string {
			ms, _, err := nd.replica.Members()
			return fmt.Sprintf("%s: members %+v (%v), records %+v; want %q", nd.id, ms, err, nd.replica.FSMState().Members, want)
		})
	}
	if got := tc.leader(); got != survivor {
		t.Fatalf("ready leader %s after the others joined, want %s", got.id, survivor.id)
	}
	if v, err := dial(t, fresh.grpcAddr).Head(ctx, "k"); err != nil || v == nil || v.SeqNo != 1 || string(v.Data) != "v1" {
		t.Fatalf("head through the new replica = %+v, %v; want {1 v1}", v, err)
	}
}

// Recover refuses, with a precise error and without touching the disk,
// what an operator can get wrong.
func TestRecoverRefuses(t *testing.T) {
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "nope")
	stateless := t.TempDir()
	// A Raft store that was created but never written.
	s, err := raftboltdb.NewBoltStore(filepath.Join(stateless, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	self := []cluster.Peer{{ID: "a", RaftAddr: "127.0.0.1:1"}}
	for _, tc := range []struct {
		name    string
		cfg     cluster.RecoverConfig
		want    string
		wantErr error
	}{
		{"no data dir", cluster.RecoverConfig{ID: "a", Peers: self}, "a data dir is required", nil},
		{"no id", cluster.RecoverConfig{DataDir: empty, Peers: self}, "the replica's id is required", nil},
		{"no voters", cluster.RecoverConfig{DataDir: empty, ID: "a"}, "invalid new configuration: no voters given", cluster.ErrInvalidConfiguration},
		{"this replica left out", cluster.RecoverConfig{DataDir: empty, ID: "b", Peers: self},
			`invalid new configuration: it does not include this replica ("b")`, cluster.ErrInvalidConfiguration},
		{"voter listed twice", cluster.RecoverConfig{DataDir: empty, ID: "a", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}, {"a", "127.0.0.1:2"}}},
			`invalid new configuration: voter "a" listed twice`, cluster.ErrInvalidConfiguration},
		{"address listed twice", cluster.RecoverConfig{DataDir: empty, ID: "a", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}, {"b", "127.0.0.1:1"}}},
			`invalid new configuration: raft address 127.0.0.1:1 listed twice`, cluster.ErrInvalidConfiguration},
		{"voter without an address", cluster.RecoverConfig{DataDir: empty, ID: "a", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}, {"b", ""}}},
			`invalid new configuration: voter "b"="" needs an id and a raft address`, cluster.ErrInvalidConfiguration},
		{"missing data dir", cluster.RecoverConfig{DataDir: missing, ID: "a", Peers: self},
			"nothing to recover: data dir " + missing + " does not exist", cluster.ErrNothingToRecover},
		{"empty data dir", cluster.RecoverConfig{DataDir: empty, ID: "a", Peers: self},
			"nothing to recover: " + empty + " holds no Raft state (no raft.db)", cluster.ErrNothingToRecover},
		{"raft store without state", cluster.RecoverConfig{DataDir: stateless, ID: "a", Peers: self},
			"nothing to recover: " + stateless + " holds no Raft state", cluster.ErrNothingToRecover},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cluster.Recover(t.Context(), tc.cfg)
			if err == nil || err.Error() != tc.want || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("err = %v, want %q (matching %v)", err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the missing data dir exists after recover: %v", err)
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("the empty data dir holds %v after recover (%v)", entries, err)
	}
}
