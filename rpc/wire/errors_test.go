package wire

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
)

func TestEncodeError(t *testing.T) {
	for _, tc := range []struct {
		err         error
		determinacy pb.ProtoDeterminacy
		message     string
		code        string
	}{
		{backend.Determinatef("%w: empty shard name", backend.ErrInvalidArgument),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "invalid argument: empty shard name", CodeInvalidArgument},
		{fmt.Errorf("element 3: %w", backend.Determinatef("%w: empty shard name", backend.ErrInvalidArgument)),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "element 3: invalid argument: empty shard name", CodeInvalidArgument},
		{backend.Determinatef("epoch 7 stored: %w", backend.ErrFenced),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "epoch 7 stored: fenced", CodeFenced},
		{backend.NewDeterminate(backend.ErrTruncateAboveHead),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "truncate seqno above head", CodeTruncateAboveHead},
		{backend.NewDeterminate(backend.ErrRetryable),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "aborted by storage, retry", CodeRetryable},
		{backend.Determinatef("%w: leader is n2", backend.ErrNotLeader),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "not leader: leader is n2", CodeNotLeader},
		{backend.NewDeterminate(backend.ErrUnavailable),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, "unavailable", CodeUnavailable},
		{backend.Indeterminatef("connection lost: %w", context.Canceled),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_INDETERMINATE, "connection lost: context canceled", ""},
		// An error without *backend.Error is conservatively indeterminate.
		{errors.New("disk on fire"),
			pb.ProtoDeterminacy_PROTO_DETERMINACY_INDETERMINATE, "disk on fire", ""},
	} {
		got := EncodeError(tc.err)
		if got.GetDeterminacy() != tc.determinacy || got.GetMessage() != tc.message || got.GetCode() != tc.code {
			t.Errorf("EncodeError(%v) = {%v %q %q}, want {%v %q %q}", tc.err,
				got.GetDeterminacy(), got.GetMessage(), got.GetCode(), tc.determinacy, tc.message, tc.code)
		}
	}
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		in          *pb.ProtoOperationError
		determinate bool
		sentinel    error
		text        string
	}{
		{&pb.ProtoOperationError{Determinacy: pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, Message: "fenced by epoch 9", Code: CodeFenced},
			true, backend.ErrFenced, "determinate: fenced by epoch 9"},
		{&pb.ProtoOperationError{Determinacy: pb.ProtoDeterminacy_PROTO_DETERMINACY_INDETERMINATE, Message: "connection reset"},
			false, nil, "indeterminate: connection reset"},
		// Unspecified and unknown determinacy may have taken effect.
		{&pb.ProtoOperationError{Message: "old server", Code: CodeNotLeader},
			false, backend.ErrNotLeader, "indeterminate: old server"},
		{&pb.ProtoOperationError{Determinacy: 7, Message: "from the future"},
			false, nil, "indeterminate: from the future"},
		// A code this build does not know matches no sentinel.
		{&pb.ProtoOperationError{Determinacy: pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, Message: "quota", Code: "quota_exceeded"},
			true, nil, "determinate: quota"},
		{&pb.ProtoOperationError{Determinacy: pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE, Code: CodeRetryable},
			true, backend.ErrRetryable, "determinate: retryable"},
		{&pb.ProtoOperationError{}, false, nil, "indeterminate: operation failed without a message"},
	} {
		err := DecodeError(tc.in)
		if backend.IsDeterminate(err) != tc.determinate || err.Error() != tc.text {
			t.Errorf("DecodeError(%v) = %q (determinate=%v), want %q (determinate=%v)", tc.in, err, backend.IsDeterminate(err), tc.text, tc.determinate)
		}
		for _, s := range []error{backend.ErrFenced, backend.ErrInvalidArgument, backend.ErrTruncateAboveHead, backend.ErrRetryable, backend.ErrNotLeader, backend.ErrUnavailable} {
			if errors.Is(err, s) != (s == tc.sentinel) {
				t.Errorf("DecodeError(%v): errors.Is(%q) = %v", tc.in, s, errors.Is(err, s))
			}
		}
	}
}

// TestCodesRoundTrip: every code decodes back to the sentinel it came from.
func TestCodesRoundTrip(t *testing.T) {
	for _, c := range codeSentinels {
		back := DecodeError(EncodeError(backend.NewDeterminate(c.sentinel)))
		if !errors.Is(back, c.sentinel) || !backend.IsDeterminate(back) {
			t.Errorf("code %q: decoded %v does not match %q determinately", c.code, back, c.sentinel)
		}
	}
}
