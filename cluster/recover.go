package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/fsm"
	"github.com/hacommit/committer/internal/hclogslog"
)

// Recovery from a lost quorum: docs/architecture.md §8.3.

// ErrNothingToRecover: the data dir holds no Raft state.
var ErrNothingToRecover = errors.New("nothing to recover")

// ErrDataDirInUse: a process holds the data dir's Raft store open.
var ErrDataDirInUse = errors.New("data dir in use")

// ErrInvalidConfiguration: the new configuration given to Recover is
// malformed or leaves this replica out.
var ErrInvalidConfiguration = errors.New("invalid new configuration")

// DefaultRecoverLockTimeout is how long Recover waits for the Raft store's
// file lock before deciding that a replica holds it.
const DefaultRecoverLockTimeout = time.Second

// keyCurrentTerm is where Raft keeps its current term in the stable store
// (unexported in hashicorp/raft as keyCurrentTerm; TestRecover checks that
// a raised term is the one Raft starts with).
var keyCurrentTerm = []byte("CurrentTerm")

// RecoverConfig says how to rewrite a stopped replica's Raft state after its
// cluster lost a quorum for good.
type RecoverConfig struct {
	// DataDir is the replica's data dir. No replica may run on it.
	DataDir string
	// ID is the replica's id; it must be in Peers.
	ID string
	// Peers is the new configuration, every one a voter: usually this
	// replica alone.
	Peers []Peer
	// MinTerm raises the replica's Raft term to at least this, so that its
	// first election after recovery is at a higher term, and the epoch it
	// fences the database with is above MinTerm.
	MinTerm uint64
	// ReadFence, if set, reads the cluster's database's fence (for example
	// backend.Fencer.FenceState): its epoch raises the term like MinTerm
	// (the database may have been fenced by a leader this replica never
	// heard of), and its owner is checked against the cluster id. It is
	// called once the data dir is locked, before anything is written.
	ReadFence func(context.Context) (backend.FenceState, error)
	// LockTimeout bounds the wait for the Raft store's lock; 0 means
	// DefaultRecoverLockTimeout.
	LockTimeout time.Duration
	// Logger receives Raft's own lines; nil discards them.
	Logger *slog.Logger
}

// RecoverResult is what Recover found and wrote.
type RecoverResult struct {
	// Old is the configuration the data dir held; New the one written.
	Old, New raft.Configuration
	// LastIndex and LastTerm are those of the last entry the replica had,
	// now the index and term of the snapshot that holds the recovered
	// state.
	LastIndex, LastTerm uint64
	// Term is the Raft term the replica had; NewTerm the one it starts
	// with (Term unless MinTerm or the fence raised it).
	Term, NewTerm uint64
	// ClusterID is the recovered cluster's id (the fence's owner), kept;
	// empty if no leader had named the cluster.
	ClusterID string
	// Epochs are the leader epochs kept in the FSM.
	Epochs []fsm.Epoch
	// Forgotten are the member records dropped because their replicas are
	// not in New, sorted by id.
	Forgotten []fsm.Member
	// Fence is the database's fence as read before the recovery; nil
	// without ReadFence.
	Fence *backend.FenceState
	// Warnings name what the operator still has to do before the replica
	// can serve.
	Warnings []string
}

func (c RecoverConfig) validate() error {
	if c.DataDir == "" {
		return errors.New("a data dir is required")
	}
	if c.ID == "" {
		return errors.New("the replica's id is required")
	}
	if len(c.Peers) == 0 {
		return fmt.Errorf("%w: no voters given", ErrInvalidConfiguration)
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, p := range c.Peers {
		switch {
		case p.ID == "" || p.RaftAddr == "":
			return fmt.Errorf("%w: voter %q=%q needs an id and a raft address", ErrInvalidConfiguration, p.ID, p.RaftAddr)
		case ids[p.ID]:
			return fmt.Errorf("%w: voter %q listed twice", ErrInvalidConfiguration, p.ID)
		case addrs[p.RaftAddr]:
			return fmt.Errorf("%w: raft address %s listed twice", ErrInvalidConfiguration, p.RaftAddr)
		}
		ids[p.ID], addrs[p.RaftAddr] = true, true
	}
	if !ids[c.ID] {
		return fmt.Errorf("%w: it does not include this replica (%q)", ErrInvalidConfiguration, c.ID)
	}
	return nil
}

// Recover rewrites the Raft configuration of a stopped replica to cfg.Peers,
// as hashicorp/raft's peers.json recovery does (raft.RecoverCluster): every
// entry the replica holds counts as committed, and the state becomes a
// snapshot whose configuration is the new one. Member records of replicas
// outside the new configuration are forgotten in that snapshot, so that
// lost replicas can be added back without being taken for removed ones.
// The replica's term is raised to cfg.MinTerm and the database fence's
// epoch if they are higher. It is safe only if the replicas left out are
// gone for good (docs/architecture.md §8.3). Running it again on the
// recovered data dir recovers the same state again.
func Recover(ctx context.Context, cfg RecoverConfig) (RecoverResult, error) {
	var res RecoverResult
	if err := cfg.validate(); err != nil {
		return res, err
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultRecoverLockTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := haveRaftStore(cfg.DataDir); err != nil {
		return res, err
	}
	stores, err := raftboltdb.New(raftboltdb.Options{
		Path:        raftStorePath(cfg.DataDir),
		BoltOptions: &bbolt.Options{Timeout: cfg.LockTimeout},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return res, fmt.Errorf("%w: %s is locked (is a replica still running on %s?)", ErrDataDirInUse, raftStorePath(cfg.DataDir), cfg.DataDir)
	}
	if err != nil {
		return res, fmt.Errorf("raft store: %w", err)
	}
	defer stores.Close()
	hlog := hclogslog.New(logger, "raft")
	snaps, err := openSnapshots(cfg.DataDir, hlog)
	if err != nil {
		return res, fmt.Errorf("raft snapshots: %w", err)
	}
	if ok, err := raft.HasExistingState(stores, stores, snaps); err != nil {
		return res, fmt.Errorf("raft state: %w", err)
	} else if !ok {
		return res, fmt.Errorf("%w: %s holds no Raft state", ErrNothingToRecover, cfg.DataDir)
	}
	// Only snapshots use the transport, to encode addresses; nothing is
	// sent.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	readCfg := *rc
	if res.Old, err = raft.GetConfiguration(&readCfg, fsm.New(), stores, stores, snaps, trans); err != nil {
		return res, fmt.Errorf("reading the configuration: %w", err)
	}
	if res.Term, err = stores.GetUint64(keyCurrentTerm); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return res, fmt.Errorf("reading the term: %w", err)
	}
	res.NewTerm = max(res.Term, cfg.MinTerm)
	if cfg.ReadFence != nil {
		// Read before anything is written: a database that cannot be read
		// leaves the data dir as it was.
		st, err := cfg.ReadFence(ctx)
		if err != nil {
			return res, fmt.Errorf("reading the database's fence: %w", err)
		}
		res.Fence = &st
		res.NewTerm = max(res.NewTerm, st.Epoch)
	}

	for _, p := range cfg.Peers {
		res.New.Servers = append(res.New.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	pf := &pruningFSM{FSM: fsm.New()}
	for _, p := range cfg.Peers {
		pf.keep = append(pf.keep, p.ID)
	}
	if err := raft.RecoverCluster(rc, pf, stores, stores, snaps, trans, res.New); err != nil {
		return res, fmt.Errorf("recovering the cluster: %w", err)
	}
	if !pf.pruned {
		return res, errors.New("recovering the cluster: no snapshot of the recovered state was taken")
	}
	if res.NewTerm > res.Term {
		if err := stores.SetUint64(keyCurrentTerm, res.NewTerm); err != nil {
			return res, fmt.Errorf("raising the term to %d: %w", res.NewTerm, err)
		}
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return res, fmt.Errorf("listing the recovered snapshot: %d snapshots, %w", len(metas), err)
	}
	res.LastIndex, res.LastTerm = metas[0].Index, metas[0].Term

	state := pf.State()
	res.ClusterID, res.Epochs = state.ClusterID, state.Epochs
	for id, m := range pf.before.Members {
		if _, kept := state.Members[id]; !kept {
			res.Forgotten = append(res.Forgotten, m)
		}
	}
	slices.SortFunc(res.Forgotten, func(a, b fsm.Member) int { return cmp.Compare(a.ID, b.ID) })
	res.Warnings = recoverWarnings(res)
	return res, nil
}

// haveRaftStore refuses a data dir that cannot hold Raft state, before
// anything would create files in it.
func haveRaftStore(dataDir string) error {
	fi, err := os.Stat(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: data dir %s does not exist", ErrNothingToRecover, dataDir)
	case err != nil:
		return fmt.Errorf("data dir: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("data dir %s is not a directory", dataDir)
	}
	if _, err := os.Stat(raftStorePath(dataDir)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s holds no Raft state (no %s)", ErrNothingToRecover, dataDir, raftStoreFile)
	} else if err != nil {
		return fmt.Errorf("raft store: %w", err)
	}
	return nil
}

// recoverWarnings says what stands between the recovered replica and a
// ready leader, as far as Recover can tell.
func recoverWarnings(res RecoverResult) []string {
	var out []string
	if res.ClusterID == "" {
		out = append(out, "the recovered state names no cluster: its first leader names a new one")
	}
	if f := res.Fence; f != nil {
		switch {
		case f.Lost:
			out = append(out, "the database's fence was lost: the recovered cluster serves only after `committer fence adopt --force`")
		case f.Owner != "" && f.Owner != res.ClusterID:
			out = append(out, fmt.Sprintf("the database belongs to cluster %s, not to the recovered cluster %q: it serves only after `committer fence adopt --force`", f.Owner, res.ClusterID))
		}
	}
	return out
}

// pruningFSM is the FSM handed to raft.RecoverCluster, which replays the
// replica's snapshot and log into it and then snapshots it once as the
// recovered state. Just before that snapshot it applies RetainMembers with
// the new configuration, so that the state every replica of the recovered
// cluster starts from records no lost member: the command is an ordinary,
// deterministic FSM command, applied once to the one state the new cluster
// descends from.
type pruningFSM struct {
	*fsm.FSM
	keep []string
	// before is the replayed state, as it was before the pruning.
	before fsm.State
	pruned bool
}

func (p *pruningFSM) Snapshot() (raft.FSMSnapshot, error) {
	if !p.pruned {
		p.before = p.FSM.State()
		res, _ := p.FSM.Apply(&raft.Log{Type: raft.LogCommand, Data: fsm.RetainMembers(p.keep)}).(fsm.ApplyResult)
		if res.Err != nil {
			return nil, fmt.Errorf("forgetting the members outside the new configuration: %w", res.Err)
		}
		p.pruned = true
	}
	return p.FSM.Snapshot()
}
