package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/internal/faultdelay"
)

// errLaterTerm: a voter answered with a term above the leader's, so a later
// election has begun or ended.
var errLaterTerm = errors.New("a voter is in a later term")

// confirmLeadership is the read gate's round (docs/architecture.md §6). It
// asks every other voter for its current term, in calls sent after the
// round started, and succeeds once a quorum (this replica included) answers
// with this replica's term or an earlier one: a later leader needs the votes
// of a quorum in its later term, terms never decrease, and two quorums share
// a voter, so no later leader existed when those answers were given, which
// is after every read waiting for this round arrived.
//
// hashicorp/raft's VerifyLeader is not used: it counts a heartbeat
// acknowledgement that arrives after the round began even when the
// heartbeat was sent before, so a leader that was paused holding one could
// confirm a read with evidence from before the read.
func (r *Replica) confirmLeadership() (uint64, error) {
	term := r.raft.CurrentTerm()
	if r.raft.State() != raft.Leader {
		return 0, fmt.Errorf("%w: this replica does not lead", backend.ErrNotLeader)
	}
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return 0, err
	}
	var others []raft.Server
	self := false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if string(s.ID) == r.cfg.ID {
			self = true
			continue
		}
		others = append(others, s)
	}
	if !self {
		return 0, fmt.Errorf("%w: this replica is not a voter", backend.ErrNotLeader)
	}
	quorum := (len(others)+1)/2 + 1
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeouts.Election)
	defer cancel()
	answers := make(chan error, len(others))
	for _, s := range others {
		go func() { answers <- r.askTerm(ctx, s, term) }()
	}
	if h := r.roundStarted.Load(); h != nil {
		(*h)()
	}
	votes, refusals := 1, 0
	var lastErr error
	for votes < quorum {
		if len(others)-refusals < quorum-votes {
			return 0, fmt.Errorf("leadership in term %d not confirmed by a quorum: %w", term, lastErr)
		}
		err := <-answers
		switch {
		case err == nil:
			votes++
		case errors.Is(err, errLaterTerm):
			return 0, err
		default:
			refusals++
			lastErr = err
		}
	}
	if after := r.raft.CurrentTerm(); after != term || r.raft.State() != raft.Leader {
		return 0, fmt.Errorf("term changed from %d to %d during leadership check", term, after)
	}
	// Reads that arrive while the round is held here wait for the next
	// round: the evidence above predates them.
	r.cfg.FaultDelays.Wait(r.ctx, faultdelay.ReadRoundDecided)
	return term, nil
}

// askTerm asks one voter for its term: nil when it answers with term or an
// earlier one.
func (r *Replica) askTerm(ctx context.Context, s raft.Server, term uint64) error {
	m, ok := r.fsm.Member(string(s.ID))
	if !ok || m.GRPCAddr == "" {
		return fmt.Errorf("voter %s has no known gRPC address yet", s.ID)
	}
	p, err := r.peers.Dial(m.GRPCAddr)
	if err != nil {
		return err
	}
	got, err := p.CurrentTerm(ctx, term, r.cfg.ID)
	switch {
	case err != nil:
		return fmt.Errorf("voter %s: %w", s.ID, err)
	case got > term:
		return fmt.Errorf("%w: %s is in term %d, this leader in %d", errLaterTerm, s.ID, got, term)
	}
	// A voter still in an earlier term (it has not heard from this leader
	// yet) vouches as well: it had not voted in any later term either.
	return nil
}
