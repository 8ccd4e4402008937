package proctest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

// A one-replica cluster, formed with --bootstrap-expect 1 and a peer list
// or with no cluster flags at all, serves, and keeps serving after a
// graceful restart and after a SIGKILL on the same data dir.
func TestOneReplicaCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode proctest.Bootstrap
	}{
		{"bootstrap-expect-1", proctest.BootstrapPeers},
		{"no-cluster-flags", proctest.BootstrapImplicit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, proctest.Options{Replicas: 1, Bootstrap: tc.mode})
			r := c.Replicas()[0]
			if l := leader(t, c); l != r {
				t.Fatalf("leader %s", l.ID())
			}
			o := ops{t: t, cl: pinned(t, c, r), via: r.ID()}
			o.head("k", nil)
			o.cas("k", vd(0, "a"), true)
			o.cas("k", vd(0, "b"), false)
			o.head("k", &backend.VersionedData{SeqNo: 0, Data: []byte("a")})

			status := func() *adminpb.StatusResponse {
				// Ready, and its own addresses recorded: a replica registers
				// them just after it starts, so the first ready status may
				// predate the record.
				st, err := r.WaitStatus(timeout(t, 20*time.Second), func(st *adminpb.StatusResponse) bool {
					return st.GetReady() && slices.Equal(viewOf(st.GetMembers()), votersOf(r))
				})
				must(t, err)
				if st.GetId() != r.ID() || st.GetState() != adminpb.RaftState_RAFT_STATE_LEADER || st.GetLeader().GetId() != r.ID() {
					t.Fatalf("status: id %s state %v leader %s", st.GetId(), st.GetState(), st.GetLeader().GetId())
				}
				if got := viewOf(st.GetMembers()); !slices.Equal(got, votersOf(r)) {
					t.Fatalf("members %+v, want %+v", got, votersOf(r))
				}
				return st
			}
			term := status().GetTerm()

			// SIGTERM: a clean exit, then the same data dir again.
			must(t, r.Stop(timeout(t, 20*time.Second)))
			must(t, r.Restart(timeout(t, 20*time.Second)))
			if l := leader(t, c); l != r {
				t.Fatalf("leader %s", l.ID())
			}
			o.head("k", &backend.VersionedData{SeqNo: 0, Data: []byte("a")})
			o.cas("k", vd(1, "c"), true)
			st := status()
			if st.GetTerm() <= term {
				t.Fatalf("term %d after a restart, not above %d", st.GetTerm(), term)
			}
			term = st.GetTerm()

			// SIGKILL: no goodbye, same data dir.
			must(t, r.Kill())
			must(t, r.Restart(timeout(t, 20*time.Second)))
			if l := leader(t, c); l != r {
				t.Fatalf("leader %s", l.ID())
			}
			o.scan("k", 0, backend.MaxSeqNo, vd(0, "a"), vd(1, "c"))
			o.cas("k", vd(2, "d"), true)
			o.listKeys("k")
			if st := status(); st.GetTerm() <= term {
				t.Fatalf("term %d after a kill and restart, not above %d", st.GetTerm(), term)
			}
		})
	}
}
