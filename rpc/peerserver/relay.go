package peerserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/hacommit/committer/rpc/peerpb"
)

// Relayed is a unary service whose calls a Relay stream may carry: its
// description and the implementation its handlers are called on, as given
// to grpc.Server.RegisterService.
type Relayed struct {
	Desc *grpc.ServiceDesc
	Impl any
	// DefaultTimeout bounds a relayed call that arrived without one, as the
	// service's own server bounds its calls.
	DefaultTimeout time.Duration
	// OnPanic, if set, answers a call whose handler panicked (method is the
	// relayed method), as the service's own server does; unset, the panic
	// becomes an Internal error.
	OnPanic func(method string, p any) error
}

// relay runs the calls of Relay streams.
//
// Lock order: a stream's sendMu and callMu are each taken alone.
type relay struct {
	methods        map[string]grpc.MethodDesc
	impl           any
	defaultTimeout time.Duration
	onPanic        func(method string, p any) error

	drainOnce sync.Once
	draining  chan struct{} // closed by drain
}

func newRelay(r Relayed) *relay {
	methods := map[string]grpc.MethodDesc{}
	for _, m := range r.Desc.Methods {
		methods["/"+r.Desc.ServiceName+"/"+m.MethodName] = m
	}
	onPanic := r.OnPanic
	if onPanic == nil {
		onPanic = func(method string, p any) error {
			return status.Errorf(codes.Internal, "relay: the %s handler panicked: %v", method, p)
		}
	}
	return &relay{methods: methods, impl: r.Impl, defaultTimeout: r.DefaultTimeout, onPanic: onPanic, draining: make(chan struct{})}
}

// drain makes every Relay stream, open or opened later, tell its sender to
// stop and end once the calls already sent are answered, so that a
// graceful stop of the server does not wait for streams that would
// otherwise stay open for as long as the sender lives.
func (r *relay) drain() {
	r.drainOnce.Do(func() { close(r.draining) })
}

// Relay serves one stream. Every request runs in its own goroutine on a
// context derived from the stream's, with the request's own metadata and
// deadline, so it ends when the stream does; the handler returns only after
// every call it started has sent its answer (or failed to).
func (s *Server) Relay(stream pb.Peer_RelayServer) error {
	r := s.relay
	if r == nil {
		return status.Error(codes.Unimplemented, "this replica relays no service")
	}
	ctx := stream.Context()
	var (
		sendMu sync.Mutex // stream.Send is not safe for concurrent use
		wg     sync.WaitGroup
		callMu sync.Mutex
		calls  = map[uint64]context.CancelFunc{}
	)
	defer wg.Wait()
	// Ends the drain watcher below when the loop ends; the calls keep the
	// stream's context, so that a sender that closed its side still gets
	// every answer.
	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	send := func(resp *pb.RelayResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		// A failed send means the stream is gone; its calls' contexts end
		// with it, and the sender learns from its own side.
		_ = stream.Send(resp)
	}
	// The drain notice goes out once; after it the sender sends nothing new
	// and closes its side, which ends the loop below with io.EOF.
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-r.draining:
			send(&pb.RelayResponse{Draining: true})
		case <-loopCtx.Done():
		}
	}()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetCancel() {
			callMu.Lock()
			if cancel := calls[req.GetId()]; cancel != nil {
				cancel()
			}
			callMu.Unlock()
			continue
		}
		callCtx, cancel := r.callContext(ctx, req)
		callMu.Lock()
		calls[req.GetId()] = cancel
		callMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := r.run(callCtx, req)
			callMu.Lock()
			delete(calls, req.GetId())
			callMu.Unlock()
			cancel()
			send(resp)
		}()
	}
}

// callContext is the context a relayed call runs on: the stream's, with the
// call's metadata as incoming metadata and its deadline.
func (r *relay) callContext(stream context.Context, req *pb.RelayRequest) (context.Context, context.CancelFunc) {
	md := metadata.MD{}
	for k, v := range req.GetMetadata() {
		md.Set(k, v)
	}
	ctx := metadata.NewIncomingContext(stream, md)
	timeout := r.defaultTimeout
	if t := req.GetTimeoutMicros(); t > 0 {
		timeout = time.Duration(t) * time.Microsecond
	}
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// run calls the method's handler and packs its answer. A panic in the
// handler runs on this goroutine, beyond any interceptor, so it is
// recovered here.
func (r *relay) run(ctx context.Context, req *pb.RelayRequest) (resp *pb.RelayResponse) {
	resp = &pb.RelayResponse{Id: req.GetId()}
	fail := func(err error) *pb.RelayResponse {
		st := status.Convert(err)
		resp.Code, resp.Message = int32(st.Code()), st.Message()
		resp.Response = nil
		return resp
	}
	defer func() {
		if p := recover(); p != nil {
			resp = fail(r.onPanic(req.GetMethod(), p))
		}
	}()
	m, ok := r.methods[req.GetMethod()]
	if !ok {
		return fail(status.Errorf(codes.Unimplemented, "relay: unknown method %q", req.GetMethod()))
	}
	dec := func(v any) error {
		msg, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "relay: %T is not a protobuf message", v)
		}
		if err := proto.Unmarshal(req.GetRequest(), msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "relay: decoding the request of %s: %v", req.GetMethod(), err)
		}
		return nil
	}
	out, err := m.Handler(r.impl, ctx, dec, nil)
	if err != nil {
		return fail(err)
	}
	msg, ok := out.(proto.Message)
	if !ok {
		return fail(status.Errorf(codes.Internal, "relay: %s answered %T", req.GetMethod(), out))
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return fail(status.Errorf(codes.Internal, "relay: encoding the answer of %s: %v", req.GetMethod(), err))
	}
	resp.Response = b
	return resp
}
