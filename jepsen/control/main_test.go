package control

import (
	"testing"

	"github.com/hacommit/committer/cluster/replicaproc/spintest"
)

func TestMain(m *testing.M) { spintest.Main(m) }
