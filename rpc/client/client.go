package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/internal/backoff"
	pb "github.com/hacommit/committer/rpc/consensuspb"
	"github.com/hacommit/committer/rpc/wire"
)

// ErrClosed: the client was closed; the call was not sent.
var ErrClosed = errors.New("client closed")

// Client is a backend.Consensus served by remote committer replicas. It is
// safe for concurrent use.
type Client struct {
	cfg       config
	endpoints []string // as given to New, deduplicated, in order
	// borrowed, when set, is the one connection of a client made by
	// FromConn, which it neither dials nor closes.
	borrowed grpc.ClientConnInterface

	// mu guards the fields below. It is never held across a call.
	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
	preferred string // the endpoint the next call tries first
	closed    bool
}

var _ backend.Consensus = (*Client)(nil)

// New returns a client of the replicas at endpoints (host:port). Connections
// are made on first use; New fails only on an unusable endpoint list.
func New(endpoints []string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	var eps []string
	for _, e := range endpoints {
		if e == "" {
			return nil, errors.New("client: empty endpoint")
		}
		if !slices.Contains(eps, e) {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	if len(eps) > maxEndpoints {
		return nil, fmt.Errorf("client: %d endpoints, at most %d are supported", len(eps), maxEndpoints)
	}
	c := &Client{cfg: cfg, endpoints: eps, conns: make(map[string]*grpc.ClientConn), preferred: eps[0]}
	for _, e := range eps {
		if _, err := c.dialLocked(e); err != nil {
			_ = c.Close() // the dial error is the one worth reporting
			return nil, err
		}
	}
	return c, nil
}

// FromConn returns a client that makes every call on cc, which the caller
// owns and must have built with wire.DialOptions, or which records delivery
// with wire.NoteAttempt and wire.NoteSent (otherwise every transport failure
// counts as possibly delivered). It makes one attempt per call unless
// WithMaxAttempts says otherwise and ignores leader hints: it suits a caller
// that does its own routing, such as a replica forwarding to its leader.
// Close does not close cc.
func FromConn(cc grpc.ClientConnInterface, opts ...Option) *Client {
	cfg := defaultConfig()
	cfg.maxAttempts = 1
	for _, o := range opts {
		o(&cfg)
	}
	addr := "borrowed connection"
	if t, ok := cc.(interface{ Target() string }); ok {
		addr = t.Target()
	}
	return &Client{
		cfg:       cfg,
		endpoints: []string{addr},
		borrowed:  cc,
		conns:     map[string]*grpc.ClientConn{},
		preferred: addr,
	}
}

// Close closes every connection the client dialed. Calls in flight fail;
// later calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.closed = true
	c.mu.Unlock()
	if c.borrowed != nil {
		return nil
	}
	var errs []error
	for _, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialLocked returns the connection to addr, creating it (without connecting
// yet) if needed. c.mu must be held.
func (c *Client) dialLocked(addr string) (*grpc.ClientConn, error) {
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	if len(c.conns) >= maxEndpoints {
		return nil, fmt.Errorf("client: already connected to %d endpoints", maxEndpoints)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// gRPC's default reconnect backoff grows to two minutes, during
		// which calls to a restarted replica fail fast; a replica set wants
		// its members back within seconds.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	opts = append(opts, wire.DialOptions()...)
	opts = append(opts, c.cfg.dialOptions...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: endpoint %q: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// pick chooses the endpoint of the next attempt: the leader a replica named,
// else the preferred endpoint for a first attempt, else the endpoint after
// prev in the configured order.
func (c *Client) pick(prev, hint string) (string, grpc.ClientConnInterface, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", nil, backend.NewDeterminate(ErrClosed)
	}
	if c.borrowed != nil {
		return c.preferred, c.borrowed, nil
	}
	if hint != "" && hint != prev && !c.cfg.ignoreHints {
		if cc, err := c.dialLocked(hint); err == nil {
			return hint, cc, nil
		}
		// Too many endpoints or an unusable address: rotate instead.
	}
	addr := c.preferred
	if prev != "" {
		i := slices.Index(c.endpoints, prev)
		addr = c.endpoints[(i+1)%len(c.endpoints)] // i == -1 restarts at 0
	}
	cc, err := c.dialLocked(addr)
	if err != nil {
		return "", nil, backend.NewDeterminate(err)
	}
	return addr, cc, nil
}

// remember makes the endpoint that answered, or the leader it named, the
// first choice of later calls.
func (c *Client) remember(addr, hint string) {
	if c.borrowed != nil {
		// A client on a borrowed connection has nowhere else to go; its
		// owner does the routing.
		return
	}
	next := addr
	if hint != "" && !c.cfg.ignoreHints {
		next = hint
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.preferred != next {
		c.cfg.logger.Debug("consensus client switches endpoint", "from", c.preferred, "to", next)
		c.preferred = next
	}
}

// leaderHint returns the leader address a response named, or "".
func leaderHint(header, trailer metadata.MD) string {
	for _, md := range []metadata.MD{header, trailer} {
		if v := md.Get(wire.LeaderMetadataKey); len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

// callKind says which failures a call may retry.
type callKind int

const (
	read callKind = iota
	write
)

// invoke runs one operation with retries. call performs an attempt on a
// connection; check returns the operation error a response carries, or nil
// for a usable ok result.
func invoke[R any](ctx context.Context, c *Client, op string, kind callKind,
	call func(context.Context, pb.ProtoPersistConsensusClient, ...grpc.CallOption) (R, error),
	check func(R) error,
) (R, error) {
	var zero R
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
		defer cancel()
	}
	var lastErr error
	var addr, hint string
	for attempt := 0; attempt < c.cfg.maxAttempts; attempt++ {
		if attempt > 0 && !c.pause(ctx, attempt) {
			break
		}
		if attempt > 0 && kind == write && lastErr != nil && backend.IsDeterminate(lastErr) && !timeLeft(ctx, minWriteAttempt) {
			break
		}
		var cc grpc.ClientConnInterface
		var err error
		if addr, cc, err = c.pick(addr, hint); err != nil {
			return zero, err
		}
		actx, d := wire.TrackDelivery(ctx)
		actx, cancelAttempt := context.WithCancel(actx)
		var cut atomic.Bool
		stopTimer := func() bool { return false }
		if c.cfg.attemptTimeout > 0 {
			timer := time.AfterFunc(c.cfg.attemptTimeout, func() {
				// Only an attempt nothing answered yet is cut, and a write
				// only while its request cannot have arrived: a delivered
				// write cannot be sent again, so cutting it would only trade
				// a possible success for an earlier "unknown".
				if d.Answered() || (kind == write && d.MayHaveArrived()) {
					return
				}
				cut.Store(true)
				cancelAttempt()
			})
			stopTimer = timer.Stop
		}
		var header, trailer metadata.MD
		resp, err := call(actx, pb.NewProtoPersistConsensusClient(cc), grpc.Header(&header), grpc.Trailer(&trailer))
		stopTimer()
		if err != nil && cut.Load() && contextError(ctx) == nil {
			// The attempt's own time ran out, not the call's: say so, and
			// keep it matchable as a deadline.
			err = fmt.Errorf("%w (no answer within the attempt timeout %v: %w)", err, c.cfg.attemptTimeout, context.DeadlineExceeded)
		}
		cancelAttempt()
		hint = leaderHint(header, trailer)
		var retry bool
		if err != nil {
			lastErr, retry = transportError(ctx, op, addr, kind, d.MayHaveArrived(), err)
		} else if opErr := check(resp); opErr != nil {
			lastErr, retry = opErr, retryable(opErr, kind)
			if ctxErr := contextError(ctx); ctxErr != nil {
				// The server gave up at the same deadline (gRPC passes it
				// on); let the caller see that its time ran out.
				lastErr = fmt.Errorf("%w (%w)", opErr, ctxErr)
			}
		} else {
			c.remember(addr, hint)
			return resp, nil
		}
		if !retry || contextError(ctx) != nil {
			break
		}
		c.cfg.logger.Debug("consensus call failed, retrying", "op", op, "endpoint", addr, "leader_hint", hint, "attempt", attempt+1, "err", lastErr)
	}
	return zero, lastErr
}

// transportError classifies a gRPC status error and says whether the call
// may be retried.
func transportError(ctx context.Context, op, addr string, kind callKind, mayHaveArrived bool, err error) (error, bool) {
	if ctxErr := contextError(ctx); ctxErr != nil {
		// Keep the context's error matchable with errors.Is.
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	switch {
	case !mayHaveArrived:
		return backend.Determinatef("%w: %s via %s: request not delivered: %w", backend.ErrUnavailable, op, addr, err), true
	case status.Code(err) == codes.Unimplemented:
		// The server rejected the method before running anything.
		return backend.Determinatef("%s via %s: %w", op, addr, err), false
	case status.Code(err) == codes.PermissionDenied, status.Code(err) == codes.ResourceExhausted:
		// Refused by the server's admission control (rpc/admission) or
		// its message limit, before any handler ran. Another replica
		// would refuse a permission the same way, and retrying an
		// overloaded connection at once adds to the load: the caller
		// decides.
		return backend.Determinatef("%s via %s: %w", op, addr, err), false
	default:
		// Reads have no effect, so an unknown outcome is harmless to retry.
		return backend.Indeterminatef("%s via %s: %w", op, addr, err), kind == read
	}
}

// timeLeft reports whether ctx has at least d before its deadline.
func timeLeft(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) >= d
}

// contextError is ctx.Err(), or DeadlineExceeded once the deadline has
// passed even if ctx's timer has not fired yet: gRPC reports an expired call
// by the clock, and may do so a moment before the context notices.
func contextError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// retryable says whether an operation error allows another attempt.
func retryable(err error, kind callKind) bool {
	if !backend.IsDeterminate(err) {
		return kind == read
	}
	switch {
	case errors.Is(err, backend.ErrNotLeader), errors.Is(err, backend.ErrUnavailable):
		// Refused before reaching storage: safe for writes too.
		return true
	case errors.Is(err, backend.ErrRetryable):
		// Aborted by storage: the caller decides for writes (persist retries
		// with a fresh head), a read just goes again.
		return kind == read
	default:
		return false
	}
}

// pause sleeps before attempt (exponential backoff with jitter) and reports
// whether there is still time for it: a pause that would outlast the
// deadline is skipped, since no attempt could follow it.
func (c *Client) pause(ctx context.Context, attempt int) bool {
	p := backoff.Policy{Initial: c.cfg.initialBackoff, Max: c.cfg.maxBackoff}
	return backoff.SleepWithin(ctx, p.Delay(attempt))
}

// result returns the error a response carries: its operation error, or an
// indeterminate protocol error if it carries neither ok nor err.
func result(op string, hasOk bool, opErr *pb.ProtoOperationError) error {
	switch {
	case opErr != nil:
		return wire.DecodeError(opErr)
	case !hasOk:
		return backend.Indeterminatef("%s: response carries neither ok nor err", op)
	default:
		return nil
	}
}
