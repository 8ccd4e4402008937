package cluster_test

import (
	"testing"
	"time"
)

// BenchmarkReadConfirmation compares the cost of one leadership
// confirmation round on the leader of three in-process replicas over
// loopback TCP: hashicorp/raft's VerifyLeader (unsound: see
// docs/architecture.md §6), a Barrier through the log (sound: it commits an
// entry on a quorum, fsync included), and the term confirmation the read
// gate uses (sound: a quorum answers its term to calls sent after the round
// began).
func BenchmarkReadConfirmation(b *testing.B) {
	tc := startCluster(b, 3)
	l := tc.leader()
	// Every member registers its gRPC address before terms can be asked.
	deadline := time.Now().Add(10 * time.Second)
	for len(l.replica.FSMState().Members) < 3 {
		if time.Now().After(deadline) {
			b.Fatal("members never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ra := l.replica.Raft()
	b.Run("verify-leader", func(b *testing.B) {
		for b.Loop() {
			if err := ra.VerifyLeader().Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("barrier", func(b *testing.B) {
		for b.Loop() {
			if err := ra.Barrier(time.Second).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("term-confirmation", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.replica.ConfirmLeadership(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
