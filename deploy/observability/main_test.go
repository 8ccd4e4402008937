package observability_test

import (
	"os"
	"testing"

	"github.com/hacommit/committer/deploy/deploytest"
)

// env is the package's committer binary and PostgreSQL, for the live
// scrape; the other tests read files only.
var env *deploytest.Env

func TestMain(m *testing.M) { os.Exit(deploytest.RunMain(m, &env)) }
