package deploytest_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/hacommit/committer/deploy/deploytest"
)

var env *deploytest.Env

func TestMain(m *testing.M) { os.Exit(deploytest.RunMain(m, &env)) }

// threeNodes is a plain three-replica command line on the loopback block,
// the shape every manifest has.
func threeNodes(t *testing.T, hosts []string, url string) []deploytest.Node {
	var peers []string
	for i, h := range hosts {
		peers = append(peers, fmt.Sprintf("r%d=%s", i, net.JoinHostPort(h, "6883")))
	}
	var nodes []deploytest.Node
	for i, h := range hosts {
		nodes = append(nodes, deploytest.Node{
			Name: fmt.Sprintf("r%d", i),
			Args: []string{"serve", fmt.Sprintf("--id=r%d", i), "--bootstrap-expect=3", "--peers=" + strings.Join(peers, ","),
				"--grpc-addr=" + h + ":6882", "--raft-addr=" + h + ":6883", "--http-addr=" + h + ":6884",
				"--data-dir=" + t.TempDir()},
			Env:      []string{"COMMITTER_BACKEND=" + url, "COMMITTER_LOG_FORMAT=text"},
			GRPCAddr: h + ":6882", HTTPAddr: h + ":6884",
		})
	}
	return nodes
}

func TestThreeNodesElectAndServe(t *testing.T) {
	url := env.Database(t)
	hosts := deploytest.Loopback(t, 60, 3)
	c := deploytest.Start(t, env, threeNodes(t, hosts, url), nil)
	leader := c.AwaitLeader(t)
	if leader != "r0" && leader != "r1" && leader != "r2" {
		t.Fatalf("leader %q is none of the three", leader)
	}
	c.ProveCaS(t)
	fams := c.MetricFamilies(t, 0)
	if _, ok := fams["committer_raft_term"]; !ok {
		t.Fatalf("/metrics lacks committer_raft_term; has %d families", len(fams))
	}
}

// The environment a node gets is only its own: a COMMITTER_* variable of
// the test process must not reach it.
func TestNodesGetOnlyTheirOwnEnvironment(t *testing.T) {
	t.Setenv("COMMITTER_BACKEND", "postgres://nowhere.invalid/db")
	url := env.Database(t)
	hosts := deploytest.Loopback(t, 61, 3)
	c := deploytest.Start(t, env, threeNodes(t, hosts, url), nil)
	c.AwaitLeader(t)
	c.ProveCaS(t)
}
