package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/wire"
)

// Replica serves the consensus API: locally when it is the ready leader,
// otherwise by forwarding to the leader.
var _ backend.Consensus = (*Replica)(nil)

// forwardedKey marks a request a follower forwarded, so the receiver never
// forwards it again (one hop only).
const forwardedKey = "committer-forwarded"

// retryPause paces the re-resolution of the leader while a request is held
// through an election.
const retryPause = 20 * time.Millisecond

type opKind int

const (
	opRead opKind = iota
	opWrite
)

// do runs op on the ready leader's store, forwarding or holding as needed.
//
// Determinacy (DESIGN-NOTES §5): a request that never reached the backend
// (no leader known until the deadline, the leader answered "not leader" or
// "not ready" before acting) fails determinate; a forwarded write whose call
// broke after it was sent stays indeterminate.
func (r *Replica) do(ctx context.Context, op string, kind opKind, local func(context.Context, backend.Consensus) error, remote func(context.Context, backend.Consensus) error) error {
	forwarded := isForwarded(ctx)
	var lastErr error
	// note records why an attempt did not reach the backend. A fenced
	// attempt says most about why the request failed, so it sticks.
	note := func(err error) {
		if lastErr == nil || !errors.Is(lastErr, backend.ErrFenced) {
			lastErr = err
		}
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return r.heldTooLong(ctx, lastErr)
			case <-time.After(retryPause):
			}
		}
		if lt := r.leader.Load(); lt != nil {
			if kind == opRead && r.cfg.ReadConsistency == Linearizable {
				term, err := r.gate.Wait(ctx)
				if err != nil || term != lt.term {
					// Not provably the leader of lt's term after the read
					// arrived: nothing was read; try again or elsewhere.
					note(backend.Determinatef("%w: leadership not confirmed (%v)", backend.ErrNotLeader, err))
					if ctx.Err() != nil {
						return r.heldTooLong(ctx, lastErr)
					}
					continue
				}
			}
			r.setLeaderHeader(ctx, r.cfg.GRPCAddr)
			err := local(ctx, lt.store)
			if errors.Is(err, backend.ErrFenced) {
				// Fenced writes change nothing, so the request may go on to
				// the leader of the later term.
				r.log.Warn("a write was fenced: a later leader exists; stepping down", "term", lt.term)
				r.setNotReady(lt)
				r.transferAwayIfLeader()
				note(err)
				continue
			}
			return err
		}
		if r.raft.State() == raft.Leader {
			// Leader, not ready yet (barrier and fence in progress): hold.
			note(backend.Determinatef("%w: leader is not ready yet", backend.ErrNotLeader))
			select {
			case <-r.readinessWatch():
			case <-ctx.Done():
				return r.heldTooLong(ctx, lastErr)
			case <-time.After(retryPause):
			}
			attempt = 0
			continue
		}
		addr, id := r.leaderGRPC()
		if addr == "" {
			if r.isRemoved() {
				// No leader will ever be known here: answer now, so the
				// client tries another replica within its deadline.
				return backend.Determinatef("%w: this replica was removed from the cluster", backend.ErrUnavailable)
			}
			note(backend.Determinatef("%w: no leader known", backend.ErrUnavailable))
			continue
		}
		if forwarded {
			// One hop only: the sender believed this replica leads. Tell it
			// who does instead of forwarding again.
			r.setLeaderHeader(ctx, addr)
			return backend.Determinatef("%w: leader is %s at %s", backend.ErrNotLeader, id, addr)
		}
		r.setLeaderHeader(ctx, addr)
		peer, err := r.peers.get(addr)
		if err != nil {
			note(backend.Determinatef("%w: leader address %q: %v", backend.ErrUnavailable, addr, err))
			continue
		}
		err = remote(markForwarded(ctx), peer.consensus)
		if m := r.cfg.Metrics; m != nil {
			m.Forwarded(op, metrics.Result(err))
		}
		if err == nil {
			return nil
		}
		if backend.IsDeterminate(err) && (errors.Is(err, backend.ErrNotLeader) || errors.Is(err, backend.ErrUnavailable)) {
			// The target did not act; re-resolve and try again.
			note(err)
			continue
		}
		return err
	}
}

// heldTooLong turns an expired hold into the error of the last attempt, which
// is determinate: no attempt reached the backend.
func (r *Replica) heldTooLong(ctx context.Context, last error) error {
	if last == nil {
		last = backend.Determinatef("%w: no leader known", backend.ErrUnavailable)
	}
	return fmt.Errorf("%w (gave up: %v)", last, ctx.Err())
}

func (r *Replica) transferAwayIfLeader() {
	if r.raft.State() == raft.Leader {
		r.transferAway()
	}
}

// leaderGRPC returns the leader's gRPC address from the FSM.
func (r *Replica) leaderGRPC() (addr, id string) {
	_, lid := r.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	m, ok := r.fsm.Member(string(lid))
	if !ok {
		return "", string(lid)
	}
	return m.GRPCAddr, string(lid)
}

func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

func markForwarded(ctx context.Context) context.Context {
	// Incoming metadata must not leak into the outgoing call; the new
	// outgoing context carries only the forwarding mark.
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(forwardedKey, "1"))
}

// setLeaderHeader tells the client where the leader is, so it can route
// straight there next time. Outside a gRPC handler it does nothing.
func (r *Replica) setLeaderHeader(ctx context.Context, addr string) {
	if addr != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(wire.LeaderMetadataKey, addr))
	}
}

// Head returns the shard's latest version.
func (r *Replica) Head(ctx context.Context, shard string) (out *backend.VersionedData, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) { out, err = c.Head(ctx, shard); return err }
	err = r.do(ctx, metrics.OpHead, opRead, run, run)
	return out, err
}

// Scan returns versions from seqno from on.
func (r *Replica) Scan(ctx context.Context, shard string, from, limit uint64) (out []backend.VersionedData, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.Scan(ctx, shard, from, limit)
		return err
	}
	err = r.do(ctx, metrics.OpScan, opRead, run, run)
	return out, err
}

// ListKeys returns every shard.
func (r *Replica) ListKeys(ctx context.Context) (out []string, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) { out, err = c.ListKeys(ctx); return err }
	err = r.do(ctx, metrics.OpListKeys, opRead, run, run)
	return out, err
}

// CompareAndSet appends v if it follows the head.
func (r *Replica) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (ok bool, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) {
		ok, err = c.CompareAndSet(ctx, shard, v)
		return err
	}
	err = r.do(ctx, metrics.OpCompareAndSet, opWrite, run, run)
	return ok, err
}

// CompareAndSetMulti applies several CaS atomically.
func (r *Replica) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) (out []bool, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.CompareAndSetMulti(ctx, ops)
		return err
	}
	err = r.do(ctx, metrics.OpCompareAndSetMulti, opWrite, run, run)
	return out, err
}

// Truncate deletes versions below seqno.
func (r *Replica) Truncate(ctx context.Context, shard string, seqno uint64) (n uint64, err error) {
	run := func(ctx context.Context, c backend.Consensus) (err error) {
		n, err = c.Truncate(ctx, shard, seqno)
		return err
	}
	err = r.do(ctx, metrics.OpTruncate, opWrite, run, run)
	return n, err
}
