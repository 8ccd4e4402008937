package cluster

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// Dead-server cleanup removes a dead voter only while at least minQuorum
// voters remain and a majority of the voters is healthy, counting each
// removal it allows before deciding the next.
func TestAllowVoterRemovals(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		voters, healthy, minQ int
		failed                []raft.ServerID
		allowed               []raft.ServerID
		kept                  map[raft.ServerID]string
	}{
		{"one of five", 5, 4, 3, []raft.ServerID{"a"}, []raft.ServerID{"a"}, nil},
		{"two of five, down to three", 5, 3, 3, []raft.ServerID{"a", "b"}, []raft.ServerID{"a", "b"}, nil},
		{"one of three at min quorum 3", 3, 2, 3, []raft.ServerID{"a"}, nil,
			map[raft.ServerID]string{"a": "would leave 2 voters, fewer than the minimum quorum of 3"}},
		{"one of three at min quorum 2", 3, 2, 2, []raft.ServerID{"a"}, []raft.ServerID{"a"}, nil},
		{"the second would go below min quorum", 5, 3, 4, []raft.ServerID{"a", "b"}, []raft.ServerID{"a"},
			map[raft.ServerID]string{"b": "would leave 3 voters, fewer than the minimum quorum of 4"}},
		{"no healthy majority", 5, 2, 1, []raft.ServerID{"a", "b", "c"}, nil, map[raft.ServerID]string{
			"a": "only 2 of 5 voters are healthy", "b": "only 2 of 5 voters are healthy", "c": "only 2 of 5 voters are healthy"}},
		{"a healthy majority of four", 4, 3, 3, []raft.ServerID{"a"}, []raft.ServerID{"a"}, nil},
		{"half healthy is no majority", 4, 2, 1, []raft.ServerID{"a"}, nil, map[raft.ServerID]string{"a": "only 2 of 4 voters are healthy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allowed, kept := allowVoterRemovals(tc.voters, tc.healthy, tc.minQ, tc.failed)
			if !slices.Equal(allowed, tc.allowed) {
				t.Errorf("allowed %v, want %v", allowed, tc.allowed)
			}
			if got, want := slices.Sorted(maps.Keys(kept)), slices.Sorted(maps.Keys(tc.kept)); !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", kept, tc.kept)
			}
			for id, why := range tc.kept {
				if !strings.Contains(kept[id], why) {
					t.Errorf("kept %s because %q, want it to say %q", id, kept[id], why)
				}
			}
		})
	}
}

// A staged member is promoted once it has been healthy for the
// stabilization time, and only then; voters and unhealthy members never.
// Unlike raft-autopilot's StablePromoter, the time applies also while
// autopilot has run for less than it (a fresh State).
func TestStablePromotionsWaitForTheStabilizationTime(t *testing.T) {
	now := time.Now()
	c := &autopilot.Config{ServerStabilizationTime: 10 * time.Second}
	srv := func(state autopilot.RaftState, healthy bool, since time.Duration) *autopilot.ServerState {
		return &autopilot.ServerState{State: state, Health: autopilot.ServerHealth{Healthy: healthy, StableSince: now.Add(-since)}}
	}
	s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{
		"leader":    srv(autopilot.RaftLeader, true, time.Hour),
		"voter":     srv(autopilot.RaftVoter, true, time.Hour),
		"stable":    srv(autopilot.RaftNonVoter, true, 10*time.Second),
		"stable2":   srv(autopilot.RaftNonVoter, true, time.Minute),
		"young":     srv(autopilot.RaftNonVoter, true, 9*time.Second),
		"unhealthy": srv(autopilot.RaftNonVoter, false, time.Hour),
	}}
	if got, want := stablePromotions(c, s, now), []raft.ServerID{"stable", "stable2"}; !slices.Equal(got, want) {
		t.Fatalf("promotions %v, want %v", got, want)
	}
}

// Flag values are checked with errors that name the flag.
func TestAutopilotConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  AutopilotConfig
		want string
	}{
		{AutopilotConfig{}, ""},
		{AutopilotConfig{CleanupDeadServers: true, MinQuorum: 5, DeadServerThreshold: 2 * time.Second}, ""},
		{AutopilotConfig{LastContactThreshold: -time.Second}, "--autopilot-last-contact-threshold must not be negative, got -1s"},
		{AutopilotConfig{ServerStabilizationTime: -time.Second}, "--autopilot-server-stabilization-time must not be negative, got -1s"},
		{AutopilotConfig{MinQuorum: -1}, "--autopilot-min-quorum must not be negative, got -1"},
		{AutopilotConfig{DeadServerThreshold: time.Second}, "--autopilot-dead-server-threshold must be at least 2s"},
		{AutopilotConfig{DeadServerThreshold: 3 * time.Second, LastContactThreshold: 5 * time.Second},
			"--autopilot-dead-server-threshold (3s) must exceed --autopilot-last-contact-threshold (5s)"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if d := (AutopilotConfig{}).withDefaults(); d != (AutopilotConfig{LastContactThreshold: 200 * time.Millisecond, MaxTrailingLogs: 250,
		MinQuorum: 3, ServerStabilizationTime: 10 * time.Second, DeadServerThreshold: 30 * time.Second}) {
		t.Errorf("defaults %+v", d)
	}
}
