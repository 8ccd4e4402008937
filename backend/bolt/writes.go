package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hacommit/committer/backend"
)

// CompareAndSet appends v to shard iff v.SeqNo directly follows the head.
func (b *Backend) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := backend.ValidateCAS(shard, v, b.st.maxData); err != nil {
		return false, err
	}
	if err := validateShardName(shard); err != nil {
		return false, err
	}
	// bbolt keeps a reference to a Put value until the transaction ends; the
	// caller may stop waiting (context) and reuse its buffer before then.
	v.Data = bytes.Clone(v.Data)
	var committed bool
	var refused error
	err := b.st.submit(ctx, func(tx *bbolt.Tx) (bool, error) {
		committed, refused = false, nil
		var fault error
		if refused, fault = b.checkEpoch(tx); refused != nil || fault != nil {
			return false, fault
		}
		var err error
		committed, err = casInTx(tx, shard, v)
		return committed, err
	})
	if err != nil {
		return false, err
	}
	return committed, refused
}

// CompareAndSetMulti decides every op in one transaction.
func (b *Backend) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := backend.ValidateCASMulti(ops, b.st.maxData); err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return []bool{}, nil
	}
	own := make([]backend.CASOp, len(ops))
	for i, op := range ops {
		if err := validateShardName(op.Shard); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		own[i] = backend.CASOp{Shard: op.Shard, New: backend.VersionedData{SeqNo: op.New.SeqNo, Data: bytes.Clone(op.New.Data)}}
	}
	committed := make([]bool, len(own))
	var refused error
	err := b.st.submit(ctx, func(tx *bbolt.Tx) (bool, error) {
		clear(committed)
		var fault error
		if refused, fault = b.checkEpoch(tx); refused != nil || fault != nil {
			return false, fault
		}
		changed := false
		for i, op := range own {
			ok, err := casInTx(tx, op.Shard, op.New)
			if err != nil {
				return false, err
			}
			committed[i] = ok
			changed = changed || ok
		}
		return changed, nil
	})
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return nil, refused
	}
	return committed, nil
}

// Truncate deletes the shard's versions below seqno.
func (b *Backend) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	if err := backend.ValidateTruncate(shard, seqno); err != nil {
		return 0, err
	}
	var deleted uint64
	var refused error
	err := b.st.submit(ctx, func(tx *bbolt.Tx) (bool, error) {
		deleted, refused = 0, nil
		var fault error
		if refused, fault = b.checkEpoch(tx); refused != nil || fault != nil {
			return false, fault
		}
		bucket := tx.Bucket(shardsBucket).Bucket([]byte(shard))
		var head []byte
		if bucket != nil {
			head, _ = bucket.Cursor().Last()
		}
		if head == nil {
			refused = backend.Determinatef("%w: shard %q is empty", backend.ErrTruncateAboveHead, shard)
			return false, nil
		}
		headSeqNo, err := decodeSeqNo(shard, head)
		if err != nil {
			return false, err
		}
		if seqno > headSeqNo {
			refused = backend.Determinatef("%w: truncate %q to %d, head is %d", backend.ErrTruncateAboveHead, shard, seqno, headSeqNo)
			return false, nil
		}
		// Collect first, delete after: deleting under a live cursor makes
		// bbolt's Next skip keys.
		var doomed [][]byte
		c := bucket.Cursor()
		limit := encodeSeqNo(seqno)
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.Next() {
			doomed = append(doomed, bytes.Clone(k))
		}
		for _, k := range doomed {
			if err := bucket.Delete(k); err != nil {
				return false, err
			}
		}
		deleted = uint64(len(doomed))
		return deleted > 0, nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, refused
}

// Fence raises the stored epoch to epoch for the handle's owner; a higher
// stored epoch, or another owner, refuses it (see backend.Fencer). An
// unowned store is claimed.
func (b *Backend) Fence(ctx context.Context, epoch uint64) error {
	var previous fence
	var refused error
	err := b.st.submit(ctx, func(tx *bbolt.Tx) (bool, error) {
		refused = nil
		var err error
		if previous, err = readFence(tx); err != nil {
			return false, err
		}
		switch {
		case previous.owner != "" && previous.owner != b.owner:
			refused = backend.Determinatef("%w: the store belongs to cluster %s (epoch %d); this cluster is %s; to take it over, stop that cluster and run `committer fence adopt --force`",
				backend.ErrForeignOwner, previous.owner, previous.epoch, ownerName(b.owner))
			return false, nil
		case previous.epoch > epoch:
			refused = backend.Determinatef("%w: cannot fence at epoch %d, the store is at epoch %d", backend.ErrFenced, epoch, previous.epoch)
			return false, nil
		case previous.epoch == epoch && previous.owner == b.owner:
			return false, nil
		}
		return true, writeFence(tx, fence{owner: b.owner, epoch: epoch, at: time.Now()})
	})
	switch {
	case err != nil:
		return err
	case refused != nil:
		b.st.log.Warn("fence refused", "epoch", epoch, "owner", b.owner, "stored_epoch", previous.epoch, "stored_owner", previous.owner)
		return refused
	case previous.epoch < epoch || previous.owner != b.owner:
		b.st.log.Info("fenced", "epoch", epoch, "owner", b.owner, "previous_epoch", previous.epoch)
	}
	return nil
}

// Adopt makes the handle's owner the owner of the fence at epoch, whoever
// owned it.
func (b *Backend) Adopt(ctx context.Context, epoch uint64) error {
	if b.owner == "" {
		return backend.Determinatef("%w: adopting a store needs an owner", backend.ErrInvalidArgument)
	}
	err := b.st.submit(ctx, func(tx *bbolt.Tx) (bool, error) {
		return true, writeFence(tx, fence{owner: b.owner, epoch: epoch, at: time.Now()})
	})
	if err == nil {
		b.st.log.Warn("fence adopted", "owner", b.owner, "epoch", epoch)
	}
	return err
}

// FenceState reads the stored fence.
func (b *Backend) FenceState(ctx context.Context) (backend.FenceState, error) {
	var st backend.FenceState
	err := b.st.view(ctx, func(tx *bbolt.Tx) error {
		f, err := readFence(tx)
		st = backend.FenceState{Owner: f.owner, Epoch: f.epoch, FencedAt: f.at}
		return err
	})
	return st, err
}

// checkEpoch runs inside every write transaction, so that a Fence committed
// before the write is seen by it, and a Fence committed after it is ordered
// after it. refused is the caller's determinate fenced error; fault is a
// storage fault that aborts the transaction.
func (b *Backend) checkEpoch(tx *bbolt.Tx) (refused, fault error) {
	stored, err := readFence(tx)
	if err != nil {
		return nil, err
	}
	if stored.owner != b.owner {
		return backend.Determinatef("%w: the store belongs to %s, this handle writes for %s", backend.ErrFenced, ownerName(stored.owner), ownerName(b.owner)), nil
	}
	if stored.epoch != b.epoch {
		return backend.Determinatef("%w: handle epoch %d, store epoch %d", backend.ErrFenced, b.epoch, stored.epoch), nil
	}
	return nil, nil
}

// casInTx appends v to shard iff v.SeqNo follows the head (or is 0 on an
// empty shard). The shard's bucket is created only when the write commits, so
// a mismatched CaS leaves no key behind.
func casInTx(tx *bbolt.Tx, shard string, v backend.VersionedData) (bool, error) {
	shards := tx.Bucket(shardsBucket)
	bucket := shards.Bucket([]byte(shard))
	var want uint64 // the seqno that commits
	if bucket != nil {
		if head, _ := bucket.Cursor().Last(); head != nil {
			headSeqNo, err := decodeSeqNo(shard, head)
			if err != nil {
				return false, err
			}
			want = headSeqNo + 1
		}
	}
	if v.SeqNo != want {
		return false, nil
	}
	if bucket == nil {
		var err error
		if bucket, err = shards.CreateBucket([]byte(shard)); err != nil {
			return false, err
		}
	}
	if err := bucket.Put(encodeSeqNo(v.SeqNo), v.Data); err != nil {
		return false, err
	}
	return true, nil
}

// validateShardName enforces bbolt's key limit on shard names, which become
// bucket names (bbolt checks it for keys but not for bucket names).
func validateShardName(shard string) error {
	if len(shard) > bbolt.MaxKeySize {
		return backend.Determinatef("%w: shard name of %d bytes exceeds the limit of %d bytes", backend.ErrInvalidArgument, len(shard), bbolt.MaxKeySize)
	}
	return nil
}
