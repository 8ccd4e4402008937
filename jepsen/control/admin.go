package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/cluster/opshttp"
	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/internal/backoff"
	"github.com/hacommit/committer/rpc/adminpb"
)

// statusTimeout bounds one Status call. A leader's Status asks every member
// for its last contact (up to a second each, in parallel), so a paused or
// cut-off member makes the leader's answer slow; followers answer at once.
const statusTimeout = 1500 * time.Millisecond

func (c *Cluster) admin(slot int) adminpb.AdminClient {
	return adminpb.NewAdminClient(c.conns[slot-1])
}

// Status asks one replica for its view of the cluster.
func (c *Cluster) Status(ctx context.Context, slot int) (*adminpb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	return c.admin(slot).Status(ctx, &adminpb.StatusRequest{})
}

// Ready asks one replica's /readyz; unlike Status it never waits for other
// members.
func (c *Cluster) Ready(ctx context.Context, slot int) (opshttp.Readiness, error) {
	r, err := c.replicas[slot-1].proc.Readyz(ctx)
	if err != nil {
		return r, fmt.Errorf("/readyz of %s: %w", c.nodes[slot-1].Name, err)
	}
	return r, nil
}

// View is what the reachable replicas say about leadership.
type View struct {
	// Statuses holds the answers by slot (nil: no answer).
	Statuses map[int]*adminpb.StatusResponse
	// Leader is the slot of the leader the view agrees on, or 0.
	Leader int
	// Term is the leader's term.
	Term uint64
}

// Observe asks every running, unpaused replica for its status, in parallel.
func (c *Cluster) Observe(ctx context.Context) View {
	v := View{Statuses: map[int]*adminpb.StatusResponse{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if !c.Running(n.Slot) || c.Paused(n.Slot) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Status(ctx, n.Slot)
			if err != nil {
				return
			}
			mu.Lock()
			v.Statuses[n.Slot] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	v.Leader, v.Term = c.leaderOf(v.Statuses)
	return v
}

// leaderOf picks the leader from statuses: a replica that says it leads, in
// the highest such term; otherwise the leader most followers name in the
// highest term they report.
func (c *Cluster) leaderOf(statuses map[int]*adminpb.StatusResponse) (int, uint64) {
	var bestSlot int
	var bestTerm uint64
	for slot, st := range statuses {
		if st.GetState() == adminpb.RaftState_RAFT_STATE_LEADER && st.GetTerm() >= bestTerm {
			bestSlot, bestTerm = slot, st.GetTerm()
		}
	}
	if bestSlot != 0 {
		return bestSlot, bestTerm
	}
	votes := map[int]int{}
	terms := map[int]uint64{}
	for _, st := range statuses {
		if l := st.GetLeader(); l != nil {
			if slot := c.SlotOfAddr(l.GetGrpcAddr()); slot != 0 {
				votes[slot]++
				terms[slot] = max(terms[slot], st.GetTerm())
			}
		}
	}
	for slot, n := range votes {
		if n > votes[bestSlot] || (n == votes[bestSlot] && terms[slot] > bestTerm) {
			bestSlot, bestTerm = slot, terms[slot]
		}
	}
	return bestSlot, bestTerm
}

// WaitReadyLeader polls until some replica is the ready (fenced) leader and
// returns its slot.
func (c *Cluster) WaitReadyLeader(ctx context.Context) (int, error) {
	for {
		v := c.Observe(ctx)
		if v.Leader != 0 && !c.Paused(v.Leader) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			r, err := c.Ready(rctx, v.Leader)
			cancel()
			if err == nil && r.Leader && r.Ready {
				return v.Leader, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", cluster.ErrNoLeader, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Leader returns the slot of the current leader as the replicas see it,
// waiting up to wait for one to be known.
func (c *Cluster) Leader(ctx context.Context, wait time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if v := c.Observe(ctx); v.Leader != 0 {
			return v.Leader, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", cluster.ErrNoLeader, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// viaSlot picks a replica to send an operator call to: the leader if known
// and not excluded, else any running, unpaused replica not excluded.
func (c *Cluster) viaSlot(ctx context.Context, exclude ...int) (int, error) {
	if v := c.Observe(ctx); v.Leader != 0 && !slices.Contains(exclude, v.Leader) {
		return v.Leader, nil
	}
	for _, n := range c.nodes {
		if c.Running(n.Slot) && !c.Paused(n.Slot) && !slices.Contains(exclude, n.Slot) {
			return n.Slot, nil
		}
	}
	return 0, fmt.Errorf("no replica to send an operator call to: %w", replicaproc.ErrNotRunning)
}

// Members returns the committed configuration as the leader (or any
// replica) reports it.
func (c *Cluster) Members(ctx context.Context) ([]*adminpb.Member, error) {
	slot, err := c.viaSlot(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.admin(slot).ListMembers(ctx, &adminpb.ListMembersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list members via %s: %w", c.nodes[slot-1].Name, err)
	}
	return resp.GetMembers(), nil
}

// RemoveServer removes a replica id from the configuration, sending the
// call through another replica. Transient failures (no leader yet, the
// leader changed meanwhile) are retried for up to 30s; an id that is not a
// member counts as removed.
func (c *Cluster) RemoveServer(ctx context.Context, id string) error {
	return retry(ctx, 30*time.Second, func(ctx context.Context) error {
		slot, err := c.viaSlot(ctx, c.SlotOfID(id))
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = c.admin(slot).RemoveServer(cctx, &adminpb.RemoveServerRequest{Id: id})
		switch status.Code(err) {
		case codes.OK:
			c.log.Info("removed server", "id", id, "via", c.nodes[slot-1].Name)
			return nil
		case codes.NotFound:
			return nil
		case codes.InvalidArgument:
			return backoff.Permanent(fmt.Errorf("remove %s: %w", id, err))
		}
		return fmt.Errorf("remove %s via %s: %w", id, c.nodes[slot-1].Name, err)
	})
}

// retry calls fn until it succeeds, returns an error marked
// backoff.Permanent, or wait passes; it returns fn's last error. The pause
// does not grow (250ms, jittered down to 125ms): the failures worth
// retrying, no leader yet or a leader change, clear within an election, and
// a test waiting on them should notice the new leader promptly.
func retry(ctx context.Context, wait time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return backoff.Retry(ctx, backoff.Policy{Initial: 250 * time.Millisecond}, fn)
}

// promotionWait bounds the wait for a staged member's promotion: the
// leader's autopilot promotes it once it has been healthy for the
// stabilization time (10s by default; docs/architecture.md §8.1), and a
// wiped replica must first catch up.
const promotionWait = 45 * time.Second

// AddVoter adds the slot's current replica (a no-op if it is a member) and
// waits until it is a voter: it joins staged, and the leader's autopilot
// promotes it.
func (c *Cluster) AddVoter(ctx context.Context, slot int) error {
	if err := c.AddMember(ctx, slot); err != nil {
		return err
	}
	return c.waitVoter(ctx, c.ID(slot), promotionWait)
}

// AddMember adds the slot's current replica (a no-op if it is a member),
// retrying transient failures for up to 30s. It does not wait for the
// promotion of a new, staged member.
func (c *Cluster) AddMember(ctx context.Context, slot int) error {
	n := c.nodes[slot-1]
	id := c.ID(slot)
	return retry(ctx, 30*time.Second, func(ctx context.Context) error {
		via, err := c.viaSlot(ctx, slot)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = c.admin(via).AddVoter(cctx, &adminpb.AddVoterRequest{Id: id, RaftAddr: n.RaftAddr(), GrpcAddr: n.GRPCAddr(), HttpAddr: n.HTTPAddr()})
		if err != nil {
			if status.Code(err) == codes.InvalidArgument {
				return backoff.Permanent(fmt.Errorf("add voter %s: %w", id, err))
			}
			return fmt.Errorf("add voter %s via %s: %w", id, c.nodes[via-1].Name, err)
		}
		c.log.Info("added voter", "id", id, "via", c.nodes[via-1].Name)
		return nil
	})
}

// TransferLeadership asks the leader to hand leadership to the slot's
// replica (0: Raft's choice) and returns the new leader's slot.
func (c *Cluster) TransferLeadership(ctx context.Context, target int) (int, error) {
	via, err := c.viaSlot(ctx)
	if err != nil {
		return 0, err
	}
	id := ""
	if target != 0 {
		id = c.ID(target)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := c.admin(via).TransferLeadership(ctx, &adminpb.TransferLeadershipRequest{TargetId: id})
	if err != nil {
		return 0, fmt.Errorf("transfer leadership via %s: %w", c.nodes[via-1].Name, err)
	}
	return c.SlotOfAddr(resp.GetLeader().GetGrpcAddr()), nil
}

// ReplaceNode replaces the slot's replica with a new one on a wiped data
// dir: kill it, remove it from the configuration once the others have a
// leader, wipe, then start a replica with a new id that joins through the
// others. It returns the new id once the new replica is a voter.
func (c *Cluster) ReplaceNode(ctx context.Context, slot int) (string, error) {
	old := c.ID(slot)
	if err := c.KillNode(ctx, slot); err != nil {
		return "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := c.WaitReadyLeader(wctx)
	cancel()
	if err != nil {
		return "", fmt.Errorf("replacing %s: %w", old, err)
	}
	if err := c.RemoveServer(ctx, old); err != nil {
		return "", err
	}
	if err := c.WipeNode(slot); err != nil {
		return "", err
	}
	id, err := c.renew(slot)
	if err != nil {
		return "", err
	}
	if err := c.StartNode(slot); err != nil {
		return id, err
	}
	c.log.Info("replacing replica", "node", c.nodes[slot-1].Name, "old", old, "new", id)
	return id, c.waitVoter(ctx, id, promotionWait)
}

// waitVoter waits until id is a voter of the committed configuration, which
// for a new member means autopilot has promoted it.
func (c *Cluster) waitVoter(ctx context.Context, id string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		ms, err := c.Members(ctx)
		if err == nil && slices.ContainsFunc(ms, func(m *adminpb.Member) bool {
			return m.GetId() == id && m.GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER
		}) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become a voter: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Health says why the cluster is not (yet) back to normal, or nil.
func (c *Cluster) Health(ctx context.Context) error {
	var problems []string
	for _, n := range c.nodes {
		switch {
		case !c.Running(n.Slot):
			problems = append(problems, n.Name+" is not running")
		case c.Paused(n.Slot):
			problems = append(problems, n.Name+" is paused")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	v := c.Observe(ctx)
	if v.Leader == 0 {
		return cluster.ErrNoLeader
	}
	r, err := c.Ready(ctx, v.Leader)
	if err != nil || !r.Ready || !r.Leader {
		return fmt.Errorf("%w: %s is not the ready leader yet (%v)", cluster.ErrNoLeader, c.nodes[v.Leader-1].Name, err)
	}
	leaderID := c.ID(v.Leader)
	for _, n := range c.nodes {
		st := v.Statuses[n.Slot]
		if st == nil {
			problems = append(problems, n.Name+" does not answer Status")
		} else if st.GetLeader().GetId() != leaderID {
			problems = append(problems, fmt.Sprintf("%s sees leader %q, not %q", n.Name, st.GetLeader().GetId(), leaderID))
		}
	}
	ms, err := c.Members(ctx)
	if err != nil {
		return err
	}
	var voters, want []string
	for _, m := range ms {
		if m.GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER {
			voters = append(voters, m.GetId())
		}
	}
	for _, n := range c.nodes {
		want = append(want, c.ID(n.Slot))
	}
	sort.Strings(voters)
	sort.Strings(want)
	if !slices.Equal(voters, want) {
		problems = append(problems, fmt.Sprintf("voters are %v, want %v", voters, want))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Strays returns the running, unpaused replicas that do not follow the
// leader most replicas see (or do not answer Status), when there is one.
func (c *Cluster) Strays(ctx context.Context) []int {
	v := c.Observe(ctx)
	if v.Leader == 0 {
		return nil
	}
	leaderID := c.ID(v.Leader)
	var out []int
	for _, n := range c.nodes {
		if !c.Running(n.Slot) || c.Paused(n.Slot) || n.Slot == v.Leader {
			continue
		}
		if st := v.Statuses[n.Slot]; st == nil || st.GetLeader().GetId() != leaderID {
			out = append(out, n.Slot)
		}
	}
	return out
}

// WaitHealthy polls Health until it passes or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for {
		err := c.Health(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
