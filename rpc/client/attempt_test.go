package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// stuck takes every call and never answers until the caller gives up, as a
// replica does that was paused, or cut off with its connections open.
type stuck struct{ backend.Consensus }

func (stuck) Head(ctx context.Context, _ string) (*backend.VersionedData, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stuck) CompareAndSet(ctx context.Context, _ string, _ backend.VersionedData) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

// An attempt nothing answers within its timeout moves a read on to the next
// replica within the call's deadline; a write whose request may have been
// delivered is never sent again, and keeps the call's deadline.
func TestAttemptTimeoutMovesReadsOnButNeverResendsDeliveredWrites(t *testing.T) {
	good := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	stuckCalls, goodCalls := newCallCounter(), newCallCounter()
	a := rpctest.Serve(t, stuck{good}, server.Config{Logger: quietLogger()}, stuckCalls.option())
	b := rpctest.Serve(t, good, server.Config{Logger: quietLogger()}, goodCalls.option())
	opts := []client.Option{client.WithAttemptTimeout(300 * time.Millisecond), client.WithLogger(quietLogger())}
	ctx := t.Context()

	reader := rpctest.Dial(t, []string{a.Addr, b.Addr}, append(opts, client.WithCallTimeout(20*time.Second))...)
	start := time.Now()
	if v, err := reader.Head(ctx, "s"); err != nil || v != nil {
		t.Fatalf("head = %v, %v; want none, from the replica that answers", v, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("head took %v: it waited for the call's deadline, not one attempt's", took)
	}
	if s, g := stuckCalls.count("Head"), goodCalls.count("Head"); s != 1 || g != 1 {
		t.Errorf("head reached the stuck replica %d and the good one %d times, want 1 and 1", s, g)
	}

	writer := rpctest.Dial(t, []string{a.Addr, b.Addr}, append(opts, client.WithCallTimeout(2*time.Second))...)
	_, err := writer.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
	if err == nil || backend.IsDeterminate(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cas to the stuck replica = %v, want an indeterminate deadline error", err)
	}
	if s, g := stuckCalls.count("CompareAndSet"), goodCalls.count("CompareAndSet"); s != 1 || g != 0 {
		t.Errorf("cas reached the stuck replica %d and the good one %d times, want 1 and 0", s, g)
	}
}

// A write waiting for a connection that never completes was not delivered:
// the attempt timeout moves it on to a replica that answers.
func TestAttemptTimeoutMovesUndeliveredWritesOn(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	// Accepts and never speaks HTTP/2, so no call can be sent on it.
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	good := rpctest.Serve(t, rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()}), server.Config{Logger: quietLogger()})
	c := rpctest.Dial(t, []string{lis.Addr().String(), good.Addr},
		client.WithAttemptTimeout(300*time.Millisecond), client.WithCallTimeout(20*time.Second), client.WithLogger(quietLogger()))
	start := time.Now()
	if ok, err := c.CompareAndSet(t.Context(), "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")}); err != nil || !ok {
		t.Fatalf("cas = %v, %v; want committed on the replica that answers", ok, err)
	}
	// Without the attempt timeout it would wait for gRPC's 5 s connect
	// timeout.
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("cas took %v: it waited for the connection attempt, not the attempt timeout", took)
	}
}
