package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hacommit/committer/internal/backoff"
	"github.com/hacommit/committer/jepsen/control"
	"github.com/hacommit/committer/jepsen/control/netns"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/rpc/adminpb"
)

// Timeouts of the runner.
const (
	// leaderWait bounds the search for the leader a fault targets; without
	// one, a leader fault falls back to a node chosen by the step's pick.
	leaderWait = 5 * time.Second
	// healTimeout bounds one fault's healing.
	healTimeout = 60 * time.Second
	// minQuiet separates faults when an earlier one overran its plan.
	minQuiet = time.Second
)

// BackendTarget is the target of backend faults.
const BackendTarget = "postgres"

// Runner injects faults into a cluster and records them.
type Runner struct {
	c   *control.Cluster
	fw  *netns.Firewall
	sh  *netns.Shaper
	rec Recorder
	log *slog.Logger

	// mu guards backendDown and stalled.
	mu sync.Mutex
	// backendDown: a PostgreSQL restart failed; HealAll retries it.
	backendDown bool
	// stalled are PostgreSQL server processes stopped by a stall fault.
	stalled []int
	// notes are what healing had to do beyond undoing faults.
	notes []string
}

// stallPileUp is how long a stalled leader keeps leading before the
// transfer.
const stallPileUp = 300 * time.Millisecond

// strayGrace is how long HealAll lets a replica fail to follow the leader
// before it restarts it.
const strayGrace = 20 * time.Second

// Notes returns what HealAll had to do beyond undoing the faults (restarting
// a replica that did not follow the leader, say): not violations of
// linearizability, but worth a look.
func (r *Runner) Notes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.notes...)
}

func (r *Runner) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.log.Warn(msg)
	r.mu.Lock()
	r.notes = append(r.notes, msg)
	r.mu.Unlock()
}

// Recorder is where a Runner writes fault events: a *history.Recorder, or
// something that passes events on to one (the harness's progress counter).
type Recorder interface {
	Add(history.Event) history.Event
}

// NewRunner returns a runner over the cluster and the namespace's network.
func NewRunner(c *control.Cluster, fw *netns.Firewall, sh *netns.Shaper, rec Recorder, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{c: c, fw: fw, sh: sh, rec: rec, log: log}
}

// fault is a step resolved against the live cluster.
type fault struct {
	targets []string
	// inject, if set, puts the fault in effect; its start is recorded when
	// inject returns.
	inject func(ctx context.Context) error
	// then, if set, runs once the fault is recorded as started, before the
	// hold: the rest of a fault that has steps (a transfer away from a
	// stalled leader), or the whole of a fault that is an event rather than
	// a state (a leadership transfer, a PostgreSQL restart), which is in
	// effect as soon as it begins.
	then func(ctx context.Context) error
	// during, if set, runs while the fault is held, until its context ends.
	during func(ctx context.Context)
	heal   func(ctx context.Context) error
}

// Run executes steps, timed from start, until they are done or ctx ends. A
// fault in progress when ctx ends is healed at once.
func (r *Runner) Run(ctx context.Context, start time.Time, steps []Step) {
	var lastEnd time.Time
	for _, s := range steps {
		at := start.Add(s.At)
		if earliest := lastEnd.Add(minQuiet); at.Before(earliest) {
			at = earliest
		}
		if !sleepUntil(ctx, at) {
			return
		}
		r.execute(ctx, s)
		lastEnd = time.Now()
	}
}

func (r *Runner) execute(ctx context.Context, s Step) {
	f, err := r.resolve(ctx, s)
	if err != nil {
		r.log.Warn("skipping a fault", "fault", s.Kind, "err", err)
		return
	}
	r.apply(ctx, s, f)
}

// apply injects f, holds it for the step's hold, and heals it. The fault's
// start is recorded once the injection has returned, that is once the fault
// is in effect (a paused replica has every thread stopped, a killed one is
// reaped, a partition's rules are in place), so the history never shows a
// fault as started while its target could still act.
func (r *Runner) apply(ctx context.Context, s Step, f fault) {
	base := history.Event{Process: history.NemesisProcess, F: history.FNemesis, Fault: string(s.Kind), Targets: f.targets}
	r.log.Info("fault starts", "fault", s.Kind, "targets", f.targets, "hold", s.Hold)

	// Injection and healing run to completion even when the run ends, so
	// that no fault is left half-done; only the hold is cut short.
	bg := context.WithoutCancel(ctx)
	ictx, cancel := context.WithTimeout(bg, healTimeout)
	var injectErr error
	if f.inject != nil {
		injectErr = f.inject(ictx)
	}
	inv := base
	inv.Type = history.Invoke
	r.rec.Add(inv)
	if injectErr == nil && f.then != nil {
		injectErr = f.then(ictx)
	}
	cancel()
	if injectErr == nil {
		hctx, cancel := context.WithTimeout(ctx, s.Hold)
		if f.during != nil {
			f.during(hctx)
		}
		<-hctx.Done()
		cancel()
	}
	hctx, cancel := context.WithTimeout(bg, healTimeout)
	healErr := f.heal(hctx)
	cancel()

	end := base
	end.Type = history.OK
	if err := errors.Join(injectErr, healErr); err != nil {
		end.Error = err.Error()
		r.log.Warn("fault had errors", "fault", s.Kind, "err", err)
	}
	r.rec.Add(end)
	r.log.Info("fault healed", "fault", s.Kind, "targets", f.targets)
}

// roles is the cluster's shape when a fault starts.
type roles struct {
	all       []int // every slot
	leader    int
	followers []int
}

func (r *Runner) roles(ctx context.Context, pick uint64) roles {
	var ro roles
	for _, n := range r.c.Nodes() {
		ro.all = append(ro.all, n.Slot)
	}
	leader, err := r.c.Leader(ctx, leaderWait)
	if err != nil {
		// No leader now (an election, or the cluster is down): aim at a
		// node chosen by the pick instead.
		leader = ro.all[pick%uint64(len(ro.all))]
		r.log.Warn("no leader known; targeting a node chosen by the schedule instead", "node", leader, "err", err)
	}
	ro.leader = leader
	for _, s := range ro.all {
		if s != leader {
			ro.followers = append(ro.followers, s)
		}
	}
	return ro
}

func (r *Runner) names(slots ...int) []string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = r.c.Node(s).Name
	}
	return out
}

func (r *Runner) ips(slots ...int) []string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = r.c.Node(s).IP
	}
	return out
}

// resolve turns a planned step into a fault against the live cluster.
func (r *Runner) resolve(ctx context.Context, s Step) (fault, error) {
	ro := r.roles(ctx, s.Pick)
	follower := func() int { return ro.followers[s.Pick%uint64(len(ro.followers))] }
	switch s.Kind {
	case KillLeader:
		return r.kill(ro.leader), nil
	case KillFollower:
		return r.kill(follower()), nil
	case KillMinority:
		return r.kill(shuffled(ro.all, s.Pick)[:(len(ro.all)-1)/2]...), nil
	case PauseLeader:
		return r.pause(ro.leader), nil
	case PauseFollower:
		return r.pause(follower()), nil
	case PartitionLeader:
		return r.partition(r.names(ro.leader), isolate(r.c.Node(ro.leader).IP, r.ips(ro.followers...))), nil
	case PartitionHalves:
		order := shuffled(ro.all, s.Pick)
		minority, _, links := halves(r.ips(order...))
		return r.partition(r.names(order[:len(minority)]...), links), nil
	case PartitionRing:
		order := shuffled(ro.all, s.Pick)
		return r.partition(r.names(order...), ring(r.ips(order...))), nil
	case PartitionBridge:
		order := shuffled(ro.all, s.Pick)
		return r.partition(r.names(order...), bridge(r.ips(order...))), nil
	case PartitionOneWay:
		return r.partition(r.names(ro.leader), oneWay(r.c.Node(ro.leader).IP, r.ips(ro.followers...))), nil
	case Loss:
		order := shuffled(ro.all, s.Pick)
		targets := order[:1+(s.Pick>>32)%uint64(len(order))]
		faults := netns.Faults{Lossy: r.ips(targets...), LossPercent: s.Percent}
		return fault{
			targets: r.names(targets...),
			inject:  func(ctx context.Context) error { return r.fw.Apply(ctx, faults) },
			heal:    r.fw.Heal,
		}, nil
	case Slow:
		if r.sh.Kind() == "" {
			return fault{}, netns.ErrNoShaping
		}
		return fault{targets: r.names(ro.all...), inject: r.sh.Slow, heal: r.sh.Heal}, nil
	case MemberRemoveAdd:
		return r.removeAdd(ro.all[s.Pick%uint64(len(ro.all))]), nil
	case MemberReplace:
		return r.replace(ro.all[s.Pick%uint64(len(ro.all))]), nil
	case TransferLeader:
		target := 0 // Raft's choice
		if s.Pick%4 != 0 {
			target = follower()
		}
		return r.transfer(ro.leader, target), nil
	case BackendTerminate:
		return r.terminate(), nil
	case BackendRestart:
		return r.restartBackend(), nil
	case BackendStallLeader:
		return r.stallLeader(ro.leader), nil
	}
	return fault{}, fmt.Errorf("unknown fault %q", s.Kind)
}

func (r *Runner) kill(slots ...int) fault {
	return fault{
		targets: r.names(slots...),
		inject: func(ctx context.Context) error {
			var errs []error
			for _, s := range slots {
				errs = append(errs, r.c.KillNode(ctx, s))
			}
			return errors.Join(errs...)
		},
		heal: func(context.Context) error {
			var errs []error
			for _, s := range slots {
				errs = append(errs, r.c.StartNode(s))
			}
			return errors.Join(errs...)
		},
	}
}

func (r *Runner) pause(slot int) fault {
	return fault{
		targets: r.names(slot),
		inject:  func(ctx context.Context) error { return r.c.PauseNode(ctx, slot) },
		heal:    func(context.Context) error { return r.c.ResumeNode(slot) },
	}
}

func (r *Runner) partition(targets []string, links []netns.Link) fault {
	return fault{
		targets: targets,
		inject: func(ctx context.Context) error {
			r.log.Debug("partition", "drop", links)
			return r.fw.Apply(ctx, netns.Faults{Drop: links})
		},
		heal: r.fw.Heal,
	}
}

// removeAdd removes a voter while it keeps running, then adds it back.
func (r *Runner) removeAdd(slot int) fault {
	return fault{
		targets: r.names(slot),
		inject:  func(ctx context.Context) error { return r.c.RemoveServer(ctx, r.c.ID(slot)) },
		heal:    func(ctx context.Context) error { return r.c.AddVoter(ctx, slot) },
	}
}

// replace swaps the slot's replica for a new one with a wiped data dir.
func (r *Runner) replace(slot int) fault {
	return fault{
		targets: r.names(slot),
		inject:  func(ctx context.Context) error { return r.c.KillNode(ctx, slot) },
		then: func(ctx context.Context) error {
			id, err := r.c.ReplaceNode(ctx, slot)
			if err == nil {
				r.log.Info("replaced replica", "node", r.c.Node(slot).Name, "new_id", id)
			}
			return err
		},
		// Whatever step failed, the slot must end up running; HealAll adds
		// it back as a voter if needed.
		heal: func(context.Context) error { return r.c.StartNode(slot) },
	}
}

func (r *Runner) transfer(leader, target int) fault {
	targets := r.names(leader)
	if target != 0 {
		targets = r.names(leader, target)
	}
	return fault{
		targets: targets,
		then: func(ctx context.Context) error {
			got, err := r.c.TransferLeadership(ctx, target)
			if err == nil {
				r.log.Info("leadership transferred", "to", got)
			}
			return err
		},
		heal: func(context.Context) error { return nil },
	}
}

// terminate ends every backend session at once, then again and again while
// the fault is held.
func (r *Runner) terminate() fault {
	kill := func(ctx context.Context) error {
		n, err := r.c.TerminateBackendConnections(ctx)
		r.log.Debug("terminated backend sessions", "count", n, "err", err)
		return err
	}
	return fault{
		targets: []string{BackendTarget},
		inject:  kill,
		during: func(ctx context.Context) {
			for backoff.Sleep(ctx, 700*time.Millisecond) {
				if err := kill(ctx); err != nil && ctx.Err() == nil {
					r.log.Warn("terminating backend sessions", "err", err)
				}
			}
		},
		heal: func(context.Context) error { return nil },
	}
}

func (r *Runner) restartBackend() fault {
	return fault{
		targets: []string{BackendTarget},
		then: func(ctx context.Context) error {
			err := r.c.RestartBackend(ctx)
			r.mu.Lock()
			r.backendDown = err != nil
			r.mu.Unlock()
			return err
		},
		heal: func(context.Context) error { return nil },
	}
}

// stallLeader stops the PostgreSQL processes serving the leader's sessions
// (its writes in flight hang there, and so does every later statement on
// those sessions), hands leadership to another replica, and lets the
// sessions go on after the hold.
func (r *Runner) stallLeader(leader int) fault {
	return fault{
		targets: []string{BackendTarget, r.c.Node(leader).Name},
		inject: func(ctx context.Context) error {
			pids, err := r.c.BackendSessions(ctx, leader)
			if err != nil {
				return err
			}
			if len(pids) == 0 {
				return errors.New("the leader holds no PostgreSQL session")
			}
			r.mu.Lock()
			r.stalled = append(r.stalled, pids...)
			r.mu.Unlock()
			if err := control.StopSessions(pids); err != nil {
				return err
			}
			r.log.Debug("stalled the leader's backend sessions", "leader", r.c.Node(leader).Name, "pids", pids)
			return nil
		},
		then: func(ctx context.Context) error {
			// While it still leads, every write of the cluster reaches the
			// stalled leader and waits there, so that no key moves on
			// until the sessions resume.
			if !backoff.Sleep(ctx, stallPileUp) {
				return ctx.Err()
			}
			_, err := r.c.TransferLeadership(ctx, 0)
			return err
		},
		heal: func(context.Context) error { return r.continueStalled() },
	}
}

// continueStalled resumes every PostgreSQL process a stall stopped.
func (r *Runner) continueStalled() error {
	r.mu.Lock()
	pids := r.stalled
	r.stalled = nil
	r.mu.Unlock()
	return control.ContinueSessions(pids)
}

// HealAll undoes every fault that may be left (network rules, shaping,
// paused or stopped replicas, a failed PostgreSQL restart, voters missing
// from the configuration) and waits until the cluster is healthy: every
// replica running and following one ready leader, with every slot's
// replica a voter.
func (r *Runner) HealAll(ctx context.Context) error {
	var errs []error
	if err := r.fw.Heal(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.sh.Heal(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.continueStalled(); err != nil {
		errs = append(errs, err)
	}
	r.mu.Lock()
	down := r.backendDown
	r.mu.Unlock()
	if down {
		if err := r.c.RestartBackend(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range r.c.Nodes() {
		if r.c.Paused(n.Slot) {
			errs = append(errs, r.c.ResumeNode(n.Slot))
		}
		if !r.c.Running(n.Slot) {
			errs = append(errs, r.c.StartNode(n.Slot))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	straySince := map[int]time.Time{}
	for {
		err := r.c.Health(ctx)
		if err == nil {
			return nil
		}
		r.addMissingVoters(ctx)
		r.restartStrays(ctx, straySince)
		if !backoff.Sleep(ctx, 500*time.Millisecond) {
			return fmt.Errorf("cluster did not heal: %w", err)
		}
	}
}

// restartStrays restarts replicas that have not followed the leader for
// strayGrace, as an operator would.
func (r *Runner) restartStrays(ctx context.Context, since map[int]time.Time) {
	strays := r.c.Strays(ctx)
	for slot := range since {
		if !slices.Contains(strays, slot) {
			delete(since, slot)
		}
	}
	for _, slot := range strays {
		first, ok := since[slot]
		if !ok {
			since[slot] = time.Now()
			continue
		}
		if time.Since(first) < strayGrace {
			continue
		}
		delete(since, slot)
		r.note("healing: %s (replica %s) did not follow the leader for %s after the faults ended; restarted it",
			r.c.Node(slot).Name, r.c.ID(slot), strayGrace)
		if err := r.c.RestartNode(ctx, slot); err != nil {
			r.log.Warn("restarting a stray replica", "node", r.c.Node(slot).Name, "err", err)
		}
	}
}

// addMissingVoters adds every slot's replica that is not a member, and
// removes members that are no slot's replica (a replaced id whose removal
// failed). A staged member is left to the leader's autopilot, which
// promotes it once it is stable; Health waits for that.
func (r *Runner) addMissingVoters(ctx context.Context) {
	ms, err := r.c.Members(ctx)
	if err != nil {
		return
	}
	for _, m := range ms {
		if r.c.SlotOfID(m.GetId()) == 0 {
			if err := r.c.RemoveServer(ctx, m.GetId()); err != nil {
				r.log.Debug("removing a stale member", "id", m.GetId(), "err", err)
			}
		}
	}
	for _, n := range r.c.Nodes() {
		id := r.c.ID(n.Slot)
		if !slices.ContainsFunc(ms, func(m *adminpb.Member) bool { return m.GetId() == id }) {
			if err := r.c.AddMember(ctx, n.Slot); err != nil {
				r.log.Debug("re-adding a voter", "node", n.Name, "err", err)
			}
		}
	}
}

// sleepUntil waits until t and reports whether ctx is still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	return backoff.Sleep(ctx, time.Until(t))
}
