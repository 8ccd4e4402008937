package readgate

import (
	"context"
	"sync"
	"sync/atomic"
)

// Verifier confirms leadership with a quorum round and returns the term it
// confirmed. Its evidence must be produced after it was called, and it must
// return once the round is decided (the replica's bounds every call by the
// election timeout).
type Verifier func() (term uint64, err error)

// Gate shares leadership-confirmation rounds among concurrent reads.
type Gate struct {
	verify Verifier

	mu       sync.Mutex
	inflight *round // the round running now, nil if none
	next     *round // the round that starts when inflight ends

	rounds atomic.Uint64
}

type round struct {
	done chan struct{}
	term uint64
	err  error
}

// New returns a gate that confirms leadership with verify.
func New(verify Verifier) *Gate {
	return &Gate{verify: verify}
}

// Rounds returns how many confirmation rounds have been started.
func (g *Gate) Rounds() uint64 { return g.rounds.Load() }

// Wait returns the confirmed term once a confirmation round that started
// after the call succeeded, the round's error if it failed, or ctx's error.
// The caller must check that the term is the one whose state it reads.
func (g *Gate) Wait(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	var r *round
	if g.inflight == nil {
		r = &round{done: make(chan struct{})}
		g.start(r)
	} else {
		// The round in flight may have sent its heartbeats before this read
		// arrived: wait for the next one.
		if g.next == nil {
			g.next = &round{done: make(chan struct{})}
		}
		r = g.next
	}
	g.mu.Unlock()

	select {
	case <-r.done:
		return r.term, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// WaitJoiningInFlight is Wait without its safety, as a canary for the
// correctness harness (committer serve --unsafe-join-inflight-reads): a read
// that arrives while a round is in flight joins that round instead of
// waiting for the next one. The round's evidence may have been gathered
// before the read arrived, so a leader deposed meanwhile (paused, say, with
// the answers already in its socket buffers) confirms the read with a
// quorum's word from before the later leader existed: the classic stale-read
// bug. Never use it in production.
func (g *Gate) WaitJoiningInFlight(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	r := g.inflight
	if r == nil {
		r = &round{done: make(chan struct{})}
		g.start(r)
	}
	g.mu.Unlock()

	select {
	case <-r.done:
		return r.term, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// start runs r; g.mu must be held. At most one round goroutine exists at a
// time, and it ends when its Verifier returns.
func (g *Gate) start(r *round) {
	g.inflight = r
	g.rounds.Add(1)
	go func() {
		term, err := g.verify()
		g.mu.Lock()
		defer g.mu.Unlock()
		r.term, r.err = term, err
		close(r.done)
		g.inflight = nil
		if n := g.next; n != nil {
			g.next = nil
			g.start(n)
		}
	}()
}
