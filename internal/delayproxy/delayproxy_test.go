package delayproxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/internal/delayproxy"
)

// ioTimeout keeps a broken proxy from hanging a test; it is not a bound on
// how fast the proxy must be.
const ioTimeout = 10 * time.Second

// echoServer echoes every connection until EOF and then closes it. For each
// connection it reports on eofs how the echo ended (nil: the peer's EOF).
type echoServer struct {
	ln   net.Listener
	eofs chan error
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, eofs: make(chan error, 100)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, err := io.Copy(c, c)
				select {
				case e.eofs <- err:
				default:
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

// startProxy starts a proxy and, at the end of the test, closes it and
// checks that none of its goroutines outlived Close.
func startProxy(t *testing.T, upstream string, delay time.Duration) *delayproxy.Proxy {
	t.Helper()
	p, err := delayproxy.Start(t.Context(), "127.0.0.1:0", upstream, delay, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeProxy(t, p) })
	return p
}

func closeProxy(t *testing.T, p *delayproxy.Proxy) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	// No waiting: Close promises its goroutines have already ended.
	if leaked := proxyGoroutines(); len(leaked) > 0 {
		t.Errorf("%d proxy goroutines still running after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}

// proxyGoroutines returns the stacks of goroutines that are running code of
// package delayproxy. "created by" lines are skipped: a goroutine the proxy
// started that has returned from the proxy's code is not running it.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for line := range strings.SplitSeq(g, "\n") {
			if !strings.HasPrefix(line, "created by") && strings.Contains(line, "/internal/delayproxy.") {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestRoundTripGainsDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := startProxy(t, startEcho(t).addr(), delay)
	c := dial(t, p.Addr())
	for range 3 {
		start := time.Now()
		roundTrip(t, c, []byte("hello"))
		elapsed := time.Since(start)
		if elapsed < delay {
			t.Errorf("round trip took %v, want at least %v", elapsed, delay)
		}
		if elapsed > 2*time.Second {
			t.Errorf("round trip took %v, far more than %v", elapsed, delay)
		}
	}
}

func TestPipelinedMessagesDoNotSerialize(t *testing.T) {
	const delay = 20 * time.Millisecond
	const n = 50
	p := startProxy(t, startEcho(t).addr(), delay)
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("warm-up")) // the upstream dial is not what is measured

	var want bytes.Buffer
	start := time.Now()
	for i := range n {
		msg := fmt.Appendf(nil, "message %02d\n", i)
		want.Write(msg)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("echo = %q, want %q", got, want.Bytes())
	}
	if elapsed < delay {
		t.Errorf("%d messages took %v, less than one delay (%v)", n, elapsed, delay)
	}
	// Serialized, the messages would take n*delay/2 at the very least. The
	// proxy may read several of them at once, though, which would hide
	// much of a serializing proxy's cost: TestBandwidthSurvivesDelay is the
	// test that catches one.
	if limit := n * delay / 2; elapsed >= limit {
		t.Errorf("%d pipelined messages took %v, want under %v", n, elapsed, limit)
	}
}

// transfer sends size random bytes through addr, writing and reading at
// once, and checks that exactly those bytes come back before EOF.
func transfer(t *testing.T, addr string, size int) {
	t.Helper()
	c := dial(t, addr)
	want := make([]byte, size)
	rand.Read(want)
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.CloseWrite()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want the %d sent", len(got), len(want))
	}
}

func TestLargeTransferArrivesIntact(t *testing.T) {
	p := startProxy(t, startEcho(t).addr(), time.Millisecond)
	transfer(t, p.Addr(), 8<<20)
}

func TestBandwidthSurvivesDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	const size = 8 << 20
	p := startProxy(t, startEcho(t).addr(), delay)
	start := time.Now()
	transfer(t, p.Addr(), size)
	// A proxy that held each chunk of at most 32 KiB for delay/2 before
	// reading the next would need at least 256*delay/2 = 2.56s each way.
	// Pipelined, the transfer takes about one delay plus the copying.
	if elapsed, limit := time.Since(start), time.Second; elapsed >= limit {
		t.Errorf("%d MiB with a %v delay took %v, want under %v", size>>20, delay, elapsed, limit)
	}
}

func TestZeroDelayForwards(t *testing.T) {
	p := startProxy(t, startEcho(t).addr(), 0)
	roundTrip(t, dial(t, p.Addr()), []byte("no delay"))
	transfer(t, p.Addr(), 1<<20)
}

func TestHalfCloseReachesBothEnds(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.addr(), 5*time.Millisecond)
	c := dial(t, p.Addr())
	want := []byte("everything, then EOF")
	if _, err := c.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-echo.eofs:
		if err != nil {
			t.Fatalf("echo server ended with %v, want the client's EOF", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("echo server never saw EOF")
	}
	got, err := io.ReadAll(c) // nil error: the read ended at EOF
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo = %q, want %q", got, want)
	}
}

func TestCloseEndsOpenConnections(t *testing.T) {
	p, err := delayproxy.Start(t.Context(), "127.0.0.1:0", startEcho(t).addr(), 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*net.TCPConn
	for range 3 {
		c := dial(t, p.Addr())
		roundTrip(t, c, []byte("open"))
		conns = append(conns, c)
	}
	// Concurrent and repeated Close calls must all return. The goroutine
	// check waits until they all have, or it would see the other callers
	// still inside Close.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	closeProxy(t, p)

	for i, c := range conns {
		n, err := c.Read(make([]byte, 1))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("conn %d: read after Close = %d, %v; want EOF or a reset", i, n, err)
		}
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s after Close succeeded", p.Addr())
	}
}

func TestContextEndStopsProxy(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p, err := delayproxy.Start(ctx, "127.0.0.1:0", startEcho(t).addr(), 5*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("open"))
	cancel()
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after cancel = %d, %v; want EOF or a reset", n, err)
	}
	closeProxy(t, p)
}

func TestUpstreamRefusingClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	p := startProxy(t, closed, 5*time.Millisecond)
	c := dial(t, p.Addr())
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %d, %v after %v; want EOF or a reset", n, err, time.Since(start))
	}
}
