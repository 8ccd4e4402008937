package server

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/wire"
)

// fuzzMaxData is the data limit under fuzzing: small, so that inputs cross it.
const fuzzMaxData = 64

// Request kinds the fuzz input's first argument selects.
const (
	kindHead = iota
	kindScan
	kindCAS
	kindTruncate
	kindMulti
	kinds
)

// FuzzValidateRequests decodes arbitrary bytes as each request message and
// checks request validation against an independent statement of the rules:
// a request is rejected iff it has a problem docs/architecture.md §2.2 lists
// (or a CaS lacks its version), the rejection is a determinate
// invalid-argument error whose wire form says so and names one of the
// problems present, and an accepted request reaches the backend with its
// fields unchanged.
func FuzzValidateRequests(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, raw []byte) {
		switch kind % kinds {
		case kindHead:
			var req pb.ProtoHeadRequest
			if proto.Unmarshal(raw, &req) != nil {
				return
			}
			shard, err := headArgs(&req)
			checkVerdict(t, err, shardProblems(req.GetShard()))
			if err == nil && shard != req.GetShard() {
				t.Fatalf("head shard %q, request had %q", shard, req.GetShard())
			}
		case kindScan:
			var req pb.ProtoScanRequest
			if proto.Unmarshal(raw, &req) != nil {
				return
			}
			shard, from, limit, err := scanArgs(&req)
			checkVerdict(t, err, append(shardProblems(req.GetShard()), seqnoProblems(req.GetFrom())...))
			if err == nil && (shard != req.GetShard() || from != req.GetFrom() || limit != req.GetLimit()) {
				t.Fatalf("scan args (%q, %d, %d), request %v", shard, from, limit, &req)
			}
		case kindCAS:
			var req pb.ProtoCompareAndSetRequest
			if proto.Unmarshal(raw, &req) != nil {
				return
			}
			shard, v, err := casArgs(&req, fuzzMaxData)
			checkVerdict(t, err, casProblems(&req))
			if err == nil {
				checkCASArgs(t, shard, v, &req)
			}
		case kindTruncate:
			var req pb.ProtoTruncateRequest
			if proto.Unmarshal(raw, &req) != nil {
				return
			}
			shard, seqno, err := truncateArgs(&req)
			checkVerdict(t, err, append(shardProblems(req.GetShard()), seqnoProblems(req.GetSeqno())...))
			if err == nil && (shard != req.GetShard() || seqno != req.GetSeqno()) {
				t.Fatalf("truncate args (%q, %d), request %v", shard, seqno, &req)
			}
		case kindMulti:
			var req pb.ProtoCompareAndSetMultiRequest
			if proto.Unmarshal(raw, &req) != nil {
				return
			}
			ops, err := casMultiArgs(&req, fuzzMaxData)
			var problems []string
			seen := map[string]bool{}
			for _, op := range req.GetOps() {
				problems = append(problems, casProblems(op)...)
				if seen[op.GetShard()] {
					problems = append(problems, "appears at elements")
				}
				seen[op.GetShard()] = true
			}
			checkVerdict(t, err, problems)
			if err == nil {
				if len(ops) != len(req.GetOps()) {
					t.Fatalf("multi: %d ops from %d elements", len(ops), len(req.GetOps()))
				}
				for i, op := range ops {
					checkCASArgs(t, op.Shard, op.New, req.GetOps()[i])
				}
			}
		}
	})
}

// The functions below state the rules independently of the code under test;
// each problem is the phrase its error message must contain.

func shardProblems(shard string) []string {
	if shard == "" {
		return []string{"empty shard name"}
	}
	var problems []string
	if len(shard) > 1024 {
		problems = append(problems, "exceeds the limit of 1024 bytes")
	}
	if !utf8.ValidString(shard) {
		problems = append(problems, "is not valid UTF-8")
	}
	if strings.Contains(shard, "\x00") {
		problems = append(problems, "contains a NUL byte")
	}
	return problems
}

func seqnoProblems(seqno uint64) []string {
	if seqno > 1<<63-1 {
		return []string{"exceeds the maximum seqno 9223372036854775807"}
	}
	return nil
}

func casProblems(req *pb.ProtoCompareAndSetRequest) []string {
	problems := shardProblems(req.GetShard())
	if req.GetNew() == nil {
		return append(problems, "compare-and-set without a new version")
	}
	problems = append(problems, seqnoProblems(req.GetNew().GetSeqno())...)
	if len(req.GetNew().GetData()) > fuzzMaxData {
		problems = append(problems, "exceeds the limit of 64 bytes")
	}
	return problems
}

// checkVerdict asserts err rejects the request iff problems is non-empty, as
// a determinate invalid-argument error naming one of them, on the wire too.
func checkVerdict(t *testing.T, err error, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		if err != nil {
			t.Fatalf("valid request rejected: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("request with problems %q accepted", problems)
	}
	if !backend.IsDeterminate(err) || !errors.Is(err, backend.ErrInvalidArgument) {
		t.Fatalf("rejection %v is not a determinate invalid argument", err)
	}
	w := wire.EncodeError(err)
	if w.GetDeterminacy() != pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE || w.GetCode() != wire.CodeInvalidArgument {
		t.Fatalf("wire form of %v is %v", err, w)
	}
	for _, p := range problems {
		if strings.Contains(w.GetMessage(), p) {
			return
		}
	}
	t.Fatalf("message %q names none of the problems %q", w.GetMessage(), problems)
}

func checkCASArgs(t *testing.T, shard string, v backend.VersionedData, req *pb.ProtoCompareAndSetRequest) {
	t.Helper()
	if shard != req.GetShard() || v.SeqNo != req.GetNew().GetSeqno() || !bytes.Equal(v.Data, req.GetNew().GetData()) {
		t.Fatalf("cas args (%q, %d, %q), request %v", shard, v.SeqNo, v.Data, req)
	}
}
