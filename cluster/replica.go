package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/cache"
	"github.com/hacommit/committer/cluster/coalesce"
	"github.com/hacommit/committer/cluster/readgate"
	"github.com/hacommit/committer/cluster/shardlock"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/faultdelay"
	"github.com/hacommit/committer/internal/hclogslog"
	"github.com/hacommit/committer/metrics"
)

// raftOpTimeout bounds Raft calls made on the replica's own behalf (Apply,
// Barrier, membership changes).
const raftOpTimeout = 10 * time.Second

// leaderTerm is the state of one ready leadership term. It is replaced, never
// mutated: requests that loaded it keep a consistent view, and a deposed
// term's writes are rejected by the backend's fence.
type leaderTerm struct {
	term  uint64
	cache *cache.Cache
	// store is what requests of this term run on: per-shard write
	// exclusion over the cache over the backend bound to this term's epoch.
	store backend.Consensus
}

// Replica is one member of a committer cluster.
type Replica struct {
	cfg       Config
	log       *slog.Logger
	fsm       *fsm.FSM
	raft      *raft.Raft
	transport *raft.NetworkTransport
	stores    *raftboltdb.BoltStore
	gate      *readgate.Gate
	peers     PeerDialer

	notifyCh chan bool
	kick     chan struct{} // capacity 1: a pending re-evaluation of leadership

	// lifeMu serializes "decide ready" against "mark not ready", so a
	// leadership loss can never be overwritten by a stale ready.
	lifeMu sync.Mutex
	leader atomic.Pointer[leaderTerm]
	// readyCh is closed and replaced whenever readiness changes.
	mu      sync.Mutex
	readyCh chan struct{}

	// joinOnStart: the replica started without Raft state and with --join,
	// so it asks to be added until it is a member. wasMember: it has been in
	// the configuration (or recorded in the FSM) since it started; removed:
	// it was, and is no longer; leaving: it is removing itself. See
	// registerSelf.
	joinOnStart bool
	wasMember   atomic.Bool
	removed     atomic.Bool
	leaving     atomic.Bool

	// roundStarted, if set (by tests), is called once a read confirmation
	// round has started gathering its evidence.
	roundStarted atomic.Pointer[func()]

	// fenceProblem is why the last fence attempt could not succeed, for
	// Status (see setFenceProblem).
	fenceProblem atomic.Pointer[string]

	// stepDownTerm, when not 0, asks the lifecycle to hand leadership of
	// that term away (see transferAway).
	stepDownTerm atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc

	// coalescers are the write coalescers of this and earlier terms that
	// may still have batches in flight; Close waits for them.
	coMu       sync.Mutex
	coalescers []*coalesce.Coalescer
	wg         sync.WaitGroup
	closed     atomic.Bool

	// health wakes watchRaft and its waiters (health.go).
	health health

	// pilot runs raft-autopilot while this replica leads (autopilot.go).
	pilot *pilot
}

// Open starts a replica: Raft on its data dir, bootstrap or join as the
// configuration and existing state say, and the leader lifecycle.
func Open(cfg Config) (*Replica, error) {
	if err := cfg.validate(); err != nil {
		if cfg.PeerDialer != nil {
			cfg.PeerDialer.Close() // owned by the replica, even one that never opened
		}
		return nil, err
	}
	if cfg.ReadConsistency == "" {
		cfg.ReadConsistency = Linearizable
	}
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	if cfg.HotShardInterval == 0 {
		cfg.HotShardInterval = DefaultHotShardInterval
	}
	if cfg.HotShards == 0 {
		cfg.HotShards = DefaultHotShards
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	r := &Replica{
		cfg:      cfg,
		log:      cfg.Logger.With("replica", cfg.ID),
		fsm:      fsm.New(),
		notifyCh: make(chan bool, 16),
		kick:     make(chan struct{}, 1),
		readyCh:  make(chan struct{}),
		health:   newHealth(),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.peers = cfg.PeerDialer
	r.gate = readgate.New(r.confirmLeadership)

	if err := r.startRaft(); err != nil {
		r.cancel()
		r.peers.Close()
		return nil, err
	}
	if cfg.Metrics != nil {
		cfg.Metrics.ObserveCache(r.cacheStats)
	}
	r.registerObserver()
	r.wg.Add(5)
	go r.consumeNotifications()
	go r.lifecycle()
	go r.registerSelf()
	go r.watchRaft()
	go r.recordHotShards()
	r.pilot = newPilot(r)
	r.wg.Add(1)
	go r.pilot.run()
	return r, nil
}

func (r *Replica) startRaft() (err error) {
	stores, err := raftboltdb.New(raftboltdb.Options{Path: raftStorePath(r.cfg.DataDir)})
	if err != nil {
		return fmt.Errorf("raft store: %w", err)
	}
	defer func() {
		if err != nil {
			stores.Close()
		}
	}()
	// Raft's own lines go through the replica's logger, so they obey its
	// level and format (JSON stays JSON).
	hlog := hclogslog.New(r.log, "raft")
	snaps, err := openSnapshots(r.cfg.DataDir, hlog)
	if err != nil {
		return fmt.Errorf("raft snapshots: %w", err)
	}
	stream, err := newStreamLayer(r.cfg.RaftBind, r.cfg.RaftAdvertise, r.cfg.RaftTLS)
	if err != nil {
		return err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  hlog,
	})
	defer func() {
		if err != nil {
			transport.Close()
		}
	}()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(r.cfg.ID)
	rc.HeartbeatTimeout = r.cfg.Timeouts.Heartbeat
	rc.ElectionTimeout = r.cfg.Timeouts.Election
	rc.LeaderLeaseTimeout = r.cfg.Timeouts.LeaderLease
	rc.CommitTimeout = r.cfg.Timeouts.Commit
	rc.NotifyCh = r.notifyCh
	rc.Logger = hlog
	// The FSM is a few kilobytes: snapshot often so restarts replay little.
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 1024
	// Per-peer metrics only as labels (committer_raft_replication_*{peer_id}), not
	// also as one metric name per peer.
	rc.NoLegacyTelemetry = true

	existing, err := raft.HasExistingState(stores, stores, snaps)
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	var trans raft.Transport = transport
	if r.cfg.WrapRaftTransport != nil {
		trans = r.cfg.WrapRaftTransport(transport)
	}
	ra, err := raft.NewRaft(rc, r.fsm, stores, stores, snaps, trans)
	if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	r.raft, r.transport, r.stores = ra, transport, stores

	switch {
	case existing:
		r.log.Info("restarting on existing raft state", "data_dir", r.cfg.DataDir)
	case r.cfg.BootstrapExpect > 0 && r.cfg.initialVoter():
		servers := []raft.Server{}
		if len(r.cfg.Peers) == 0 {
			servers = append(servers, raft.Server{ID: rc.LocalID, Address: transport.LocalAddr(), Suffrage: raft.Voter})
		}
		for _, p := range r.cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
		}
		// Every initial member bootstraps with the same configuration, so
		// whichever wins the first election holds the same membership.
		if err := ra.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			ra.Shutdown()
			return fmt.Errorf("bootstrap: %w", err)
		}
		r.log.Info("bootstrapped a new cluster", "voters", len(servers))
	case len(r.cfg.Join) > 0:
		r.joinOnStart = true
		r.log.Info("joining an existing cluster", "via", r.cfg.Join)
	default:
		ra.Shutdown()
		return errors.New("a replica without raft state needs --bootstrap-expect (with --peers) or --join")
	}
	return nil
}

// consumeNotifications drains Raft's NotifyCh at once, so Raft never blocks
// on it, and never calls back into Raft (docs/architecture.md §8).
func (r *Replica) consumeNotifications() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case isLeader := <-r.notifyCh:
			if m := r.cfg.Metrics; m != nil {
				m.LeaderChanged()
			}
			if !isLeader {
				// Not-ready first, before anything else. A fault delay
				// here holds the notifications; the channel's buffer
				// keeps Raft from blocking on it meanwhile.
				r.cfg.FaultDelays.Wait(r.ctx, faultdelay.LeadershipLost)
				r.setNotReady(nil)
				r.log.Info("lost leadership")
			}
			select {
			case r.kick <- struct{}{}:
			default: // a re-evaluation is already pending
			}
		}
	}
}

// setNotReady drops readiness; with only set, only if that term is current.
// It reports whether it dropped a term.
func (r *Replica) setNotReady(only *leaderTerm) bool {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	cur := r.leader.Load()
	if cur == nil || (only != nil && cur != only) {
		return false
	}
	r.leader.Store(nil)
	cur.cache.Clear()
	r.readinessChanged()
	return true
}

func (r *Replica) readinessChanged() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.readyCh)
	r.readyCh = make(chan struct{})
}

// readinessWatch returns a channel closed at the next readiness change.
func (r *Replica) readinessWatch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readyCh
}

// lifecycle turns Raft leadership into a ready leader: Barrier, record the
// epoch, fence the backend with the term, fresh cache, prefetch, ready.
func (r *Replica) lifecycle() {
	defer r.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.kick:
		case <-retry.C:
		}
		if term := r.stepDownTerm.Swap(0); term != 0 && r.stillLeader(term) {
			r.setNotReady(nil)
			r.log.Warn("handing leadership away: this term cannot serve", "term", term)
			if err := r.awaitUntilClosed(r.raft.LeadershipTransfer()); err != nil {
				r.log.Warn("leadership transfer after fencing failed", "term", term, "err", err)
			}
		}
		if r.raft.State() != raft.Leader {
			r.setNotReady(nil)
			continue
		}
		term := r.raft.CurrentTerm()
		if cur := r.leader.Load(); cur != nil && cur.term == term {
			continue
		}
		r.setNotReady(nil)
		if err := r.establish(term); err != nil {
			r.log.Warn("could not become a ready leader", "term", term, "err", err)
			wait := time.Second
			if errors.Is(err, backend.ErrForeignOwner) || errors.Is(err, backend.ErrFenceLost) {
				// Nothing changes until an operator acts, and adopting
				// kicks the lifecycle at once.
				wait = 5 * time.Second
			}
			retry.Reset(wait)
		}
	}
}

var errLostLeadership = errors.New("leadership lost while establishing")

// clusterID returns the cluster's id, naming the cluster first if no leader
// has yet: the first id Raft commits wins, so every replica and every later
// term uses the same one.
func (r *Replica) clusterID() (string, error) {
	if id := r.fsm.State().ClusterID; id != "" {
		return id, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster id: %w", err)
	}
	if err := r.raft.Apply(fsm.SetClusterID(hex.EncodeToString(b[:])), raftOpTimeout).Error(); err != nil {
		return "", fmt.Errorf("naming the cluster: %w", err)
	}
	id := r.fsm.State().ClusterID
	r.log.Info("named the cluster", "cluster_id", id)
	return id, nil
}

// setFenceProblem records why this replica, leading, cannot fence ("" once
// it can), for Status.
func (r *Replica) setFenceProblem(p string) { r.fenceProblem.Store(&p) }

// FenceProblem returns why this replica could not fence the database at its
// last attempt, or "".
func (r *Replica) FenceProblem() string {
	if p := r.fenceProblem.Load(); p != nil {
		return *p
	}
	return ""
}

func (r *Replica) stillLeader(term uint64) bool {
	return r.raft.State() == raft.Leader && r.raft.CurrentTerm() == term
}

func (r *Replica) establish(term uint64) error {
	start := time.Now()
	// LeaderCh/NotifyCh fire before this term's no-op entry commits: the
	// barrier makes the FSM current and proves a quorum accepts the term.
	if err := r.raft.Barrier(raftOpTimeout).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	if !r.stillLeader(term) {
		return errLostLeadership
	}
	ctx, cancel := context.WithTimeout(r.ctx, raftOpTimeout)
	defer cancel()
	var store backend.Fencer
	if r.cfg.UnsafeSkipFence {
		// Without a fence, no epoch is ever stored: write unowned at the
		// unbound epoch 0, like every other unfenced leader (the anomaly
		// the correctness harness must catch).
		store = r.cfg.Backend
	} else {
		owner, err := r.clusterID()
		if err != nil {
			return err
		}
		owned := r.cfg.Backend.Owned(owner)
		err = owned.Fence(ctx, term)
		if m := r.cfg.Metrics; m != nil {
			m.Fenced(metrics.FenceResult(err))
		}
		switch {
		case errors.Is(err, backend.ErrForeignOwner), errors.Is(err, backend.ErrFenceLost):
			// No replica of this cluster can serve: handing leadership
			// on would not help. Stay not ready, say why, and retry until
			// an operator acts (committer fence adopt).
			r.setFenceProblem(err.Error())
			r.log.Error("cannot fence the database: this cluster cannot serve until an operator acts", "term", term, "cluster_id", owner, "err", err)
			return fmt.Errorf("fence epoch %d: %w", term, err)
		case errors.Is(err, backend.ErrFenced):
			// A higher epoch is stored: some other leader of a later term
			// exists or existed. Serving is impossible in this term.
			r.transferAway(term)
			return fmt.Errorf("fence epoch %d: %w", term, err)
		case err != nil:
			return fmt.Errorf("fence epoch %d: %w", term, err)
		}
		r.setFenceProblem("")
		store = owned.AtEpoch(term)
	}
	// Writes that miss the cache's fast path share backend transactions
	// (docs/architecture.md §7.3). Batches are bound to the replica's
	// life, not the term's: one already sent must still be answered.
	cc := r.cfg.Coalesce
	if m := r.cfg.Metrics; m != nil {
		cc.Observe = m.ObserveBatch
	}
	co := coalesce.New(r.ctx, store, cc)
	r.trackCoalescer(co)
	c := cache.New(co, r.cfg.Cache)
	// Writes hold their shards above the cache, so that a later write to a
	// shard waits for the earlier one and is decided after it (a multi-CaS
	// holds all of its shards: docs/architecture.md §7.3).
	lt := &leaderTerm{term: term, cache: c, store: shardlock.Exclusive(c, shardlock.New())}
	if r.cfg.UnsafeSkipShardExclusion {
		lt.store = c
	}
	// Prefetch is best effort: a failure only costs cache misses later.
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	if err := c.Prefetch(pctx, r.fsm.State().HotShards); err != nil {
		r.log.Debug("prefetch of hot shards stopped", "err", err)
	}
	pcancel()

	r.lifeMu.Lock()
	if !r.stillLeader(term) {
		r.lifeMu.Unlock()
		return errLostLeadership
	}
	r.leader.Store(lt)
	r.readinessChanged()
	r.wg.Add(1)
	go r.reportWarmup(lt)
	r.lifeMu.Unlock()
	r.log.Info("ready leader", "term", term, "fenced", !r.cfg.UnsafeSkipFence, "took", time.Since(start))

	// Record the epoch; not needed for safety (the backend's fence is), but
	// it tells operators, and followers take it as proof that this leader
	// serves in the term (Readiness, docs/architecture.md §8.2), so it is
	// retried while only the enqueueing timed out and the term lasts.
	for {
		err := r.raft.Apply(fsm.RecordEpoch(fsm.Epoch{Term: term, LeaderID: r.cfg.ID}), raftOpTimeout).Error()
		if err == nil {
			break
		}
		r.log.Warn("recording epoch", "term", term, "err", err)
		if !errors.Is(err, raft.ErrEnqueueTimeout) || !r.stillLeader(term) || r.ctx.Err() != nil {
			break
		}
	}
	return nil
}

// cacheStats reports the ready term's cache to the metrics.
func (r *Replica) cacheStats() (metrics.CacheStats, bool) {
	lt := r.leader.Load()
	if lt == nil {
		return metrics.CacheStats{}, false
	}
	return metrics.FromCache(lt.term, lt.cache.Stats()), true
}

// stepDownFrom ends term lt after one of its writes was fenced: a later
// epoch is stored, so some later leader exists or existed. It drops lt's
// readiness and has the lifecycle hand leadership away, but only while lt is
// this replica's current term. A write of an older term that reaches the
// backend after this replica was re-elected and fenced again is fenced too,
// and says only that the older term is over, which is already known: the
// current term must not be deposed for it.
func (r *Replica) stepDownFrom(lt *leaderTerm) {
	if r.setNotReady(lt) && r.raft.CurrentTerm() == lt.term {
		r.transferAway(lt.term)
	}
}

// awaitUntilClosed waits for f, or until the replica closes. Raft's
// leadership-transfer future has no shutdown channel: one enqueued while
// Raft shuts down is never answered, and a lifecycle blocked on it made
// Close wait forever (seen once in CI, in TestFencedWriteStepsTheLeaderDown's
// cleanup). The waiting goroutine ends when Raft answers; in that race it
// outlives the replica, blocked on a future nothing will answer.
func (r *Replica) awaitUntilClosed(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-r.ctx.Done():
		return fmt.Errorf("replica closing: %w", r.ctx.Err())
	}
}

// transferAway asks the lifecycle goroutine to hand leadership of term to
// another voter; used when this replica cannot serve in that term (fenced
// by a later epoch). The lifecycle owns the transfer, so no goroutine is
// started here and nothing outlives Close.
func (r *Replica) transferAway(term uint64) {
	r.stepDownTerm.Store(term)
	r.kickLifecycle()
}

// Close leaves gracefully: a leader hands leadership to another voter first,
// then Raft stops and background work ends.
func (r *Replica) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	r.HandOff()
	r.setNotReady(nil)
	r.cancel()
	err := r.raft.Shutdown().Error()
	r.wg.Wait()
	r.coMu.Lock()
	for _, co := range r.coalescers {
		co.Wait()
	}
	r.coMu.Unlock()
	return errors.Join(err, r.peers.Close(), r.transport.Close(), r.stores.Close())
}

// trackCoalescer remembers co until it is idle after a later term, so that
// Close can wait for its batches.
func (r *Replica) trackCoalescer(co *coalesce.Coalescer) {
	r.coMu.Lock()
	defer r.coMu.Unlock()
	kept := r.coalescers[:0]
	for _, old := range r.coalescers {
		if !old.Idle() {
			kept = append(kept, old)
		}
	}
	r.coalescers = append(kept, co)
}

func (r *Replica) voterCount() int {
	f := r.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// HandOff transfers leadership to another voter if this replica leads, so
// that a graceful shutdown does not wait for an election timeout.
func (r *Replica) HandOff() {
	if r.raft.State() != raft.Leader || r.voterCount() < 2 {
		return
	}
	r.setNotReady(nil)
	if err := r.raft.LeadershipTransfer().Error(); err != nil {
		r.log.Warn("leadership transfer on shutdown failed", "err", err)
		r.kickLifecycle()
	}
}
