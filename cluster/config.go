package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/cluster/coalesce"
	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/metrics"
)

// ReadConsistency selects how the leader serves Head, Scan and ListKeys.
type ReadConsistency string

const (
	// Linearizable reads wait for a leadership-confirmation round that
	// started after they arrived (package readgate).
	Linearizable ReadConsistency = "linearizable"
	// LeaderOnly reads trust the replica's own belief that it leads. A
	// deposed leader that has not noticed yet (paused, partitioned) answers
	// from its stale cache for up to an election timeout: a documented stale
	// window, kept as a canary for the correctness harness.
	LeaderOnly ReadConsistency = "leader"
)

// ParseReadConsistency parses a flag value.
func ParseReadConsistency(s string) (ReadConsistency, error) {
	switch ReadConsistency(s) {
	case Linearizable, "":
		return Linearizable, nil
	case LeaderOnly:
		return LeaderOnly, nil
	}
	return "", fmt.Errorf("read consistency %q: want %q or %q", s, Linearizable, LeaderOnly)
}

// Peer is a member of the initial configuration.
type Peer struct {
	ID       string
	RaftAddr string
}

// Timeouts are the Raft timing knobs.
//
// Defaults are tuned for a LAN (sub-millisecond RTT) on small, busy machines.
// A follower notices a dead leader after a random wait in [Heartbeat,
// 2*Heartbeat); its pre-vote is refused by the other survivors until their
// own timers fire too, so detection is roughly the later of two such waits;
// then the new leader runs a Barrier and one fence statement (2-10 ms).
// Measured with 3 replica processes on PostgreSQL, SIGKILL of the leader
// under CaS load to the first acknowledged CaS through a survivor
// (BenchmarkFailover in cluster/proctest, 2-core machine, 10-20 trials):
//
//	Heartbeat 500ms: median 1.00-1.10 s, max 1.41-1.49 s
//	Heartbeat 400ms: median 0.82-0.86 s, max 1.12-1.63 s
//	Heartbeat 300ms: median 0.58-0.75 s, max 0.82-0.92 s, but one run of
//	                 five had three trials of 2.0-2.5 s and a spurious
//	                 election under load
//
// 400ms meets the failover target (median <= 1 s, max <= 2 s) with margin
// against spurious elections from starved heartbeat goroutines.
// LeaderLease must not exceed Heartbeat (a Raft requirement); the read gate
// and fencing, not the lease, are what make a deposed leader harmless.
type Timeouts struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	Commit      time.Duration
}

// DefaultTimeouts returns the LAN defaults described on Timeouts.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Heartbeat:   400 * time.Millisecond,
		Election:    400 * time.Millisecond,
		LeaderLease: 200 * time.Millisecond,
		Commit:      20 * time.Millisecond,
	}
}

// Config configures a Replica.
type Config struct {
	// ID names the replica; stable across restarts.
	ID string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// RaftBind is where Raft listens; RaftAdvertise what peers dial (may be
	// a DNS name; empty: the bound address).
	RaftBind      string
	RaftAdvertise string
	// GRPCAddr and HTTPAddr are the advertised client and HTTP addresses,
	// recorded in the FSM so followers can forward to the leader.
	GRPCAddr string
	HTTPAddr string
	// Backend is the shared storage; only the fenced leader writes it.
	Backend backend.Fencer
	// ReadConsistency defaults to Linearizable.
	ReadConsistency ReadConsistency
	// BootstrapExpect and Peers form a new cluster: every initial member is
	// started with the same list. Ignored once the data dir holds state.
	BootstrapExpect int
	Peers           []Peer
	// Join lists gRPC addresses of existing members to join through.
	// Ignored once the data dir holds state. With Peers as well, only a
	// replica missing from Peers joins: every pod of a StatefulSet gets
	// the same flags, the initial ones bootstrap and those added by a
	// scale-up join (docs/operations.md, Kubernetes).
	Join []string
	// Cache bounds the leader's head cache.
	Cache cache.Config
	// Timeouts tune Raft; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// HotShardInterval is how often the ready leader records its hot
	// shards for the next leader's prefetch (0: DefaultHotShardInterval;
	// negative: never); HotShards how many (0: DefaultHotShards).
	HotShardInterval time.Duration
	HotShards        int
	// Coalesce bounds the leader's write batches (package coalesce); its
	// Observe is set by the replica.
	Coalesce coalesce.Config
	// Autopilot tunes staged joins and dead-server cleanup on the leader
	// (docs/architecture.md §8.1); zero fields take the defaults.
	Autopilot AutopilotConfig
	// UnsafeSkipFence makes a new leader serve without fencing the backend.
	// It exists only so the correctness harness can prove it catches the
	// resulting anomalies; never set it in production.
	UnsafeSkipFence bool
	// UnsafeSkipShardExclusion lets writes to the same shard reach the
	// backend concurrently, so a multi-CaS is no longer atomic under READ
	// COMMITTED. A canary for the correctness harness; never set it in
	// production.
	UnsafeSkipShardExclusion bool
	// UnsafeJoinInflightReads lets a linearizable read join the leadership
	// confirmation round already in flight instead of waiting for the next
	// one (readgate.Gate.WaitJoiningInFlight): that round's evidence may
	// predate the read, so a deposed leader can answer it stale. A canary
	// for the correctness harness; never set it in production.
	UnsafeJoinInflightReads bool
	// UnsafeDeterminateForward makes the forwarder report a forwarded call
	// that failed indeterminately (it broke after it was sent, so it may
	// have taken effect on the leader) as a determinate ErrUnavailable,
	// which clients treat as "nothing happened" and retry. A canary for the
	// correctness harness; never set it in production.
	UnsafeDeterminateForward bool
	// FaultDelays hold the replica at named points, so that the correctness
	// harness can widen a timing window (package faultdelay). They change
	// when the replica acts, never what it decides; empty in production.
	FaultDelays faultdelay.Delays
	// The cache's canary is Cache.UnsafeSkipGeneration (package cache): the
	// leader builds each term's cache from Cache alone.

	// RaftTLS, if set, makes every Raft connection mutual TLS with the
	// peer identity (package internal/tlsconfig builds it).
	RaftTLS *RaftTLS
	// PeerDialer connects to other replicas for forwarding and membership
	// calls (package rpc/peer over gRPC). The replica owns it and closes it.
	PeerDialer PeerDialer
	// WrapRaftTransport, if set, wraps Raft's network transport. It is a
	// seam for tests that hold or drop Raft messages to reproduce a timing
	// window deterministically; never set it in production.
	WrapRaftTransport func(raft.Transport) raft.Transport
	// Metrics, if set, receives the cluster's metrics (Raft state and term,
	// leadership changes, fence events, readiness, forwards, the cache).
	Metrics *metrics.Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("replica id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.RaftBind == "" {
		errs = append(errs, errors.New("raft address is required"))
	}
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc address is required"))
	}
	if c.Backend == nil {
		errs = append(errs, errors.New("backend is required"))
	}
	if c.PeerDialer == nil {
		errs = append(errs, errors.New("a peer dialer is required"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("bootstrap-expect must not be negative"))
	}
	if c.BootstrapExpect > 1 && len(c.Peers) != c.BootstrapExpect {
		errs = append(errs, fmt.Errorf("bootstrap-expect %d needs exactly %d peers (id=raftaddr, this replica included), got %d", c.BootstrapExpect, c.BootstrapExpect, len(c.Peers)))
	}
	if len(c.Peers) > 0 {
		self := false
		seen := map[string]bool{}
		for _, p := range c.Peers {
			if p.ID == "" || p.RaftAddr == "" {
				errs = append(errs, fmt.Errorf("peer %q: id and raft address are required", p.ID))
			}
			if seen[p.ID] {
				errs = append(errs, fmt.Errorf("peer %q listed twice", p.ID))
			}
			seen[p.ID] = true
			self = self || p.ID == c.ID
		}
		if !self && len(c.Join) == 0 {
			errs = append(errs, fmt.Errorf("peer list does not include this replica (%q), and without --join it cannot join either", c.ID))
		}
	}
	if _, err := ParseReadConsistency(string(c.ReadConsistency)); err != nil {
		errs = append(errs, err)
	}
	if err := c.Autopilot.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// initialVoter says whether this replica is one of the voters a new
// cluster bootstraps with: listed in Peers, or alone when Peers is empty.
func (c *Config) initialVoter() bool {
	if len(c.Peers) == 0 {
		return true
	}
	for _, p := range c.Peers {
		if p.ID == c.ID {
			return true
		}
	}
	return false
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	if t.Heartbeat <= 0 {
		t.Heartbeat = d.Heartbeat
	}
	if t.Election <= 0 {
		t.Election = d.Election
	}
	if t.LeaderLease <= 0 {
		t.LeaderLease = min(d.LeaderLease, t.Heartbeat)
	}
	if t.Commit <= 0 {
		t.Commit = d.Commit
	}
	return t
}
