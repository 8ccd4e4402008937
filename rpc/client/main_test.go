package client_test

import (
	"os"
	"testing"

	"github.com/hacommit/committer/backend/pgtest"
)

// pg is the PostgreSQL server shared by the tests of this package.
var pg *pgtest.Server

func TestMain(m *testing.M) {
	os.Exit(pgtest.RunMain(m, &pg))
}
