package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend/pgtest"
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
	// ExtraArgs are appended to every `committer serve` command line.
	ExtraArgs []string
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

// replica is the state of one slot. Guarded by Cluster.mu.
type replica struct {
	id         string
	generation int // 0: initial member; n: n-th replacement, which joins
	proc       *process
	paused     bool
}

// Cluster is PostgreSQL plus the replica processes.
type Cluster struct {
	opts  Options
	log   *slog.Logger
	pg    *pgtest.Server
	nodes []Node
	conns []*grpc.ClientConn // admin connections, by slot-1
	http  *http.Client

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
	c := &Cluster{opts: opts, log: opts.Logger, http: &http.Client{Timeout: time.Second}}
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
		n := NodeAt(slot)
		c.nodes = append(c.nodes, n)
		c.replicas = append(c.replicas, &replica{id: n.Name})
		cc, err := grpc.NewClient(n.GRPCAddr(), append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
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
func (c *Cluster) Running(slot int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.replicas[slot-1].proc
	return p != nil && !p.exited()
}

// Paused reports whether the slot's process is stopped with SIGSTOP.
func (c *Cluster) Paused(slot int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.replicas[slot-1]
	return r.paused && r.proc != nil && !r.proc.exited()
}

// Crashes lists replica exits the harness did not cause.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

// args builds the serve command line of a slot's current replica.
func (c *Cluster) args(slot int, r *replica) []string {
	n := c.nodes[slot-1]
	args := []string{c.opts.Binary, "serve",
		"--backend", c.BackendURL(),
		"--id", r.id,
		"--data-dir", filepath.Join(c.opts.Dir, "data", r.id),
		"--grpc-addr", n.GRPCAddr(),
		"--raft-addr", n.RaftAddr(),
		"--http-addr", n.HTTPAddr(),
		"--log-format", "text",
	}
	if r.generation == 0 {
		var peers []string
		for _, p := range c.nodes {
			peers = append(peers, p.Name+"="+p.RaftAddr())
		}
		args = append(args, "--bootstrap-expect", strconv.Itoa(len(c.nodes)), "--peers", strings.Join(peers, ","))
	} else {
		var join []string
		for _, p := range c.nodes {
			if p.Slot != slot {
				join = append(join, p.GRPCAddr())
			}
		}
		args = append(args, "--join", strings.Join(join, ","))
	}
	if c.opts.ReadConsistency != "" {
		args = append(args, "--read-consistency", c.opts.ReadConsistency)
	}
	if c.opts.UnsafeSkipFence {
		args = append(args, "--unsafe-skip-fence")
	}
	return append(args, c.opts.ExtraArgs...)
}

// StartNode starts the slot's replica if it is not running.
func (c *Cluster) StartNode(slot int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.replicas[slot-1]
	if r.proc != nil && !r.proc.exited() {
		return nil
	}
	n := c.nodes[slot-1]
	argv := c.args(slot, r)
	header := fmt.Sprintf("=== jepsen %s: starting %s as replica %s: %s", time.Now().Format(time.RFC3339Nano), n.Name, r.id, strings.Join(argv, " "))
	p, err := spawn(argv, filepath.Join(c.logDir(), n.Name+".log"), header, func(p *process) { c.exited(slot, p) })
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	r.proc, r.paused = p, false
	c.log.Info("started replica", "node", n.Name, "id", r.id, "pid", p.cmd.Process.Pid)
	return nil
}

// exited records an exit the harness did not ask for.
func (c *Cluster) exited(slot int, p *process) {
	if p.intended.Load() {
		return
	}
	n := c.nodes[slot-1]
	msg := fmt.Sprintf("%s %s: replica exited on its own (%v); see %s", time.Now().Format(time.RFC3339), n.Name, p.err,
		filepath.Join(c.logDir(), n.Name+".log"))
	c.log.Error("replica exited unexpectedly", "node", n.Name, "err", p.err)
	c.mu.Lock()
	c.crashes = append(c.crashes, msg)
	c.mu.Unlock()
}

func (c *Cluster) proc(slot int) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[slot-1].proc
}

// KillNode sends SIGKILL to the slot's replica and waits for it to exit.
func (c *Cluster) KillNode(ctx context.Context, slot int) error {
	p := c.proc(slot)
	if p == nil {
		return nil
	}
	if err := p.kill(ctx); err != nil {
		return err
	}
	c.setPaused(slot, false)
	c.log.Info("killed replica", "node", c.nodes[slot-1].Name)
	return nil
}

// StopNode stops the slot's replica gracefully (SIGTERM).
func (c *Cluster) StopNode(ctx context.Context, slot int) error {
	p := c.proc(slot)
	if p == nil {
		return nil
	}
	err := p.stop(ctx, stopGrace)
	c.setPaused(slot, false)
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

// PauseNode stops the slot's process with SIGSTOP.
func (c *Cluster) PauseNode(slot int) error {
	p := c.proc(slot)
	if p == nil || p.exited() {
		return fmt.Errorf("%s is not running", c.nodes[slot-1].Name)
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	c.setPaused(slot, true)
	c.log.Info("paused replica", "node", c.nodes[slot-1].Name)
	return nil
}

// ResumeNode continues a paused process (SIGCONT).
func (c *Cluster) ResumeNode(slot int) error {
	p := c.proc(slot)
	if p == nil {
		return nil
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	c.setPaused(slot, false)
	c.log.Info("resumed replica", "node", c.nodes[slot-1].Name)
	return nil
}

func (c *Cluster) setPaused(slot int, paused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replicas[slot-1].paused = paused
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
// started, and returns it.
func (c *Cluster) renew(slot int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.replicas[slot-1]
	r.generation++
	r.id = fmt.Sprintf("%s-r%d", c.nodes[slot-1].Name, r.generation)
	return r.id
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

// errNotRunning: a call needed a running replica in a slot.
var errNotRunning = errors.New("not running")
