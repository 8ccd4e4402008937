package checker

import (
	"fmt"
	"testing"

	"github.com/hacommit/committer/jepsen/history"
)

// write is version 0 of the shard at slot, holding data.
type write = struct {
	slot int
	data string
}

// stateOf applies writes in order to the initial state.
func stateOf(g *keyGroup, writes ...write) *groupState {
	s := &groupState{}
	for _, w := range writes {
		s = s.with(g, w.slot, appendVersion(s.shard(w.slot), 0, w.data))
	}
	return s
}

// A partition of more keys than a leaf holds keeps its shards in a trie
// with inner nodes: reads find what was written, states that hold the same
// shards are equal with equal hashes whatever order they were written in,
// and states that differ in one shard, or hold two shards swapped, are not.
func TestGroupStateOfManyKeys(t *testing.T) {
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	g := newKeyGroup(keys)
	if g.height != 1 {
		t.Fatalf("height %d for %d keys; want 1", g.height, len(keys))
	}
	forward := stateOf(g, write{3, "x"}, write{17, "y"}, write{39, "z"})
	backward := stateOf(g, write{39, "z"}, write{17, "y"}, write{3, "x"})
	for slot, want := range map[int]string{3: "x", 17: "y", 39: "z"} {
		if got := forward.shard(slot); got.top == nil || got.top.data != want {
			t.Fatalf("slot %d holds %+v; want %q", slot, got, want)
		}
	}
	if got := forward.shard(16); got.top != nil {
		t.Fatalf("slot 16 holds %+v; want empty", got)
	}
	if !equalStates(forward, backward) || forward.hash != backward.hash {
		t.Fatalf("same shards written in another order: equal %t, hashes %x %x", equalStates(forward, backward), forward.hash, backward.hash)
	}
	for name, other := range map[string]*groupState{
		"one shard's data":   stateOf(g, write{3, "x"}, write{17, "other"}, write{39, "z"}),
		"two shards swapped": stateOf(g, write{3, "y"}, write{17, "x"}, write{39, "z"}),
		"a shard fewer":      stateOf(g, write{3, "x"}, write{17, "y"}),
	} {
		if equalStates(forward, other) {
			t.Errorf("%s: states equal", name)
		}
		if forward.hash == other.hash {
			t.Errorf("%s: hashes equal", name)
		}
	}
	if initial := (&groupState{}); !equalStates(initial, &groupState{}) || equalStates(initial, forward) || initial.hash != 0 {
		t.Fatalf("initial states: equal %t, equal to a written one %t, hash %x", equalStates(initial, &groupState{}), equalStates(initial, forward), initial.hash)
	}
}

// A key of its own costs a leaf of one shard, and a step that changes
// nothing returns its state itself.
func TestGroupStateOfOneKey(t *testing.T) {
	g := newKeyGroup([]string{"k"})
	s := stateOf(g, write{0, "a"})
	if g.height != 0 || len(s.root.shards) != 1 || s.root.children != nil {
		t.Fatalf("height %d, leaf of %d shards, %d children; want 0, 1, 0", g.height, len(s.root.shards), len(s.root.children))
	}
	read := modelInput{group: g, kind: kindHead, key: "k"}
	ok, next := step(s, read, modelOutput{head: &history.Version{SeqNo: 0, Data: "a"}})
	if !ok || next != s {
		t.Fatalf("head of the written version: ok %t, same state %t; want true, true", ok, next == s)
	}
	mismatch := modelInput{group: g, kind: kindCAS, key: "k", seqno: 5, data: "b"}
	if ok, next := step(s, mismatch, modelOutput{}); !ok || next != s {
		t.Fatalf("mismatching cas: ok %t, same state %t; want true, true", ok, next == s)
	}
}
