package proctest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
)

// startCluster starts replicas over a fresh PostgreSQL database.
func startCluster(t testing.TB, opts proctest.Options) *proctest.Cluster {
	t.Helper()
	opts.Binary = committerBin
	opts.Backend = pgtest.Require(t, pg).CreateDatabase(t)
	return proctest.Start(t, opts)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// timeout is a context for one step of a test.
func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func leader(t testing.TB, c *proctest.Cluster, among ...*proctest.Replica) *proctest.Replica {
	t.Helper()
	l, err := c.Leader(timeout(t, 20*time.Second), among...)
	must(t, err)
	return l
}

func pinned(t testing.TB, c *proctest.Cluster, r *proctest.Replica, opts ...client.Option) *client.Client {
	t.Helper()
	cl, err := c.Pinned(r, opts...)
	must(t, err)
	return cl
}

func anyClient(t testing.TB, c *proctest.Cluster, rs ...*proctest.Replica) *client.Client {
	t.Helper()
	cl, err := c.Client(rs...)
	must(t, err)
	return cl
}

func ids(rs []*proctest.Replica) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID())
	}
	return out
}

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

func fmtVersions(vs []backend.VersionedData) string {
	s := "["
	for i, v := range vs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("{%d %q}", v.SeqNo, v.Data)
	}
	return s + "]"
}

func sameVersions(a, b []backend.VersionedData) bool {
	return slices.EqualFunc(a, b, func(x, y backend.VersionedData) bool {
		return x.SeqNo == y.SeqNo && string(x.Data) == string(y.Data)
	})
}

// ops checks consensus operations through one client, failing the test on
// any result other than the expected one. via names the path in messages.
type ops struct {
	t   testing.TB
	cl  backend.Consensus
	via string
}

func (o ops) ctx() context.Context { return timeout(o.t, 15*time.Second) }

func (o ops) head(shard string, want *backend.VersionedData) {
	o.t.Helper()
	got, err := o.cl.Head(o.ctx(), shard)
	if err != nil {
		o.t.Fatalf("head(%s) via %s: %v", shard, o.via, err)
	}
	switch {
	case want == nil && got != nil:
		o.t.Fatalf("head(%s) via %s = {%d %q}, want none", shard, o.via, got.SeqNo, got.Data)
	case want != nil && got == nil:
		o.t.Fatalf("head(%s) via %s = none, want {%d %q}", shard, o.via, want.SeqNo, want.Data)
	case want != nil && (got.SeqNo != want.SeqNo || string(got.Data) != string(want.Data)):
		o.t.Fatalf("head(%s) via %s = {%d %q}, want {%d %q}", shard, o.via, got.SeqNo, got.Data, want.SeqNo, want.Data)
	}
}

func (o ops) scan(shard string, from, limit uint64, want ...backend.VersionedData) {
	o.t.Helper()
	got, err := o.cl.Scan(o.ctx(), shard, from, limit)
	if err != nil {
		o.t.Fatalf("scan(%s,%d,%d) via %s: %v", shard, from, limit, o.via, err)
	}
	if !sameVersions(got, want) {
		o.t.Fatalf("scan(%s,%d,%d) via %s = %s, want %s", shard, from, limit, o.via, fmtVersions(got), fmtVersions(want))
	}
}

func (o ops) cas(shard string, v backend.VersionedData, want bool) {
	o.t.Helper()
	got, err := o.cl.CompareAndSet(o.ctx(), shard, v)
	if err != nil {
		o.t.Fatalf("cas(%s,{%d %q}) via %s: %v", shard, v.SeqNo, v.Data, o.via, err)
	}
	if got != want {
		o.t.Fatalf("cas(%s,{%d %q}) via %s committed=%v, want %v", shard, v.SeqNo, v.Data, o.via, got, want)
	}
}

func (o ops) multi(casOps []backend.CASOp, want ...bool) {
	o.t.Helper()
	got, err := o.cl.CompareAndSetMulti(o.ctx(), casOps)
	if err != nil {
		o.t.Fatalf("multi via %s: %v", o.via, err)
	}
	if !slices.Equal(got, want) {
		o.t.Fatalf("multi via %s = %v, want %v", o.via, got, want)
	}
}

func (o ops) truncate(shard string, seqno, wantDeleted uint64) {
	o.t.Helper()
	got, err := o.cl.Truncate(o.ctx(), shard, seqno)
	if err != nil {
		o.t.Fatalf("truncate(%s,%d) via %s: %v", shard, seqno, o.via, err)
	}
	if got != wantDeleted {
		o.t.Fatalf("truncate(%s,%d) via %s deleted %d, want %d", shard, seqno, o.via, got, wantDeleted)
	}
}

func (o ops) listKeys(want ...string) {
	o.t.Helper()
	got, err := o.cl.ListKeys(o.ctx())
	if err != nil {
		o.t.Fatalf("list_keys via %s: %v", o.via, err)
	}
	if !slices.Equal(got, want) {
		o.t.Fatalf("list_keys via %s = %q, want %q", o.via, got, want)
	}
}

// wantErr checks that err is a determinate error matching sentinel.
func wantErr(t testing.TB, what string, err, sentinel error) {
	t.Helper()
	if err == nil || !errors.Is(err, sentinel) || !backend.IsDeterminate(err) {
		t.Fatalf("%s: err = %v, want a determinate %v", what, err, sentinel)
	}
}

// memberView is the part of a member that tests compare exactly.
type memberView struct {
	ID, RaftAddr, GRPCAddr, HTTPAddr string
	Voter                            bool
}

func viewOf(ms []*adminpb.Member) []memberView {
	var out []memberView
	for _, m := range ms {
		out = append(out, memberView{m.GetId(), m.GetRaftAddr(), m.GetGrpcAddr(), m.GetHttpAddr(), m.GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER})
	}
	slices.SortFunc(out, func(a, b memberView) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// votersOf is the exact membership rs make as voters, sorted by id.
func votersOf(rs ...*proctest.Replica) []memberView {
	var out []memberView
	for _, r := range rs {
		out = append(out, memberView{r.ID(), r.RaftAddr(), r.GRPCAddr(), r.HTTPAddr(), true})
	}
	slices.SortFunc(out, func(a, b memberView) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// waitMembers polls ListMembers on via until it lists exactly want.
func waitMembers(t testing.TB, via *proctest.Replica, want []memberView) {
	t.Helper()
	ctx := timeout(t, 20*time.Second)
	var last []memberView
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := via.Admin().ListMembers(cctx, &adminpb.ListMembersRequest{})
		cancel()
		if err == nil {
			last, lastErr = viewOf(resp.GetMembers()), nil
			if slices.Equal(last, want) {
				return
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("members via %s never became %+v; last %+v (err %v)", via.ID(), want, last, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkMembers asserts that ListMembers on via lists exactly want now.
func checkMembers(t testing.TB, via *proctest.Replica, want []memberView) {
	t.Helper()
	resp, err := via.Admin().ListMembers(timeout(t, 5*time.Second), &adminpb.ListMembersRequest{})
	must(t, err)
	if got := viewOf(resp.GetMembers()); !slices.Equal(got, want) {
		t.Fatalf("members via %s = %+v, want %+v", via.ID(), got, want)
	}
}

// waitFollowerOf waits until r is a follower that knows leader.
func waitFollowerOf(t testing.TB, r, leader *proctest.Replica) *adminpb.StatusResponse {
	t.Helper()
	st, err := r.WaitStatus(timeout(t, 20*time.Second), func(st *adminpb.StatusResponse) bool {
		return st.GetState() == adminpb.RaftState_RAFT_STATE_FOLLOWER && !st.GetReady() && st.GetLeader().GetId() == leader.ID()
	})
	must(t, err)
	return st
}
