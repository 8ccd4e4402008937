package workload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/rpc/client"
)

// Target is a replica the workload can send operations to.
type Target struct {
	Name string // node name, recorded in the history
	Addr string // gRPC host:port
}

// Config configures a Workload.
type Config struct {
	Targets     []Target
	Concurrency int
	// Seed makes each worker's choice of operations reproducible (the
	// interleaving with the cluster never is).
	Seed int64
	// WorkersPerKey is the size of a worker group sharing a key (default 3).
	WorkersPerKey int
	// WritesPerKey and InfosPerKey bound a key's life: a group moves to a
	// fresh key after that many writes, or indeterminate writes, on it
	// (defaults 300 and 6).
	WritesPerKey int
	InfosPerKey  int
	// WriteTimeout and ReadTimeout bound one operation (defaults 5s, 2s).
	WriteTimeout time.Duration
	ReadTimeout  time.Duration
	// TLS, if set, is the client TLS every worker dials with.
	TLS *tls.Config
	// Logger receives workload events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 12
	}
	if c.WorkersPerKey <= 0 {
		c.WorkersPerKey = 3
	}
	if c.WritesPerKey <= 0 {
		c.WritesPerKey = 300
	}
	if c.InfosPerKey <= 0 {
		c.InfosPerKey = 6
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Recorder is where the workload records its operations: a
// *history.Recorder, or something that passes events on to one (the
// harness's progress counter). Add must be safe for concurrent use.
type Recorder interface {
	Add(history.Event) history.Event
}

// Workload runs workers that record into a history.
type Workload struct {
	cfg     Config
	rec     Recorder
	keys    *keyspace
	procs   atomic.Int64 // the next process id
	workers []*worker
}

// worker is one client thread: one operation at a time.
type worker struct {
	w       *Workload
	index   int
	process int
	target  Target
	role    role
	store   *client.Client
	choose  chooser
}

// New builds the workers and their clients. Connections are made on first
// use.
func New(cfg Config, rec Recorder) (*Workload, error) {
	cfg.defaults()
	if len(cfg.Targets) == 0 {
		return nil, errors.New("workload: no targets")
	}
	groups := (cfg.Concurrency + cfg.WorkersPerKey - 1) / cfg.WorkersPerKey
	w := &Workload{cfg: cfg, rec: rec, keys: newKeyspace(groups, cfg.WritesPerKey, cfg.InfosPerKey)}
	w.procs.Store(int64(cfg.Concurrency))
	for i := range cfg.Concurrency {
		g, j := i/cfg.WorkersPerKey, i%cfg.WorkersPerKey
		wk := &worker{
			w: w, index: i, process: i,
			// Spread each group over the replicas.
			target: cfg.Targets[(g+j)%len(cfg.Targets)],
			role:   [...]role{routed, pinned, reader}[min(j, 2)],
		}
		wk.choose = chooser{
			rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i))),
			role:   wk.role,
			group:  g,
			keys:   w.keys,
			known:  map[string]knowledge{},
			worker: i,
		}
		var err error
		if wk.role == routed {
			wk.store, err = routingClient(cfg.Targets, wk.target, cfg.TLS, cfg.Logger)
		} else {
			wk.store, err = pinnedClient(wk.target, cfg.TLS, cfg.Logger)
		}
		if err != nil {
			w.Close()
			return nil, err
		}
		w.workers = append(w.workers, wk)
	}
	return w, nil
}

// routingClient talks to every target, starting with first, and follows
// the leader replicas name.
func routingClient(targets []Target, first Target, tlsCfg *tls.Config, log *slog.Logger) (*client.Client, error) {
	eps := []string{first.Addr}
	for _, t := range targets {
		if t.Addr != first.Addr {
			eps = append(eps, t.Addr)
		}
	}
	return client.New(eps, withTLS(tlsCfg, client.WithLogger(log))...)
}

// pinnedClient talks to t only. The client follows the leader a replica
// names in its answers; its dialer ignores the address it is asked for and
// always connects to t, so every call of a pinned worker goes to t.
// (client.FromConn would be the natural choice, but it switches its
// preferred endpoint to a named leader it has no connection for.)
func pinnedClient(t Target, tlsCfg *tls.Config, log *slog.Logger) (*client.Client, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", t.Addr)
	}
	return client.New([]string{t.Addr}, withTLS(tlsCfg, client.WithMaxAttempts(3), client.WithLogger(log),
		client.WithDialOptions(grpc.WithContextDialer(dial)))...)
}

// Close closes every client.
func (w *Workload) Close() {
	for _, wk := range w.workers {
		if wk.store != nil {
			_ = wk.store.Close()
		}
	}
}

// newProcess returns a process id never used before.
func (w *Workload) newProcess() int { return int(w.procs.Add(1) - 1) }

// Run runs the workers until ctx ends. An operation in flight when ctx ends
// runs to its own completion or timeout, so that it is recorded truthfully;
// Run returns once every worker has stopped.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, wk := range w.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk.loop(ctx)
		}()
	}
	wg.Wait()
}

func (wk *worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		o := wk.choose.next()
		done := wk.run(o)
		wk.choose.learn(o, done)
		if k := wk.w.keys.current(wk.choose.group); o.write() && slices.Contains(o.keys(), k) {
			wk.w.keys.done(wk.choose.group, k, done.Type == history.Info)
		}
		switch done.Type {
		case history.Info:
			// The old process may still be in flight: continue as a new one.
			wk.process = wk.w.newProcess()
			sleep(ctx, 50*time.Millisecond)
		case history.Fail:
			// Usually "no leader" or a refused connection: do not spin.
			sleep(ctx, 50*time.Millisecond+time.Duration(wk.choose.rng.IntN(50))*time.Millisecond)
		}
	}
}

// run records the invocation, runs o with its timeout and records the
// completion.
func (wk *worker) run(o op) history.Event {
	wk.w.keys.touch(o.keys()...)
	inv := wk.w.rec.Add(o.invocation(wk.process, wk.target.Name))
	timeout := wk.w.cfg.ReadTimeout
	if o.write() {
		timeout = wk.w.cfg.WriteTimeout
	}
	// Not derived from the run's context: the end of the run must not turn
	// operations into timeouts.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	done, err := execute(ctx, wk.store, o, inv)
	cancel()
	if errors.Is(err, backend.ErrInvalidArgument) {
		// The harness built a request the service must accept.
		wk.w.cfg.Logger.Error("the service rejected an operation as invalid", "op", o.f, "err", err)
	}
	return wk.w.rec.Add(done)
}

// Final reads the final state after the cluster healed: for every key ever
// used, a full scan and then a head, and finally list_keys. Each read is
// retried until it succeeds, up to attempts times; once one read has used up
// its attempts the cluster is evidently not serving, and the remaining reads
// get one attempt each. Every attempt is recorded; ctx bounds the whole.
func (w *Workload) Final(ctx context.Context, attempts int) error {
	store, err := routingClient(w.cfg.Targets, w.cfg.Targets[0], w.cfg.TLS, w.cfg.Logger)
	if err != nil {
		return err
	}
	defer store.Close()
	process := w.newProcess()
	var failed []string
	do := func(o op) {
		for range attempts {
			if ctx.Err() != nil {
				break
			}
			inv := w.rec.Add(o.invocation(process, "final"))
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			done, _ := execute(cctx, store, o, inv)
			cancel()
			done = w.rec.Add(done)
			switch done.Type {
			case history.OK:
				return
			case history.Info:
				process = w.newProcess()
			}
			sleep(ctx, 500*time.Millisecond)
		}
		failed = append(failed, fmt.Sprintf("%s %s", o.f, o.key))
		attempts = 1
	}
	for _, key := range w.keys.Used() {
		do(op{f: history.FScan, key: key, from: 0, limit: math.MaxUint64})
		do(op{f: history.FHead, key: key})
	}
	do(op{f: history.FListKeys})
	if len(failed) > 0 {
		const show = 10
		if len(failed) > show {
			failed = append(failed[:show], fmt.Sprintf("and %d more", len(failed)-show))
		}
		return fmt.Errorf("final reads that never succeeded: %s", strings.Join(failed, ", "))
	}
	return nil
}

// Keys returns every key used so far.
func (w *Workload) Keys() []string { return w.keys.Used() }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// withTLS adds the client TLS option to opts when cfg is set.
func withTLS(cfg *tls.Config, opts ...client.Option) []client.Option {
	if cfg == nil {
		return opts
	}
	return append([]client.Option{client.WithTLS(cfg)}, opts...)
}
