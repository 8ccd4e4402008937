package cluster

import (
	"slices"
	"time"

	"github.com/hacommit/committer/fsm"
)

// Defaults for recording the hot shards a new leader prefetches
// (docs/architecture.md §5.4, step 5): every ten seconds at most one Raft entry of
// at most 1024 names, so the log grows by a few KiB a minute at most.
const (
	DefaultHotShardInterval = 10 * time.Second
	DefaultHotShards        = 1024
)

// recordHotShards replicates, while this replica is the ready leader, the
// shards its cache used most recently, so that the next leader can prefetch
// them right after fencing. The list is recorded sorted and only when it
// changed.
func (r *Replica) recordHotShards() {
	defer r.wg.Done()
	interval, n := r.cfg.HotShardInterval, r.cfg.HotShards
	if interval < 0 || n <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		lt := r.leader.Load()
		if lt == nil {
			continue
		}
		hot := lt.cache.HotShards(min(n, fsm.MaxHotShards))
		slices.Sort(hot)
		if slices.Equal(hot, r.fsm.State().HotShards) {
			continue
		}
		if err := r.raft.Apply(fsm.SetHotShards(hot), raftOpTimeout).Error(); err != nil {
			r.log.Debug("recording the hot shards failed", "shards", len(hot), "err", err)
		}
	}
}

// reportWarmup tells how well the cache of a term that just became ready
// was warmed by the prefetch: the share of Head calls answered from the
// cache in the first second and the first five seconds, as a log line and
// a gauge.
func (r *Replica) reportWarmup(lt *leaderTerm) {
	defer r.wg.Done()
	start := lt.cache.Stats()
	began := time.Now()
	for _, window := range []time.Duration{time.Second, 5 * time.Second} {
		t := time.NewTimer(time.Until(began.Add(window)))
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if r.leader.Load() != lt {
			return // the term ended: its figures would mix with the next's
		}
		now := lt.cache.Stats()
		hits, misses := now.HeadHits-start.HeadHits, now.HeadMisses-start.HeadMisses
		if hits+misses == 0 {
			continue
		}
		ratio := float64(hits) / float64(hits+misses)
		if m := r.cfg.Metrics; m != nil {
			m.SetWarmupHitRatio(window, ratio)
		}
		r.log.Info("cache warm-up", "term", lt.term, "window", window, "head_hit_ratio", ratio,
			"heads", hits+misses, "prefetched", start.Prefetched)
	}
}
