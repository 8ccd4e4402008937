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
	"github.com/hacommit/committer/internal/backoff"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/wire"
)

// ErrNoLeader: no leader was known to run a request on before its deadline.
// It comes wrapped in a determinate backend.ErrUnavailable, since nothing
// was done.
var ErrNoLeader = errors.New("no leader known")

// forwardedKey marks a request a replica forwarded, so the receiver never
// forwards it again (one hop only).
const forwardedKey = "committer-forwarded"

// retryPause paces the re-resolution of the leader while a request is held
// through an election.
const retryPause = 20 * time.Millisecond

// request is one call as the forwarder routes it: here when this replica may
// serve it, otherwise on the leader.
type request struct {
	// op names the call in the forwarding metrics.
	op string
	// local runs the call on this replica if it may serve it now. It
	// returns served=false when the call must wait or go to the leader,
	// with a determinate error saying why (nil when there is nothing more
	// to say than "not the leader"); nothing was done then.
	local func(ctx context.Context) (served bool, err error)
	// remote runs the call on a peer (the leader, or one of via).
	remote func(ctx context.Context, p PeerClient) error
	// via are replicas to send the call to, unmarked, while no leader is
	// known: a replica joining through --join knows no leader until it is a
	// member, and its join targets forward the call one hop further.
	via []string
}

// forward runs req here or on the leader, holding it through elections until
// ctx ends. It is the one way this replica reaches the leader, for data and
// admin calls alike.
//
// Determinacy (docs/architecture.md §7): a call that never reached the
// backend (no leader known until the deadline, the leader answered "not
// leader" or "not ready" before acting) fails determinate; a forwarded write
// whose call broke after it was sent stays indeterminate.
func (r *Replica) forward(ctx context.Context, req request) error {
	ctx, cancel := answerBy(ctx)
	defer cancel()
	forwarded := isForwarded(ctx)
	var lastErr error
	// note records why an attempt did nothing. A fenced attempt says most
	// about why the request failed, so it sticks.
	note := func(err error) {
		if err != nil && (lastErr == nil || !errors.Is(lastErr, backend.ErrFenced)) {
			lastErr = err
		}
	}
	wait := false
	for attempt := 0; ; attempt++ {
		if wait && !backoff.Sleep(ctx, retryPause) {
			return heldTooLong(ctx, lastErr)
		}
		wait = true
		served, err := req.local(ctx)
		if served {
			return err
		}
		note(err)
		if ctx.Err() != nil {
			return heldTooLong(ctx, lastErr)
		}
		if r.raft.State() == raft.Leader {
			// Leader, not ready yet (barrier and fence in progress) or
			// stepping down: hold until readiness changes.
			note(backend.Determinatef("%w: leader is not ready yet", backend.ErrNotLeader))
			select {
			case <-r.readinessWatch():
			case <-ctx.Done():
				return heldTooLong(ctx, lastErr)
			case <-time.After(retryPause):
			}
			wait = false
			continue
		}
		addr, id := r.leaderGRPC()
		target := addr
		if addr == "" {
			if r.isRemoved() {
				// No leader will ever be known here: answer now, so the
				// client tries another replica within its deadline.
				return backend.Determinatef("%w: this replica was removed from the cluster", backend.ErrUnavailable)
			}
			note(backend.Determinatef("%w: %w", backend.ErrUnavailable, ErrNoLeader))
			if len(req.via) == 0 || forwarded {
				continue
			}
			target = req.via[attempt%len(req.via)]
			if target == r.cfg.GRPCAddr {
				continue
			}
		} else if forwarded {
			// One hop only: the sender believed this replica leads. Tell it
			// who does instead of forwarding again.
			r.setLeaderHeader(ctx, addr)
			return backend.Determinatef("%w: leader is %s at %s", backend.ErrNotLeader, id, addr)
		} else {
			r.setLeaderHeader(ctx, addr)
		}
		peer, err := r.peers.Dial(target)
		if err != nil {
			note(backend.Determinatef("%w: replica address %q: %v", backend.ErrUnavailable, target, err))
			continue
		}
		rctx := ctx
		if addr != "" {
			rctx = markForwarded(ctx)
		}
		// A join target is asked unmarked, as a client would ask it, so
		// that it forwards the call one hop further.
		sent := time.Now()
		err = req.remote(rctx, peer)
		if m := r.cfg.Metrics; m != nil {
			m.Forwarded(req.op, metrics.Result(err), time.Since(sent))
		}
		if err == nil {
			return nil
		}
		if backend.IsDeterminate(err) && (errors.Is(err, backend.ErrNotLeader) || errors.Is(err, backend.ErrUnavailable)) {
			// The target did not act; re-resolve and try again.
			note(err)
			continue
		}
		if r.cfg.UnsafeDeterminateForward && !backend.IsDeterminate(err) {
			// The canary: the call may have taken effect on the leader, and
			// this answer says it did not, so the client may send it again.
			return backend.Determinatef("%w: forwarded call to %s failed: %v", backend.ErrUnavailable, target, err)
		}
		return err
	}
}

// answerMargin bounds how much earlier than its caller's deadline a call
// gives up here (a tenth of the time left, at most this).
const answerMargin = 250 * time.Millisecond

// answerBy shortens ctx's deadline a little, so that the answer this
// replica gives when its time runs out (a held call's determinate "no
// leader known", a forwarded call's own answer) reaches the caller before
// the caller's deadline. Otherwise the caller sees only its own
// DeadlineExceeded, which for a write means "may have happened", and a call
// that provably did nothing could not be sent to another replica.
func answerBy(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	margin := min(answerMargin, time.Until(deadline)/10)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// heldTooLong turns an expired hold into the error of the last attempt, which
// is determinate: no attempt reached the backend.
func heldTooLong(ctx context.Context, last error) error {
	if last == nil {
		last = backend.Determinatef("%w: %w", backend.ErrUnavailable, ErrNoLeader)
	}
	return fmt.Errorf("%w (gave up: %v)", last, ctx.Err())
}

// onRaftLeader is the local step of admin calls: they run on whichever
// replica Raft says leads, ready or not (membership changes need no fence).
func (r *Replica) onRaftLeader(run func(ctx context.Context) error) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		if r.raft.State() != raft.Leader {
			return false, nil
		}
		return true, run(ctx)
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

// ownRequest strips the incoming forwarding mark from ctx: for a call this
// replica makes on its own behalf while serving a forwarded one, which is a
// new request and not a second hop of the first.
func ownRequest(ctx context.Context) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.MD{})
}

// setLeaderHeader tells the client where the leader is, so it can route
// straight there next time. Outside a gRPC handler it does nothing.
func (r *Replica) setLeaderHeader(ctx context.Context, addr string) {
	if addr != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(wire.LeaderMetadataKey, addr))
	}
}
