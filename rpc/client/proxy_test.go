package client_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
)

// faultProxy relays TCP between a client and a gRPC server and injects
// faults at precise points of the HTTP/2 exchange. It reads the
// server-to-client byte stream frame by frame (a server sends no preface), so
// it can tell a response to a call (a HEADERS frame on a stream, sent once
// the handler has returned) from connection upkeep (frames on stream 0).
type faultProxy struct {
	lis    net.Listener
	target string
	mode   atomic.Int32

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

const (
	// relay everything.
	modePass int32 = iota
	// cut both connections when the next call response starts, then go
	// back to modePass: the server has acted, the client never hears.
	modeCutOnResponse
	// drop every call response, keep the connection alive.
	modeSwallowResponses
)

const (
	frameHeaderLen   = 9
	frameTypeHeaders = 0x1
)

func startProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.lis.Addr().String() }

func (p *faultProxy) close() {
	_ = p.lis.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c for close, or closes it at once if the proxy is closed.
func (p *faultProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	p.conns[c] = struct{}{}
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // listener closed
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(c)
		p.track(s)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(s, c)
			_ = s.Close()
			_ = c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.relayResponses(s, c)
			_ = s.Close()
			_ = c.Close()
		}()
	}
}

// relayResponses copies frames from the server to the client, applying the
// current mode to call responses.
func (p *faultProxy) relayResponses(from, to net.Conn) {
	hdr := make([]byte, frameHeaderLen)
	for {
		if _, err := io.ReadFull(from, hdr); err != nil {
			return
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		stream := binary.BigEndian.Uint32(hdr[5:9]) & 0x7fffffff
		payload := make([]byte, length)
		if _, err := io.ReadFull(from, payload); err != nil {
			return
		}
		if stream != 0 {
			switch p.mode.Load() {
			case modeCutOnResponse:
				if hdr[3] == frameTypeHeaders {
					p.mode.Store(modePass)
					return
				}
			case modeSwallowResponses:
				continue
			}
		}
		if _, err := to.Write(append(hdr, payload...)); err != nil {
			return
		}
	}
}

// callCounter is a server interceptor counting calls per method.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func newCallCounter() *callCounter { return &callCounter{calls: map[string]int{}} }

func (c *callCounter) option() grpc.ServerOption {
	return grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		c.mu.Lock()
		c.calls[info.FullMethod]++
		c.mu.Unlock()
		return handler(ctx, req)
	})
}

func (c *callCounter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls["/mz_persist_committer.ProtoPersistConsensus/"+method]
}

// blackhole accepts TCP connections and never answers: no gRPC connection
// to it ever becomes ready.
func blackhole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return // listener closed
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return lis.Addr().String()
}
