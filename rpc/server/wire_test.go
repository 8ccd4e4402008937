package server_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
	"github.com/hacommit/committer/rpc/wire"
)

// The tests in this file speak the wire protocol from first principles:
// requests are assembled from field numbers with protowire and replies are
// decoded the same way, so that a change to the .proto file that would break
// existing persist clients fails here even if the generated code still
// agrees with itself.

const service = "/mz_persist_committer.ProtoPersistConsensus/"

// Field numbers and enum values of the protocol (docs/architecture.md §2.1;
// rpc/proto/mz_persist_committer/consensus.proto).
const (
	resultOk  = 1 // Proto<Rpc>Response.ok
	resultErr = 2 // Proto<Rpc>Response.err

	versionSeqno = 1 // ProtoVersionedData.seqno
	versionData  = 2 // ProtoVersionedData.data

	errDeterminacy = 1 // ProtoOperationError.determinacy
	errMessage     = 2 // ProtoOperationError.message
	errCode        = 3 // ProtoOperationError.code (extension)

	determinate = 1 // PROTO_DETERMINACY_DETERMINATE
)

// rawCodec passes pre-encoded protobuf bytes through gRPC untouched. It
// keeps the name "proto" so that the request carries the content type every
// persist client sends.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = slices.Clone(data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// field is one decoded protobuf field.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	varint uint64
	bytes  []byte
}

func (f field) String() string {
	if f.typ == protowire.VarintType {
		return fmt.Sprintf("#%d=%d", f.num, f.varint)
	}
	return fmt.Sprintf("#%d=%q", f.num, f.bytes)
}

// decode splits a message into its fields, in wire order.
func decode(t *testing.T, b []byte) []field {
	t.Helper()
	var out []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.varint, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d has unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("bad field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		out = append(out, f)
	}
	return out
}

// only asserts msg consists of exactly one field, number num of type typ,
// and returns it.
func only(t *testing.T, what string, msg []byte, num protowire.Number, typ protowire.Type) field {
	t.Helper()
	fs := decode(t, msg)
	if len(fs) != 1 || fs[0].num != num || fs[0].typ != typ {
		t.Fatalf("%s: fields %v, want exactly field %d of wire type %d", what, fs, num, typ)
	}
	return fs[0]
}

// Encoders for the request messages.
func str(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}
func varint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}
func msg(num protowire.Number, parts ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), slices.Concat(parts...))
}
func version(num protowire.Number, seqno uint64, data string) []byte {
	return msg(num, varint(versionSeqno, seqno), str(versionData, data))
}

func startRaw(t *testing.T) *grpc.ClientConn {
	t.Helper()
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// call invokes method with a hand-built request and returns the raw reply.
func call(t *testing.T, cc *grpc.ClientConn, method string, req ...[]byte) []byte {
	t.Helper()
	in := slices.Concat(req...)
	var out []byte
	if err := cc.Invoke(context.Background(), service+method, &in, &out, grpc.ForceCodec(rawCodec{})); err != nil {
		t.Fatalf("%s: gRPC status %v; operation errors must travel as data", method, err)
	}
	return out
}

// okOf asserts resp is Proto<Rpc>Response{ok} and returns the ok message.
func okOf(t *testing.T, what string, resp []byte) []byte {
	t.Helper()
	return only(t, what, resp, resultOk, protowire.BytesType).bytes
}

// wantVersion asserts b is a ProtoVersionedData with seqno and data, encoded
// the proto3 way (zero values omitted).
func wantVersion(t *testing.T, what string, b []byte, seqno uint64, data string) {
	t.Helper()
	var want []field
	if seqno != 0 {
		want = append(want, field{num: versionSeqno, typ: protowire.VarintType, varint: seqno})
	}
	if data != "" {
		want = append(want, field{num: versionData, typ: protowire.BytesType, bytes: []byte(data)})
	}
	if got := decode(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: version fields %v, want %v", what, got, want)
	}
}

func TestWireCompatibility(t *testing.T) {
	cc := startRaw(t)

	// CompareAndSet: ok{committed=true} is field 1 of the ok message.
	resp := call(t, cc, "CompareAndSet", str(1, "shard-a"), version(2, 0, "abc"))
	if f := only(t, "cas committed", okOf(t, "cas committed", resp), 1, protowire.VarintType); f.varint != 1 {
		t.Errorf("cas committed: committed = %d, want 1", f.varint)
	}
	// A mismatch is an ok result whose committed=false is omitted: an empty
	// ok message, which is not the same as no result.
	resp = call(t, cc, "CompareAndSet", str(1, "shard-a"), version(2, 5, "zzz"))
	if ok := okOf(t, "cas mismatch", resp); len(ok) != 0 {
		t.Errorf("cas mismatch: ok message %v, want empty (committed=false)", decode(t, ok))
	}
	resp = call(t, cc, "CompareAndSet", str(1, "shard-a"), version(2, 1, "def"))
	if f := only(t, "second cas", okOf(t, "second cas", resp), 1, protowire.VarintType); f.varint != 1 {
		t.Errorf("second cas: committed = %d, want 1", f.varint)
	}

	// Head: ok.current (field 1) is the latest version.
	resp = call(t, cc, "Head", str(1, "shard-a"))
	cur := only(t, "head", okOf(t, "head", resp), 1, protowire.BytesType)
	wantVersion(t, "head", cur.bytes, 1, "def")
	// Head of an unknown shard: ok without current.
	resp = call(t, cc, "Head", str(1, "nobody"))
	if ok := okOf(t, "head of unknown shard", resp); len(ok) != 0 {
		t.Errorf("head of unknown shard: ok %v, want empty", decode(t, ok))
	}

	// Scan (shard=1, from=2, limit=3): ok.versions is repeated field 1.
	resp = call(t, cc, "Scan", str(1, "shard-a"), varint(2, 0), varint(3, math.MaxUint64))
	versions := decode(t, okOf(t, "scan", resp))
	if len(versions) != 2 || versions[0].num != 1 || versions[1].num != 1 {
		t.Fatalf("scan: ok fields %v, want two of field 1", versions)
	}
	wantVersion(t, "scan[0]", versions[0].bytes, 0, "abc")
	wantVersion(t, "scan[1]", versions[1].bytes, 1, "def")
	resp = call(t, cc, "Scan", str(1, "shard-a"), varint(2, 1), varint(3, 1))
	wantVersion(t, "scan from 1 limit 1", only(t, "scan from 1", okOf(t, "scan from 1", resp), 1, protowire.BytesType).bytes, 1, "def")

	// ListKeys: ok.keys is repeated string field 1.
	resp = call(t, cc, "ListKeys")
	if f := only(t, "list keys", okOf(t, "list keys", resp), 1, protowire.BytesType); string(f.bytes) != "shard-a" {
		t.Errorf("list keys: %q, want shard-a", f.bytes)
	}

	// Truncate (shard=1, seqno=2): ok.deleted is optional, so even 0 is sent.
	resp = call(t, cc, "Truncate", str(1, "shard-a"), varint(2, 1))
	if f := only(t, "truncate", okOf(t, "truncate", resp), 1, protowire.VarintType); f.varint != 1 {
		t.Errorf("truncate: deleted = %d, want 1", f.varint)
	}
	resp = call(t, cc, "Truncate", str(1, "shard-a"), varint(2, 1))
	if f := only(t, "truncate again", okOf(t, "truncate again", resp), 1, protowire.VarintType); f.varint != 0 {
		t.Errorf("truncate again: deleted = %d, want an explicit 0", f.varint)
	}

	// CompareAndSetMulti (ops = repeated ProtoCompareAndSetRequest, field 1):
	// ok.committed is a packed repeated bool, field 1.
	resp = call(t, cc, "CompareAndSetMulti",
		msg(1, str(1, "shard-a"), version(2, 2, "ghi")),
		msg(1, str(1, "shard-b"), version(2, 3, "nope")),
		msg(1, str(1, "shard-c"), version(2, 0, "c0")))
	packed := only(t, "multi", okOf(t, "multi", resp), 1, protowire.BytesType).bytes
	var committed []uint64
	for len(packed) > 0 {
		v, n := protowire.ConsumeVarint(packed)
		if n < 0 {
			t.Fatalf("multi: bad packed bool")
		}
		committed, packed = append(committed, v), packed[n:]
	}
	if !slices.Equal(committed, []uint64{1, 0, 1}) {
		t.Errorf("multi: committed %v, want [1 0 1]", committed)
	}

	// Fields unknown to the server are skipped, as proto3 requires.
	resp = call(t, cc, "Head", str(1, "shard-c"), str(99, "from a newer client"))
	wantVersion(t, "head with unknown field", only(t, "head+unknown", okOf(t, "head+unknown", resp), 1, protowire.BytesType).bytes, 0, "c0")
}

// wantWireError asserts resp is Proto<Rpc>Response{err} with DETERMINATE, the
// code and a message containing wantMessage.
func wantWireError(t *testing.T, what string, resp []byte, code, wantMessage string) {
	t.Helper()
	e := only(t, what, resp, resultErr, protowire.BytesType)
	fs := decode(t, e.bytes)
	if len(fs) != 3 {
		t.Fatalf("%s: error fields %v, want determinacy, message and code", what, fs)
	}
	if fs[0].num != errDeterminacy || fs[0].typ != protowire.VarintType || fs[0].varint != determinate {
		t.Errorf("%s: %v, want field %d = %d (DETERMINATE)", what, fs[0], errDeterminacy, determinate)
	}
	if fs[1].num != errMessage || !strings.Contains(string(fs[1].bytes), wantMessage) {
		t.Errorf("%s: %v, want field %d containing %q", what, fs[1], errMessage, wantMessage)
	}
	if fs[2].num != errCode || string(fs[2].bytes) != code {
		t.Errorf("%s: %v, want field %d = %q", what, fs[2], errCode, code)
	}
}

func TestWireErrors(t *testing.T) {
	cc := startRaw(t)
	tooBig := uint64(1) << 63

	wantWireError(t, "head of empty shard", call(t, cc, "Head", str(1, "")), wire.CodeInvalidArgument, "invalid argument: empty shard name")
	wantWireError(t, "cas above max seqno", call(t, cc, "CompareAndSet", str(1, "s"), version(2, tooBig, "x")),
		wire.CodeInvalidArgument, "seqno 9223372036854775808 exceeds the maximum seqno 9223372036854775807")
	wantWireError(t, "cas without new", call(t, cc, "CompareAndSet", str(1, "s")),
		wire.CodeInvalidArgument, `shard "s": compare-and-set without a new version`)
	wantWireError(t, "scan from above max", call(t, cc, "Scan", str(1, "s"), varint(2, tooBig), varint(3, 1)),
		wire.CodeInvalidArgument, "scan from 9223372036854775808 exceeds")
	wantWireError(t, "truncate of empty shard", call(t, cc, "Truncate", str(1, "s"), varint(2, 0)),
		wire.CodeTruncateAboveHead, "truncate seqno above head")
	wantWireError(t, "multi with duplicate shard", call(t, cc, "CompareAndSetMulti",
		msg(1, str(1, "d"), version(2, 0, "1")), msg(1, str(1, "d"), version(2, 0, "2"))),
		wire.CodeInvalidArgument, `shard "d" appears at elements 0 and 1`)
	wantWireError(t, "multi element without new", call(t, cc, "CompareAndSetMulti",
		msg(1, str(1, "a"), version(2, 0, "1")), msg(1, str(1, "b"))),
		wire.CodeInvalidArgument, `element 1: invalid argument: shard "b": compare-and-set without a new version`)

	// None of the rejected requests wrote anything.
	if resp := call(t, cc, "ListKeys"); len(okOf(t, "list keys", resp)) != 0 {
		t.Errorf("list keys after rejected writes: %v, want none", decode(t, okOf(t, "list keys", resp)))
	}
}
