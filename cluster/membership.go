package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/fsm"
)

// MemberStatus is a member as seen from the answering replica.
type MemberStatus struct {
	fsm.Member
	Voter  bool
	Leader bool
	// LastContact is how long ago the member last heard from the leader, as
	// the member itself reports; negative when unknown.
	LastContact time.Duration
}

// Status describes this replica and the cluster as it sees it.
type Status struct {
	ID string
	// ClusterID names the cluster (the database fence's owner); empty until
	// its first leader named it.
	ClusterID string
	// FenceProblem says why this replica, leading, cannot fence; "" if it
	// can.
	FenceProblem      string
	State             raft.RaftState
	Ready             bool
	Leader            *fsm.Member
	Term              uint64
	CommitIndex       uint64
	AppliedIndex      uint64
	LastLogIndex      uint64
	LastLeaderContact time.Duration // negative when unknown or leader
	Members           []MemberStatus
	Epochs            []fsm.Epoch
}

// Self returns this replica's own member record.
func (r *Replica) Self() fsm.Member {
	return fsm.Member{ID: r.cfg.ID, RaftAddr: string(r.transport.LocalAddr()), GRPCAddr: r.cfg.GRPCAddr, HTTPAddr: r.cfg.HTTPAddr}
}

// Ready reports whether this replica is the ready (fenced) leader.
func (r *Replica) Ready() bool { return r.leader.Load() != nil }

// LeaderKnown reports whether this replica knows a leader.
func (r *Replica) LeaderKnown() bool {
	_, id := r.raft.LeaderWithID()
	return id != ""
}

// Status returns this replica's view. With probe set, the leader also asks
// every member for its last contact (bounded by ctx).
func (r *Replica) Status(ctx context.Context, probe bool) (Status, error) {
	st := Status{
		ID:                r.cfg.ID,
		ClusterID:         r.fsm.State().ClusterID,
		FenceProblem:      r.FenceProblem(),
		State:             r.raft.State(),
		Ready:             r.Ready(),
		Term:              r.raft.CurrentTerm(),
		CommitIndex:       r.raft.CommitIndex(),
		AppliedIndex:      r.raft.AppliedIndex(),
		LastLogIndex:      r.raft.LastIndex(),
		LastLeaderContact: -1,
	}
	if st.State == raft.Follower {
		if lc := r.raft.LastContact(); !lc.IsZero() {
			st.LastLeaderContact = time.Since(lc)
		}
	}
	state := r.fsm.State()
	st.Epochs = state.Epochs
	_, lid := r.raft.LeaderWithID()
	if lid != "" {
		m := r.memberRecord(state, string(lid), "")
		st.Leader = &m
	}
	members, _, err := r.Members()
	if err != nil {
		return st, err
	}
	if probe && st.State == raft.Leader {
		r.probeMembers(ctx, members)
	}
	st.Members = members
	return st, nil
}

// probeMembers fills LastContact by asking each member for its own status.
func (r *Replica) probeMembers(ctx context.Context, members []MemberStatus) {
	var wg sync.WaitGroup
	for i := range members {
		m := &members[i]
		if m.ID == r.cfg.ID {
			m.LastContact = 0
			continue
		}
		if m.GRPCAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer, err := r.peers.Dial(m.GRPCAddr)
			if err != nil {
				return
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if d, err := peer.LastLeaderContact(pctx); err == nil {
				m.LastContact = d
			}
		}()
	}
	wg.Wait()
}

func (r *Replica) memberRecord(state fsm.State, id, raftAddr string) fsm.Member {
	if m, ok := state.Members[id]; ok {
		return m
	}
	return fsm.Member{ID: id, RaftAddr: raftAddr}
}

// Members returns the committed Raft configuration with addresses.
func (r *Replica) Members() ([]MemberStatus, uint64, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("raft configuration: %w", err)
	}
	state := r.fsm.State()
	_, lid := r.raft.LeaderWithID()
	var out []MemberStatus
	for _, s := range f.Configuration().Servers {
		m := r.memberRecord(state, string(s.ID), string(s.Address))
		m.RaftAddr = string(s.Address)
		out = append(out, MemberStatus{Member: m, Voter: s.Suffrage == raft.Voter, Leader: s.ID == lid, LastContact: -1})
	}
	slices.SortFunc(out, func(a, b MemberStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out, f.Index(), nil
}

// AddVoter adds m as a voter, or updates its addresses if it is a member.
// A new member joins as a staged non-voter, which the leader's autopilot
// promotes once it has caught up and stayed healthy for the stabilization
// time (docs/architecture.md §8.1). On a follower the call runs on the
// leader.
func (r *Replica) AddVoter(ctx context.Context, m fsm.Member) (uint64, error) {
	return r.addVoter(ctx, m, nil)
}

// addVoter is AddVoter, sent to one of via while no leader is known.
func (r *Replica) addVoter(ctx context.Context, m fsm.Member, via []string) (index uint64, err error) {
	if m.ID == "" || m.RaftAddr == "" {
		return 0, fmt.Errorf("%w: a voter needs an id and a raft address", ErrInvalidMember)
	}
	err = r.forward(ctx, request{
		op:     "add_voter",
		local:  r.onRaftLeader(func(context.Context) (err error) { index, err = r.addVoterHere(m); return err }),
		remote: func(ctx context.Context, p PeerClient) (err error) { index, err = p.AddVoter(ctx, m); return err },
		via:    via,
	})
	return index, err
}

func (r *Replica) addVoterHere(m fsm.Member) (uint64, error) {
	cfg := r.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return 0, err
	}
	index := cfg.Index()
	// A member at its address, voter or staged, is left as it is: only
	// autopilot promotes, so a repeated add cannot skip the staging.
	servers := cfg.Configuration().Servers
	i := slices.IndexFunc(servers, func(s raft.Server) bool { return string(s.ID) == m.ID })
	if i < 0 || string(servers[i].Address) != m.RaftAddr {
		// AddNonvoter adds a new member as a non-voter, and only updates
		// the address of a member that has one already (a voter stays a
		// voter).
		f := r.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, raftOpTimeout)
		if err := f.Error(); err != nil {
			return 0, fmt.Errorf("add member %s: %w", m.ID, err)
		}
		index = f.Index()
		if i < 0 {
			r.log.Info("added a staged member; autopilot promotes it to voter once it is stable", "id", m.ID, "raft_addr", m.RaftAddr)
		} else {
			r.log.Info("updated a member's raft address", "id", m.ID, "raft_addr", m.RaftAddr, "suffrage", servers[i].Suffrage.String())
		}
	}
	if cur, ok := r.fsm.Member(m.ID); !ok || cur != m {
		f := r.raft.Apply(fsm.SetMember(m), raftOpTimeout)
		if err := f.Error(); err != nil {
			return 0, fmt.Errorf("record member %s: %w", m.ID, err)
		}
		index = f.Index()
	}
	return index, nil
}

// ErrInvalidMember: a membership request is malformed.
var ErrInvalidMember = errors.New("invalid member")

// ErrUnknownMember: the named replica is not a member.
var ErrUnknownMember = errors.New("unknown member")

// RemoveServer removes a member; removing the leader makes it step down.
func (r *Replica) RemoveServer(ctx context.Context, id string) (index uint64, err error) {
	if id == "" {
		return 0, fmt.Errorf("%w: an id is required", ErrInvalidMember)
	}
	err = r.forward(ctx, request{
		op:     "remove_server",
		local:  r.onRaftLeader(func(ctx context.Context) (err error) { index, err = r.removeServerHere(ctx, id); return err }),
		remote: func(ctx context.Context, p PeerClient) (err error) { index, err = p.RemoveServer(ctx, id); return err },
	})
	return index, err
}

func (r *Replica) removeServerHere(ctx context.Context, id string) (uint64, error) {
	members, _, err := r.Members()
	if err != nil {
		return 0, err
	}
	_, recorded := r.fsm.Member(id)
	if !slices.ContainsFunc(members, func(m MemberStatus) bool { return m.ID == id }) {
		if !recorded {
			return 0, fmt.Errorf("%w: %q", ErrUnknownMember, id)
		}
		// Out of the configuration already (an earlier removal stopped
		// halfway): only the addresses are left to forget.
		f := r.raft.Apply(fsm.RemoveMember(id), raftOpTimeout)
		if err := f.Error(); err != nil {
			return 0, fmt.Errorf("forget member %s: %w", id, err)
		}
		return f.Index(), nil
	}
	if id == r.cfg.ID {
		idx, err := r.handOffAndRemove(ctx)
		if err == nil {
			return idx, nil
		}
		r.log.Warn("removing this leader through a successor failed; removing itself", "err", err)
		if r.raft.State() != raft.Leader {
			return 0, fmt.Errorf("remove %s: leadership moved while removing it; retry", id)
		}
		return r.removeSelf()
	}
	// Out of the configuration first, addresses second: a member that saw
	// its record vanish while it still found itself in the configuration
	// would take that for "not registered yet" and add itself back.
	f := r.raft.RemoveServer(raft.ServerID(id), 0, raftOpTimeout)
	if err := f.Error(); err != nil {
		return 0, fmt.Errorf("remove server %s: %w", id, err)
	}
	r.log.Info("removed server", "id", id)
	index := f.Index()
	if recorded {
		af := r.raft.Apply(fsm.RemoveMember(id), raftOpTimeout)
		if err := af.Error(); err != nil {
			return 0, fmt.Errorf("removed server %s, but forgetting its addresses failed (remove it again to retry): %w", id, err)
		}
		index = af.Index()
	}
	return index, nil
}

// handOffAndRemove removes the leader without an election timeout of
// unavailability: it hands leadership to another voter, then asks the new
// leader to remove it like any follower.
func (r *Replica) handOffAndRemove(ctx context.Context) (uint64, error) {
	if r.voterCount() < 2 {
		return 0, errors.New("no other voter to hand leadership to")
	}
	r.setNotReady(nil)
	if err := r.raft.LeadershipTransfer().Error(); err != nil {
		r.kickLifecycle()
		return 0, fmt.Errorf("leadership transfer: %w", err)
	}
	// This is a new request of this replica's own, not a second hop of the
	// one it is serving.
	return r.RemoveServer(ownRequest(ctx), r.cfg.ID)
}

// removeSelf removes the leader itself. It forgets its own addresses first,
// because once the leader removes itself it can no longer apply anything;
// leaving keeps registerSelf from recording them again meanwhile.
func (r *Replica) removeSelf() (uint64, error) {
	r.leaving.Store(true)
	if f := r.raft.Apply(fsm.RemoveMember(r.cfg.ID), raftOpTimeout); f.Error() != nil {
		r.leaving.Store(false)
		return 0, fmt.Errorf("forget member %s: %w", r.cfg.ID, f.Error())
	}
	r.setNotReady(nil)
	f := r.raft.RemoveServer(raft.ServerID(r.cfg.ID), 0, raftOpTimeout)
	if err := f.Error(); err != nil {
		r.leaving.Store(false)
		r.kickLifecycle()
		return 0, fmt.Errorf("remove server %s: %w", r.cfg.ID, err)
	}
	r.log.Info("removed server", "id", r.cfg.ID)
	return f.Index(), nil
}

// TransferLeadership hands leadership to target, or to the most up-to-date
// voter when target is empty, and returns the new leader once known.
func (r *Replica) TransferLeadership(ctx context.Context, target string) (leader fsm.Member, term uint64, err error) {
	err = r.forward(ctx, request{
		op: "transfer_leadership",
		local: r.onRaftLeader(func(ctx context.Context) (err error) {
			leader, term, err = r.transferHere(ctx, target)
			return err
		}),
		remote: func(ctx context.Context, p PeerClient) (err error) {
			leader, term, err = p.TransferLeadership(ctx, target)
			return err
		},
	})
	return leader, term, err
}

func (r *Replica) transferHere(ctx context.Context, target string) (fsm.Member, uint64, error) {
	var f raft.Future
	if target == "" {
		f = r.raft.LeadershipTransfer()
	} else if target == r.cfg.ID {
		return r.Self(), r.raft.CurrentTerm(), nil
	} else {
		members, _, err := r.Members()
		if err != nil {
			return fsm.Member{}, 0, err
		}
		i := slices.IndexFunc(members, func(m MemberStatus) bool { return m.ID == target && m.Voter })
		if i < 0 {
			return fsm.Member{}, 0, fmt.Errorf("%w: %q is not a voter", ErrUnknownMember, target)
		}
		r.setNotReady(nil)
		f = r.raft.LeadershipTransferToServer(raft.ServerID(target), raft.ServerAddress(members[i].RaftAddr))
	}
	r.setNotReady(nil)
	if err := f.Error(); err != nil {
		r.kickLifecycle()
		return fsm.Member{}, 0, fmt.Errorf("leadership transfer: %w", err)
	}
	// Wait until a leader is known (the transfer returns when the target
	// started its election) and its addresses are recorded (a replica
	// records its own once it leads, if it had not yet), so the answer says
	// where to reach it.
	var known fsm.Member
	for {
		if _, lid := r.raft.LeaderWithID(); lid != "" && string(lid) != r.cfg.ID {
			known = r.memberRecord(r.fsm.State(), string(lid), "")
			if known.GRPCAddr != "" {
				return known, r.raft.CurrentTerm(), nil
			}
		}
		select {
		case <-ctx.Done():
			if known.ID != "" {
				return known, r.raft.CurrentTerm(), nil
			}
			return fsm.Member{}, 0, fmt.Errorf("waiting for the new leader: %w", ctx.Err())
		case <-time.After(retryPause):
		}
	}
}

func (r *Replica) kickLifecycle() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// registerSelf makes sure the FSM holds this replica's current addresses
// (and, for a replica started with --join, that it is a voter). It retries
// until it succeeds, then re-checks whenever the state changes.
//
// Only a replica in the Raft configuration, or a fresh one joining for the
// first time, registers: a member that was removed must stay out, however
// it learns that its record is gone. Such a replica is marked removed, so
// that it answers requests at once instead of holding them for a leader it
// will never know.
func (r *Replica) registerSelf() {
	defer r.wg.Done()
	self := r.Self()
	for {
		changed := r.fsm.Changed()
		cur, recorded := r.fsm.Member(self.ID)
		if inConfig, err := r.inConfiguration(); err == nil {
			if inConfig || recorded {
				r.wasMember.Store(true)
			}
			if removed := !inConfig && r.wasMember.Load(); r.removed.Swap(removed) != removed {
				r.kickHealth() // Raft observes no event for it
			}
			joining := r.joinOnStart && !inConfig && !r.wasMember.Load()
			if (inConfig && (!recorded || cur != self) && !r.leaving.Load()) || joining {
				ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
				err := r.register(ctx, self)
				cancel()
				switch {
				case err == nil:
				case joining:
					// Not a member yet: the operator needs to see why
					// (a refused certificate, an unreachable --join).
					r.log.Warn("joining the cluster failed; retrying", "via", r.cfg.Join, "err", err)
				default:
					r.log.Debug("registering this replica", "err", err)
				}
			}
		}
		select {
		case <-r.ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

// inConfiguration reports whether this replica is in its latest Raft
// configuration (committed or not).
func (r *Replica) inConfiguration() (bool, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	return slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return string(s.ID) == r.cfg.ID }), nil
}

// isRemoved reports whether this replica is out of the cluster for good:
// removed from the configuration, or its Raft stopped (a leader that
// removed itself shuts its Raft down).
func (r *Replica) isRemoved() bool {
	return r.removed.Load() || (r.raft.State() == raft.Shutdown && !r.closed.Load())
}

func (r *Replica) register(ctx context.Context, self fsm.Member) error {
	if _, err := r.addVoter(ctx, self, r.cfg.Join); err != nil {
		return err
	}
	r.log.Info("registered with the cluster")
	return nil
}

// IsLeader reports whether Raft says this replica leads (ready or not).
func (r *Replica) IsLeader() bool { return r.raft.State() == raft.Leader }

// ReadConsistency returns how this replica serves reads.
func (r *Replica) ReadConsistency() ReadConsistency { return r.cfg.ReadConsistency }

// CurrentTerm returns this replica's current Raft term.
func (r *Replica) CurrentTerm() uint64 { return r.raft.CurrentTerm() }

// ErrAdoptRefused: a takeover of the database's fence needs force.
var ErrAdoptRefused = errors.New("adopting the database needs --force")

// FenceChange is what AdoptFence found and left.
type FenceChange struct {
	Before backend.FenceState
	Owner  string
	Epoch  uint64
}

// AdoptFence makes this cluster the owner of the database's fence at the
// leader's term (see backend.Fencer.Adopt): the operator's explicit
// takeover of a database that another cluster owns or whose fence was
// lost. Without force it refuses whenever another owner is recorded or the
// fence is lost, since nothing here can prove the other cluster stopped.
// It runs on the Raft leader (ready or not: a leader that cannot fence is
// exactly the one that needs it).
func (r *Replica) AdoptFence(ctx context.Context, force bool) (change FenceChange, err error) {
	err = r.forward(ctx, request{
		op: "adopt_fence",
		local: r.onRaftLeader(func(ctx context.Context) (err error) {
			change, err = r.adoptHere(ctx, force)
			return err
		}),
		remote: func(ctx context.Context, p PeerClient) (err error) {
			change, err = p.AdoptFence(ctx, force)
			return err
		},
	})
	return change, err
}

func (r *Replica) adoptHere(ctx context.Context, force bool) (FenceChange, error) {
	if r.cfg.UnsafeSkipFence {
		return FenceChange{}, fmt.Errorf("%w: this replica runs without fencing", ErrAdoptRefused)
	}
	owner, err := r.clusterID()
	if err != nil {
		return FenceChange{}, err
	}
	before, err := r.cfg.Backend.FenceState(ctx)
	if err != nil {
		return FenceChange{}, fmt.Errorf("reading the fence: %w", err)
	}
	change := FenceChange{Before: before, Owner: before.Owner, Epoch: before.Epoch}
	foreign := before.Owner != "" && before.Owner != owner
	switch {
	case !before.Lost && !foreign:
		// Unowned (the next fence claims it) or already this cluster's.
		return change, nil
	case !force && before.Lost:
		return change, fmt.Errorf("%w: the database had a fence and lost it; make sure no other cluster writes it, then re-run with --force", ErrAdoptRefused)
	case !force:
		ago := "at an unknown time"
		if !before.FencedAt.IsZero() {
			ago = time.Since(before.FencedAt).Round(time.Second).String() + " ago"
		}
		return change, fmt.Errorf("%w: the database belongs to cluster %s (epoch %d, last fenced %s); stop that cluster, then re-run with --force", ErrAdoptRefused, before.Owner, before.Epoch, ago)
	}
	term := r.raft.CurrentTerm()
	if err := r.cfg.Backend.Owned(owner).Adopt(ctx, term); err != nil {
		return change, fmt.Errorf("adopting the fence: %w", err)
	}
	r.log.Warn("adopted the database's fence", "cluster_id", owner, "epoch", term, "previous_owner", before.Owner, "previous_epoch", before.Epoch, "previous_lost", before.Lost)
	r.setFenceProblem("")
	r.kickLifecycle()
	change.Owner, change.Epoch = owner, term
	return change, nil
}
