package metrics_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
)

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

var errLost = errors.New("answer lost after the call reached storage")

// lossyStore decorates a real store: FailNext makes the next write take
// effect and then answer with an indeterminate error; HoldNextHead keeps the
// next Head inside the store call until released.
type lossyStore struct {
	backend.Consensus

	mu       sync.Mutex
	failNext bool
	hold     *holding
}

type holding struct {
	inside  chan struct{}
	release chan struct{}
}

func (s *lossyStore) FailNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = true
}

func (s *lossyStore) HoldNextHead() *holding {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = &holding{inside: make(chan struct{}), release: make(chan struct{})}
	return s.hold
}

func (s *lossyStore) lose(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext && err == nil {
		s.failNext = false
		return backend.NewIndeterminate(errLost)
	}
	return err
}

func (s *lossyStore) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	s.mu.Lock()
	h := s.hold
	s.hold = nil
	s.mu.Unlock()
	if h != nil {
		close(h.inside)
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return s.Consensus.Head(ctx, shard)
}

func (s *lossyStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	ok, err := s.Consensus.CompareAndSet(ctx, shard, v)
	if err = s.lose(err); err != nil {
		return false, err
	}
	return ok, nil
}

func (s *lossyStore) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	res, err := s.Consensus.CompareAndSetMulti(ctx, ops)
	if err = s.lose(err); err != nil {
		return nil, err
	}
	return res, nil
}

// find returns the gathered series of family name whose labels include want.
func find(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			return m
		}
	}
	t.Fatalf("no series %s%v gathered", name, want)
	return nil
}

// histogramCount returns how many observations a histogram series holds.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name, op string) uint64 {
	t.Helper()
	return find(t, reg, name, map[string]string{"op": op}).GetHistogram().GetSampleCount()
}

func gaugeValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	return find(t, reg, name, nil).GetGauge().GetValue()
}
