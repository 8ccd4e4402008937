package wire_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/wire"
)

// A refusal survives the trip through a gRPC status with its sentinel, its
// determinacy and its message; any other error is not a refusal.
func TestAdminRefusalRoundTrip(t *testing.T) {
	for _, sentinel := range []error{backend.ErrNotLeader, backend.ErrUnavailable} {
		refused := wire.AdminRefusal(backend.Determinatef("%w: leader is r2 at 10.0.0.2:6882", sentinel))
		if refused == nil {
			t.Fatalf("%v: no refusal status", sentinel)
		}
		if status.Code(refused) != codes.Unavailable {
			t.Fatalf("%v: code %v, want Unavailable", sentinel, status.Code(refused))
		}
		got := wire.DecodeAdminRefusal(refused)
		if !errors.Is(got, sentinel) || !backend.IsDeterminate(got) {
			t.Fatalf("decoded %v: want a determinate %v", got, sentinel)
		}
		if want := "determinate: " + sentinel.Error() + ": leader is r2 at 10.0.0.2:6882"; got.Error() != want {
			t.Fatalf("decoded message %q, want %q", got.Error(), want)
		}
	}
	for _, err := range []error{
		backend.Indeterminatef("%w: broke after sending", backend.ErrUnavailable), // may have acted
		backend.Determinatef("%w", backend.ErrInvalidArgument),                    // acted on, refused for cause
		fmt.Errorf("plain"),
	} {
		if s := wire.AdminRefusal(err); s != nil {
			t.Errorf("AdminRefusal(%v) = %v, want nil", err, s)
		}
	}
	// An Unavailable status without the detail (a transport failure, or a
	// server of another kind) is not a refusal: nothing proves it did not act.
	if got := wire.DecodeAdminRefusal(status.Error(codes.Unavailable, "connection reset")); got != nil {
		t.Errorf("plain Unavailable decoded as refusal %v", got)
	}
	if got := wire.DecodeAdminRefusal(status.Error(codes.NotFound, "unknown member")); got != nil {
		t.Errorf("NotFound decoded as refusal %v", got)
	}
}
