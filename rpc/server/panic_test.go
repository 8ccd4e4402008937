package server_test

import (
	"context"
	"sync"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// panicky panics in CompareAndSet on shard "boom", after writing it, as a
// bug past the write would.
type panicky struct{ backend.Consensus }

func (p panicky) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	ok, err := p.Consensus.CompareAndSet(ctx, shard, v)
	if shard == "boom" {
		panic("a bug after the write")
	}
	return ok, err
}

// A panic in a handler fails that call, indeterminate since it may have
// acted, is reported, and the server goes on serving.
func TestHandlerPanicFailsOnlyItsCall(t *testing.T) {
	var mu sync.Mutex
	var methods []string
	store := panicky{rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})}
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger(), OnPanic: func(m string) {
		mu.Lock()
		defer mu.Unlock()
		methods = append(methods, m)
	}})
	c := rpctest.Dial(t, []string{srv.Addr})
	ctx := t.Context()

	_, err := c.CompareAndSet(ctx, "boom", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
	if err == nil || backend.IsDeterminate(err) {
		t.Fatalf("cas that panicked after writing = %v, want an indeterminate error", err)
	}
	if got, err := c.Head(ctx, "boom"); err != nil || got == nil || got.SeqNo != 0 {
		t.Fatalf("head(boom) = %+v, %v; want the version written before the panic", got, err)
	}
	if ok, err := c.CompareAndSet(ctx, "fine", backend.VersionedData{SeqNo: 0, Data: []byte("y")}); err != nil || !ok {
		t.Fatalf("cas after the panic = %v, %v; want committed", ok, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(methods) != 1 || methods[0] != "/mz_persist_committer.ProtoPersistConsensus/CompareAndSet" {
		t.Errorf("panics reported for %q, want one for CompareAndSet", methods)
	}
}
