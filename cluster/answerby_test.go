package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/client"
)

// A replica that holds a write because it knows no leader gives up a little
// before the caller's deadline, so the caller gets its determinate "no
// leader" and may send the write elsewhere, instead of its own deadline,
// which for a write means "may have happened".
func TestAHeldWriteIsAnsweredBeforeTheCallersDeadline(t *testing.T) {
	tc := startCluster(t, 3)
	tc.leader()
	alone := tc.follower()
	for _, nd := range tc.nodes {
		if nd != alone {
			tc.stop(nd)
		}
	}
	// The stopped leader may have handed leadership to alone, which then
	// leads until its lease runs out without a quorum; from then on it can
	// never lead again.
	deadline := time.Now().Add(15 * time.Second)
	for alone.replica.IsLeader() || alone.replica.LeaderKnown() {
		if time.Now().After(deadline) {
			t.Fatal("the lone replica still leads, or knows a leader, 15s after the others stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := client.New([]string{alone.grpcAddr}, client.WithLogger(quiet()), client.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
		cancel()
		if !backend.IsDeterminate(err) || !errors.Is(err, backend.ErrUnavailable) {
			t.Fatalf("write %d held by a replica without a leader = %v, want a determinate ErrUnavailable", i, err)
		}
	}
}
