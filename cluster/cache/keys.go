package cache

import "slices"

// keySet is the names of the shards the leader knows to exist, kept so that
// ListKeys need not read every row of the store (docs/architecture.md §3,
// ListKeys). A shard, once written, has a version forever (a truncate never
// removes the head), so names only grow. Cache.mu guards it.
//
// What the cache learns about existence: every operation that saw a version
// (or, for a truncate, proved one) shows the shard exists; a CaS of seqno 0
// refused by the store shows the same; a write that failed determinate did
// nothing; a write that failed indeterminate leaves the shard unsure until
// some later operation shows it exists. After a read of the store's whole
// list, names hold every shard except those whose writes are in flight or
// unsure, because every write since the new leader fenced the store goes
// through this cache and ends in one of those outcomes.
type keySet struct {
	max   int
	names map[string]struct{}
	// sorted holds names in order, nil until a ListKeys needs it.
	sorted []string
	// complete: a read of the store's whole list has been folded in.
	complete bool
	// doubtful holds the shards whose write ended indeterminate and that
	// nothing since showed to exist.
	doubtful map[string]struct{}
	// off: the bound was reached, or max < 0; nothing is kept.
	off bool
}

func newKeySet(max int) keySet {
	return keySet{max: max, names: map[string]struct{}{}, doubtful: map[string]struct{}{}, off: max < 0}
}

// exists records that shard has a version.
func (k *keySet) exists(shard string) {
	if k.off {
		return
	}
	delete(k.doubtful, shard)
	if _, ok := k.names[shard]; ok || !k.room() {
		return
	}
	k.names[shard] = struct{}{}
	if k.sorted != nil {
		i, _ := slices.BinarySearch(k.sorted, shard)
		k.sorted = slices.Insert(k.sorted, i, shard)
	}
}

// unsure records that a write on shard may or may not have taken effect.
func (k *keySet) unsure(shard string) {
	if k.off {
		return
	}
	if _, ok := k.names[shard]; ok || !k.room() {
		return
	}
	k.doubtful[shard] = struct{}{}
}

// room reports whether one more name fits, and gives up keeping names
// when it does not.
func (k *keySet) room() bool {
	if len(k.names)+len(k.doubtful) < k.max {
		return true
	}
	k.stop()
	return false
}

// stop gives up keeping names, for the rest of the cache's life.
func (k *keySet) stop() {
	*k = keySet{off: true}
}

// listed folds in a read of the store's whole list.
func (k *keySet) listed(keys []string) {
	for _, s := range keys {
		k.exists(s)
	}
	if !k.off {
		k.complete = true
	}
}

// list returns every shard of the store, sorted, when the names prove it:
// they are complete, nothing is unsure, and no operation is in flight on a
// shard they do not hold (a write that may already have created it).
func (k *keySet) list(flights map[string]*flight) ([]string, bool) {
	if k.off || !k.complete || len(k.doubtful) > 0 {
		return nil, false
	}
	for shard := range flights {
		if _, ok := k.names[shard]; !ok {
			return nil, false
		}
	}
	if k.sorted == nil {
		k.sorted = make([]string, 0, len(k.names))
		for s := range k.names {
			k.sorted = append(k.sorted, s)
		}
		slices.Sort(k.sorted)
	}
	return slices.Clone(k.sorted), true
}
