package workload

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
)

// keyspace hands out keys to worker groups and remembers every key used.
// It is safe for concurrent use.
type keyspace struct {
	writesPerKey int // a group moves on after this many writes on its key
	infosPerKey  int // ... or this many indeterminate writes
	mu           sync.Mutex
	next         int
	groups       []groupKey
	used         map[string]bool
	latest       map[string]uint64 // highest seqno any worker saw per key
	usedInOrder  []string
}

// groupKey is a group's current key and what happened on it.
type groupKey struct {
	key    string
	writes int
	infos  int
}

func newKeyspace(groups, writesPerKey, infosPerKey int) *keyspace {
	ks := &keyspace{writesPerKey: writesPerKey, infosPerKey: infosPerKey, used: map[string]bool{}, latest: map[string]uint64{}}
	ks.groups = make([]groupKey, groups)
	for g := range ks.groups {
		ks.groups[g].key = ks.freshLocked()
	}
	return ks
}

func (ks *keyspace) freshLocked() string {
	k := fmt.Sprintf("k%04d", ks.next)
	ks.next++
	return k
}

// current returns group g's key.
func (ks *keyspace) current(g int) string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.groups[g].key
}

// touch records that keys are about to be used by an operation.
func (ks *keyspace) touch(keys ...string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, k := range keys {
		if !ks.used[k] {
			ks.used[k] = true
			ks.usedInOrder = append(ks.usedInOrder, k)
		}
	}
}

// done counts a write of group g on key; indeterminate says its outcome is
// unknown. The group moves to a fresh key once its key has seen enough of
// either. Reads do not count: they are cheap to check, and a key that lives
// through a fault is what exposes stale reads after it.
func (ks *keyspace) done(g int, key string, indeterminate bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	gk := &ks.groups[g]
	if gk.key != key {
		return // another worker of the group already moved on
	}
	gk.writes++
	if indeterminate {
		gk.infos++
	}
	if gk.writes >= ks.writesPerKey || gk.infos >= ks.infosPerKey {
		*gk = groupKey{key: ks.freshLocked()}
	}
}

// others returns up to n current keys of groups other than g, chosen with
// rng.
func (ks *keyspace) others(g, n int, rng *rand.Rand) []string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	var cands []string
	for i, gk := range ks.groups {
		if i != g {
			cands = append(cands, gk.key)
		}
	}
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	return cands[:min(n, len(cands))]
}

// saw records that key has a version with seqno.
func (ks *keyspace) saw(key string, seqno uint64) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if cur, ok := ks.latest[key]; !ok || seqno > cur {
		ks.latest[key] = seqno
	}
}

// latestOf returns the highest seqno seen on key.
func (ks *keyspace) latestOf(key string) (uint64, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	s, ok := ks.latest[key]
	return s, ok
}

// Used returns every key any operation named, sorted.
func (ks *keyspace) Used() []string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out := slices.Clone(ks.usedInOrder)
	slices.Sort(out)
	return out
}
