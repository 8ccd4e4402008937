package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/embed"
)

// The ready leader records the shards it uses; after a leadership change
// the new leader prefetches them in bulk before it serves, and its first
// heads of them are cache hits.
func TestANewLeaderStartsWithTheHotShardsCached(t *testing.T) {
	tc := startCluster(t, 3, func(c *embed.Config) { c.HotShardInterval = 50 * time.Millisecond })
	l := tc.leader()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var shards []string
	for i := range 40 {
		s := fmt.Sprintf("hot%02d", i)
		shards = append(shards, s)
		if ok, err := l.replica.CompareAndSet(ctx, s, backend.VersionedData{SeqNo: 0, Data: []byte(s)}); !ok || err != nil {
			t.Fatalf("cas %s = %v, %v", s, ok, err)
		}
	}
	var next *node
	for _, nd := range tc.nodes {
		if nd != l {
			next = nd
			break
		}
	}
	// The hot set reaches the replicated state (sorted), and so the next
	// leader's copy of it.
	for !slices.Equal(next.replica.FSMState().HotShards, shards) {
		if ctx.Err() != nil {
			t.Fatalf("hot shards on %s = %q; want the 40 written", next.id, next.replica.FSMState().HotShards)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := l.replica.TransferLeadership(ctx, next.id); err != nil {
		t.Fatalf("transfer to %s: %v", next.id, err)
	}
	for !next.replica.Ready() {
		if ctx.Err() != nil {
			t.Fatalf("%s never became ready", next.id)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, ok := next.replica.TermCacheStats()
	if !ok || st.Prefetched != 40 || st.Shards != 40 {
		t.Fatalf("new leader's cache = %+v, %v; want the 40 hot shards prefetched and cached", st, ok)
	}
	for _, s := range shards {
		if v, err := next.replica.Head(ctx, s); err != nil || v == nil || string(v.Data) != s {
			t.Fatalf("head %s = %+v, %v", s, v, err)
		}
	}
	after, _ := next.replica.TermCacheStats()
	if hits, misses := after.HeadHits-st.HeadHits, after.HeadMisses-st.HeadMisses; hits != 40 || misses != 0 {
		t.Fatalf("first heads on the new leader: %d hits, %d misses; want 40 hits", hits, misses)
	}
}
