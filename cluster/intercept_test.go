package cluster_test

import (
	"context"

	"github.com/hacommit/committer/backend"
)

// interceptingStore runs cas in place of every CompareAndSet of the handles
// a leader writes through (Owned, then AtEpoch), so a test can hold or
// break one write at the backend. Everything else passes through.
type interceptingStore struct {
	backend.Fencer
	cas func(ctx context.Context, inner backend.Fencer, shard string, v backend.VersionedData) (bool, error)
}

func (s *interceptingStore) Owned(owner string) backend.Fencer {
	return &interceptingStore{Fencer: s.Fencer.Owned(owner), cas: s.cas}
}

func (s *interceptingStore) AtEpoch(epoch uint64) backend.Fencer {
	return &interceptingStore{Fencer: s.Fencer.AtEpoch(epoch), cas: s.cas}
}

func (s *interceptingStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	return s.cas(ctx, s.Fencer, shard, v)
}
