package conformance

import (
	"testing"

	"github.com/hacommit/committer/backend"
)

// RunConsensus runs every semantic case against fresh stores; newStore returns
// a fresh, EMPTY store for each subtest and registers its own cleanup with
// t.Cleanup.
func RunConsensus(t *testing.T, newStore func(t *testing.T) backend.Consensus) {
	t.Helper()
	t.Run("SpecCases", func(t *testing.T) { testSpecCases(t, newStore(t)) })
	t.Run("ConcurrentCASOneWinnerPerSeqNo", func(t *testing.T) { testConcurrentCAS(t, newStore(t)) })
	t.Run("MultiDuplicateShardRejected", func(t *testing.T) { testMultiDuplicateShard(t, newStore(t)) })
	t.Run("MultiEmpty", func(t *testing.T) { testMultiEmpty(t, newStore(t)) })
	t.Run("SeqNoAboveMaxRejected", func(t *testing.T) { testSeqNoAboveMax(t, newStore(t)) })
	t.Run("BadShardNamesRejected", func(t *testing.T) { testBadShardNames(t, newStore(t)) })
	t.Run("LargeValuesRoundTrip", func(t *testing.T) { testLargeValues(t, newStore(t)) })
	t.Run("ScanLimits", func(t *testing.T) { testScanLimits(t, newStore(t)) })
	t.Run("ListKeysSorted", func(t *testing.T) { testListKeysSorted(t, newStore(t)) })
}

// RunFencing runs the fencing cases (needs backend.Fencer).
func RunFencing(t *testing.T, newStore func(t *testing.T) backend.Fencer) {
	t.Helper()
	t.Run("StaleEpochRejected", func(t *testing.T) { testStaleEpochRejected(t, newStore(t)) })
	t.Run("UnboundHandleWritesAtEpochZero", func(t *testing.T) { testUnboundHandle(t, newStore(t)) })
	t.Run("FenceStopsRacingWriters", func(t *testing.T) { testFenceStopsRacingWriters(t, newStore(t)) })
	t.Run("FenceBelongsToOneOwner", func(t *testing.T) { testFenceBelongsToOneOwner(t, newStore(t)) })
}

// Run runs both.
func Run(t *testing.T, newStore func(t *testing.T) backend.Fencer) {
	t.Helper()
	RunConsensus(t, func(t *testing.T) backend.Consensus { return newStore(t) })
	RunFencing(t, newStore)
}
