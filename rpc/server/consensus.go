package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/wire"
)

// Config configures the consensus service.
type Config struct {
	// MaxDataBytes bounds one version's data; <= 0 means
	// backend.DefaultMaxDataBytes. Keep it equal to the backend's limit so
	// that oversized data is rejected here, before it crosses to storage.
	MaxDataBytes int
	// Logger receives operation failures; nil means slog.Default().
	Logger *slog.Logger
	// DefaultTimeout bounds every call that arrives without a deadline, so
	// that a black-holed database cannot hold one forever; <= 0 means
	// DefaultRequestTimeout. Calls with a deadline keep theirs.
	DefaultTimeout time.Duration
	// OnPanic, if set, is told of every handler panic the server recovered
	// (method is the gRPC method's full name), for a metric.
	OnPanic func(method string)
}

// DefaultRequestTimeout bounds calls that arrive without a deadline. It is
// above the Go client's default call timeout, so that only clients that set
// none meet it.
const DefaultRequestTimeout = time.Minute

// Consensus implements the ProtoPersistConsensus service over a
// backend.Consensus. Each call runs with the gRPC handler's context, so a
// client that cancels or whose deadline expires cancels the backend call.
type Consensus struct {
	pb.UnimplementedProtoPersistConsensusServer

	store   backend.Consensus
	maxData int
	log     *slog.Logger
}

var _ pb.ProtoPersistConsensusServer = (*Consensus)(nil)

// NewConsensus serves store. The caller keeps ownership of store.
func NewConsensus(store backend.Consensus, cfg Config) *Consensus {
	maxData := cfg.MaxDataBytes
	if maxData <= 0 {
		maxData = backend.DefaultMaxDataBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Consensus{store: store, maxData: maxData, log: log}
}

// Register adds the service to s.
func (c *Consensus) Register(s grpc.ServiceRegistrar) {
	pb.RegisterProtoPersistConsensusServer(s, c)
}

// Head implements ProtoPersistConsensus.
func (c *Consensus) Head(ctx context.Context, req *pb.ProtoHeadRequest) (*pb.ProtoHeadResponse, error) {
	shard, err := headArgs(req)
	var v *backend.VersionedData
	if err == nil {
		v, err = c.store.Head(ctx, shard)
	}
	if err != nil {
		return &pb.ProtoHeadResponse{Result: &pb.ProtoHeadResponse_Err{Err: c.failure(ctx, "head", shard, err)}}, nil
	}
	ok := &pb.ProtoHeadOk{}
	if v != nil {
		ok.Current = wire.ToProto(*v)
	}
	return &pb.ProtoHeadResponse{Result: &pb.ProtoHeadResponse_Ok{Ok: ok}}, nil
}

// Scan implements ProtoPersistConsensus.
func (c *Consensus) Scan(ctx context.Context, req *pb.ProtoScanRequest) (*pb.ProtoScanResponse, error) {
	shard, from, limit, err := scanArgs(req)
	var vs []backend.VersionedData
	if err == nil {
		vs, err = c.store.Scan(ctx, shard, from, limit)
	}
	if err != nil {
		return &pb.ProtoScanResponse{Result: &pb.ProtoScanResponse_Err{Err: c.failure(ctx, "scan", shard, err)}}, nil
	}
	return &pb.ProtoScanResponse{Result: &pb.ProtoScanResponse_Ok{Ok: &pb.ProtoScanOk{Versions: wire.ToProtoList(vs)}}}, nil
}

// CompareAndSet implements ProtoPersistConsensus.
func (c *Consensus) CompareAndSet(ctx context.Context, req *pb.ProtoCompareAndSetRequest) (*pb.ProtoCompareAndSetResponse, error) {
	shard, v, err := casArgs(req, c.maxData)
	var committed bool
	if err == nil {
		committed, err = c.store.CompareAndSet(ctx, shard, v)
	}
	if err != nil {
		return &pb.ProtoCompareAndSetResponse{Result: &pb.ProtoCompareAndSetResponse_Err{Err: c.failure(ctx, "compare_and_set", shard, err)}}, nil
	}
	return &pb.ProtoCompareAndSetResponse{Result: &pb.ProtoCompareAndSetResponse_Ok{Ok: &pb.ProtoCompareAndSetOk{Committed: committed}}}, nil
}

// CompareAndSetMulti implements ProtoPersistConsensus.
func (c *Consensus) CompareAndSetMulti(ctx context.Context, req *pb.ProtoCompareAndSetMultiRequest) (*pb.ProtoCompareAndSetMultiResponse, error) {
	ops, err := casMultiArgs(req, c.maxData)
	var committed []bool
	if err == nil {
		committed, err = c.store.CompareAndSetMulti(ctx, ops)
	}
	if err == nil && len(committed) != len(ops) {
		// The write happened (or not) but its answer is unusable, so nobody
		// can say what took effect.
		err = backend.Indeterminatef("backend answered %d results to a multi compare-and-set of %d elements", len(committed), len(ops))
	}
	if err != nil {
		return &pb.ProtoCompareAndSetMultiResponse{Result: &pb.ProtoCompareAndSetMultiResponse_Err{Err: c.failure(ctx, "compare_and_set_multi", "", err)}}, nil
	}
	return &pb.ProtoCompareAndSetMultiResponse{Result: &pb.ProtoCompareAndSetMultiResponse_Ok{Ok: &pb.ProtoCompareAndSetMultiOk{Committed: committed}}}, nil
}

// Truncate implements ProtoPersistConsensus.
func (c *Consensus) Truncate(ctx context.Context, req *pb.ProtoTruncateRequest) (*pb.ProtoTruncateResponse, error) {
	shard, seqno, err := truncateArgs(req)
	var deleted uint64
	if err == nil {
		deleted, err = c.store.Truncate(ctx, shard, seqno)
	}
	if err != nil {
		return &pb.ProtoTruncateResponse{Result: &pb.ProtoTruncateResponse_Err{Err: c.failure(ctx, "truncate", shard, err)}}, nil
	}
	return &pb.ProtoTruncateResponse{Result: &pb.ProtoTruncateResponse_Ok{Ok: &pb.ProtoTruncateOk{Deleted: &deleted}}}, nil
}

// ListKeys implements ProtoPersistConsensus.
func (c *Consensus) ListKeys(ctx context.Context, _ *pb.ProtoListKeysRequest) (*pb.ProtoListKeysResponse, error) {
	keys, err := c.store.ListKeys(ctx)
	if err != nil {
		return &pb.ProtoListKeysResponse{Result: &pb.ProtoListKeysResponse_Err{Err: c.failure(ctx, "list_keys", "", err)}}, nil
	}
	return &pb.ProtoListKeysResponse{Result: &pb.ProtoListKeysResponse_Ok{Ok: &pb.ProtoListKeysOk{Keys: keys}}}, nil
}

// failure logs err and returns its wire form. Outcomes nobody can know
// (indeterminate, with the caller still waiting) are what operators must see;
// determinate refusals and abandoned calls are routine.
func (c *Consensus) failure(ctx context.Context, op, shard string, err error) *pb.ProtoOperationError {
	wireErr := wire.EncodeError(err)
	level := slog.LevelDebug
	if wireErr.Determinacy != pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE && ctx.Err() == nil {
		level = slog.LevelWarn
	}
	c.log.Log(ctx, level, "consensus operation failed", "op", op, "shard", shard,
		"determinacy", backend.DeterminacyOf(err), "code", wireErr.Code, "err", err)
	return wireErr
}
