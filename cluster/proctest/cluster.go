package proctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/wire"
)

// Bootstrap says how the initial replicas form their cluster.
type Bootstrap int

const (
	// BootstrapPeers starts every initial replica with --bootstrap-expect N
	// and the same --peers list.
	BootstrapPeers Bootstrap = iota
	// BootstrapImplicit starts a single replica with neither cluster flags
	// nor --id: `serve` forms a one-replica cluster on a fresh data dir,
	// named after the host.
	BootstrapImplicit
)

// Options configures a Cluster.
type Options struct {
	// Binary is the committer executable (see Build). Required.
	Binary string
	// Backend is the storage URL every replica serves. Required.
	Backend string
	// Replicas is the size of the initial cluster; 0 means 3.
	Replicas int
	// Bootstrap selects the cluster-forming flags of the initial replicas.
	Bootstrap Bootstrap
	// Args are extra flags for every replica, e.g.
	// "--raft-heartbeat-timeout=300ms".
	Args []string
	// LogLevel is the replicas' --log-level; empty means info.
	LogLevel string
	// StartTimeout bounds how long a process may take to answer /healthz;
	// 0 means 20s.
	StartTimeout time.Duration
	// CallTimeout is the deadline of client calls made without one; 0
	// means 10s.
	CallTimeout time.Duration
	// TLS, if set, runs every replica with TLS on every port (see
	// TLSOptions); the cluster's clients and probes then use TLS too.
	TLS *TLSOptions
}

// bindRetries bounds how often a replica is started again on fresh ports
// after losing a port to another program between picking and binding.
const bindRetries = 3

// Cluster is a set of committer replica processes sharing one backend.
//
// Its methods may be called from any goroutine; Start must be called from
// the test's goroutine. Cluster.mu and Replica.mu are never held together.
type Cluster struct {
	t    testing.TB
	opts Options
	root string
	// quiet receives the clients' retry logs, which would drown the test
	// log under faults.
	quiet *slog.Logger
	// http carries the /healthz, /readyz and /metrics probes; each probe
	// bounds itself with its context. No keep-alives: a paused or killed
	// replica must not leave a probe stuck on an old connection.
	http *http.Client

	// tls holds the certificates of a TLS cluster; nil for plaintext.
	tls *Certificates

	mu       sync.Mutex
	replicas []*Replica
	closers  []io.Closer // clients and connections, closed at cleanup
	closed   bool
}

// Start builds a cluster of opts.Replicas processes and waits until each
// serves /healthz (not until a leader exists: see Leader). It fails the
// test if the cluster cannot be started. When the test ends, every process
// is killed, the logs are checked for data races and panics (failing the
// test if any), and on failure the tail of every log is written to the
// test log.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Binary == "" || opts.Backend == "" {
		t.Fatalf("proctest: Options.Binary and Options.Backend are required")
	}
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	if opts.Replicas < 0 || (opts.Bootstrap == BootstrapImplicit && opts.Replicas != 1) {
		t.Fatalf("proctest: %d replicas with bootstrap mode %d", opts.Replicas, opts.Bootstrap)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 20 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Second
	}
	c := &Cluster{t: t, opts: opts, root: t.TempDir(), quiet: slog.New(slog.DiscardHandler)}
	transport := &http.Transport{DisableKeepAlives: true}
	if opts.TLS != nil {
		var err error
		if c.tls, err = newCertificates(filepath.Join(c.root, "tls"), *opts.TLS); err != nil {
			t.Fatalf("proctest: certificates: %v", err)
		}
		transport.TLSClientConfig = c.tls.clientConfig
	}
	c.http = &http.Client{Transport: transport}
	t.Cleanup(c.cleanup)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(opts.Replicas)*opts.StartTimeout)
	defer cancel()
	var err error
	for range bindRetries {
		if err = c.bootstrap(ctx); !errors.Is(err, replicaproc.ErrAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("proctest: starting %d replicas: %v", opts.Replicas, err)
	}
	return c
}

// bootstrap creates and starts the initial replicas on fresh ports. On
// failure every process it started is killed and the replicas are
// forgotten, so it can be called again.
func (c *Cluster) bootstrap(ctx context.Context) error {
	n := c.opts.Replicas
	addrs, err := freeport.Addrs("127.0.0.1", 3*n)
	if err != nil {
		return err
	}
	var replicas []*Replica
	var peers []replicaproc.Peer
	for i := range n {
		peers = append(peers, replicaproc.Peer{ID: fmt.Sprintf("r%d", i+1), RaftAddr: addrs[3*i+1]})
	}
	for i := range n {
		id := fmt.Sprintf("r%d", i+1)
		var formation replicaproc.ServeArgs
		switch c.opts.Bootstrap {
		case BootstrapPeers:
			formation = replicaproc.ServeArgs{ID: id, BootstrapExpect: n, Peers: peers}
		case BootstrapImplicit:
			// serve names the replica after the host without --id.
			if id, err = os.Hostname(); err != nil {
				return err
			}
		}
		r, err := c.newReplica(id, filepath.Join(c.root, id), addrs[3*i], addrs[3*i+1], addrs[3*i+2], formation)
		if err != nil {
			return err
		}
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		if err := r.Start(ctx); err != nil {
			for _, r := range replicas {
				r.kill()
				r.closeAdmin()
				_ = os.RemoveAll(r.dataDir)
			}
			return fmt.Errorf("%s: %w", r.id, err)
		}
	}
	c.mu.Lock()
	c.replicas = append(c.replicas, replicas...)
	c.mu.Unlock()
	return nil
}

// JoinSpec describes a replica that joins a running cluster.
type JoinSpec struct {
	// ID is the new replica's id; it must be new to this Cluster unless
	// Replaces names the replica that had it.
	ID string
	// Via lists the replicas whose gRPC addresses go into --join; empty
	// means every running replica.
	Via []*Replica
	// Replaces, if set, is a replica that is not running whose addresses
	// and data dir the new one takes over, like a replacement machine.
	// Its data dir is used as it is: wipe it first (WipeDataDir) for a
	// fresh start.
	Replaces *Replica
}

// AddReplica starts a new replica with --join and waits until it serves
// /healthz. It does not wait for it to become a voter.
func (c *Cluster) AddReplica(ctx context.Context, spec JoinSpec) (*Replica, error) {
	if spec.ID == "" {
		return nil, errors.New("proctest: a joining replica needs an id")
	}
	via := spec.Via
	if len(via) == 0 {
		via = c.Running()
	}
	var join []string
	for _, v := range via {
		join = append(join, v.grpcAddr)
	}
	if len(join) == 0 {
		return nil, errors.New("proctest: no running replica to join through")
	}
	formation := replicaproc.ServeArgs{ID: spec.ID, Join: join}
	if old := spec.Replaces; old != nil {
		if old.Running() {
			return nil, fmt.Errorf("proctest: %s still runs; stop it before replacing it", old.id)
		}
		r, err := c.newReplica(spec.ID, old.dataDir, old.grpcAddr, old.raftAddr, old.httpAddr, formation)
		if err != nil {
			return nil, err
		}
		return r, c.startAdded(ctx, r)
	}
	if c.Replica(spec.ID) != nil {
		return nil, fmt.Errorf("proctest: replica %s already exists", spec.ID)
	}
	var err error
	for range bindRetries {
		var addrs []string
		if addrs, err = freeport.Addrs("127.0.0.1", 3); err != nil {
			return nil, err
		}
		var r *Replica
		if r, err = c.newReplica(spec.ID, filepath.Join(c.root, spec.ID), addrs[0], addrs[1], addrs[2], formation); err != nil {
			return nil, err
		}
		if err = c.startAdded(ctx, r); !errors.Is(err, replicaproc.ErrAddrInUse) {
			return r, err
		}
		r.closeAdmin()
		_ = os.RemoveAll(r.dataDir)
	}
	return nil, err
}

// startAdded starts r and, if it starts, makes it one of the cluster's
// replicas.
func (c *Cluster) startAdded(ctx context.Context, r *Replica) error {
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("%s: %w", r.id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replicas = append(c.replicas, r)
	return nil
}

// Replicas returns every replica ever started, running or not, in the
// order they were created.
// Backend is the storage URL the replicas serve.
func (c *Cluster) Backend() string { return c.opts.Backend }

func (c *Cluster) Replicas() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.replicas)
}

// Replica returns the latest replica with the given id, or nil.
func (c *Cluster) Replica(id string) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.replicas) - 1; i >= 0; i-- {
		if c.replicas[i].id == id {
			return c.replicas[i]
		}
	}
	return nil
}

// Running returns the replicas whose process runs and is not paused.
func (c *Cluster) Running() []*Replica {
	var out []*Replica
	for _, r := range c.Replicas() {
		if r.Running() && !r.Paused() {
			out = append(out, r)
		}
	}
	return out
}

// Others returns the running, unpaused replicas except the given ones.
func (c *Cluster) Others(except ...*Replica) []*Replica {
	var out []*Replica
	for _, r := range c.Running() {
		if !slices.Contains(except, r) {
			out = append(out, r)
		}
	}
	return out
}

// Leader waits until exactly one of among (default: every running,
// unpaused replica) is the ready leader, as its /readyz says (Raft leader
// and fenced), and returns it.
func (c *Cluster) Leader(ctx context.Context, among ...*Replica) (*Replica, error) {
	var seen []string
	for {
		candidates := among
		if len(candidates) == 0 {
			candidates = c.Running()
		}
		var ready []*Replica
		seen = seen[:0]
		for _, r := range candidates {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := r.Readyz(rctx)
			cancel()
			switch {
			case err != nil:
				seen = append(seen, fmt.Sprintf("%s: %v", r.id, err))
			case st.Leader && st.Ready:
				ready = append(ready, r)
				seen = append(seen, r.id+": ready leader")
			default:
				seen = append(seen, fmt.Sprintf("%s: %+v", r.id, st))
			}
		}
		if len(ready) == 1 {
			return ready[0], nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no single ready leader (%s): %w", strings.Join(seen, "; "), ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Client returns a client that dials the gRPC addresses of rs (default:
// every replica), in that order, follows leader hints and retries as
// configured, with the client package's own defaults for everything but
// the call timeout and the logger (retries are not logged). Calls without a deadline get Options.CallTimeout. It is
// closed when the test ends.
func (c *Cluster) Client(rs ...*Replica) (*client.Client, error) {
	return c.ClientWith(nil, rs...)
}

// ClientWith is Client with extra options, applied after the defaults.
func (c *Cluster) ClientWith(opts []client.Option, rs ...*Replica) (*client.Client, error) {
	if len(rs) == 0 {
		rs = c.Replicas()
	}
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.grpcAddr)
	}
	all := append([]client.Option{
		client.WithCallTimeout(c.opts.CallTimeout),
		client.WithLogger(c.quiet),
	}, opts...)
	if c.tls != nil {
		all = append([]client.Option{client.WithTLS(c.tls.clientConfig)}, all...)
	}
	cl, err := client.New(addrs, all...)
	if err != nil {
		return nil, err
	}
	return cl, c.addCloser(cl)
}

// Pinned returns a client whose every call goes to r and nowhere else: it
// ignores leader hints and, unless opts say otherwise, makes one attempt
// per call. It is how a test reaches "this replica" and no other. Calls
// without a deadline get Options.CallTimeout. It is closed when the test
// ends.
func (c *Cluster) Pinned(r *Replica, opts ...client.Option) (*client.Client, error) {
	cc, err := c.dialReplica(r.grpcAddr, grpc.WithUnaryInterceptor(dropLeaderHint))
	if err != nil {
		return nil, err
	}
	if err := c.addCloser(cc); err != nil {
		return nil, err
	}
	all := append([]client.Option{client.WithCallTimeout(c.opts.CallTimeout), client.WithLogger(c.quiet)}, opts...)
	return client.FromConn(cc, all...), nil
}

func (c *Cluster) addCloser(cl io.Closer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cl.Close()
		return errors.New("proctest: cluster already cleaned up")
	}
	c.closers = append(c.closers, cl)
	return nil
}

// fastReconnect replaces gRPC's reconnect backoff (up to two minutes) for
// connections to replicas that tests kill and restart within seconds.
func fastReconnect() grpc.ConnectParams {
	return grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}
}

// dialReplica makes a connection with the wire options consensus calls
// need, plaintext or with the cluster's client certificate. It connects
// lazily.
func (c *Cluster) dialReplica(addr string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.tls != nil {
		creds = credentials.NewTLS(c.tls.clientConfig)
	}
	opts := append(wire.DialOptions(),
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(fastReconnect()))
	return grpc.NewClient(addr, append(opts, extra...)...)
}

// dropLeaderHint removes the leader hint from a pinned call's response
// metadata. A client made by client.FromConn adopts a hinted address as its
// next endpoint although it holds no connection for it (its next call then
// dereferences a nil connection), and a pinned client must not move anyway.
func dropLeaderHint(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			if o.HeaderAddr != nil {
				o.HeaderAddr.Delete(wire.LeaderMetadataKey)
			}
		case grpc.TrailerCallOption:
			if o.TrailerAddr != nil {
				o.TrailerAddr.Delete(wire.LeaderMetadataKey)
			}
		}
	}
	return err
}

// cleanup closes clients, kills every process, checks the logs for data
// races and panics, and dumps the logs' tails if the test failed.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	c.closed = true
	closers := c.closers
	c.closers = nil
	replicas := slices.Clone(c.replicas)
	c.mu.Unlock()
	for _, cl := range closers {
		cl.Close()
	}
	for _, r := range replicas {
		r.kill()
		r.closeAdmin()
	}
	for _, r := range replicas {
		if bad := r.scanLog(); bad != "" {
			c.t.Errorf("proctest: replica %s logged %s", r.id, bad)
		}
	}
	if !c.t.Failed() {
		return
	}
	seen := map[string]bool{}
	for _, r := range replicas {
		if seen[r.LogPath()] {
			continue
		}
		seen[r.LogPath()] = true
		c.t.Logf("proctest: tail of %s (%s):\n%s", r.id, r.LogPath(), r.proc.LogTail(16<<10))
	}
}
