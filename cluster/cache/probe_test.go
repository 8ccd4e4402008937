package cache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
)

// Operation names used to count, park and fail calls on the store.
const (
	opHead     = "head"
	opScan     = "scan"
	opCAS      = "compare_and_set"
	opMulti    = "compare_and_set_multi"
	opTruncate = "truncate"
	opListKeys = "list_keys"
)

// errInjected marks an answer the probe replaced after the real call.
var errInjected = errors.New("injected fault: the call reached storage, then its answer was lost")

// probedStore decorates a real store: it counts calls per operation, can hold
// a call after the store answered it (so a test can force an interleaving),
// and can replace an answer with an indeterminate error after the real call
// took effect, which is exactly what a lost connection does to a commit.
type probedStore struct {
	inner backend.Consensus

	mu        sync.Mutex
	calls     map[string]int
	parked    map[string]*parking
	faults    map[string]int
	lastMulti []backend.CASOp
	lastErr   error
}

// parking holds one call between the store's answer and the caller.
type parking struct {
	arrived chan struct{} // closed when the call has its answer and waits
	release chan struct{} // closed by the test to let it return
}

var _ backend.Consensus = (*probedStore)(nil)

func newProbe(inner backend.Consensus) *probedStore {
	return &probedStore{inner: inner, calls: map[string]int{}, parked: map[string]*parking{}, faults: map[string]int{}}
}

// Calls returns how many calls of op reached the store.
func (p *probedStore) Calls(op string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[op]
}

// LastMulti returns the ops of the latest multi-CaS that reached the store.
func (p *probedStore) LastMulti() []backend.CASOp {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastMulti
}

// LastErr returns the error the probe most recently handed back.
func (p *probedStore) LastErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// ParkNext holds the next call of op once the store has answered it.
func (p *probedStore) ParkNext(op string) *parking {
	p.mu.Lock()
	defer p.mu.Unlock()
	pk := &parking{arrived: make(chan struct{}), release: make(chan struct{})}
	p.parked[op] = pk
	return pk
}

// FailNext makes the next call of op take effect and then answer with an
// indeterminate error.
func (p *probedStore) FailNext(op string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[op]++
}

func (p *probedStore) before(op string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[op]++
}

func (p *probedStore) after(ctx context.Context, op string, err error) error {
	p.mu.Lock()
	pk := p.parked[op]
	delete(p.parked, op)
	if p.faults[op] > 0 && err == nil {
		p.faults[op]--
		err = backend.Indeterminatef("%s: %w", op, errInjected)
	}
	p.lastErr = err
	p.mu.Unlock()
	if pk != nil {
		close(pk.arrived)
		select {
		case <-pk.release:
		case <-ctx.Done():
		}
	}
	return err
}

func (p *probedStore) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	p.before(opHead)
	v, err := p.inner.Head(ctx, shard)
	if err = p.after(ctx, opHead, err); err != nil {
		return nil, err
	}
	return v, nil
}

func (p *probedStore) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	p.before(opScan)
	vs, err := p.inner.Scan(ctx, shard, from, limit)
	if err = p.after(ctx, opScan, err); err != nil {
		return nil, err
	}
	return vs, nil
}

func (p *probedStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	p.before(opCAS)
	ok, err := p.inner.CompareAndSet(ctx, shard, v)
	if err = p.after(ctx, opCAS, err); err != nil {
		return false, err
	}
	return ok, nil
}

func (p *probedStore) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	p.before(opMulti)
	p.mu.Lock()
	p.lastMulti = append([]backend.CASOp(nil), ops...)
	p.mu.Unlock()
	res, err := p.inner.CompareAndSetMulti(ctx, ops)
	if err = p.after(ctx, opMulti, err); err != nil {
		return nil, err
	}
	return res, nil
}

func (p *probedStore) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	p.before(opTruncate)
	n, err := p.inner.Truncate(ctx, shard, seqno)
	if err = p.after(ctx, opTruncate, err); err != nil {
		return 0, err
	}
	return n, nil
}

func (p *probedStore) ListKeys(ctx context.Context) ([]string, error) {
	p.before(opListKeys)
	keys, err := p.inner.ListKeys(ctx)
	if err = p.after(ctx, opListKeys, err); err != nil {
		return nil, err
	}
	return keys, nil
}

// openBolt opens a fresh bolt store in the test's temp dir, closed at cleanup.
func openBolt(t testing.TB) *bolt.Backend {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consensus.db")
	s, err := bolt.Open(path, bolt.Options{
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return s
}

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

func describe(v *backend.VersionedData) string {
	if v == nil {
		return "none"
	}
	if len(v.Data) > 24 {
		return fmt.Sprintf("{%d, %q...(%d bytes)}", v.SeqNo, v.Data[:24], len(v.Data))
	}
	return fmt.Sprintf("{%d, %q}", v.SeqNo, v.Data)
}
