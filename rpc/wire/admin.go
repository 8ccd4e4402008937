package wire

import (
	"errors"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
)

// refusalDomain names this project in the ErrorInfo detail of an admin
// refusal.
const refusalDomain = "committer"

// refusalSentinels are the errors an admin server reports as refusals: the
// replica did nothing because it does not lead or knows no leader.
var refusalSentinels = []error{backend.ErrNotLeader, backend.ErrUnavailable}

// AdminRefusal returns the gRPC status for err if err says that an admin
// call was refused before anything was done (a determinate
// backend.ErrNotLeader or backend.ErrUnavailable): code Unavailable with an
// ErrorInfo detail whose reason is the error's wire code, so that a
// forwarding replica can tell it from a failure after acting and try again
// elsewhere. It returns nil for any other error.
func AdminRefusal(err error) error {
	if !backend.IsDeterminate(err) {
		return nil
	}
	for _, sentinel := range refusalSentinels {
		if errors.Is(err, sentinel) {
			st, derr := status.New(codes.Unavailable, err.Error()).WithDetails(&errdetails.ErrorInfo{Reason: CodeOf(sentinel), Domain: refusalDomain})
			if derr != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
			return st.Err()
		}
	}
	return nil
}

// DecodeAdminRefusal turns a status made by AdminRefusal back into a
// determinate error that matches its sentinel, and returns nil for any other
// error.
func DecodeAdminRefusal(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return nil
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != refusalDomain {
			continue
		}
		if sentinel := SentinelOf(info.GetReason()); sentinel != nil && slices.Contains(refusalSentinels, sentinel) {
			// The refusing side's determinacy prefix is added back here.
			msg := strings.TrimPrefix(st.Message(), backend.Determinate.String()+": ")
			return backend.NewDeterminate(&RemoteError{Code: info.GetReason(), Message: msg})
		}
	}
	return nil
}
