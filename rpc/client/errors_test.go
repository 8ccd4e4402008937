package client_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
	"github.com/hacommit/committer/rpc/wire"
)

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

// wantDeterminate asserts err is a determinate error matching sentinel whose
// text contains every phrase.
func wantDeterminate(t *testing.T, what string, err, sentinel error, phrases ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want determinate %v", what, sentinel)
		return
	}
	if !backend.IsDeterminate(err) || !errors.Is(err, sentinel) {
		t.Errorf("%s: %v (determinate=%v), want determinate %v", what, err, backend.IsDeterminate(err), sentinel)
	}
	for _, p := range phrases {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %q does not contain %q", what, err, p)
		}
	}
}

// TestInvalidInputReachesClientAsDeterminateError checks every bad input
// docs/architecture.md §2.2 lists, end to end. The server's data limit (1 KiB)
// is below the backend's, so the data-size rejection can only come from the
// server.
func TestInvalidInputReachesClientAsDeterminateError(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{MaxDataBytes: 1 << 20, Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{MaxDataBytes: 1024, Logger: quietLogger()})
	c := rpctest.Dial(t, []string{srv.Addr})
	ctx := t.Context()
	tooBig := backend.MaxSeqNo + 1
	const emptyShard = "determinate: invalid argument: empty shard name"
	const seqnoTooBig = "9223372036854775808 exceeds the maximum seqno 9223372036854775807"

	_, err := c.Head(ctx, "")
	wantDeterminate(t, "head empty shard", err, backend.ErrInvalidArgument, emptyShard)
	_, err = c.Scan(ctx, "", 0, 1)
	wantDeterminate(t, "scan empty shard", err, backend.ErrInvalidArgument, emptyShard)
	_, err = c.Scan(ctx, "s", tooBig, 1)
	wantDeterminate(t, "scan from too big", err, backend.ErrInvalidArgument, "scan from "+seqnoTooBig)
	_, err = c.CompareAndSet(ctx, "", vd(0, "x"))
	wantDeterminate(t, "cas empty shard", err, backend.ErrInvalidArgument, emptyShard)
	_, err = c.CompareAndSet(ctx, "s", vd(tooBig, "x"))
	wantDeterminate(t, "cas seqno too big", err, backend.ErrInvalidArgument, "seqno "+seqnoTooBig)
	_, err = c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: bytes.Repeat([]byte{'a'}, 1025)})
	wantDeterminate(t, "cas data over limit", err, backend.ErrInvalidArgument, `shard "s": data of 1025 bytes exceeds the limit of 1024 bytes`)
	_, err = c.Truncate(ctx, "", 0)
	wantDeterminate(t, "truncate empty shard", err, backend.ErrInvalidArgument, emptyShard)
	_, err = c.Truncate(ctx, "s", math.MaxUint64)
	wantDeterminate(t, "truncate seqno too big", err, backend.ErrInvalidArgument, "truncate seqno 18446744073709551615 exceeds")
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "1")}, {Shard: "b", New: vd(0, "2")}, {Shard: "a", New: vd(1, "3")}})
	wantDeterminate(t, "multi duplicate", err, backend.ErrInvalidArgument, `shard "a" appears at elements 0 and 2 of a multi compare-and-set`)
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "1")}, {Shard: "", New: vd(0, "2")}})
	wantDeterminate(t, "multi empty shard", err, backend.ErrInvalidArgument, "element 1: invalid argument: empty shard name")
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(tooBig, "1")}})
	wantDeterminate(t, "multi seqno too big", err, backend.ErrInvalidArgument, "element 0: invalid argument: seqno "+seqnoTooBig)
	_, err = c.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: backend.VersionedData{Data: make([]byte, 2000)}}})
	wantDeterminate(t, "multi data over limit", err, backend.ErrInvalidArgument, "data of 2000 bytes exceeds the limit of 1024 bytes")

	// The wire code survives: the cause is a *wire.RemoteError with it.
	_, err = c.Head(ctx, "")
	var remote *wire.RemoteError
	if !errors.As(err, &remote) || remote.Code != wire.CodeInvalidArgument || remote.Message != "invalid argument: empty shard name" {
		t.Errorf("head empty shard: remote error %#v, want code %q and the server's message", remote, wire.CodeInvalidArgument)
	}

	// Other operation errors keep their sentinel too.
	_, err = c.Truncate(ctx, "never-written", 0)
	wantDeterminate(t, "truncate of empty shard", err, backend.ErrTruncateAboveHead)

	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys) != 0 {
		t.Errorf("list keys after rejected writes = %q, %v; want none", keys, err)
	}
}

// TestUnreachableEndpoint: a refused connection never delivers the request,
// so even a write fails determinate (unavailable) after its retries.
func TestUnreachableEndpoint(t *testing.T) {
	c := rpctest.Dial(t, []string{rpctest.FreeAddr(t)}, client.WithMaxAttempts(3), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	ctx := t.Context()
	_, err := c.CompareAndSet(ctx, "s", vd(0, "x"))
	wantDeterminate(t, "cas to a closed port", err, backend.ErrUnavailable, "compare_and_set via 127.0.0.1:", "request not delivered")
	_, err = c.Head(ctx, "s")
	wantDeterminate(t, "head from a closed port", err, backend.ErrUnavailable, "head via 127.0.0.1:", "request not delivered")
}

// TestRetriesUndeliveredWriteOnNextEndpoint: the first endpoint refuses
// connections; the write goes to the second and commits exactly once.
func TestRetriesUndeliveredWriteOnNextEndpoint(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	counter := newCallCounter()
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()}, counter.option())
	c := rpctest.Dial(t, []string{rpctest.FreeAddr(t), srv.Addr}, client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	ctx := t.Context()

	committed, err := c.CompareAndSet(ctx, "s", vd(0, "x"))
	if err != nil || !committed {
		t.Fatalf("cas = %v, %v; want committed", committed, err)
	}
	got, err := c.Head(ctx, "s")
	if err != nil || got == nil || got.SeqNo != 0 || string(got.Data) != "x" {
		t.Fatalf("head = %+v, %v; want {0 x}", got, err)
	}
	if n := counter.count("CompareAndSet"); n != 1 {
		t.Errorf("server saw %d CompareAndSet calls, want 1", n)
	}
	if n := counter.count("Head"); n != 1 {
		t.Errorf("server saw %d Head calls, want 1 (the client sticks to the endpoint that answered)", n)
	}
}

// TestWriteCutAfterServerActedIsIndeterminate cuts the connection the moment
// the server starts its response: the write committed, the client cannot know,
// so the error must be indeterminate and the write must not be retried.
func TestWriteCutAfterServerActedIsIndeterminate(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	counter := newCallCounter()
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()}, counter.option())
	proxy := startProxy(t, srv.Addr)
	c := rpctest.Dial(t, []string{proxy.Addr()}, client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	ctx := t.Context()
	if _, err := c.ListKeys(ctx); err != nil { // connect through the proxy
		t.Fatalf("list keys: %v", err)
	}

	proxy.mode.Store(modeCutOnResponse)
	committed, err := c.CompareAndSet(ctx, "s", vd(0, "x"))
	if err == nil {
		t.Fatalf("cas through a cut connection = %v, nil; want an error", committed)
	}
	if backend.IsDeterminate(err) {
		t.Errorf("cas through a cut connection: %v is determinate; the server committed it", err)
	}
	if code := status.Code(errors.Unwrap(err)); code != codes.Unavailable {
		t.Errorf("cas through a cut connection: status %v, want Unavailable (%v)", code, err)
	}
	if n := counter.count("CompareAndSet"); n != 1 {
		t.Errorf("server saw %d CompareAndSet calls, want exactly 1 (no retry of an unknown outcome)", n)
	}
	direct := rpctest.Dial(t, []string{srv.Addr})
	got, err := direct.Head(ctx, "s")
	if err != nil || got == nil || got.SeqNo != 0 || string(got.Data) != "x" {
		t.Errorf("head after the cut = %+v, %v; want the committed {0 x}", got, err)
	}

	// A read cut the same way is retried and answers.
	proxy.mode.Store(modeCutOnResponse)
	got, err = c.Head(ctx, "s")
	if err != nil || got == nil || got.SeqNo != 0 || string(got.Data) != "x" {
		t.Errorf("head through a cut connection = %+v, %v; want {0 x} after a retry", got, err)
	}
	if n := counter.count("Head"); n != 3 {
		t.Errorf("server saw %d Head calls, want 3 (1 direct, 2 through the proxy)", n)
	}
}

// TestWriteUnansweredUntilDeadlineIsIndeterminate: the server acts but its
// answer never arrives (a partition after delivery); the deadline expires and
// the outcome is unknown.
func TestWriteUnansweredUntilDeadlineIsIndeterminate(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	proxy := startProxy(t, srv.Addr)
	c := rpctest.Dial(t, []string{proxy.Addr()})
	if _, err := c.ListKeys(t.Context()); err != nil {
		t.Fatalf("list keys: %v", err)
	}

	proxy.mode.Store(modeSwallowResponses)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := c.CompareAndSet(ctx, "s", vd(0, "x"))
	if err == nil || backend.IsDeterminate(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered cas: %v (determinate=%v), want indeterminate and matching context.DeadlineExceeded", err, backend.IsDeterminate(err))
	}
}

// TestDefaultDeadline: a call whose context has none gets the client's, here
// against a peer that accepts TCP but never speaks HTTP/2, so nothing is ever
// delivered and the failure is determinate.
func TestDefaultDeadline(t *testing.T) {
	c := rpctest.Dial(t, []string{blackhole(t)}, client.WithCallTimeout(300*time.Millisecond))
	_, err := c.CompareAndSet(context.Background(), "s", vd(0, "x"))
	wantDeterminate(t, "cas to a silent peer", err, backend.ErrUnavailable, "request not delivered")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cas to a silent peer: %v does not match context.DeadlineExceeded", err)
	}
}

// TestFollowsLeaderHeader: a replica that names the leader in the
// committer-leader header sends the client's next calls there, unless the
// client was told to ignore it.
func TestFollowsLeaderHeader(t *testing.T) {
	for _, tc := range []struct {
		name           string
		opts           []client.Option
		headOnFollower int
	}{
		{"routed", nil, 0},
		{"without leader routing", []client.Option{client.WithoutLeaderRouting()}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { testLeaderHeader(t, tc.opts, tc.headOnFollower) })
	}
}

func testLeaderHeader(t *testing.T, opts []client.Option, headOnFollower int) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	leaderCalls := newCallCounter()
	leader := rpctest.Serve(t, store, server.Config{Logger: quietLogger()}, leaderCalls.option())
	followerCalls := newCallCounter()
	follower := rpctest.Serve(t, store, server.Config{Logger: quietLogger()}, followerCalls.option(),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := grpc.SetHeader(ctx, metadata.Pairs(wire.LeaderMetadataKey, leader.Addr)); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}))
	c := rpctest.Dial(t, []string{follower.Addr}, opts...)
	ctx := t.Context()

	if committed, err := c.CompareAndSet(ctx, "s", vd(0, "x")); err != nil || !committed {
		t.Fatalf("cas = %v, %v; want committed", committed, err)
	}
	if got, err := c.Head(ctx, "s"); err != nil || got == nil || string(got.Data) != "x" {
		t.Fatalf("head = %+v, %v; want {0 x}", got, err)
	}
	if f, l := followerCalls.count("CompareAndSet"), leaderCalls.count("CompareAndSet"); f != 1 || l != 0 {
		t.Errorf("cas went to follower %d and leader %d times, want 1 and 0", f, l)
	}
	if f, l := followerCalls.count("Head"), leaderCalls.count("Head"); f != headOnFollower || l != 1-headOnFollower {
		t.Errorf("head went to follower %d and leader %d times, want %d and %d", f, l, headOnFollower, 1-headOnFollower)
	}
}

// TestClosedClient: calls after Close fail determinate without sending.
func TestClosedClient(t *testing.T) {
	c, err := client.New([]string{rpctest.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, err = c.CompareAndSet(t.Context(), "s", vd(0, "x"))
	wantDeterminate(t, "cas after close", err, client.ErrClosed)
}

func TestNewRejectsBadEndpoints(t *testing.T) {
	for _, eps := range [][]string{nil, {}, {""}, {"127.0.0.1:1", ""}} {
		if c, err := client.New(eps); err == nil {
			_ = c.Close()
			t.Errorf("New(%q) succeeded, want an error", eps)
		}
	}
}

// TestBorrowedConnIgnoresLeaderHeader: a FromConn client has one connection
// and its owner routes; a leader hint must not redirect it (there is no
// connection to the hinted address to use).
func TestBorrowedConnIgnoresLeaderHeader(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	follower := rpctest.Serve(t, store, server.Config{Logger: quietLogger()},
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := grpc.SetHeader(ctx, metadata.Pairs(wire.LeaderMetadataKey, "127.0.0.1:1")); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}))
	cc, err := grpc.NewClient(follower.Addr, append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := client.FromConn(cc)
	for i := range 3 {
		if committed, err := c.CompareAndSet(t.Context(), "s", vd(uint64(i), "x")); err != nil || !committed {
			t.Fatalf("cas %d over a borrowed connection = %v, %v; want committed", i, committed, err)
		}
	}
}
