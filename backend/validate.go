package backend

import "fmt"

// ValidateShard rejects an empty shard name.
func ValidateShard(shard string) error {
	if shard == "" {
		return Determinatef("%w: empty shard name", ErrInvalidArgument)
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
