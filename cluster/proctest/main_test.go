package proctest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/cluster/replicaproc"
)

// Set once by TestMain before any test runs, read-only afterwards: the
// PostgreSQL server (pgtest's documented TestMain pattern) and the committer
// binary every test starts.
var (
	pg           *pgtest.Server
	committerBin string
)

// raceEnv builds the replicas with the race detector when set to 1.
const raceEnv = "COMMITTER_PROCTEST_RACE"

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "committer-proctest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	committerBin, err = replicaproc.Build(ctx, dir, replicaproc.BuildOptions{Race: os.Getenv(raceEnv) == "1"})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return pgtest.RunMain(m, &pg)
}
