package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hacommit/committer/backend"
)

// reportRate adds operations per second next to ns/op.
func reportRate(b *testing.B, opsPerIteration int) {
	b.ReportMetric(float64(b.N*opsPerIteration)/b.Elapsed().Seconds(), "ops/s")
}

func benchIsolations(b *testing.B, run func(b *testing.B, s *Backend)) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		b.Run(iso.String(), func(b *testing.B) {
			s, _ := newStore(b, Config{Isolation: iso, MaxConns: 16})
			run(b, s)
		})
	}
}

func BenchmarkHead(b *testing.B) {
	s, _ := newStore(b, Config{})
	ctx := context.Background()
	if ok, err := s.CompareAndSet(ctx, "K", vd(0, "value")); err != nil || !ok {
		b.Fatalf("setup: %v %v", ok, err)
	}
	for b.Loop() {
		if h, err := s.Head(ctx, "K"); err != nil || h == nil {
			b.Fatalf("head: %v %v", h, err)
		}
	}
	reportRate(b, 1)
}

func BenchmarkCompareAndSet(b *testing.B) {
	data := make([]byte, 256)
	b.Run("sequential", func(b *testing.B) {
		benchIsolations(b, func(b *testing.B, s *Backend) {
			ctx := context.Background()
			seq := uint64(0)
			for b.Loop() {
				ok, err := s.CompareAndSet(ctx, "K", backend.VersionedData{SeqNo: seq, Data: data})
				if err != nil || !ok {
					b.Fatalf("cas %d: %v %v", seq, ok, err)
				}
				seq++
			}
			reportRate(b, 1)
		})
	})
	b.Run("parallel", func(b *testing.B) {
		benchIsolations(b, func(b *testing.B, s *Backend) {
			ctx := context.Background()
			var shardIDs atomic.Int64
			// 4 x GOMAXPROCS writers, each on its own shard, sharing the
			// fence row: the contention a leader with many clients sees.
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				shard := fmt.Sprintf("shard-%d", shardIDs.Add(1))
				seq := uint64(0)
				for pb.Next() {
					ok, err := s.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: seq, Data: data})
					if err != nil {
						b.Errorf("cas %s %d: %v", shard, seq, err)
						return
					}
					if ok {
						seq++
					}
				}
			})
			reportRate(b, 1)
		})
	})
}

func BenchmarkCompareAndSetMulti64(b *testing.B) {
	const shards = 64
	data := make([]byte, 256)
	benchIsolations(b, func(b *testing.B, s *Backend) {
		ctx := context.Background()
		ops := make([]backend.CASOp, shards)
		for i := range ops {
			ops[i] = backend.CASOp{Shard: fmt.Sprintf("shard-%02d", i), New: backend.VersionedData{Data: data}}
		}
		for b.Loop() {
			got, err := s.CompareAndSetMulti(ctx, ops)
			if err != nil {
				b.Fatalf("multi: %v", err)
			}
			for i := range ops {
				if !got[i] {
					b.Fatalf("multi element %d did not commit", i)
				}
				ops[i].New.SeqNo++
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		reportRate(b, shards)
	})
}
