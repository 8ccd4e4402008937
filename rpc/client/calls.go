package client

import (
	"context"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/wire"
)

// Head implements backend.Consensus.
func (c *Client) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	if err := encodable(shard); err != nil {
		return nil, err
	}
	resp, err := invoke(ctx, c, "head", read,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoHeadResponse, error) {
			return cl.Head(ctx, &pb.ProtoHeadRequest{Shard: shard}, opts...)
		},
		func(r *pb.ProtoHeadResponse) error { return result("head", r.GetOk() != nil, r.GetErr()) })
	if err != nil {
		return nil, err
	}
	cur := resp.GetOk().GetCurrent()
	if cur == nil {
		return nil, nil
	}
	v := wire.FromProto(cur)
	return &v, nil
}

// Scan implements backend.Consensus.
func (c *Client) Scan(ctx context.Context, shard string, from, limit uint64) ([]backend.VersionedData, error) {
	if err := encodable(shard); err != nil {
		return nil, err
	}
	resp, err := invoke(ctx, c, "scan", read,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoScanResponse, error) {
			return cl.Scan(ctx, &pb.ProtoScanRequest{Shard: shard, From: from, Limit: limit}, opts...)
		},
		func(r *pb.ProtoScanResponse) error { return result("scan", r.GetOk() != nil, r.GetErr()) })
	if err != nil {
		return nil, err
	}
	return wire.FromProtoList(resp.GetOk().GetVersions()), nil
}

// CompareAndSet implements backend.Consensus.
func (c *Client) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := encodable(shard); err != nil {
		return false, err
	}
	resp, err := invoke(ctx, c, "compare_and_set", write,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoCompareAndSetResponse, error) {
			return cl.CompareAndSet(ctx, &pb.ProtoCompareAndSetRequest{Shard: shard, New: wire.ToProto(v)}, opts...)
		},
		func(r *pb.ProtoCompareAndSetResponse) error {
			return result("compare_and_set", r.GetOk() != nil, r.GetErr())
		})
	if err != nil {
		return false, err
	}
	return resp.GetOk().GetCommitted(), nil
}

// CompareAndSetMulti implements backend.Consensus.
func (c *Client) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) ([]bool, error) {
	if err := validateShards(ops); err != nil {
		return nil, err
	}
	req := &pb.ProtoCompareAndSetMultiRequest{Ops: make([]*pb.ProtoCompareAndSetRequest, len(ops))}
	for i, op := range ops {
		req.Ops[i] = &pb.ProtoCompareAndSetRequest{Shard: op.Shard, New: wire.ToProto(op.New)}
	}
	resp, err := invoke(ctx, c, "compare_and_set_multi", write,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoCompareAndSetMultiResponse, error) {
			return cl.CompareAndSetMulti(ctx, req, opts...)
		},
		func(r *pb.ProtoCompareAndSetMultiResponse) error {
			if err := result("compare_and_set_multi", r.GetOk() != nil, r.GetErr()); err != nil {
				return err
			}
			if n := len(r.GetOk().GetCommitted()); n != len(ops) {
				// Something was decided, but this answer cannot say what.
				return backend.Indeterminatef("compare_and_set_multi: %d results for %d elements", n, len(ops))
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return resp.GetOk().GetCommitted(), nil
}

// Truncate implements backend.Consensus. A server that does not report a
// count (the field is optional on the wire) yields 0.
func (c *Client) Truncate(ctx context.Context, shard string, seqno uint64) (uint64, error) {
	if err := encodable(shard); err != nil {
		return 0, err
	}
	resp, err := invoke(ctx, c, "truncate", write,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoTruncateResponse, error) {
			return cl.Truncate(ctx, &pb.ProtoTruncateRequest{Shard: shard, Seqno: seqno}, opts...)
		},
		func(r *pb.ProtoTruncateResponse) error { return result("truncate", r.GetOk() != nil, r.GetErr()) })
	if err != nil {
		return 0, err
	}
	return resp.GetOk().GetDeleted(), nil
}

// ListKeys implements backend.Consensus.
func (c *Client) ListKeys(ctx context.Context) ([]string, error) {
	resp, err := invoke(ctx, c, "list_keys", read,
		func(ctx context.Context, cl pb.ProtoPersistConsensusClient, opts ...grpc.CallOption) (*pb.ProtoListKeysResponse, error) {
			return cl.ListKeys(ctx, &pb.ProtoListKeysRequest{}, opts...)
		},
		func(r *pb.ProtoListKeysResponse) error { return result("list_keys", r.GetOk() != nil, r.GetErr()) })
	if err != nil {
		return nil, err
	}
	return resp.GetOk().GetKeys(), nil
}

// encodable rejects a shard name that is not UTF-8 before it is sent. The
// server checks every input, but such a name cannot even be encoded (the
// protocol's strings are UTF-8), and would fail as a transport error
// instead of the determinate invalid-argument every other bad input gets.
func encodable(shard string) error {
	if utf8.ValidString(shard) {
		return nil
	}
	return backend.ValidateShard(shard)
}

// validateShards is encodable for every element of a multi-CaS.
func validateShards(ops []backend.CASOp) error {
	for i, op := range ops {
		if err := encodable(op.Shard); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}
