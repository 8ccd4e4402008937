package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/hacommit/committer/backend"
)

// ErrClosed: the store was closed; the call never reached the file.
var ErrClosed = errors.New("bolt store closed")

// ErrFormat: the file was written by an incompatible version of this package.
var ErrFormat = errors.New("unsupported bolt file format")

const (
	// defaultLockTimeout bounds the wait for the file lock, so that a second
	// process opening the same file fails instead of hanging.
	defaultLockTimeout = 10 * time.Second
	formatVersion      = "1"
)

var (
	shardsBucket = []byte("shards")
	metaBucket   = []byte("meta")
	epochKey     = []byte("fence_epoch")
	ownerKey     = []byte("fence_owner")
	fencedAtKey  = []byte("fence_at")
	formatKey    = []byte("format")
)

// Options configures Open. The zero value is usable.
type Options struct {
	// MaxDataBytes bounds one version's data; <= 0 means
	// backend.DefaultMaxDataBytes.
	MaxDataBytes int
	// Logger receives open, fence and storage-fault events; nil means
	// slog.Default().
	Logger *slog.Logger
	// LockTimeout bounds the wait for the file lock another process holds;
	// <= 0 means 10s.
	LockTimeout time.Duration
	// MaxFileBytes caps the file's size; a write that would grow it further
	// fails determinately. <= 0 means no cap.
	MaxFileBytes int
}

// Backend is a handle on an open bolt store, bound to one fence epoch. All
// handles from AtEpoch share the file and its commit loop.
type Backend struct {
	st    *store
	owner string
	epoch uint64
}

var _ backend.Fencer = (*Backend)(nil)

// store is what every handle shares.
type store struct {
	db      *bbolt.DB
	path    string
	maxData int
	log     *slog.Logger

	// writes is unbuffered: a write is either received by the commit loop,
	// which then always answers it, or never reaches the file.
	writes   chan *write
	closing  chan struct{} // closed by Close: stops the commit loop
	loopDone chan struct{} // closed by the commit loop when it exits

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the store at path. The returned handle writes at
// epoch 0.
func Open(path string, opts Options) (*Backend, error) {
	maxData := opts.MaxDataBytes
	if maxData <= 0 {
		maxData = backend.DefaultMaxDataBytes
	}
	if maxData > bbolt.MaxValueSize {
		return nil, fmt.Errorf("bolt: MaxDataBytes %d exceeds bbolt's value limit of %d bytes", maxData, bbolt.MaxValueSize)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	lockTimeout := opts.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = defaultLockTimeout
	}

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: lockTimeout,
		// The hashmap freelist and an unsynced freelist are what etcd runs:
		// commits write less, and Open rebuilds the freelist by a scan.
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
		MaxSize:        opts.MaxFileBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	var epoch uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(shardsBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch format := meta.Get(formatKey); {
		case format == nil:
			if err := meta.Put(formatKey, []byte(formatVersion)); err != nil {
				return err
			}
		case string(format) != formatVersion:
			return fmt.Errorf("%w: file has format %q, this build reads %q", ErrFormat, format, formatVersion)
		}
		f, err := readFence(tx)
		epoch = f.epoch
		return err
	})
	if err != nil {
		_ = db.Close() // the initialization error is the one worth reporting
		return nil, fmt.Errorf("bolt: initialize %s: %w", path, err)
	}

	st := &store{
		db:       db,
		path:     path,
		maxData:  maxData,
		log:      log.With("backend", "bolt", "path", path),
		writes:   make(chan *write),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go st.commitLoop()
	st.log.Info("opened consensus store", "fence_epoch", epoch, "max_data_bytes", maxData)
	return &Backend{st: st}, nil
}

// AtEpoch returns a handle on the same store, for the same owner, whose
// writes require the stored fence owner and epoch to equal the handle's.
func (b *Backend) AtEpoch(epoch uint64) backend.Fencer {
	return &Backend{st: b.st, owner: b.owner, epoch: epoch}
}

// Owned returns a handle on the same store acting for owner, at epoch 0.
func (b *Backend) Owned(owner string) backend.Fencer {
	return &Backend{st: b.st, owner: owner}
}

// Close stops the commit loop, after it answered every write it accepted,
// and closes the file. It is safe to call more than once, from any handle.
func (b *Backend) Close() error {
	st := b.st
	st.closeOnce.Do(func() {
		close(st.closing)
		<-st.loopDone
		if err := st.db.Close(); err != nil {
			st.closeErr = fmt.Errorf("bolt: close %s: %w", st.path, err)
			return
		}
		st.log.Info("closed consensus store")
	})
	return st.closeErr
}

// Head returns the shard's latest version, or nil.
func (b *Backend) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	if err := backend.ValidateShard(shard); err != nil {
		return nil, err
	}
	var head *backend.VersionedData
	err := b.st.view(ctx, func(tx *bbolt.Tx) error {
		head = nil
		bucket := tx.Bucket(shardsBucket).Bucket([]byte(shard))
		if bucket == nil {
			return nil
		}
		k, v := bucket.Cursor().Last()
		if k == nil {
			return nil
		}
		seqno, err := decodeSeqNo(shard, k)
		if err != nil {
			return err
		}
		head = &backend.VersionedData{SeqNo: seqno, Data: copyData(v)}
		return nil
	})
	if err != nil {
		return nil, readError("head", shard, err)
	}
	return head, nil
}

// Scan returns up to limit versions with seqno >= from, ascending.
func (b *Backend) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := backend.ValidateScan(shard, from); err != nil {
		return nil, err
	}
	maxRows := backend.ClampLimit(limit)
	if maxRows == 0 {
		if err := ctx.Err(); err != nil {
			return nil, backend.NewDeterminate(err)
		}
		return nil, nil
	}
	var out []backend.VersionedData
	err := b.st.view(ctx, func(tx *bbolt.Tx) error {
		out = nil
		bucket := tx.Bucket(shardsBucket).Bucket([]byte(shard))
		if bucket == nil {
			return nil
		}
		c := bucket.Cursor()
		for k, v := c.Seek(encodeSeqNo(from)); k != nil && int64(len(out)) < maxRows; k, v = c.Next() {
			seqno, err := decodeSeqNo(shard, k)
			if err != nil {
				return err
			}
			out = append(out, backend.VersionedData{SeqNo: seqno, Data: copyData(v)})
		}
		return nil
	})
	if err != nil {
		return nil, readError("scan", shard, err)
	}
	return out, nil
}

// ListKeys returns every shard ever written, in byte order (bbolt's key
// order). A shard's bucket is created only by a committed CaS and never
// emptied, because truncate keeps the head.
func (b *Backend) ListKeys(ctx context.Context) ([]string, error) {
	var keys []string
	err := b.st.view(ctx, func(tx *bbolt.Tx) error {
		keys = nil
		return tx.Bucket(shardsBucket).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, readError("list keys", "", err)
	}
	return keys, nil
}

// view runs a read-only transaction. Values bbolt hands out point into its
// memory map and die with the transaction, so fn must copy what it keeps.
func (st *store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-st.closing:
		return ErrClosed
	default:
	}
	return st.db.View(fn)
}

// readError classifies a failed read. A read changes nothing, so every read
// error is determinate.
func readError(op, shard string, err error) error {
	var be *backend.Error
	if errors.As(err, &be) {
		return err
	}
	if shard == "" {
		return backend.Determinatef("bolt: %s: %w", op, err)
	}
	return backend.Determinatef("bolt: %s %q: %w", op, shard, err)
}

func encodeSeqNo(seqno uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seqno)
}

func decodeSeqNo(shard string, k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("shard %q holds a key of %d bytes, want 8: file corrupt", shard, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

// copyData copies a value out of the memory map. It never returns nil, so an
// empty version reads back as empty data rather than absent data.
func copyData(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}

// fence is the stored fence: owner (empty: unowned), epoch, when it last
// changed.
type fence struct {
	owner string
	epoch uint64
	at    time.Time
}

// readFence returns the stored fence; a store never fenced is unowned at 0.
func readFence(tx *bbolt.Tx) (fence, error) {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		return fence{}, errors.New("meta bucket missing: file corrupt")
	}
	var f fence
	if v := meta.Get(epochKey); v != nil {
		if len(v) != 8 {
			return fence{}, fmt.Errorf("fence epoch of %d bytes, want 8: file corrupt", len(v))
		}
		f.epoch = binary.BigEndian.Uint64(v)
	}
	f.owner = string(meta.Get(ownerKey))
	if v := meta.Get(fencedAtKey); v != nil {
		if len(v) != 8 {
			return fence{}, fmt.Errorf("fence time of %d bytes, want 8: file corrupt", len(v))
		}
		f.at = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	}
	return f, nil
}

// writeFence stores f in the write transaction tx.
func writeFence(tx *bbolt.Tx, f fence) error {
	meta := tx.Bucket(metaBucket)
	return errors.Join(
		meta.Put(epochKey, binary.BigEndian.AppendUint64(nil, f.epoch)),
		meta.Put(ownerKey, []byte(f.owner)),
		meta.Put(fencedAtKey, binary.BigEndian.AppendUint64(nil, uint64(f.at.UnixNano()))),
	)
}

// ownerName spells an owner for messages.
func ownerName(owner string) string {
	if owner == "" {
		return "no cluster (unowned)"
	}
	return owner
}
