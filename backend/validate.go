package backend

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxShardBytes bounds a shard name. Persist's are about 40 bytes; the
// bound keeps a name well inside the 2,704-byte limit of a PostgreSQL
// b-tree index row, which would otherwise fail the write in the database,
// and, in a coalesced batch, every other write of the batch with it.
const MaxShardBytes = 1024

// ValidateShard rejects a shard name that no backend can store the same
// way: empty, longer than MaxShardBytes, not UTF-8 (the protocol's strings
// are), or holding a NUL byte (PostgreSQL text cannot).
func ValidateShard(shard string) error {
	switch {
	case shard == "":
		return Determinatef("%w: empty shard name", ErrInvalidArgument)
	case len(shard) > MaxShardBytes:
		return Determinatef("%w: shard name of %d bytes exceeds the limit of %d bytes", ErrInvalidArgument, len(shard), MaxShardBytes)
	case !utf8.ValidString(shard):
		return Determinatef("%w: shard name %q is not valid UTF-8", ErrInvalidArgument, shard)
	case strings.IndexByte(shard, 0) >= 0:
		return Determinatef("%w: shard name %q contains a NUL byte", ErrInvalidArgument, shard)
	}
	return nil
}

// ValidateSeqNo rejects a seqno that does not fit persist's signed column.
func ValidateSeqNo(what string, seqno uint64) error {
	if seqno > MaxSeqNo {
		return Determinatef("%w: %s %d exceeds the maximum seqno %d", ErrInvalidArgument, what, seqno, MaxSeqNo)
	}
	return nil
}

// ValidateCAS checks one compare-and-set request; maxData <= 0 means
// DefaultMaxDataBytes.
func ValidateCAS(shard string, v VersionedData, maxData int) error {
	if err := ValidateShard(shard); err != nil {
		return err
	}
	if err := ValidateSeqNo("seqno", v.SeqNo); err != nil {
		return err
	}
	if maxData <= 0 {
		maxData = DefaultMaxDataBytes
	}
	if len(v.Data) > maxData {
		return Determinatef("%w: shard %q: data of %d bytes exceeds the limit of %d bytes", ErrInvalidArgument, shard, len(v.Data), maxData)
	}
	return nil
}

// ValidateCASMulti checks every element and that no shard appears twice.
func ValidateCASMulti(ops []CASOp, maxData int) error {
	seen := make(map[string]int, len(ops))
	for i, op := range ops {
		if err := ValidateCAS(op.Shard, op.New, maxData); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		if j, dup := seen[op.Shard]; dup {
			return Determinatef("%w: shard %q appears at elements %d and %d of a multi compare-and-set", ErrInvalidArgument, op.Shard, j, i)
		}
		seen[op.Shard] = i
	}
	return nil
}

// ValidateScan checks a scan request.
func ValidateScan(shard string, from uint64) error {
	if err := ValidateShard(shard); err != nil {
		return err
	}
	return ValidateSeqNo("scan from", from)
}

// ValidateTruncate checks a truncate request.
func ValidateTruncate(shard string, seqno uint64) error {
	if err := ValidateShard(shard); err != nil {
		return err
	}
	return ValidateSeqNo("truncate seqno", seqno)
}

// ClampLimit turns a wire limit into a row count that fits a signed column.
func ClampLimit(limit uint64) int64 {
	if limit > MaxSeqNo {
		return int64(MaxSeqNo)
	}
	return int64(limit)
}
