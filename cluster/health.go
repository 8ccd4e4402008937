package cluster

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Readiness says whether this replica serves requests now, and why not. It
// is the one predicate behind /readyz, the gRPC health service and
// committer_ready, so they cannot disagree (docs/architecture.md §8.2).
type Readiness struct {
	// Ready: the replica serves, directly (the ready leader) or by
	// forwarding to a leader that is ready.
	Ready bool
	// Leader: Raft says this replica leads (ready or not).
	Leader bool
	// LeaderKnown: the replica knows a leader; LeaderID names it.
	LeaderKnown bool
	LeaderID    string
	// Term is this replica's current Raft term.
	Term uint64
	// Reason says why the replica is not ready; "" when it is.
	Reason string
}

// observationBuffer holds Raft observations between two wake-ups of
// watchRaft. Raft drops an observation when the buffer is full, which
// loses nothing: a full buffer means a wake-up is pending, and every
// wake-up samples the truth after the dropped event happened.
const observationBuffer = 16

// health is the replica's part of the health machinery: the Raft observer
// that wakes watchRaft, and the channel it closes after each wake-up.
type health struct {
	observer *raft.Observer
	observed chan raft.Observation
	// kick (capacity 1) wakes watchRaft for a change Raft does not observe
	// (this replica finding itself removed).
	kick chan struct{}

	// mu guards changed; a leaf.
	mu      sync.Mutex
	changed chan struct{}
}

func newHealth() health {
	return health{
		observed: make(chan raft.Observation, observationBuffer),
		kick:     make(chan struct{}, 1),
		changed:  make(chan struct{}),
	}
}

// publish wakes every ReadinessChanged waiter.
func (h *health) publish() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.changed)
	h.changed = make(chan struct{})
}

// Readiness evaluates the readiness predicate now:
//
//   - a replica that is closing or was removed from the cluster is not
//     ready;
//   - a replica holding a ready term (Ready: Raft leader, barrier passed,
//     backend fenced) is ready;
//   - a Raft leader without one is not (still establishing, or it cannot
//     fence: then Reason quotes FenceProblem);
//   - a follower is ready when it knows a leader, that leader's member
//     record has a gRPC address (forwarding needs it), and the newest epoch
//     in the FSM is (this replica's current term, that leader): the ready
//     leader records exactly that right after it became ready, so the
//     follower has proof, replicated to it, that the leader it would
//     forward to serves in the current term.
func (r *Replica) Readiness() Readiness {
	state := r.raft.State()
	_, lid := r.raft.LeaderWithID()
	rd := Readiness{
		Leader:      state == raft.Leader,
		LeaderKnown: lid != "",
		LeaderID:    string(lid),
		Term:        r.raft.CurrentTerm(),
	}
	switch {
	case r.closed.Load():
		rd.Reason = "shutting down"
	case r.isRemoved():
		rd.Reason = "removed from the cluster"
	case r.Ready():
		rd.Ready = true
	case rd.Leader:
		if p := r.FenceProblem(); p != "" {
			rd.Reason = "this leader cannot fence the database: " + p
		} else {
			rd.Reason = "this leader is not ready yet (barrier, fence, prefetch)"
		}
	case !rd.LeaderKnown:
		rd.Reason = "no leader known"
	default:
		rd.Reason = r.followerNotReady(rd.LeaderID, rd.Term)
		rd.Ready = rd.Reason == ""
	}
	return rd
}

// followerNotReady says why a follower that knows leader in term cannot
// forward to a ready leader, or "" if it can.
func (r *Replica) followerNotReady(leader string, term uint64) string {
	if m, ok := r.fsm.Member(leader); !ok || m.GRPCAddr == "" {
		return fmt.Sprintf("leader %s has no recorded gRPC address yet", leader)
	}
	e, ok := r.fsm.State().LatestEpoch()
	switch {
	case !ok:
		return fmt.Sprintf("leader %s has not become ready in term %d (no epoch recorded yet)", leader, term)
	case e.Term != term || e.LeaderID != leader:
		return fmt.Sprintf("leader %s has not become ready in term %d (latest epoch: term %d, leader %s)", leader, term, e.Term, e.LeaderID)
	}
	return ""
}

// ReadinessChanged returns a channel closed after the next event that may
// change Readiness: a Raft state, leader or peer observation, an FSM change,
// a readiness change of this replica's leadership, its removal, or Close.
// Take the channel before evaluating Readiness, so that a change in between
// is not missed.
func (r *Replica) ReadinessChanged() <-chan struct{} {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	return r.health.changed
}

// kickHealth wakes watchRaft for a change Raft does not observe.
func (r *Replica) kickHealth() {
	select {
	case r.health.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// registerObserver makes Raft wake watchRaft on state, leader and peer
// changes. Failed heartbeats are counted in the filter, which Raft calls
// synchronously for every observation: a count taken there is exact, where
// the buffered channel may drop.
func (r *Replica) registerObserver() {
	m := r.cfg.Metrics
	r.health.observer = raft.NewObserver(r.health.observed, false, func(o *raft.Observation) bool {
		switch d := o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		case raft.PeerObservation:
			if d.Removed && m != nil {
				m.ForgetPeer(string(d.Peer.ID))
			}
			return true
		case raft.FailedHeartbeatObservation:
			if m != nil {
				m.HeartbeatFailed(string(d.PeerID))
			}
		}
		return false
	})
	r.raft.RegisterObserver(r.health.observer)
}

// watchRaft replaces polling: it wakes on Raft's observations, FSM changes,
// readiness changes of this replica and kicks, samples the truth (Raft's
// state, term and leader, and Readiness) into the metrics, and wakes
// ReadinessChanged waiters. It never trusts an observation's payload, since
// observations can be dropped and arrive late. It ends when the replica's
// context is cancelled (Close), deregistering the observer.
//
// One input changes without any of these events: the term of a candidate
// that starts another election round. The committer_raft_term gauge can lag
// by those rounds until the election ends; readiness does not depend on it
// (a candidate knows no leader).
func (r *Replica) watchRaft() {
	defer r.wg.Done()
	defer r.raft.DeregisterObserver(r.health.observer)
	// Waiters re-evaluate after Close too, and find the replica closing.
	defer r.health.publish()
	for {
		fsmChanged, readyChanged := r.fsm.Changed(), r.readinessWatch()
		rd := r.Readiness()
		if m := r.cfg.Metrics; m != nil {
			m.SetRaftState(r.raft.State().String())
			m.SetTerm(rd.Term)
			m.SetReady(rd.Ready)
		}
		r.health.publish()
		select {
		case <-r.ctx.Done():
			return
		case <-r.health.observed:
			// Fold the burst into one sample.
			for len(r.health.observed) > 0 {
				<-r.health.observed
			}
		case <-fsmChanged:
		case <-readyChanged:
		case <-r.health.kick:
		}
	}
}
