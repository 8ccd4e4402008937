package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hacommit/committer/rpc/peerpb"
	"github.com/hacommit/committer/rpc/wire"
)

// relayConn is a grpc.ClientConnInterface for unary calls that carries
// each one as a message on a long-lived Peer/Relay stream to the peer,
// instead of a new HTTP/2 stream per call (docs/architecture.md §7.1).
// It records delivery for wire.TrackDelivery as a connection does: a call
// is delivered once its message was handed to the stream.
//
// Lock order: relayConn.mu, then relayStream.mu; sendMu is taken alone.
type relayConn struct {
	cc   *grpc.ClientConn
	peer peerpb.PeerClient
	// ctx bounds every stream; close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of every stream

	mu  sync.Mutex
	cur *relayStream
}

// relayStream is one Relay stream and the calls waiting on it.
type relayStream struct {
	s      peerpb.Peer_RelayClient
	cancel context.CancelFunc
	// sendMu serializes sends (not safe for concurrent use) and guards
	// sendClosed.
	sendMu     sync.Mutex
	sendClosed bool // CloseSend was called: nothing more goes out

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *peerpb.RelayResponse
	closing bool  // the server asked to drain, or the stream broke: no new calls
	err     error // why the stream ended, once done is closed
	done    chan struct{}
}

var _ grpc.ClientConnInterface = (*relayConn)(nil)

func newRelayConn(cc *grpc.ClientConn) *relayConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &relayConn{cc: cc, peer: peerpb.NewPeerClient(cc), ctx: ctx, cancel: cancel}
}

// Target names the peer, for the client's messages.
func (r *relayConn) Target() string { return r.cc.Target() }

// close ends every stream and waits for their goroutines. Calls waiting on
// a stream fail as undelivered or indeterminate, as their messages went.
func (r *relayConn) close() {
	r.cancel()
	r.wg.Wait()
}

// Invoke sends one call on the current stream and waits for its answer.
func (r *relayConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	wire.NoteAttempt(ctx)
	in, ok := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok || !ok2 {
		return status.Errorf(codes.Internal, "relay: %T and %T are not protobuf messages", args, reply)
	}
	body, err := proto.Marshal(in)
	if err != nil {
		return status.Errorf(codes.Internal, "relay: encoding %s: %v", method, err)
	}
	req := &peerpb.RelayRequest{Method: method, Request: body, Metadata: firstValues(ctx)}
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return status.FromContextError(context.DeadlineExceeded).Err()
		}
		req.TimeoutMicros = max(1, left.Microseconds())
	}
	s, err := r.stream(ctx)
	if err != nil {
		return err // nothing was sent
	}
	id, answer, err := s.register()
	if err != nil {
		return err // nothing was sent
	}
	req.Id = id
	if err := s.send(req); err != nil {
		s.unregister(id)
		if errors.Is(err, io.EOF) || errors.Is(err, errNotSent) {
			// gRPC returns io.EOF when the stream had already ended, before
			// the message went anywhere.
			return status.Errorf(codes.Unavailable, "relay to %s: stream ended before the call was sent", r.cc.Target())
		}
		wire.NoteSent(ctx)
		return status.Errorf(codes.Unavailable, "relay to %s: sending the call: %v", r.cc.Target(), err)
	}
	wire.NoteSent(ctx)
	select {
	case resp := <-answer:
		wire.NoteAnswered(ctx)
		if resp.GetCode() != 0 {
			return status.Error(codes.Code(resp.GetCode()), resp.GetMessage())
		}
		if err := proto.Unmarshal(resp.GetResponse(), out); err != nil {
			return status.Errorf(codes.Internal, "relay: decoding the answer of %s: %v", method, err)
		}
		return nil
	case <-s.done:
		return status.Errorf(codes.Unavailable, "relay to %s: stream ended after the call was sent: %v", r.cc.Target(), s.err)
	case <-ctx.Done():
		s.unregister(id)
		r.sendCancel(s, id)
		return status.FromContextError(ctx.Err()).Err()
	}
}

// NewStream is refused: the relay carries unary calls only.
func (r *relayConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "relay: streaming calls are not relayed")
}

// stream returns the open stream, opening one if there is none or the last
// one ended or drains. It waits, within ctx, for the connection to be
// ready, so that opening never blocks past the caller's deadline.
func (r *relayConn) stream(ctx context.Context) (*relayStream, error) {
	if s := r.current(); s != nil {
		return s, nil
	}
	// Not under mu: a caller with a short deadline must not queue behind
	// one that waits longer.
	if err := r.ready(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.open() {
		return r.cur, nil // another caller opened one meanwhile
	}
	if err := r.ctx.Err(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "relay to %s: closed", r.cc.Target())
	}
	sctx, cancel := context.WithCancel(r.ctx)
	st, err := r.peer.Relay(sctx)
	if err != nil {
		cancel()
		return nil, status.Errorf(codes.Unavailable, "relay to %s: opening the stream: %v", r.cc.Target(), err)
	}
	s := &relayStream{s: st, cancel: cancel, pending: map[uint64]chan *peerpb.RelayResponse{}, done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s.receive()
	}()
	r.cur = s
	return s, nil
}

func (r *relayConn) current() *relayStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.cur.open() {
		return r.cur
	}
	return nil
}

// ready waits until the connection is ready or ctx ends.
func (r *relayConn) ready(ctx context.Context) error {
	for {
		st := r.cc.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			r.cc.Connect()
		case connectivity.TransientFailure, connectivity.Shutdown:
			return status.Errorf(codes.Unavailable, "relay to %s: connection is %s", r.cc.Target(), st)
		}
		if !r.cc.WaitForStateChange(ctx, st) {
			return status.Errorf(codes.Unavailable, "relay to %s: connection not ready (%s): %v", r.cc.Target(), st, ctx.Err())
		}
	}
}

// sendCancel tells the server that the caller gave up on id, in the
// background: a send may wait for flow control, and the caller has left.
func (r *relayConn) sendCancel(s *relayStream, id uint64) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = s.send(&peerpb.RelayRequest{Id: id, Cancel: true})
	}()
}

func (s *relayStream) open() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing
}

// register reserves an id and the channel its answer arrives on.
func (s *relayStream) register() (uint64, chan *peerpb.RelayResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, nil, status.Error(codes.Unavailable, "relay: the stream is closing")
	}
	s.nextID++
	ch := make(chan *peerpb.RelayResponse, 1) // receive never blocks on it
	s.pending[s.nextID] = ch
	return s.nextID, ch, nil
}

func (s *relayStream) unregister(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
}

// errNotSent: the stream's sending side was closed before the message
// could go out.
var errNotSent = errors.New("relay: the stream stopped sending")

func (s *relayStream) send(req *peerpb.RelayRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendClosed {
		return errNotSent
	}
	return s.s.Send(req)
}

// receive hands every answer to its caller until the stream ends. On a
// drain notice it stops new calls and closes its side; the server answers
// what was sent and then ends the stream.
func (s *relayStream) receive() {
	var err error
	for {
		var resp *peerpb.RelayResponse
		resp, err = s.s.Recv()
		if err != nil {
			break
		}
		if resp.GetDraining() {
			s.mu.Lock()
			s.closing = true
			s.mu.Unlock()
			if err = s.closeSend(); err != nil {
				break
			}
			continue
		}
		s.mu.Lock()
		ch := s.pending[resp.GetId()]
		delete(s.pending, resp.GetId())
		s.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("the peer ended the stream")
	}
	s.mu.Lock()
	s.closing, s.err = true, err
	s.mu.Unlock()
	s.cancel()
	close(s.done)
}

func (s *relayStream) closeSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.sendClosed = true
	return s.s.CloseSend()
}

// firstValues is the first value of every key of ctx's outgoing metadata.
func firstValues(ctx context.Context) map[string]string {
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok || len(md) == 0 {
		return nil
	}
	out := make(map[string]string, len(md))
	for k, v := range md {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}
