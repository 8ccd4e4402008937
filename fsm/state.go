package fsm

import (
	"maps"
	"slices"
)

// Member is one replica as the cluster knows it.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

// Epoch records that LeaderID became the ready leader in Term; Term is the
// epoch it fenced the backend with.
type Epoch struct {
	Term     uint64 `json:"term"`
	LeaderID string `json:"leader_id"`
}

// Bounds on the replicated state, so that a snapshot stays small whatever the
// workload does.
const (
	MaxEpochs    = 64
	MaxHotShards = 4096
)

// State is a copy of the replicated state; callers may keep and modify it.
type State struct {
	// ClusterID names the cluster; set once, by its first ready leader. The
	// backend's fence records it as the database's owner.
	ClusterID string            `json:"cluster_id,omitempty"`
	Members   map[string]Member `json:"members"`
	Epochs    []Epoch           `json:"epochs"`
	HotShards []string          `json:"hot_shards"`
}

func (s State) clone() State {
	return State{
		ClusterID: s.ClusterID,
		Members:   maps.Clone(s.Members),
		Epochs:    slices.Clone(s.Epochs),
		HotShards: slices.Clone(s.HotShards),
	}
}

// LatestEpoch returns the newest recorded epoch, if any.
func (s State) LatestEpoch() (Epoch, bool) {
	if len(s.Epochs) == 0 {
		return Epoch{}, false
	}
	return s.Epochs[len(s.Epochs)-1], true
}
