package cluster

import (
	"context"
	"errors"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/metrics"
)

// Replica serves the consensus API: locally when it is the ready leader,
// otherwise by forwarding to the leader.
var _ backend.Consensus = (*Replica)(nil)

type opKind int

const (
	opRead opKind = iota
	opWrite
)

// data routes one consensus call: run executes it on the ready leader's
// store here, or on the leader through a Peer.
func (r *Replica) data(ctx context.Context, op string, kind opKind, run func(context.Context, backend.Consensus) error) error {
	return r.forward(ctx, request{
		op:     op,
		local:  r.onReadyLeader(kind, run),
		remote: func(ctx context.Context, p PeerClient) error { return run(ctx, p) },
	})
}

// onReadyLeader is the local step of consensus calls: only the ready
// (fenced) leader serves them, and a read only once the read gate has
// confirmed this replica's leadership in the term it reads from.
func (r *Replica) onReadyLeader(kind opKind, run func(context.Context, backend.Consensus) error) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		lt := r.leader.Load()
		if lt == nil {
			return false, nil
		}
		if kind == opRead && r.cfg.ReadConsistency == Linearizable {
			wait := r.gate.Wait
			if r.cfg.UnsafeJoinInflightReads {
				// The canary: a round whose evidence may predate the read.
				wait = r.gate.WaitJoiningInFlight
			}
			term, err := wait(ctx)
			if err != nil || term != lt.term {
				// Not provably the leader of lt's term after the read
				// arrived: nothing was read; try again or elsewhere.
				return false, backend.Determinatef("%w: leadership not confirmed (%v)", backend.ErrNotLeader, err)
			}
		}
		r.setLeaderHeader(ctx, r.cfg.GRPCAddr)
		err := run(ctx, lt.store)
		if kind == opWrite && isForwarded(ctx) {
			r.cfg.FaultDelays.Wait(ctx, faultdelay.ForwardedWriteDone)
		}
		if errors.Is(err, backend.ErrFenced) {
			// Fenced writes change nothing, so the request may go on to the
			// leader of the later term (or to this replica's own later
			// term, when lt is an older one).
			r.log.Warn("a write was fenced: a later epoch is stored", "term", lt.term)
			r.stepDownFrom(lt)
			return false, err
		}
		return true, err
	}
}

// Head returns the shard's latest version.
func (r *Replica) Head(ctx context.Context, shard string) (out *backend.VersionedData, err error) {
	err = r.data(ctx, metrics.OpHead, opRead, func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.Head(ctx, shard)
		return err
	})
	return out, err
}

// Scan returns versions from seqno from on.
func (r *Replica) Scan(ctx context.Context, shard string, from, limit uint64) (out []backend.VersionedData, err error) {
	err = r.data(ctx, metrics.OpScan, opRead, func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.Scan(ctx, shard, from, limit)
		return err
	})
	return out, err
}

// ListKeys returns every shard.
func (r *Replica) ListKeys(ctx context.Context) (out []string, err error) {
	err = r.data(ctx, metrics.OpListKeys, opRead, func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.ListKeys(ctx)
		return err
	})
	return out, err
}

// CompareAndSet appends v if it follows the head.
func (r *Replica) CompareAndSet(ctx context.Context, shard string, v backend.VersionedData) (ok bool, err error) {
	err = r.data(ctx, metrics.OpCompareAndSet, opWrite, func(ctx context.Context, c backend.Consensus) (err error) {
		ok, err = c.CompareAndSet(ctx, shard, v)
		return err
	})
	return ok, err
}

// CompareAndSetMulti applies several CaS atomically.
func (r *Replica) CompareAndSetMulti(ctx context.Context, ops []backend.CASOp) (out []bool, err error) {
	err = r.data(ctx, metrics.OpCompareAndSetMulti, opWrite, func(ctx context.Context, c backend.Consensus) (err error) {
		out, err = c.CompareAndSetMulti(ctx, ops)
		return err
	})
	return out, err
}

// Truncate deletes versions below seqno.
func (r *Replica) Truncate(ctx context.Context, shard string, seqno uint64) (n uint64, err error) {
	err = r.data(ctx, metrics.OpTruncate, opWrite, func(ctx context.Context, c backend.Consensus) (err error) {
		n, err = c.Truncate(ctx, shard, seqno)
		return err
	})
	return n, err
}
