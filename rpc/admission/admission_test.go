package admission_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/admission"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// heldHeads is a store whose Head calls wait until released, announcing
// each arrival.
type heldHeads struct {
	backend.Consensus
	arrived chan struct{}
	release chan struct{}
}

func (h *heldHeads) Head(ctx context.Context, _ string) (*backend.VersionedData, error) {
	h.arrived <- struct{}{}
	select {
	case <-h.release:
		return &backend.VersionedData{SeqNo: 7, Data: []byte("x")}, nil
	case <-ctx.Done():
		return nil, backend.Indeterminatef("head: %w", ctx.Err())
	}
}

func TestConnectionLimitRefusesTheCallOverIt(t *testing.T) {
	store := &heldHeads{arrived: make(chan struct{}, 8), release: make(chan struct{})}
	var mu sync.Mutex
	refused := map[string]int{}
	adm := admission.Config{MaxCallsPerConn: 2, OnRefused: func(method, reason string) {
		mu.Lock()
		defer mu.Unlock()
		refused[method+" "+reason]++
	}}
	srv := rpctest.Serve(t, store, server.Config{}, adm.ServerOptions()...)
	one, err := client.New([]string{srv.Addr}, client.WithMaxAttempts(1), client.WithCallTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	held := func(cl *client.Client) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := cl.Head(ctx, "s"); err != nil || v == nil || v.SeqNo != 7 {
				t.Errorf("held Head = %v, %v; want seqno 7", v, err)
			}
		}()
		<-store.arrived
	}
	held(one)
	held(one)

	_, err = one.Head(ctx, "s")
	if status.Code(errorsCause(err)) != codes.ResourceExhausted || !backend.IsDeterminate(err) || !strings.Contains(err.Error(), "--max-calls-per-conn") {
		t.Fatalf("third Head on a connection with two in progress = %v; want a determinate RESOURCE_EXHAUSTED naming the flag", err)
	}
	// The limit is the connection's: another connection still gets in.
	two, err := client.New([]string{srv.Addr}, client.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	held(two)

	close(store.release)
	wg.Wait()
	// Finished calls free their places.
	if v, err := one.Head(ctx, "s"); err != nil || v.SeqNo != 7 {
		t.Fatalf("Head after the others finished = %v, %v", v, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "/" + consensuspb.ProtoPersistConsensus_ServiceDesc.ServiceName + "/Head " + admission.ReasonConnectionLimit
	if len(refused) != 1 || refused[want] != 1 {
		t.Fatalf("refusals = %v, want one %q", refused, want)
	}
}

func TestZeroConfigAdmitsEverything(t *testing.T) {
	store := &heldHeads{arrived: make(chan struct{}, 64), release: make(chan struct{})}
	close(store.release)
	srv := rpctest.Serve(t, store, server.Config{}, admission.Config{}.ServerOptions()...)
	cl, err := client.New([]string{srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Head(ctx, "s"); err != nil {
				t.Errorf("Head: %v", err)
			}
		}()
	}
	wg.Wait()
}

// errorsCause digs the gRPC status out of the client's wrapped error.
func errorsCause(err error) error {
	for e := err; e != nil; {
		if _, ok := status.FromError(e); ok {
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}
