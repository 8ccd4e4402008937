package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/internal/hclogslog"
	"github.com/hacommit/committer/metrics"
)

// Autopilot defaults (docs/architecture.md §8.1).
const (
	DefaultAutopilotLastContactThreshold    = 200 * time.Millisecond
	DefaultAutopilotMaxTrailingLogs         = 250
	DefaultAutopilotMinQuorum               = 3
	DefaultAutopilotServerStabilizationTime = 10 * time.Second
	DefaultAutopilotDeadServerThreshold     = 30 * time.Second
)

// How often the leader's autopilot reassesses the members (asking each for
// its stats, which may take half of it) and acts on its assessment
// (promotions, dead-server removals). raft-autopilot's defaults (2s and
// 10s) suit clusters of dozens of servers; committer has a handful, and a
// second between a member's stabilization and its promotion is what an
// operator waiting for it notices.
const (
	autopilotUpdateInterval    = time.Second
	autopilotReconcileInterval = time.Second
)

// minDeadServerThreshold: at least two consecutive stats rounds must have
// failed before a member counts as dead.
const minDeadServerThreshold = 2 * autopilotUpdateInterval

// AutopilotConfig tunes the leader's autopilot (package
// github.com/hashicorp/raft-autopilot): staged joins and dead-server
// cleanup. Zero fields take the defaults above.
type AutopilotConfig struct {
	// CleanupDeadServers removes members that have been dead for
	// DeadServerThreshold, as long as quorum allows (never below MinQuorum
	// voters, and only while a majority of the voters is healthy).
	CleanupDeadServers bool
	// LastContactThreshold: a member that has not heard from the leader for
	// longer is unhealthy.
	LastContactThreshold time.Duration
	// MaxTrailingLogs: a member whose log trails the leader's by more
	// entries is unhealthy.
	MaxTrailingLogs uint64
	// MinQuorum is the fewest voters dead-server cleanup leaves.
	MinQuorum int
	// ServerStabilizationTime is how long a staged member must have been
	// healthy before it is promoted to voter.
	ServerStabilizationTime time.Duration
	// DeadServerThreshold is how long the leader must have been unable to
	// reach a member before autopilot counts it as dead (failed).
	DeadServerThreshold time.Duration
}

// Validate checks c as the flags of `committer serve` set it.
func (c AutopilotConfig) Validate() error {
	var errs []error
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--autopilot-last-contact-threshold", c.LastContactThreshold},
		{"--autopilot-server-stabilization-time", c.ServerStabilizationTime},
		{"--autopilot-dead-server-threshold", c.DeadServerThreshold},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", d.flag, d.v))
		}
	}
	if c.MinQuorum < 0 {
		errs = append(errs, fmt.Errorf("--autopilot-min-quorum must not be negative, got %d", c.MinQuorum))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	d := c.withDefaults()
	if d.DeadServerThreshold < minDeadServerThreshold {
		errs = append(errs, fmt.Errorf("--autopilot-dead-server-threshold must be at least %v (two rounds of asking every member), got %v", minDeadServerThreshold, d.DeadServerThreshold))
	}
	if d.DeadServerThreshold <= d.LastContactThreshold {
		errs = append(errs, fmt.Errorf("--autopilot-dead-server-threshold (%v) must exceed --autopilot-last-contact-threshold (%v): a member is unhealthy before it is dead", d.DeadServerThreshold, d.LastContactThreshold))
	}
	return errors.Join(errs...)
}

func (c AutopilotConfig) withDefaults() AutopilotConfig {
	if c.LastContactThreshold == 0 {
		c.LastContactThreshold = DefaultAutopilotLastContactThreshold
	}
	if c.MaxTrailingLogs == 0 {
		c.MaxTrailingLogs = DefaultAutopilotMaxTrailingLogs
	}
	if c.MinQuorum == 0 {
		c.MinQuorum = DefaultAutopilotMinQuorum
	}
	if c.ServerStabilizationTime == 0 {
		c.ServerStabilizationTime = DefaultAutopilotServerStabilizationTime
	}
	if c.DeadServerThreshold == 0 {
		c.DeadServerThreshold = DefaultAutopilotDeadServerThreshold
	}
	return c
}

// ServerStats is a replica's own view of its Raft log, which the leader's
// autopilot asks every member for (PeerClient.ServerStats).
type ServerStats struct {
	// ID is the answering replica's id.
	ID string
	// LastContact is how long ago it last heard from the leader; negative
	// when it never has since it started, or when it leads.
	LastContact time.Duration
	// LastTerm and LastIndex are the term and index of its last log entry.
	LastTerm  uint64
	LastIndex uint64
}

// ServerStats returns this replica's view of its Raft log.
func (r *Replica) ServerStats() ServerStats {
	st := ServerStats{ID: r.cfg.ID, LastContact: -1, LastTerm: r.lastLogTerm(), LastIndex: r.raft.LastIndex()}
	if r.raft.State() != raft.Leader {
		if lc := r.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		}
	}
	return st
}

// lastLogTerm is the term of the last entry in this replica's log, as
// raft-autopilot reads the leader's own (Raft exports it only in Stats).
func (r *Replica) lastLogTerm() uint64 {
	t, _ := strconv.ParseUint(r.raft.Stats()["last_log_term"], 10, 64)
	return t
}

// MemberHealth is one member as the leader's autopilot last judged it.
type MemberHealth struct {
	Healthy bool
	// Since is when Healthy last changed (or when autopilot first saw the
	// member, in this term of leadership).
	Since time.Time
	// LastContact is how long ago the member last heard from the leader, as
	// it reported; negative when unknown (the member did not answer).
	LastContact time.Duration
	// LastTerm and LastIndex are its last log entry's, as it last reported
	// them; TrailingLogs how far that trails the leader's last index.
	LastTerm     uint64
	LastIndex    uint64
	TrailingLogs uint64
	// Failed: the leader has not reached the member for longer than the
	// dead-server threshold.
	Failed bool
}

// ClusterHealth is the leader's autopilot's latest assessment.
type ClusterHealth struct {
	// At is when it was made, by this replica's clock.
	At time.Time
	// Healthy: every member is healthy.
	Healthy bool
	// FailureTolerance is how many voters could fail with the healthy
	// voters still a quorum.
	FailureTolerance int
	// Members by id.
	Members map[string]MemberHealth
}

// Health returns the autopilot's latest assessment. It is known only on
// the leader, once its autopilot has made one.
func (r *Replica) Health() (ClusterHealth, bool) {
	if h := r.pilot.health.Load(); h != nil {
		return *h, true
	}
	return ClusterHealth{}, false
}

// pilot runs raft-autopilot on this replica while it leads, and is its
// ApplicationIntegration delegate (docs/architecture.md §8.1).
type pilot struct {
	r   *Replica
	log *slog.Logger
	cfg AutopilotConfig
	ap  *autopilot.Autopilot
	// observed (capacity 1) wakes run on Raft state changes; Raft drops an
	// observation when it is full, which loses nothing since a wake-up is
	// pending then.
	observed chan raft.Observation
	observer *raft.Observer

	// mu guards the fields below it; a leaf, never held across a call
	// that leaves this file.
	mu sync.Mutex
	// runCtx is the current run's context and cancelRun ends it; nil while
	// autopilot is stopped.
	runCtx    context.Context
	cancelRun context.CancelFunc
	// reached is when the leader last had an answer from each member, or
	// when this run first listed it.
	reached map[raft.ServerID]time.Time
	// last is each member's last answer, shown while it is unreachable.
	last map[raft.ServerID]autopilot.ServerStats
	// removing: dead-server removals in flight.
	removing map[raft.ServerID]bool
	// kept is why each dead member was last kept, so that a reason is
	// logged when it changes rather than every round.
	kept map[raft.ServerID]string
	// prev is the previous assessment, to log what changed.
	prev *ClusterHealth

	// removals joins the dead-server removals of the current run.
	removals sync.WaitGroup
	// health is the latest assessment while autopilot runs, else nil.
	health atomic.Pointer[ClusterHealth]
}

func newPilot(r *Replica) *pilot {
	p := &pilot{
		r:        r,
		log:      r.log.With(hclogslog.NameKey, "autopilot"),
		cfg:      r.cfg.Autopilot.withDefaults(),
		observed: make(chan raft.Observation, 1),
	}
	p.ap = autopilot.New(pilotRaft{Raft: r.raft, p: p}, p,
		autopilot.WithLogger(hclogslog.New(r.log, "")),
		autopilot.WithUpdateInterval(autopilotUpdateInterval),
		autopilot.WithReconcileInterval(autopilotReconcileInterval),
		autopilot.WithPromoter(&pilotPromoter{p: p}))
	p.observer = raft.NewObserver(p.observed, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RaftState)
		return ok
	})
	r.raft.RegisterObserver(p.observer)
	return p
}

// run starts autopilot whenever this replica leads and stops it once it no
// longer does. It ends when the replica's context is cancelled (Close),
// after autopilot and its removals have stopped.
func (p *pilot) run() {
	defer p.r.wg.Done()
	defer p.r.raft.DeregisterObserver(p.observer)
	// Raft observes every state change; the tick is a backstop.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	running := false
	for {
		leading := p.r.raft.State() == raft.Leader && p.r.ctx.Err() == nil
		switch {
		case leading && !running:
			p.start()
			running = true
		case !leading && running:
			p.stop()
			running = false
		}
		select {
		case <-p.r.ctx.Done():
			if running {
				p.stop()
			}
			return
		case <-p.observed:
		case <-tick.C:
		}
	}
}

func (p *pilot) start() {
	ctx, cancel := context.WithCancel(p.r.ctx)
	p.mu.Lock()
	p.runCtx, p.cancelRun = ctx, cancel
	p.reached = map[raft.ServerID]time.Time{}
	p.last = map[raft.ServerID]autopilot.ServerStats{}
	p.removing = map[raft.ServerID]bool{}
	p.kept = map[raft.ServerID]string{}
	p.prev = nil
	p.mu.Unlock()
	p.log.Info("autopilot started", "cleanup_dead_servers", p.cfg.CleanupDeadServers, "min_quorum", p.cfg.MinQuorum,
		"stabilization_time", p.cfg.ServerStabilizationTime, "dead_server_threshold", p.cfg.DeadServerThreshold)
	p.ap.Start(ctx)
}

// stop stops autopilot and waits for its goroutines and its removals. An
// assessment made while leading is not shown once this replica no longer
// leads.
func (p *pilot) stop() {
	<-p.ap.Stop()
	p.mu.Lock()
	cancel := p.cancelRun
	p.runCtx, p.cancelRun = nil, nil
	p.mu.Unlock()
	cancel()
	p.removals.Wait()
	p.health.Store(nil)
	if m := p.r.cfg.Metrics; m != nil {
		m.ClearAutopilot()
	}
	p.log.Info("autopilot stopped")
}

// AutopilotConfig implements autopilot.ApplicationIntegration.
func (p *pilot) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      p.cfg.CleanupDeadServers,
		LastContactThreshold:    p.cfg.LastContactThreshold,
		MaxTrailingLogs:         p.cfg.MaxTrailingLogs,
		MinQuorum:               uint(p.cfg.MinQuorum),
		ServerStabilizationTime: p.cfg.ServerStabilizationTime,
	}
}

// KnownServers implements autopilot.ApplicationIntegration: every member
// of the latest Raft configuration, so that autopilot never finds a
// "stale" server, which it would remove from the configuration itself,
// bypassing the removal order of docs/architecture.md §8. A member is
// failed once the leader has not reached it for the dead-server threshold.
// Every member counts as a potential voter: a staged one is on its way.
func (p *pilot) KnownServers() map[raft.ServerID]*autopilot.Server {
	f := p.r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		p.log.Debug("autopilot: reading the configuration", "err", err)
		return nil
	}
	_, leaderID := p.r.raft.LeaderWithID()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[raft.ServerID]*autopilot.Server{}
	for _, s := range f.Configuration().Servers {
		status := autopilot.NodeAlive
		if string(s.ID) != p.r.cfg.ID && p.deadLocked(s.ID, now) {
			status = autopilot.NodeFailed
		}
		out[s.ID] = &autopilot.Server{
			ID: s.ID, Name: string(s.ID), Address: s.Address, NodeStatus: status,
			NodeType: autopilot.NodeVoter, IsLeader: s.ID == leaderID,
		}
	}
	for id := range p.reached {
		if _, ok := out[id]; !ok {
			delete(p.reached, id)
			delete(p.last, id)
			delete(p.kept, id)
		}
	}
	return out
}

// deadLocked reports whether id has not answered for the dead-server
// threshold; a member not seen before starts its clock now. p.mu is held.
func (p *pilot) deadLocked(id raft.ServerID, now time.Time) bool {
	t, ok := p.reached[id]
	if !ok {
		p.reached[id] = now
		return false
	}
	return now.Sub(t) >= p.cfg.DeadServerThreshold
}

// FetchServerStats implements autopilot.ApplicationIntegration: it asks
// every member for its stats at once, within ctx (half the update
// interval). A member that does not answer, or answers with another id,
// reports no last contact, which makes it unhealthy; its last answer's
// term and index are kept for display.
func (p *pilot) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	term := p.r.raft.CurrentTerm()
	out := make(map[raft.ServerID]*autopilot.ServerStats, len(servers))
	var mu sync.Mutex // guards out; a leaf
	var wg sync.WaitGroup
	for id := range servers {
		if string(id) == p.r.cfg.ID {
			self := &autopilot.ServerStats{LastContact: 0, LastTerm: p.r.lastLogTerm(), LastIndex: p.r.raft.LastIndex()}
			mu.Lock()
			out[id] = self
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := p.fetch(ctx, id, term)
			mu.Lock()
			out[id] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (p *pilot) fetch(ctx context.Context, id raft.ServerID, term uint64) *autopilot.ServerStats {
	st, err := p.ask(ctx, id, term)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.log.Debug("autopilot: no stats from member", "id", id, "err", err)
		if answered(err) && p.reached != nil {
			// It runs (a replica of a release without the call, or one
			// that refused it): unhealthy, but not dead.
			p.reached[id] = time.Now()
		}
		last := p.last[id]
		return &autopilot.ServerStats{LastContact: -1, LastTerm: last.LastTerm, LastIndex: last.LastIndex}
	}
	out := autopilot.ServerStats{LastContact: st.LastContact, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
	if p.reached != nil {
		p.reached[id] = time.Now()
		p.last[id] = out
	}
	return &out
}

// answered reports whether err came from the member itself, rather than
// from failing to reach it (or to hear from it in time).
func answered(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
}

func (p *pilot) ask(ctx context.Context, id raft.ServerID, term uint64) (ServerStats, error) {
	m, ok := p.r.fsm.Member(string(id))
	if !ok || m.GRPCAddr == "" {
		return ServerStats{}, errors.New("no gRPC address recorded yet")
	}
	peer, err := p.r.peers.Dial(m.GRPCAddr)
	if err != nil {
		return ServerStats{}, err
	}
	st, err := peer.ServerStats(ctx, term, p.r.cfg.ID)
	switch {
	case err != nil:
		return ServerStats{}, err
	case st.ID != string(id):
		return ServerStats{}, fmt.Errorf("%s answers as %q", m.GRPCAddr, st.ID)
	}
	return st, nil
}

// NotifyState implements autopilot.ApplicationIntegration: it publishes
// the assessment (Health, the metrics) and logs what changed. Autopilot
// holds its state lock meanwhile, so nothing here calls back into it.
func (p *pilot) NotifyState(s *autopilot.State) {
	h := healthOf(s, time.Now())
	p.health.Store(h)
	if m := p.r.cfg.Metrics; m != nil {
		ms := metrics.AutopilotState{Healthy: h.Healthy, FailureTolerance: h.FailureTolerance}
		for id, mh := range h.Members {
			ms.Members = append(ms.Members, metrics.AutopilotMember{ID: id, Healthy: mh.Healthy, TrailingLogs: mh.TrailingLogs})
		}
		m.SetAutopilot(ms)
	}
	p.mu.Lock()
	prev := p.prev
	p.prev = h
	p.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(h.Members)) {
		mh := h.Members[id]
		was, seen := MemberHealth{}, false
		if prev != nil {
			was, seen = prev.Members[id]
		}
		if !seen || was.Healthy != mh.Healthy {
			attrs := []any{"id", id, "last_contact", mh.LastContact, "last_index", mh.LastIndex, "trailing_logs", mh.TrailingLogs}
			switch {
			case mh.Healthy:
				p.log.Info("autopilot: member healthy", attrs...)
			case seen:
				p.log.Warn("autopilot: member unhealthy", attrs...)
			default:
				// First seen, typically just after an election: not news.
				p.log.Info("autopilot: member unhealthy", attrs...)
			}
		}
		if mh.Failed && !was.Failed {
			p.log.Warn("autopilot: member dead", "id", id, "dead_server_threshold", p.cfg.DeadServerThreshold)
		}
	}
}

// healthOf turns autopilot's state into a ClusterHealth made at now.
func healthOf(s *autopilot.State, now time.Time) *ClusterHealth {
	h := &ClusterHealth{At: now, Healthy: s.Healthy, FailureTolerance: s.FailureTolerance, Members: map[string]MemberHealth{}}
	var leaderIndex uint64
	if l, ok := s.Servers[s.Leader]; ok {
		leaderIndex = l.Stats.LastIndex
	}
	for id, ss := range s.Servers {
		mh := MemberHealth{
			Healthy: ss.Health.Healthy, Since: ss.Health.StableSince, LastContact: ss.Stats.LastContact,
			LastTerm: ss.Stats.LastTerm, LastIndex: ss.Stats.LastIndex, Failed: ss.Server.NodeStatus == autopilot.NodeFailed,
		}
		if leaderIndex > mh.LastIndex {
			mh.TrailingLogs = leaderIndex - mh.LastIndex
		}
		h.Members[string(id)] = mh
	}
	return h
}

// RemoveFailedServer implements autopilot.ApplicationIntegration. It must
// return at once, so the removal runs in a goroutine of the current run,
// which stop waits for; one per member at a time.
func (p *pilot) RemoveFailedServer(srv *autopilot.Server) {
	id := srv.ID
	p.mu.Lock()
	ctx := p.runCtx
	if ctx == nil || p.removing[id] || string(id) == p.r.cfg.ID {
		p.mu.Unlock()
		return
	}
	p.removing[id] = true
	p.removals.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.removals.Done()
		p.removeDead(ctx, id)
		p.mu.Lock()
		delete(p.removing, id)
		p.mu.Unlock()
	}()
}

// removeDead removes a dead member like RemoveServer does: out of the
// configuration first, its record second. It checks once more that the
// member is still dead and that the voters stay at least MinQuorum.
func (p *pilot) removeDead(ctx context.Context, id raft.ServerID) {
	p.mu.Lock()
	since, ok := p.reached[id]
	p.mu.Unlock()
	if !ok || time.Since(since) < p.cfg.DeadServerThreshold {
		p.log.Info("autopilot: dead member answered again; not removing it", "id", id)
		return
	}
	f := p.r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	voters, isVoter := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			isVoter = isVoter || s.ID == id
		}
	}
	if isVoter && voters-1 < p.cfg.MinQuorum {
		p.log.Warn("autopilot: keeping dead member", "id", id, "reason", fmt.Sprintf("removing it would leave %d voters, fewer than the minimum quorum of %d", voters-1, p.cfg.MinQuorum))
		return
	}
	index, err := p.r.removeServerHere(ctx, string(id))
	if err != nil {
		p.log.Warn("autopilot: removing dead member failed", "id", id, "err", err)
		return
	}
	p.log.Warn("autopilot: removed dead member", "id", id, "voter", isVoter, "dead_for", time.Since(since).Round(time.Millisecond), "index", index)
}

// pilotPromoter is raft-autopilot's StablePromoter with two changes
// (docs/architecture.md §8.1): the stabilization time always applies (the
// StablePromoter skips it while autopilot has run for less than that, so a
// member joining just after an election would be promoted as soon as it
// is healthy), and dead voters are removed only within committer's quorum
// rules.
type pilotPromoter struct {
	autopilot.StablePromoter
	p *pilot
}

// CalculatePromotionsAndDemotions promotes every staged member that has
// been healthy for the stabilization time. It never demotes and never
// moves leadership.
func (pp *pilotPromoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	promote := stablePromotions(c, s, time.Now())
	// The state trails the configuration by up to an update interval: a
	// member promoted in the previous round may still look staged.
	if f := pp.p.r.raft.GetConfiguration(); f.Error() == nil && len(promote) > 0 {
		promote = slices.DeleteFunc(promote, func(id raft.ServerID) bool {
			return slices.ContainsFunc(f.Configuration().Servers, func(srv raft.Server) bool {
				return srv.ID == id && srv.Suffrage == raft.Voter
			})
		})
	}
	return autopilot.RaftChanges{Promotions: promote}
}

func stablePromotions(c *autopilot.Config, s *autopilot.State, now time.Time) []raft.ServerID {
	var out []raft.ServerID
	for id, srv := range s.Servers {
		if srv.State == autopilot.RaftNonVoter && srv.Health.IsStable(now, c.ServerStabilizationTime) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// FilterFailedServerRemovals keeps failed non-voters (removing one cannot
// cost a quorum) and the failed voters allowVoterRemovals lets go. Stale
// servers (in the configuration, unknown to KnownServers) cannot exist,
// since KnownServers lists the configuration; should one appear, it is
// left alone rather than removed past the removal order.
func (pp *pilotPromoter) FilterFailedServerRemovals(_ *autopilot.Config, s *autopilot.State, failed *autopilot.FailedServers) *autopilot.FailedServers {
	p := pp.p
	out := &autopilot.FailedServers{FailedNonVoters: failed.FailedNonVoters}
	if stale := append(slices.Clone(failed.StaleVoters), failed.StaleNonVoters...); len(stale) > 0 {
		p.log.Warn("autopilot: leaving members it does not know alone", "ids", stale)
	}
	var ids []raft.ServerID
	for _, srv := range failed.FailedVoters {
		ids = append(ids, srv.ID)
	}
	slices.Sort(ids)
	voters, healthy := p.voterCounts(s)
	allowed, kept := allowVoterRemovals(voters, healthy, p.cfg.MinQuorum, ids)
	for _, srv := range failed.FailedVoters {
		if slices.Contains(allowed, srv.ID) {
			out.FailedVoters = append(out.FailedVoters, srv)
		}
	}
	p.mu.Lock()
	var changed []raft.ServerID
	for _, id := range ids {
		if why, ok := kept[id]; ok && p.kept[id] != why {
			changed = append(changed, id)
			p.kept[id] = why
		} else if !ok {
			delete(p.kept, id)
		}
	}
	p.mu.Unlock()
	for _, id := range changed {
		p.log.Warn("autopilot: keeping dead member", "id", id, "reason", kept[id])
	}
	return out
}

// voterCounts counts the voters of the latest configuration, less those
// being removed, and how many of them autopilot's state calls healthy.
func (p *pilot) voterCounts(s *autopilot.State) (voters, healthy int) {
	f := p.r.raft.GetConfiguration()
	if f.Error() != nil {
		return 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter || p.removing[srv.ID] {
			continue
		}
		voters++
		if ss, ok := s.Servers[srv.ID]; ok && ss.Health.Healthy {
			healthy++
		}
	}
	return voters, healthy
}

// allowVoterRemovals decides which of the failed (unhealthy) voters, in
// order, dead-server cleanup may remove, out of voters voters of which
// healthy are healthy, and why it keeps each other one. A removal must
// leave at least minQuorum voters, and a majority of the voters must be
// healthy when it is made. Removing an unhealthy voter never lowers the
// number of healthy ones, and a majority of n is at least a majority of
// n-1, so each removal leaves the healthy voters a majority: cleanup can
// never cost the cluster its quorum.
func allowVoterRemovals(voters, healthy, minQuorum int, failed []raft.ServerID) (allowed []raft.ServerID, kept map[raft.ServerID]string) {
	kept = map[raft.ServerID]string{}
	for _, id := range failed {
		switch {
		case voters-1 < minQuorum:
			kept[id] = fmt.Sprintf("removing it would leave %d voters, fewer than the minimum quorum of %d", voters-1, minQuorum)
		case healthy < voters/2+1:
			kept[id] = fmt.Sprintf("only %d of %d voters are healthy, not a majority", healthy, voters)
		default:
			allowed = append(allowed, id)
			voters--
		}
	}
	return allowed, kept
}

// errPilotRefused: autopilot asked for a change committer makes itself, or
// not at all.
var errPilotRefused = errors.New("autopilot changes membership only by promoting staged members; joins and removals go through the membership code")

// pilotRaft is the Raft autopilot drives. It promotes (AddVoter) only a
// member that is still a staged non-voter at the address autopilot knows,
// in the configuration it checked; it refuses everything else that would
// change the configuration or the leader, so that joins and removals keep
// the order of docs/architecture.md §8 and readiness is dropped before any
// leadership transfer.
type pilotRaft struct {
	*raft.Raft
	p *pilot
}

func (pr pilotRaft) AddVoter(id raft.ServerID, addr raft.ServerAddress, _ uint64, _ time.Duration) raft.IndexFuture {
	return pr.p.promote(id, addr)
}

func (pilotRaft) AddNonvoter(raft.ServerID, raft.ServerAddress, uint64, time.Duration) raft.IndexFuture {
	return doneFuture{err: errPilotRefused}
}

func (pilotRaft) DemoteVoter(raft.ServerID, uint64, time.Duration) raft.IndexFuture {
	return doneFuture{err: errPilotRefused}
}

func (pilotRaft) RemoveServer(raft.ServerID, uint64, time.Duration) raft.IndexFuture {
	return doneFuture{err: errPilotRefused}
}

func (pilotRaft) LeadershipTransferToServer(raft.ServerID, raft.ServerAddress) raft.Future {
	return doneFuture{err: errPilotRefused}
}

// promote makes a staged member a voter.
func (p *pilot) promote(id raft.ServerID, addr raft.ServerAddress) raft.IndexFuture {
	f := p.r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return doneFuture{err: err}
	}
	servers := f.Configuration().Servers
	i := slices.IndexFunc(servers, func(s raft.Server) bool { return s.ID == id && s.Address == addr })
	switch {
	case i >= 0 && servers[i].Suffrage == raft.Voter:
		// Promoted in an earlier round: autopilot's view trails the
		// configuration by up to an update interval.
		return doneFuture{index: f.Index()}
	case i < 0 || servers[i].Suffrage != raft.Nonvoter:
		return doneFuture{err: fmt.Errorf("%w: %s is no longer a staged member at %s", errPilotRefused, id, addr)}
	}
	var healthyFor time.Duration
	if h := p.ap.GetServerHealth(id); h != nil {
		healthyFor = time.Since(h.StableSince)
	}
	// The configuration index makes Raft refuse the promotion if the
	// membership changed since it was checked.
	af := p.r.raft.AddVoter(id, addr, f.Index(), raftOpTimeout)
	if err := af.Error(); err != nil {
		p.log.Warn("autopilot: promoting member failed", "id", id, "err", err)
		return doneFuture{err: err}
	}
	p.log.Info("autopilot: promoted member to voter", "id", id, "healthy_for", healthyFor.Round(time.Millisecond), "index", af.Index())
	return doneFuture{index: af.Index()}
}

// doneFuture is a raft.IndexFuture that is already resolved.
type doneFuture struct {
	index uint64
	err   error
}

func (f doneFuture) Error() error  { return f.err }
func (f doneFuture) Index() uint64 { return f.index }
