package deploytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/cluster/replicaproc"
)

// buildTimeout bounds the one build of the binary; a cold module cache
// downloads the server's dependencies first.
const buildTimeout = 10 * time.Minute

// Env is what one test package shares.
type Env struct {
	// Binary is the committer executable built from this repository.
	Binary string
	// PG is the package's PostgreSQL server; nil without PostgreSQL
	// binaries (Database then skips, or fails under COMMITTER_REQUIRE_PG=1).
	PG *pgtest.Server
}

// RunMain is for TestMain: it builds the binary, starts PostgreSQL, runs
// the tests and cleans up, returning the exit code.
func RunMain(m *testing.M, env **Env) int {
	dir, err := os.MkdirTemp("", "deploytest-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploytest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	bin, err := replicaproc.Build(ctx, dir, replicaproc.BuildOptions{ModuleDir: RepositoryRoot(), Static: true})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploytest: building committer: %v\n", err)
		return 1
	}
	e := &Env{Binary: bin}
	*env = e
	return pgtest.RunMain(m, &e.PG)
}

// Database returns the URL of a fresh database, dropped when t ends.
func (e *Env) Database(t testing.TB) string {
	t.Helper()
	return pgtest.Require(t, e.PG).CreateDatabase(t)
}

// RepositoryRoot is the server module's directory (this file's package is
// deploy/deploytest inside it), where deploy/ and the sources are.
func RepositoryRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("deploytest: no caller information to find the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// DeployDir is the repository's deploy/ directory.
func DeployDir() string { return filepath.Join(RepositoryRoot(), "deploy") }
