package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// snapshotVersion is written into every snapshot; Restore reads every version
// up to it.
const snapshotVersion = 1

type snapshotFile struct {
	Version int   `json:"version"`
	State   State `json:"state"`
}

// FSM implements raft.FSM. Apply runs on Raft's goroutine; the accessors may
// be called from any goroutine.
type FSM struct {
	mu      sync.RWMutex
	state   State
	changed chan struct{} // closed and replaced on every change
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM.
func New() *FSM {
	return &FSM{
		state:   State{Members: map[string]Member{}},
		changed: make(chan struct{}),
	}
}

// ApplyResult is what Apply returns through raft.ApplyFuture.Response.
type ApplyResult struct {
	Err error
}

// Apply applies one committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return ApplyResult{}
	}
	c, err := Decode(l.Data)
	if err != nil {
		// A command this replica cannot read is skipped, never half-applied;
		// the proposer sees the error through the future.
		return ApplyResult{Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Op {
	case OpSetMember:
		f.state.Members[c.Member.ID] = *c.Member
	case OpRemoveMember:
		delete(f.state.Members, c.MemberID)
	case OpRetainMembers:
		for id := range f.state.Members {
			if !slices.Contains(c.MemberIDs, id) {
				delete(f.state.Members, id)
			}
		}
	case OpRecordEpoch:
		f.state.Epochs = append(f.state.Epochs, *c.Epoch)
		if n := len(f.state.Epochs); n > MaxEpochs {
			f.state.Epochs = slices.Clone(f.state.Epochs[n-MaxEpochs:])
		}
	case OpSetClusterID:
		if f.state.ClusterID == "" {
			f.state.ClusterID = c.ClusterID
		}
	case OpSetHotShards:
		hs := c.HotShards
		if len(hs) > MaxHotShards {
			hs = hs[:MaxHotShards]
		}
		f.state.HotShards = slices.Clone(hs)
	}
	f.notifyLocked()
	return ApplyResult{}
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// State returns a copy of the current state.
func (f *FSM) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone()
}

// Member returns one member's record.
func (f *FSM) Member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.Members[id]
	return m, ok
}

// Changed returns a channel closed at the next change of the state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Snapshot captures the state; Persist runs later without the lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{state: f.State()}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var sf snapshotFile
	if err := json.NewDecoder(rc).Decode(&sf); err != nil {
		return fmt.Errorf("fsm: decoding snapshot: %w", err)
	}
	if sf.Version < 1 || sf.Version > snapshotVersion {
		return fmt.Errorf("fsm: snapshot version %d: %w", sf.Version, ErrUnsupportedVersion)
	}
	if sf.State.Members == nil {
		sf.State.Members = map[string]Member{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = sf.State
	f.notifyLocked()
	return nil
}

type snapshot struct{ state State }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(snapshotFile{Version: snapshotVersion, State: s.state})
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
