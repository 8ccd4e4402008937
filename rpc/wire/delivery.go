package wire

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// Delivery records, for one call attempt, whether its request may have
// reached a server. A write that failed before it could have arrived had no
// effect (determinate, safe to retry); one that may have arrived has an
// unknown outcome.
type Delivery struct {
	tracked        atomic.Bool
	mayHaveArrived atomic.Bool
	answered       atomic.Bool
}

// Answered reports whether the server has begun to answer (its response
// headers arrived): it is working on the call, however long the rest
// takes.
func (d *Delivery) Answered() bool { return d.answered.Load() }

// MayHaveArrived reports whether the request may have reached a server. It is
// true, conservatively, when the connection does not track delivery (it was
// not built with DialOptions).
func (d *Delivery) MayHaveArrived() bool {
	return d.mayHaveArrived.Load() || !d.tracked.Load()
}

type deliveryKey struct{}

// TrackDelivery returns a context for one call attempt on a connection built
// with DialOptions, and the Delivery that the call will update.
func TrackDelivery(ctx context.Context) (context.Context, *Delivery) {
	d := &Delivery{}
	return context.WithValue(ctx, deliveryKey{}, d), d
}

// deliveryTracker is the stats handler behind Delivery. gRPC tags every call
// before it picks a connection, and reports OutHeader only once an
// established connection accepted the call's stream; a call that fails before
// that (no connection, connection refused, deadline while connecting,
// connection closing) never left the client.
type deliveryTracker struct{}

func (deliveryTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	if d, ok := ctx.Value(deliveryKey{}).(*Delivery); ok {
		d.tracked.Store(true)
	}
	return ctx
}

func (deliveryTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	d, ok := ctx.Value(deliveryKey{}).(*Delivery)
	if !ok {
		return
	}
	switch s.(type) {
	case *stats.OutHeader:
		d.mayHaveArrived.Store(true)
	case *stats.InHeader:
		d.answered.Store(true)
	}
}

func (deliveryTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (deliveryTracker) HandleConn(context.Context, stats.ConnStats) {}

// NoteAttempt and NoteSent let a transport that is not a gRPC connection
// built with DialOptions (the peer relay, which carries calls as messages
// on a stream) record what the stats handler records for a connection:
// that the attempt is tracked, and that its request left, so it may have
// arrived. They do nothing on a context without TrackDelivery.
func NoteAttempt(ctx context.Context) {
	if d, ok := ctx.Value(deliveryKey{}).(*Delivery); ok {
		d.tracked.Store(true)
	}
}

// NoteSent: see NoteAttempt.
func NoteSent(ctx context.Context) {
	if d, ok := ctx.Value(deliveryKey{}).(*Delivery); ok {
		d.mayHaveArrived.Store(true)
	}
}

// NoteAnswered: see NoteAttempt and Delivery.Answered.
func NoteAnswered(ctx context.Context) {
	if d, ok := ctx.Value(deliveryKey{}).(*Delivery); ok {
		d.answered.Store(true)
	}
}
