package wire

import (
	"errors"
	"strings"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
)

// Codes carried in ProtoOperationError.code. They name the backend sentinels
// so that a remote error matches the same errors.Is checks as a local one.
const (
	CodeFenced            = "fenced"
	CodeInvalidArgument   = "invalid_argument"
	CodeTruncateAboveHead = "truncate_above_head"
	CodeRetryable         = "retryable"
	CodeNotLeader         = "not_leader"
	CodeUnavailable       = "unavailable"
	CodeForeignOwner      = "foreign_owner"
	CodeFenceLost         = "fence_lost"
)

// codeSentinels is a constant table; the first sentinel an error matches
// decides its code.
var codeSentinels = []struct {
	code     string
	sentinel error
}{
	{CodeFenced, backend.ErrFenced},
	{CodeInvalidArgument, backend.ErrInvalidArgument},
	{CodeTruncateAboveHead, backend.ErrTruncateAboveHead},
	{CodeRetryable, backend.ErrRetryable},
	{CodeNotLeader, backend.ErrNotLeader},
	{CodeUnavailable, backend.ErrUnavailable},
	{CodeForeignOwner, backend.ErrForeignOwner},
	{CodeFenceLost, backend.ErrFenceLost},
}

// CodeOf returns the code of the first sentinel err matches, or "".
func CodeOf(err error) string {
	for _, c := range codeSentinels {
		if errors.Is(err, c.sentinel) {
			return c.code
		}
	}
	return ""
}

// SentinelOf returns the sentinel a code stands for, or nil for an unknown or
// empty code.
func SentinelOf(code string) error {
	for _, c := range codeSentinels {
		if c.code == code {
			return c.sentinel
		}
	}
	return nil
}

// EncodeError turns an operation error into its wire form. The message drops
// the determinacy prefix of *backend.Error, since determinacy has its own
// field and the receiving side adds the prefix back.
func EncodeError(err error) *pb.ProtoOperationError {
	determinacy := pb.ProtoDeterminacy_PROTO_DETERMINACY_INDETERMINATE
	if backend.IsDeterminate(err) {
		determinacy = pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE
	}
	msg := err.Error()
	var be *backend.Error
	if errors.As(err, &be) && be.Err != nil {
		if full := be.Error(); strings.HasSuffix(msg, full) {
			msg = msg[:len(msg)-len(full)] + be.Err.Error()
		}
	}
	return &pb.ProtoOperationError{Determinacy: determinacy, Message: msg, Code: CodeOf(err)}
}

// RemoteError is an operation error reported by a server. It matches the
// sentinel named by its code with errors.Is.
type RemoteError struct {
	// Code is the wire code, possibly empty or unknown to this build.
	Code string
	// Message is the server's description.
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the sentinel of e.Code, or nil.
func (e *RemoteError) Unwrap() error { return SentinelOf(e.Code) }

// DecodeError turns a wire error into a *backend.Error wrapping a
// *RemoteError. Only an explicit DETERMINATE is determinate: an unspecified or
// unknown determinacy may have taken effect.
func DecodeError(e *pb.ProtoOperationError) error {
	determinacy := backend.Indeterminate
	if e.GetDeterminacy() == pb.ProtoDeterminacy_PROTO_DETERMINACY_DETERMINATE {
		determinacy = backend.Determinate
	}
	msg := e.GetMessage()
	if msg == "" {
		msg = "operation failed without a message"
		if e.GetCode() != "" {
			msg = e.GetCode()
		}
	}
	return &backend.Error{Determinacy: determinacy, Err: &RemoteError{Code: e.GetCode(), Message: msg}}
}
