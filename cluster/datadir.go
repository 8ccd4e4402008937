package cluster

import (
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A replica's data dir holds the Raft log and stable store in one bbolt file
// and the Raft snapshots beside it. Open and Recover both find them here.
const (
	raftStoreFile = "raft.db"
	// retainSnapshots is how many snapshots the data dir keeps.
	retainSnapshots = 3
)

// raftStorePath is the Raft log and stable store of a data dir.
func raftStorePath(dataDir string) string { return filepath.Join(dataDir, raftStoreFile) }

// openSnapshots opens (creating if needed) the snapshot store of a data dir.
func openSnapshots(dataDir string, log hclog.Logger) (*raft.FileSnapshotStore, error) {
	return raft.NewFileSnapshotStoreWithLogger(dataDir, retainSnapshots, log)
}
