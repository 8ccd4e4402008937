package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err         error
		read, write bool
	}{
		{backend.Determinatef("%w: leader is n2", backend.ErrNotLeader), true, true},
		{backend.Determinatef("%w: no leader known", backend.ErrUnavailable), true, true},
		{backend.NewDeterminate(backend.ErrRetryable), true, false},
		{backend.NewDeterminate(backend.ErrInvalidArgument), false, false},
		{backend.NewDeterminate(backend.ErrFenced), false, false},
		{backend.NewDeterminate(backend.ErrTruncateAboveHead), false, false},
		// Only a determinate refusal proves a write did nothing.
		{backend.NewIndeterminate(backend.ErrNotLeader), true, false},
		{backend.Indeterminatef("connection lost"), true, false},
		{errors.New("no determinacy"), true, false},
	} {
		if got := retryable(tc.err, read); got != tc.read {
			t.Errorf("retryable(%v, read) = %v, want %v", tc.err, got, tc.read)
		}
		if got := retryable(tc.err, write); got != tc.write {
			t.Errorf("retryable(%v, write) = %v, want %v", tc.err, got, tc.write)
		}
	}
}

func TestTransportError(t *testing.T) {
	ctx := context.Background()
	unavailable := status.Error(codes.Unavailable, "connection refused")
	for _, tc := range []struct {
		kind           callKind
		mayHaveArrived bool
		err            error
		determinate    bool
		sentinel       error
		retry          bool
	}{
		{write, false, unavailable, true, backend.ErrUnavailable, true},
		{read, false, unavailable, true, backend.ErrUnavailable, true},
		{write, true, unavailable, false, nil, false},
		{read, true, unavailable, false, nil, true},
		{write, true, status.Error(codes.Unimplemented, "unknown method"), true, nil, false},
		{write, true, status.Error(codes.Internal, "boom"), false, nil, false},
	} {
		err, retry := transportError(ctx, "op", "h:1", tc.kind, tc.mayHaveArrived, tc.err)
		if backend.IsDeterminate(err) != tc.determinate || retry != tc.retry {
			t.Errorf("transportError(kind %d, arrived %v, %v) = %v (determinate=%v), retry %v; want determinate=%v retry %v",
				tc.kind, tc.mayHaveArrived, tc.err, err, backend.IsDeterminate(err), retry, tc.determinate, tc.retry)
		}
		if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("transportError(%v) = %v, want it to match %v", tc.err, err, tc.sentinel)
		}
		if status.Code(errors.Unwrap(err)) != status.Code(tc.err) {
			t.Errorf("transportError(%v) = %v lost the gRPC status", tc.err, err)
		}
	}
}

func TestContextErrorByClock(t *testing.T) {
	// A deadline in the past counts even before the context's timer fired.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := contextError(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("contextError(expired) = %v, want DeadlineExceeded", err)
	}
	if err := contextError(context.Background()); err != nil {
		t.Errorf("contextError(background) = %v, want nil", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := contextError(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("contextError(cancelled) = %v, want Canceled", err)
	}
	err, _ := transportError(ctx, "op", "h:1", write, true, status.Error(codes.DeadlineExceeded, "late"))
	if !errors.Is(err, context.DeadlineExceeded) || backend.IsDeterminate(err) {
		t.Errorf("expired write = %v, want indeterminate matching DeadlineExceeded", err)
	}
}
