package server

import (
	"fmt"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
)

// The functions below turn a request into backend arguments, rejecting what
// the backend must never see. Each returns a determinate error wrapping
// backend.ErrInvalidArgument that names the problem.

func headArgs(req *pb.ProtoHeadRequest) (string, error) {
	return req.GetShard(), backend.ValidateShard(req.GetShard())
}

func scanArgs(req *pb.ProtoScanRequest) (shard string, from, limit uint64, err error) {
	shard, from, limit = req.GetShard(), req.GetFrom(), req.GetLimit()
	return shard, from, limit, backend.ValidateScan(shard, from)
}

func casArgs(req *pb.ProtoCompareAndSetRequest, maxData int) (string, backend.VersionedData, error) {
	shard := req.GetShard()
	if req.GetNew() == nil {
		// Proto3 keeps the presence of message fields: a request without
		// `new` is malformed, not a request to write seqno 0.
		if err := backend.ValidateShard(shard); err != nil {
			return shard, backend.VersionedData{}, err
		}
		return shard, backend.VersionedData{}, backend.Determinatef("%w: shard %q: compare-and-set without a new version", backend.ErrInvalidArgument, shard)
	}
	v := backend.VersionedData{SeqNo: req.GetNew().GetSeqno(), Data: req.GetNew().GetData()}
	return shard, v, backend.ValidateCAS(shard, v, maxData)
}

func casMultiArgs(req *pb.ProtoCompareAndSetMultiRequest, maxData int) ([]backend.CASOp, error) {
	ops := make([]backend.CASOp, len(req.GetOps()))
	for i, op := range req.GetOps() {
		shard, v, err := casArgs(op, maxData)
		if err != nil && op.GetNew() == nil {
			// ValidateCASMulti cannot see a missing version; report it the
			// way it reports the other per-element problems.
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		ops[i] = backend.CASOp{Shard: shard, New: v}
	}
	return ops, backend.ValidateCASMulti(ops, maxData)
}

func truncateArgs(req *pb.ProtoTruncateRequest) (shard string, seqno uint64, err error) {
	shard, seqno = req.GetShard(), req.GetSeqno()
	return shard, seqno, backend.ValidateTruncate(shard, seqno)
}
