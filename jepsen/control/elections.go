package control

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hacommit/committer/rpc/adminpb"
)

// pollInterval paces the election monitor.
const pollInterval = 200 * time.Millisecond

// Term is a Raft term in which a leader was seen.
type Term struct {
	Term   uint64 `json:"term"`
	Leader string `json:"leader"` // replica id
	// FirstSeen is when the monitor first saw this term's leader, relative
	// to the monitor's start.
	FirstSeen time.Duration `json:"first_seen"`
}

// ElectionMonitor polls every replica's status and records each term in
// which some replica led or named a leader. Elections that begin and end
// between two polls, with no replica answering in between, are missed; at
// 200ms polls that is rare (an election takes longer than that).
type ElectionMonitor struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	terms map[uint64]Term
}

// MonitorElections starts polling until Stop is called or ctx ends.
func (c *Cluster) MonitorElections(ctx context.Context) *ElectionMonitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &ElectionMonitor{cancel: cancel, done: make(chan struct{}), terms: map[uint64]Term{}}
	start := time.Now()
	go func() {
		defer close(m.done)
		tick := time.NewTicker(pollInterval)
		defer tick.Stop()
		for {
			v := c.Observe(ctx)
			m.mu.Lock()
			for _, st := range v.Statuses {
				var leader string
				if st.GetState() == adminpb.RaftState_RAFT_STATE_LEADER {
					leader = st.GetId()
				} else if l := st.GetLeader(); l != nil {
					leader = l.GetId()
				}
				if leader == "" {
					continue
				}
				if _, ok := m.terms[st.GetTerm()]; !ok {
					m.terms[st.GetTerm()] = Term{Term: st.GetTerm(), Leader: leader, FirstSeen: time.Since(start)}
				}
			}
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// Stop ends the polling and returns the terms seen, in order. The number of
// elections is their count (the first, at bootstrap, included).
func (m *ElectionMonitor) Stop() []Term {
	m.cancel()
	<-m.done
	return m.Terms()
}

// Terms returns the terms seen so far, in order.
func (m *ElectionMonitor) Terms() []Term {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Term, 0, len(m.terms))
	for _, t := range m.terms {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Term < out[j].Term })
	return out
}
