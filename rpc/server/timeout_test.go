package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend"
	pb "github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// deadlineStore answers Head once its context ends, reporting the deadline
// the call ran under.
type deadlineStore struct {
	backend.Consensus
	seen chan time.Time // zero time: no deadline
}

func (d *deadlineStore) Head(ctx context.Context, _ string) (*backend.VersionedData, error) {
	dl, _ := ctx.Deadline()
	d.seen <- dl
	<-ctx.Done()
	return nil, backend.Indeterminatef("%w", ctx.Err())
}

// A call that arrives without a deadline gets the server's default, so a
// backend that never answers cannot hold it forever; a call with a deadline
// keeps its own.
func TestCallsWithoutADeadlineAreBounded(t *testing.T) {
	store := &deadlineStore{seen: make(chan time.Time, 2)}
	const bound = 200 * time.Millisecond
	srv := rpctest.StartWith(t, server.New(store, server.Config{DefaultTimeout: bound, Logger: quietLogger()}))
	cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewProtoPersistConsensusClient(cc)

	start := time.Now()
	done := make(chan *pb.ProtoHeadResponse, 1)
	go func() {
		resp, err := c.Head(context.Background(), &pb.ProtoHeadRequest{Shard: "k"})
		if err != nil {
			t.Errorf("head without a deadline: transport error %v", err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp.GetErr() == nil || resp.GetErr().GetDeterminacy() != pb.ProtoDeterminacy_PROTO_DETERMINACY_INDETERMINATE {
			t.Fatalf("head without a deadline = %v; want the backend's indeterminate deadline error", resp)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a call without a deadline was never bounded")
	}
	if dl := <-store.seen; dl.IsZero() || dl.Before(start) || dl.After(start.Add(bound+5*time.Second)) {
		t.Fatalf("backend ran under deadline %v (start %v); want start+%v", dl, start, bound)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, _ = c.Head(ctx, &pb.ProtoHeadRequest{Shard: "k"})
	if dl := <-store.seen; time.Until(dl) < 30*time.Minute {
		t.Fatalf("a call with an hour's deadline ran under %v; the server replaced it", dl)
	}
}
