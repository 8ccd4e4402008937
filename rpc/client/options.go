package client

import (
	"crypto/tls"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const (
	// DefaultCallTimeout bounds a call (all its attempts) whose context has
	// no deadline.
	DefaultCallTimeout = 30 * time.Second
	// DefaultMaxAttempts bounds the attempts of one call.
	DefaultMaxAttempts = 5
	// DefaultAttemptTimeout bounds how long an attempt may go unanswered,
	// so that a call whose replica stopped answering (paused, or cut off
	// with its connection still open) moves on to another within the
	// call's time (WithAttemptTimeout).
	DefaultAttemptTimeout = 10 * time.Second
	// minWriteAttempt: a write is not sent again with less time left than
	// this, since an attempt the deadline cuts short is indeterminate and
	// would replace the determinate answer of the one before.
	minWriteAttempt = 100 * time.Millisecond
	// DefaultInitialBackoff and DefaultMaxBackoff bound the pause between
	// attempts; it doubles from the first to the second, with jitter.
	DefaultInitialBackoff = 25 * time.Millisecond
	DefaultMaxBackoff     = time.Second
	// maxEndpoints caps how many distinct addresses the client will connect
	// to, so that leader hints cannot grow the connection set without bound.
	maxEndpoints = 32
)

type config struct {
	callTimeout    time.Duration
	attemptTimeout time.Duration // 0: none
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	dialOptions    []grpc.DialOption
	logger         *slog.Logger
	// ignoreHints: never go to the leader a replica names.
	ignoreHints bool
}

func defaultConfig() config {
	return config{
		callTimeout:    DefaultCallTimeout,
		attemptTimeout: DefaultAttemptTimeout,
		maxAttempts:    DefaultMaxAttempts,
		initialBackoff: DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
		logger:         slog.Default(),
	}
}

// Option configures New.
type Option func(*config)

// WithoutLeaderRouting makes every call go to the endpoints as given, in
// order, never to the leader a replica names in its answers. A replica that
// does not lead then forwards each call; this measures that path and is
// not meant for production use, which wants the one hop to the leader.
func WithoutLeaderRouting() Option {
	return func(c *config) { c.ignoreHints = true }
}

// WithCallTimeout sets the deadline given to calls whose context has none;
// d <= 0 keeps DefaultCallTimeout.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.callTimeout = d
		}
	}
}

// WithAttemptTimeout gives up an attempt that nothing answered within d
// and goes on to the next replica: a read at once, a write only while its
// request cannot have been delivered (waiting for a connection). A write
// that may have been delivered is never sent again, so it keeps the call's
// deadline; an attempt the server has begun to answer is never cut, however
// large its answer. d <= 0 turns this off.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *config) { c.attemptTimeout = max(0, d) }
}

// WithMaxAttempts bounds the attempts of one call (1 disables retries);
// n <= 0 keeps DefaultMaxAttempts.
func WithMaxAttempts(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxAttempts = n
		}
	}
}

// WithBackoff sets the pause before the first retry and its cap; values <= 0
// keep the defaults.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) {
		if initial > 0 {
			c.initialBackoff = initial
		}
		if max > 0 {
			c.maxBackoff = max
		}
	}
}

// WithDialOptions adds gRPC dial options, applied after the client's own
// (plaintext transport, message limits, keepalive), so that for instance
// grpc.WithTransportCredentials replaces plaintext with TLS.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// WithTLS dials every endpoint with TLS configured by cfg (server
// verification, and a client certificate where the replicas verify
// clients) instead of plaintext. Build cfg from PEM files with
// tlsconfig.Client, as the committer CLI's --cacert, --cert and --key do.
func WithTLS(cfg *tls.Config) Option {
	return WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// WithLogger sets where retries and endpoint changes are logged; nil keeps
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}
