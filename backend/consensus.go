package backend

import (
	"context"
	"math"
	"time"
)

// MaxSeqNo is the largest sequence number a version may carry. Persist stores
// seqnos in a signed 64-bit column, so the top bit is never used.
const MaxSeqNo uint64 = math.MaxInt64

// DefaultMaxDataBytes bounds the payload of one version unless a backend is
// configured otherwise. It sits well below the 256 MiB gRPC message limit so a
// full multi-CaS of a few large values still fits in one message.
const DefaultMaxDataBytes = 128 << 20

// VersionedData is one version of a shard's state.
type VersionedData struct {
	SeqNo uint64
	Data  []byte
}

// CASOp is one element of a CompareAndSetMulti call.
type CASOp struct {
	Shard string
	New   VersionedData
}

// Consensus is the persist consensus API.
//
// CompareAndSet commits New iff the shard's latest seqno is New.SeqNo-1, or the
// shard has no version and New.SeqNo is 0. A mismatch is reported as
// committed=false with a nil error. A shard's latest seqno never decreases.
//
// Errors are classified with IsDeterminate: a determinate error guarantees the
// call had no effect; any other error may or may not have taken effect.
type Consensus interface {
	// Head returns the latest version of shard, or nil if it has none.
	Head(ctx context.Context, shard string) (*VersionedData, error)
	// Scan returns the versions with seqno >= from in ascending order, at most
	// limit of them. A limit above MaxSeqNo means no limit.
	Scan(ctx context.Context, shard string, from, limit uint64) ([]VersionedData, error)
	// CompareAndSet appends v to shard if its seqno directly follows the head.
	CompareAndSet(ctx context.Context, shard string, v VersionedData) (committed bool, err error)
	// CompareAndSetMulti applies several CompareAndSets on distinct shards
	// atomically: either every element's outcome is decided together, or the
	// call fails as a whole. The result has one entry per op, in order.
	CompareAndSetMulti(ctx context.Context, ops []CASOp) (committed []bool, err error)
	// Truncate deletes the versions with seqno below seqno. It fails with
	// ErrTruncateAboveHead if the shard is empty or seqno is above its head, and
	// is idempotent otherwise. It returns how many versions it deleted.
	Truncate(ctx context.Context, shard string, seqno uint64) (deleted uint64, err error)
	// ListKeys returns every shard that has ever been written, sorted.
	ListKeys(ctx context.Context) ([]string, error)
}

// BulkHeader is the optional bulk read of a store: the heads of many shards
// in one round trip, as a new leader's prefetch needs them. The result has
// one entry per shard, in order, nil for a shard without a version. It
// reads like Head: one snapshot, and on a handle bound to an epoch in the
// same transaction as the fence row.
type BulkHeader interface {
	HeadMany(ctx context.Context, shards []string) ([]*VersionedData, error)
}

// HeadMany reads the heads of shards from store in one call when it is a
// BulkHeader, one Head at a time otherwise.
func HeadMany(ctx context.Context, store Consensus, shards []string) ([]*VersionedData, error) {
	if b, ok := store.(BulkHeader); ok {
		return b.HeadMany(ctx, shards)
	}
	out := make([]*VersionedData, len(shards))
	for i, s := range shards {
		v, err := store.Head(ctx, s)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Fencer is a storage Consensus whose writes can be bound to a leadership
// epoch of one owning cluster, so that a deposed leader cannot write after
// its successor fenced, and a cluster that does not own the database cannot
// write it at all (docs/architecture.md §5).
//
// A handle acts for an owner (Owned; empty: unowned) at an epoch (AtEpoch).
// The store's fence names its owner (empty while unowned) and epoch.
type Fencer interface {
	Consensus
	// Fence raises the stored epoch to epoch for the handle's owner. It
	// fails with ErrFenced if a higher epoch is stored, with
	// ErrForeignOwner if another owner holds the fence, and with
	// ErrFenceLost if the fence vanished; an unowned fence is claimed.
	// Fencing with the stored epoch succeeds.
	Fence(ctx context.Context, epoch uint64) error
	// AtEpoch returns a handle on the same store, for the same owner, whose
	// every write (CaS, multi-CaS, truncate) checks, atomically with the
	// write, that the stored owner and epoch equal the handle's, and
	// otherwise writes nothing and fails with ErrFenced (ErrFenceLost if
	// the fence vanished). A handle that was never bound writes at epoch 0.
	AtEpoch(epoch uint64) Fencer
	// Owned returns a handle on the same store acting for owner, at epoch
	// 0 until bound with AtEpoch.
	Owned(owner string) Fencer
	// FenceState reports the stored fence.
	FenceState(ctx context.Context) (FenceState, error)
	// Adopt makes the handle's owner the owner of the fence at epoch,
	// whoever owned it, and recreates a lost fence: an operator's explicit
	// takeover, never a leader's own decision.
	Adopt(ctx context.Context, epoch uint64) error
	// Close releases the store's resources. Handles share them: close once.
	Close() error
}

// FenceState is the stored fence.
type FenceState struct {
	// Lost: the fence vanished from a store that had one (see ErrFenceLost).
	Lost bool
	// Owner is the owning cluster's id; empty while unowned.
	Owner string
	// Epoch is the stored epoch.
	Epoch uint64
	// FencedAt is when the fence last changed, by the store's clock; zero
	// if never fenced.
	FencedAt time.Time
}
