package bench

import (
	"context"
	"slices"
	"sync"

	"github.com/hacommit/committer/backend"
)

// Memory is a bare in-memory store: served by the committer's own gRPC
// server it is the ceiling of the transport, what a client pays for the
// protocol alone.
type Memory struct {
	mu     sync.Mutex
	shards map[string][]backend.VersionedData
}

var _ backend.Consensus = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{shards: map[string][]backend.VersionedData{}} }

// Head returns the latest version.
func (m *Memory) Head(_ context.Context, shard string) (*backend.VersionedData, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.shards[shard]
	if len(vs) == 0 {
		return nil, nil
	}
	v := vs[len(vs)-1]
	return &v, nil
}

// Scan returns versions from from on.
func (m *Memory) Scan(_ context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []backend.VersionedData
	for _, v := range m.shards[shard] {
		if v.SeqNo >= from && uint64(len(out)) < limit {
			out = append(out, v)
		}
	}
	return out, nil
}

func (m *Memory) casLocked(shard string, v backend.VersionedData) bool {
	vs := m.shards[shard]
	if (len(vs) == 0 && v.SeqNo != 0) || (len(vs) > 0 && vs[len(vs)-1].SeqNo+1 != v.SeqNo) {
		return false
	}
	m.shards[shard] = append(vs, v)
	return true
}

// CompareAndSet appends v if it follows the head.
func (m *Memory) CompareAndSet(_ context.Context, shard string, v backend.VersionedData) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.casLocked(shard, v), nil
}

// CompareAndSetMulti applies each op under one lock.
func (m *Memory) CompareAndSetMulti(_ context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := backend.ValidateCASMulti(ops, 0); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]bool, len(ops))
	for i, op := range ops {
		out[i] = m.casLocked(op.Shard, op.New)
	}
	return out, nil
}

// Truncate deletes versions below seqno.
func (m *Memory) Truncate(_ context.Context, shard string, seqno uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vs := m.shards[shard]
	if len(vs) == 0 || vs[len(vs)-1].SeqNo < seqno {
		return 0, backend.Determinatef("%w: shard %q", backend.ErrTruncateAboveHead, shard)
	}
	i := 0
	for i < len(vs) && vs[i].SeqNo < seqno {
		i++
	}
	m.shards[shard] = slices.Clone(vs[i:])
	return uint64(i), nil
}

// ListKeys lists the shards.
func (m *Memory) ListKeys(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.shards {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}
