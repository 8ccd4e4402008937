package peer_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/peerserver"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

type termReplica struct{}

func (termReplica) CurrentTerm() uint64 { return 3 }

func (termReplica) ServerStats() cluster.ServerStats {
	return cluster.ServerStats{ID: "r2", LastContact: 1500 * time.Millisecond, LastTerm: 3, LastIndex: 42}
}

// relayServer serves the consensus service over store and the peer
// service relaying it, as a replica does.
type relayServer struct {
	addr string
	gs   *grpc.Server
	peer *peerserver.Server
	done chan error
}

func serveRelay(t *testing.T, store backend.Consensus) *relayServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(store, server.Config{})
	impl, timeout, onPanic := srv.Consensus()
	ps := peerserver.Register(srv.GRPC(), termReplica{}, &peerserver.Relayed{Desc: &consensuspb.ProtoPersistConsensus_ServiceDesc, Impl: impl, DefaultTimeout: timeout, OnPanic: onPanic})
	rs := &relayServer{addr: lis.Addr().String(), gs: srv.GRPC(), peer: ps, done: make(chan error, 1)}
	go func() { rs.done <- srv.GRPC().Serve(lis) }()
	t.Cleanup(srv.GRPC().Stop)
	return rs
}

// Every consensus call a follower forwards goes over the relay stream; it
// must keep every case of the contract.
func TestRelayConformance(t *testing.T) {
	conformance.RunConsensus(t, func(t *testing.T) backend.Consensus {
		return dial(t, serveRelay(t, rpctest.OpenBolt(t, bolt.Options{})).addr)
	})
}

// probe records what a relayed call saw on the serving side, and can hold
// a call until released.
type probe struct {
	backend.Consensus
	mu       sync.Mutex
	md       metadata.MD
	deadline time.Time
	hold     chan struct{} // when set, Head waits for it or its context
	arrived  chan struct{}
	ended    chan error // the held call's context error
}

func (p *probe) Head(ctx context.Context, shard string) (*backend.VersionedData, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	d, _ := ctx.Deadline()
	p.mu.Lock()
	p.md, p.deadline = md, d
	p.mu.Unlock()
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	return p.Consensus.Head(ctx, shard)
}

func (p *probe) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	if err := p.wait(ctx); err != nil {
		return false, err
	}
	return p.Consensus.CompareAndSet(ctx, shard, v)
}

// wait holds the call if holdNext asked for it, until released or its
// context ends.
func (p *probe) wait(ctx context.Context) error {
	p.mu.Lock()
	hold, arrived := p.hold, p.arrived
	p.hold = nil
	p.mu.Unlock()
	if hold == nil {
		return nil
	}
	close(arrived)
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		p.ended <- ctx.Err()
		return ctx.Err()
	}
}

// holdNext makes the next Head or CompareAndSet wait; closing the returned
// channel releases it.
func (p *probe) holdNext() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.arrived, p.ended = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	return p.hold
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// A relayed call carries its metadata (the forwarder's one-hop mark) and
// its deadline to the serving side.
func TestRelayCarriesMetadataAndDeadline(t *testing.T) {
	p := &probe{Consensus: rpctest.OpenBolt(t, bolt.Options{})}
	c := dial(t, serveRelay(t, p).addr)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	sent, _ := ctx.Deadline()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("committer-forwarded", "1"))
	if _, err := c.Head(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if got := p.md.Get("committer-forwarded"); len(got) != 1 || got[0] != "1" {
		t.Errorf("relayed metadata %v, want committer-forwarded=1", p.md)
	}
	// Like gRPC's own timeout header, the relay carries the time left, so
	// the served deadline is the caller's shifted by the transit time.
	if p.deadline.IsZero() || p.deadline.Before(sent.Add(-time.Second)) || p.deadline.After(sent.Add(time.Second)) {
		t.Errorf("relayed deadline %v, want the caller's %v give or take the transit", p.deadline, sent)
	}
}

// A caller that gives up cancels its call on the serving side.
func TestRelayCancelReachesTheServer(t *testing.T) {
	p := &probe{Consensus: rpctest.OpenBolt(t, bolt.Options{})}
	c := dial(t, serveRelay(t, p).addr)
	p.holdNext()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Head(ctx, "s")
		errc <- err
	}()
	waitFor(t, p.arrived, "the held head")
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled head = %v, want context.Canceled", err)
	}
	select {
	case err := <-p.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the served call ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the served call was never cancelled")
	}
}

// A write whose stream breaks after it was sent has an unknown outcome; one
// that could not be sent, because the peer is not there, did nothing.
func TestRelayDeterminacy(t *testing.T) {
	p := &probe{Consensus: rpctest.OpenBolt(t, bolt.Options{})}
	rs := serveRelay(t, p)
	c := dial(t, rs.addr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Head(ctx, "warm"); err != nil { // the stream is open
		t.Fatal(err)
	}
	p.holdNext()
	errc := make(chan error, 1)
	go func() {
		_, err := c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
		errc <- err
	}()
	waitFor(t, p.arrived, "the held compare-and-set")
	rs.gs.Stop()
	if err := <-errc; err == nil || backend.IsDeterminate(err) {
		t.Errorf("cas cut after it was sent = %v, want an indeterminate error", err)
	}

	_, err := c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
	if !errors.Is(err, backend.ErrUnavailable) || !backend.IsDeterminate(err) {
		t.Errorf("cas to a stopped peer = %v, want a determinate ErrUnavailable", err)
	}
}

// Draining lets a graceful stop finish: the call in flight is answered, the
// sender closes the stream, and calls after it either run or fail
// determinate.
func TestRelayDrainLetsGracefulStopFinish(t *testing.T) {
	p := &probe{Consensus: rpctest.OpenBolt(t, bolt.Options{})}
	rs := serveRelay(t, p)
	c := dial(t, rs.addr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	release := p.holdNext()
	errc := make(chan error, 1)
	go func() {
		ok, err := c.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
		if err == nil && !ok {
			err = errors.New("mismatch")
		}
		errc <- err
	}()
	waitFor(t, p.arrived, "the held compare-and-set")
	rs.peer.Drain()
	stopped := make(chan struct{})
	go func() {
		rs.gs.GracefulStop()
		close(stopped)
	}()
	// Released only now: the graceful stop waits for it.
	close(release)
	if err := <-errc; err != nil {
		t.Errorf("cas in flight during the drain = %v, want committed", err)
	}
	waitFor(t, stopped, "the graceful stop")
	_, err := c.Head(ctx, "s")
	if !errors.Is(err, backend.ErrUnavailable) || !backend.IsDeterminate(err) {
		t.Errorf("head after the stop = %v, want a determinate ErrUnavailable", err)
	}
}

// boomStore panics in CompareAndSet on shard "boom", after writing it.
type boomStore struct{ backend.Consensus }

func (b boomStore) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (bool, error) {
	ok, err := b.Consensus.CompareAndSet(ctx, shard, v)
	if shard == "boom" {
		panic("a bug after the write")
	}
	return ok, err
}

// A relayed call whose handler panics fails alone, indeterminate, and the
// stream goes on carrying calls.
func TestRelayedPanicFailsOnlyItsCall(t *testing.T) {
	c := dial(t, serveRelay(t, boomStore{rpctest.OpenBolt(t, bolt.Options{})}).addr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := c.CompareAndSet(ctx, "boom", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
	if err == nil || backend.IsDeterminate(err) {
		t.Fatalf("relayed cas that panicked = %v, want an indeterminate error", err)
	}
	if ok, err := c.CompareAndSet(ctx, "fine", backend.VersionedData{SeqNo: 0, Data: []byte("y")}); err != nil || !ok {
		t.Fatalf("relayed cas after the panic = %v, %v; want committed", ok, err)
	}
}
