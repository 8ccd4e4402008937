package cluster

import (
	"maps"

	"github.com/hashicorp/raft"
)

// RaftLog returns every entry of the replica's Raft log still stored.
func (r *Replica) RaftLog() ([]raft.Log, error) {
	first, err := r.stores.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := r.stores.LastIndex()
	if err != nil {
		return nil, err
	}
	var out []raft.Log
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := r.stores.GetLog(i, &l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// AutopilotKept returns why the leader's autopilot last kept each dead
// member it was not allowed to remove.
func (r *Replica) AutopilotKept() map[string]string {
	r.pilot.mu.Lock()
	defer r.pilot.mu.Unlock()
	out := map[string]string{}
	for id, why := range maps.All(r.pilot.kept) {
		out[string(id)] = why
	}
	return out
}
