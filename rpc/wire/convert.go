package wire

import (
	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
)

// ToProto converts a version to its wire form.
func ToProto(v backend.VersionedData) *pb.ProtoVersionedData {
	return &pb.ProtoVersionedData{Seqno: v.SeqNo, Data: v.Data}
}

// FromProto converts a wire version; nil becomes seqno 0 with no data, which
// is what proto3 decoding of an empty message gives too.
func FromProto(v *pb.ProtoVersionedData) backend.VersionedData {
	return backend.VersionedData{SeqNo: v.GetSeqno(), Data: v.GetData()}
}

// ToProtoList converts versions to their wire form.
func ToProtoList(vs []backend.VersionedData) []*pb.ProtoVersionedData {
	out := make([]*pb.ProtoVersionedData, len(vs))
	for i, v := range vs {
		out[i] = ToProto(v)
	}
	return out
}

// FromProtoList converts wire versions.
func FromProtoList(vs []*pb.ProtoVersionedData) []backend.VersionedData {
	out := make([]backend.VersionedData, len(vs))
	for i, v := range vs {
		out[i] = FromProto(v)
	}
	return out
}
