package cluster

import (
	"strings"
	"testing"
)

// Every pod of a StatefulSet gets the same flags: the pods in --peers
// bootstrap, a pod added by a scale-up is missing from them and joins
// through --join; without --join such a replica could do neither.
func TestReplicaOutsideThePeersJoins(t *testing.T) {
	peers := []Peer{{ID: "committer-0", RaftAddr: "a:6883"}, {ID: "committer-1", RaftAddr: "b:6883"}, {ID: "committer-2", RaftAddr: "c:6883"}}
	const missing = "peer list does not include this replica"
	for _, tc := range []struct {
		id        string
		join      []string
		voter     bool
		wantError bool
	}{
		{id: "committer-1", join: []string{"a:6882"}, voter: true},
		{id: "committer-1", voter: true},
		{id: "committer-3", join: []string{"a:6882", "b:6882"}, voter: false},
		{id: "committer-3", voter: false, wantError: true},
	} {
		c := &Config{ID: tc.id, BootstrapExpect: 3, Peers: peers, Join: tc.join}
		if got := c.initialVoter(); got != tc.voter {
			t.Errorf("%s with join %v: initial voter %v, want %v", tc.id, tc.join, got, tc.voter)
		}
		err := c.validate()
		if got := err != nil && strings.Contains(err.Error(), missing); got != tc.wantError {
			t.Errorf("%s with join %v: validate() = %v; want the %q error: %v", tc.id, tc.join, err, missing, tc.wantError)
		}
		if err != nil && strings.Contains(err.Error(), "exclusive") {
			t.Errorf("%s: bootstrap-expect with join refused: %v", tc.id, err)
		}
	}
	if !(&Config{ID: "solo", BootstrapExpect: 1}).initialVoter() {
		t.Error("a lone bootstrapping replica (no peers) is not its own initial voter")
	}
}
