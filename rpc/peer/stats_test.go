package peer_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/rpc/peerserver"
)

// statsReplica answers ServerStats with st.
type statsReplica struct{ st cluster.ServerStats }

func (statsReplica) CurrentTerm() uint64                { return 5 }
func (s statsReplica) ServerStats() cluster.ServerStats { return s.st }

func servePeer(t *testing.T, r peerserver.Replica) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	peerserver.Register(gs, r, nil)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// The leader's autopilot gets a member's stats exactly as the member
// reports them, including "never heard from a leader" as a negative last
// contact.
func TestServerStatsRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, want := range []cluster.ServerStats{
		{ID: "r4", LastContact: 35 * time.Millisecond, LastTerm: 7, LastIndex: 1234},
		{ID: "r5", LastContact: -1, LastTerm: 0, LastIndex: 0},
		{ID: "r6", LastContact: 0, LastTerm: 9, LastIndex: 1},
	} {
		p := dial(t, servePeer(t, statsReplica{st: want}))
		got, err := p.ServerStats(ctx, 7, "r1")
		if err != nil {
			t.Fatalf("ServerStats of %s: %v", want.ID, err)
		}
		if got != want {
			t.Errorf("ServerStats = %+v, want %+v", got, want)
		}
	}
}
