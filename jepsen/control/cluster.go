package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/rpc/wire"
)

// Fixed ports and addresses inside the namespace.
const (
	GRPCPort     = 6882
	RaftPort     = 6883
	HTTPPort     = 6884
	PostgresIP   = "127.0.0.2"
	PostgresPort = 5432
	// Database is the PostgreSQL database the replicas share.
	Database = "committer"
)

// stopGrace is how long a graceful stop may take before SIGKILL.
const stopGrace = 15 * time.Second

// Node is a replica slot: a fixed name and address.
type Node struct {
	Slot int    // 1-based
	Name string // n<slot>
	IP   string // 127.0.0.(10+slot)
}

// NodeAt returns the node of a slot.
func NodeAt(slot int) Node {
	return Node{Slot: slot, Name: fmt.Sprintf("n%d", slot), IP: fmt.Sprintf("127.0.0.%d", 10+slot)}
}

// GRPCAddr is the node's client and admin address.
func (n Node) GRPCAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(GRPCPort)) }

// RaftAddr is the node's Raft address.
func (n Node) RaftAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(RaftPort)) }

// HTTPAddr is the node's metrics and health address.
func (n Node) HTTPAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(HTTPPort)) }

// Options configures Start.
type Options struct {
	// Binary is the committer executable.
	Binary string
	// Nodes is the number of replicas (3 or 5 in practice).
	Nodes int
	// Dir holds nodes/ (logs), data/ (replica data dirs) and postgres/.
	Dir string
	// ReadConsistency and UnsafeSkipFence are passed to every replica
	// (empty: the replica's default).
	ReadConsistency string
	UnsafeSkipFence bool
	// Isolation is passed to every replica as --isolation (the PostgreSQL
	// transaction isolation: serializable or read-committed); empty: the
	// replica's default.
	Isolation string
	// ExtraArgs are appended to every `committer serve` command line.
	ExtraArgs []string
	// TLS, if set, runs every replica with mutual TLS on every port; the
	// harness's admin connections and probes use its client certificate.
	TLS *TLS
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

// replica is the state of one slot: id and generation are guarded by
// Cluster.mu; proc, the slot's process (package replicaproc), guards itself.
type replica struct {
	id         string
	generation int // 0: initial member; n: n-th replacement, which joins
	proc       *replicaproc.Replica
}

// Cluster is PostgreSQL plus the replica processes.
type Cluster struct {
	opts  Options
	log   *slog.Logger
	pg    *pgtest.Server
	nodes []Node
	conns []*grpc.ClientConn // admin connections, by slot-1

	// mu guards replicas and crashes. It is never held across a wait.
	mu       sync.Mutex
	replicas []*replica
	crashes  []string
}

// Start launches PostgreSQL and the replicas, and returns once a leader is
// ready (or ctx ends).
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("need at least one node, got %d", opts.Nodes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts, log: opts.Logger}
	for _, d := range []string{c.logDir(), filepath.Join(opts.Dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	c.log.Info("starting PostgreSQL", "addr", net.JoinHostPort(PostgresIP, strconv.Itoa(PostgresPort)))
	c.pg, err = pgtest.Start(ctx, pgtest.Options{ListenAddr: PostgresIP, Port: PostgresPort, Dir: filepath.Join(opts.Dir, "postgres"), Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	if err := createDatabase(ctx, c.pg.URL("postgres"), Database); err != nil {
		return nil, err
	}
	for slot := 1; slot <= opts.Nodes; slot++ {
		c.nodes = append(c.nodes, NodeAt(slot))
	}
	// Probes are bounded by a second each; a paused replica must not hold
	// one on an old connection.
	probeTransport := &http.Transport{DisableKeepAlives: true}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		probeTransport.TLSClientConfig = opts.TLS.Client
		creds = credentials.NewTLS(opts.TLS.Client)
	}
	probes := &http.Client{Timeout: time.Second, Transport: probeTransport}
	for _, n := range c.nodes {
		r := &replica{id: n.Name}
		r.proc = replicaproc.New(replicaproc.Options{
			Binary:          opts.Binary,
			Args:            c.args(n.Slot, r),
			LogPath:         filepath.Join(c.logDir(), n.Name+".log"),
			OwnProcessGroup: true,
			OnCrash:         func(err error) { c.crashed(n, err) },
			HTTP:            probes,
			HTTPS:           opts.TLS != nil,
		})
		c.replicas = append(c.replicas, r)
		cc, err := grpc.NewClient(n.GRPCAddr(), append(wire.DialOptions(), grpc.WithTransportCredentials(creds))...)
		if err != nil {
			return nil, fmt.Errorf("admin connection to %s: %w", n.Name, err)
		}
		c.conns = append(c.conns, cc)
	}
	for _, n := range c.nodes {
		if err := c.StartNode(n.Slot); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := c.WaitReadyLeader(wctx); err != nil {
		return nil, fmt.Errorf("the cluster did not elect a ready leader: %w (see %s)", err, c.logDir())
	}
	return c, nil
}

func (c *Cluster) logDir() string { return filepath.Join(c.opts.Dir, "nodes") }

// PostgresDataDir is PostgreSQL's data directory: under Options.Dir, or,
// when the postgres user cannot reach Options.Dir, a private directory of
// that user elsewhere, which Options.Dir/postgres/data links to.
func (c *Cluster) PostgresDataDir() string { return c.pg.DataDir() }

// BackendURL is the replicas' PostgreSQL URL.
func (c *Cluster) BackendURL() string { return c.pg.URL(Database) }

// Nodes returns every slot.
func (c *Cluster) Nodes() []Node { return append([]Node(nil), c.nodes...) }

// Node returns the node of a slot.
func (c *Cluster) Node(slot int) Node { return c.nodes[slot-1] }

// ID returns the replica id currently in a slot.
func (c *Cluster) ID(slot int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[slot-1].id
}

// SlotOfID returns the slot a replica id lives in, or 0.
func (c *Cluster) SlotOfID(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.replicas {
		if r.id == id {
			return i + 1
		}
	}
	return 0
}

// SlotOfAddr returns the slot whose node has the address host:port, or 0.
func (c *Cluster) SlotOfAddr(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	for _, n := range c.nodes {
		if n.IP == host {
			return n.Slot
		}
	}
	return 0
}

// Running reports whether the slot's process is alive (paused or not).
func (c *Cluster) Running(slot int) bool { return c.replicas[slot-1].proc.Running() }

// Paused reports whether the slot's process is stopped with SIGSTOP.
func (c *Cluster) Paused(slot int) bool { return c.replicas[slot-1].proc.Paused() }

// Crashes lists replica exits the harness did not cause.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

// args builds the serve command line of a slot's replica r: an initial
// member bootstraps with every node as a peer, a replacement joins through
// the other nodes.
func (c *Cluster) args(slot int, r *replica) replicaproc.ServeArgs {
	n := c.nodes[slot-1]
	args := replicaproc.ServeArgs{
		Backend:         c.BackendURL(),
		ID:              r.id,
		DataDir:         filepath.Join(c.opts.Dir, "data", r.id),
		GRPCAddr:        n.GRPCAddr(),
		RaftAddr:        n.RaftAddr(),
		HTTPAddr:        n.HTTPAddr(),
		LogFormat:       "text",
		ReadConsistency: c.opts.ReadConsistency,
		UnsafeSkipFence: c.opts.UnsafeSkipFence,
		Extra:           c.opts.extraServeArgs(),
	}
	if r.generation == 0 {
		args.BootstrapExpect = len(c.nodes)
		for _, p := range c.nodes {
			args.Peers = append(args.Peers, replicaproc.Peer{ID: p.Name, RaftAddr: p.RaftAddr()})
		}
	} else {
		for _, p := range c.nodes {
			if p.Slot != slot {
				args.Join = append(args.Join, p.GRPCAddr())
			}
		}
	}
	return args
}

// extraServeArgs are the serve flags replicaproc.ServeArgs has no field
// for: --isolation, then ExtraArgs (so that an --isolation among them
// would still win, as the later one).
func (o Options) extraServeArgs() []string {
	var out []string
	if o.Isolation != "" {
		out = append(out, "--isolation="+o.Isolation)
	}
	if o.TLS != nil {
		out = append(out, o.TLS.ServeArgs...)
	}
	return append(out, o.ExtraArgs...)
}

// StartNode starts the slot's replica if it is not running.
func (c *Cluster) StartNode(slot int) error {
	n := c.nodes[slot-1]
	p := c.replicas[slot-1].proc
	if err := p.Spawn(); err != nil {
		if errors.Is(err, replicaproc.ErrRunning) {
			return nil
		}
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	c.log.Info("started replica", "node", n.Name, "id", c.ID(slot), "pid", p.PID())
	return nil
}

// crashed records an exit the harness did not ask for.
func (c *Cluster) crashed(n Node, err error) {
	msg := fmt.Sprintf("%s %s: replica exited on its own (%v); see %s", time.Now().Format(time.RFC3339), n.Name, err,
		filepath.Join(c.logDir(), n.Name+".log"))
	c.log.Error("replica exited unexpectedly", "node", n.Name, "err", err)
	c.mu.Lock()
	c.crashes = append(c.crashes, msg)
	c.mu.Unlock()
}

// KillNode sends SIGKILL to the slot's replica and waits for it to exit.
func (c *Cluster) KillNode(ctx context.Context, slot int) error {
	if err := c.replicas[slot-1].proc.Kill(ctx); err != nil {
		if errors.Is(err, replicaproc.ErrNotRunning) {
			return nil
		}
		return err
	}
	c.log.Info("killed replica", "node", c.nodes[slot-1].Name)
	return nil
}

// StopNode stops the slot's replica gracefully (SIGTERM), killing it after
// stopGrace. How it exited is logged, not returned: the harness only needs
// it gone.
func (c *Cluster) StopNode(ctx context.Context, slot int) error {
	err := c.replicas[slot-1].proc.Stop(ctx, stopGrace)
	var exit *exec.ExitError
	switch {
	case err == nil, errors.Is(err, replicaproc.ErrNotRunning):
		return nil
	case errors.As(err, &exit), errors.Is(err, replicaproc.ErrKilled):
		c.log.Warn("replica did not stop cleanly", "node", c.nodes[slot-1].Name, "err", err)
		return nil
	}
	return err
}

// RestartNode stops the slot's replica gracefully and starts it again on
// the same data.
func (c *Cluster) RestartNode(ctx context.Context, slot int) error {
	if err := c.StopNode(ctx, slot); err != nil {
		return err
	}
	return c.StartNode(slot)
}

// PauseNode stops the slot's process with SIGSTOP and returns once every
// thread of it is stopped, so that a pause fault is recorded as started
// only when the replica can no longer act.
func (c *Cluster) PauseNode(ctx context.Context, slot int) error {
	if err := c.replicas[slot-1].proc.Pause(ctx); err != nil {
		return fmt.Errorf("pause %s: %w", c.nodes[slot-1].Name, err)
	}
	c.log.Info("paused replica", "node", c.nodes[slot-1].Name)
	return nil
}

// ResumeNode continues a paused process (SIGCONT).
func (c *Cluster) ResumeNode(slot int) error {
	if err := c.replicas[slot-1].proc.Resume(); err != nil {
		if errors.Is(err, replicaproc.ErrNotRunning) {
			return nil
		}
		return err
	}
	c.log.Info("resumed replica", "node", c.nodes[slot-1].Name)
	return nil
}

// PID returns the process id of the slot's replica, or 0 when it does not
// run.
func (c *Cluster) PID(slot int) int {
	p := c.replicas[slot-1].proc
	if !p.Running() {
		return 0
	}
	return p.PID()
}

// WipeNode deletes the data dir of the slot's replica, which must not be
// running.
func (c *Cluster) WipeNode(slot int) error {
	if c.Running(slot) {
		return fmt.Errorf("%s is running; stop it before wiping its data", c.nodes[slot-1].Name)
	}
	dir := filepath.Join(c.opts.Dir, "data", c.ID(slot))
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("wipe %s: %w", dir, err)
	}
	return nil
}

// renew gives the slot a new replica id that joins the cluster when
// started, and returns it. The slot's replica must not run.
func (c *Cluster) renew(slot int) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.replicas[slot-1]
	next := *r
	next.generation++
	next.id = fmt.Sprintf("%s-r%d", c.nodes[slot-1].Name, next.generation)
	if err := r.proc.SetArgs(c.args(slot, &next)); err != nil {
		return "", fmt.Errorf("renew %s: %w", c.nodes[slot-1].Name, err)
	}
	r.generation, r.id = next.generation, next.id
	return r.id, nil
}

// RemoveData deletes the data of a closed cluster: PostgreSQL's (wherever
// pgtest placed it) and the replicas'. Logs stay.
func (c *Cluster) RemoveData() error {
	var errs []error
	if c.pg != nil {
		errs = append(errs, c.pg.RemoveData())
	}
	errs = append(errs, os.RemoveAll(filepath.Join(c.opts.Dir, "data")))
	return errors.Join(errs...)
}

// Close stops every replica (gracefully, in parallel) and PostgreSQL.
func (c *Cluster) Close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.StopNode(ctx, n.Slot); err != nil {
				c.log.Warn("stopping replica", "node", n.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	if c.pg != nil {
		if err := c.pg.Stop(); err != nil {
			c.log.Warn("stopping PostgreSQL", "err", err)
		}
	}
}
