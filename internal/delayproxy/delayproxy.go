package delayproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	// chunkSize bounds a single read, so a chunk's timestamp is close to
	// the moment its first byte arrived.
	chunkSize = 32 << 10
	// queueLen chunks may be in flight per direction; beyond that the
	// reader stops reading and TCP flow control pushes back on the sender.
	// At 32 KiB per chunk it is far more than any delay of a few
	// milliseconds needs to keep the loopback busy.
	queueLen = 1024
	// dialTimeout keeps a client from hanging on an upstream that never
	// answers the handshake.
	dialTimeout = 5 * time.Second
	// acceptBackoff spaces retries after an accept error that is not the
	// listener closing (such as running out of file descriptors), so the
	// loop does not spin while the condition lasts.
	acceptBackoff = 50 * time.Millisecond
	// preciseBelow: shorter waits sleep in the kernel (sleepPrecisely).
	// A Go timer on an idle runtime wakes from the network poller, whose
	// timeout has millisecond granularity, so a 0.5 ms wait took over a
	// millisecond and a "1 ms away" database was 2.3 ms away. Waits this
	// short cannot hold up Close for long.
	preciseBelow = 5 * time.Millisecond
)

// Proxy forwards TCP connections from its listener to an upstream address,
// delaying every byte by Delay/2 in each direction, so a request-response
// round trip gains Delay.
type Proxy struct {
	ln       net.Listener
	upstream string
	half     time.Duration
	logger   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the proxy starts, so Close can promise
	// that nothing of the proxy runs once it returns.
	wg sync.WaitGroup
	// lnErr is written before its goroutine leaves wg, and read only after
	// wg.Wait, which orders the two.
	lnErr error
}

// chunk is a piece of the stream and the moment it may go on.
type chunk struct {
	due  time.Time
	data []byte
}

// Start listens on listenAddr and forwards every connection it accepts to
// upstream, until Close is called or ctx ends. A nil logger discards.
func Start(ctx context.Context, listenAddr, upstream string, delay time.Duration, logger *slog.Logger) (*Proxy, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, half: delay / 2, logger: logger}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Go(func() {
		// The listener is closed here, not in Close, so that the end of
		// ctx stops accepting even if Close is never called.
		<-p.ctx.Done()
		p.lnErr = p.ln.Close()
	})
	p.wg.Go(p.accept)
	return p, nil
}

// Addr returns the address the proxy listens on, with the port the kernel
// chose if listenAddr asked for port 0.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, closes every proxied connection and returns once
// all of the proxy's goroutines have ended. It may be called more than
// once, and concurrently.
func (p *Proxy) Close() error {
	p.cancel()
	p.wg.Wait()
	return p.lnErr
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.logger.Warn("delayproxy: accept failed", "addr", p.Addr(), "err", err)
			t := time.NewTimer(acceptBackoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// serve proxies one client connection and closes both ends when it is
// over: after both directions ended cleanly, after either failed, or when
// the proxy stops.
func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		if p.ctx.Err() == nil {
			p.logger.Warn("delayproxy: dial upstream failed", "upstream", p.upstream, "err", err)
		}
		return
	}
	defer server.Close()

	// Cancelling ctx unblocks the goroutines waiting on a timer or a full
	// queue; closing the conns (deferred above) unblocks those in Read or
	// Write. Both happen when serve returns.
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	errs := make(chan error, 2) // buffered: pipes that end after serve returns must not block
	p.wg.Go(func() { errs <- p.pipe(ctx, server, client) })
	p.wg.Go(func() { errs <- p.pipe(ctx, client, server) })
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				if ctx.Err() == nil {
					p.logger.Debug("delayproxy: connection failed", "client", client.RemoteAddr(), "err", err)
				}
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// pipe copies src to dst, holding each chunk until half the delay has
// passed since it was read. The reader runs apart from the writer so that
// a chunk waiting for its time does not hold back reading the next one:
// chunks wait side by side, and the stream keeps its bandwidth. When src
// ends cleanly, pipe half-closes dst once everything queued is written, so
// the peer sees the same EOF.
func (p *Proxy) pipe(ctx context.Context, dst, src net.Conn) error {
	queue := make(chan chunk, queueLen)
	readErr := make(chan error, 1)
	p.wg.Go(func() { readErr <- p.read(ctx, src, queue) })
	for c := range queue {
		if wait := time.Until(c.due); wait > 0 && wait < preciseBelow {
			sleepPrecisely(wait)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		} else if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			return err
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}

// read queues what src sends until EOF (nil) or an error, and closes queue
// either way so the writer knows no more is coming.
func (p *Proxy) read(ctx context.Context, src net.Conn, queue chan<- chunk) error {
	defer close(queue)
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			// Each chunk gets its own copy, sized to what was read, since
			// buf is reused while the chunk still waits in the queue.
			c := chunk{due: time.Now().Add(p.half), data: bytes.Clone(buf[:n])}
			select {
			case queue <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
