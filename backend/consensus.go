package backend

import (
	"context"
	"math"
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

// Fencer is a storage Consensus whose writes can be bound to a leadership
// epoch, so that a deposed leader cannot write after its successor fenced.
type Fencer interface {
	Consensus
	// Fence raises the stored epoch to epoch. It fails with ErrFenced if a
	// higher epoch is already stored; fencing with the stored epoch succeeds.
	Fence(ctx context.Context, epoch uint64) error
	// AtEpoch returns a handle on the same store whose every write (CaS,
	// multi-CaS, truncate) checks, atomically with the write, that the stored
	// epoch equals epoch, and otherwise writes nothing and fails with
	// ErrFenced. A handle that was never bound writes at epoch 0.
	AtEpoch(epoch uint64) Fencer
	// Close releases the store's resources. Handles share them: close once.
	Close() error
}
