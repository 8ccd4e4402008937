package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/spf13/cobra"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/backendurl"
	"github.com/hacommit/committer/cluster"
)

// recoverConfig is the command line of `committer recover`.
type recoverConfig struct {
	DataDir string
	ID      string
	Peers   string
	MinTerm uint64
	// Backend, if set, is the database whose fence is read.
	Backend string
}

func newRecoverCommand(logCfg *logConfig) *cobra.Command {
	var cfg recoverConfig
	hostname, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Rewrite a stopped replica's Raft configuration after a majority of replicas was lost for good",
		Long: "recover is the disaster recovery of a cluster that lost a quorum of replicas for\n" +
			"good (docs/architecture.md §8.3). Run it, with the replica stopped, on a surviving\n" +
			"replica's --data-dir with the new configuration in --peers (usually this replica\n" +
			"alone): every entry the replica holds counts as committed, the configuration\n" +
			"becomes --peers, and the records of the replicas left out are forgotten. Then\n" +
			"start the replica as before: it leads the new configuration alone, and the\n" +
			"others are added back with `serve --join` and wiped data dirs.\n\n" +
			"Use it only if the replicas left out can never come back with their data dirs:\n" +
			"together they still form a majority of the old configuration.\n\n" +
			"With --backend, the database's fence is read: the replica's term is raised above\n" +
			"its epoch, so that the recovered leader can fence the database even if leaders\n" +
			"it never heard of fenced it, and its owner is checked against the cluster id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logCfg.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			peers, err := parsePeers(cfg.Peers)
			if err != nil {
				return err
			}
			rc := cluster.RecoverConfig{DataDir: cfg.DataDir, ID: cfg.ID, Peers: peers, MinTerm: cfg.MinTerm, Logger: log}
			if rc.ID == "" {
				return errors.New("--id is required (the host name could not be read)")
			}
			if cfg.Backend != "" {
				rc.ReadFence = func(ctx context.Context) (backend.FenceState, error) { return readFence(ctx, cfg.Backend, log) }
			}
			res, err := cluster.Recover(cmd.Context(), rc)
			if err != nil {
				return fmt.Errorf("recover %s: %w", cfg.DataDir, err)
			}
			printRecovery(cmd.OutOrStdout(), cfg, res)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.DataDir, "data-dir", "", "the stopped replica's data dir (required)")
	fs.StringVar(&cfg.ID, "id", hostname, "the replica's id, as it was served with")
	fs.StringVar(&cfg.Peers, "peers", "", "the new configuration as id=raft-host:port,... (this replica included; usually it alone) (required)")
	fs.Uint64Var(&cfg.MinTerm, "min-term", 0, "raise the replica's Raft term to at least this (the database's fence epoch, when --backend cannot be given)")
	fs.StringVar(&cfg.Backend, "backend", "", "the cluster's storage URL, as given to serve: its fence is read, to raise the term above its epoch and check its owner")
	_ = cmd.MarkFlagRequired("data-dir") // the flags exist: cannot fail
	_ = cmd.MarkFlagRequired("peers")
	return cmd
}

// readFence opens the database only to read its fence.
func readFence(ctx context.Context, url string, log *slog.Logger) (backend.FenceState, error) {
	store, err := backendurl.Open(ctx, url, backendurl.Options{Logger: log})
	if err != nil {
		return backend.FenceState{}, fmt.Errorf("open backend: %w", err)
	}
	defer store.Close()
	return store.FenceState(ctx)
}

func printRecovery(w io.Writer, cfg recoverConfig, res cluster.RecoverResult) {
	fmt.Fprintf(w, "recovered %s as %s\n", cfg.DataDir, cfg.ID)
	fmt.Fprintf(w, "old configuration: %s\n", fmtConfiguration(res.Old))
	fmt.Fprintf(w, "new configuration: %s\n", fmtConfiguration(res.New))
	fmt.Fprintf(w, "last index:        %d (term %d), now a snapshot of the recovered state\n", res.LastIndex, res.LastTerm)
	why := ""
	switch {
	case res.Fence != nil && res.NewTerm == res.Fence.Epoch && res.NewTerm > res.Term:
		why = " (the database's fence epoch)"
	case res.NewTerm == cfg.MinTerm && res.NewTerm > res.Term:
		why = " (--min-term)"
	}
	if res.NewTerm > res.Term {
		fmt.Fprintf(w, "term:              raised from %d to %d%s\n", res.Term, res.NewTerm, why)
	} else {
		fmt.Fprintf(w, "term:              %d (kept)\n", res.Term)
	}
	fmt.Fprintf(w, "cluster id:        %s (kept)\n", orDash(res.ClusterID))
	if f := res.Fence; f != nil {
		fence := fmt.Sprintf("owned by %s at epoch %d", orUnowned(f.Owner), f.Epoch)
		if f.Lost {
			fence = "lost"
		}
		fmt.Fprintf(w, "database fence:    %s\n", fence)
	}
	var forgotten []string
	for _, m := range res.Forgotten {
		forgotten = append(forgotten, fmt.Sprintf("%s (raft %s, grpc %s)", m.ID, m.RaftAddr, orDash(m.GRPCAddr)))
	}
	fmt.Fprintf(w, "forgotten members: %s\n", orDash(strings.Join(forgotten, ", ")))
	for _, warn := range res.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	fmt.Fprintln(w, "next: start the replica on this data dir as before (every other voter of the new")
	fmt.Fprintln(w, "configuration recovered alike), then add the lost replicas back with")
	fmt.Fprintln(w, "`committer serve --join` on wiped data dirs.")
}

func fmtConfiguration(c raft.Configuration) string {
	var out []string
	for _, s := range c.Servers {
		item := string(s.ID) + "=" + string(s.Address)
		if s.Suffrage != raft.Voter {
			item += " (" + strings.ToLower(s.Suffrage.String()) + ")"
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return "(empty)"
	}
	return strings.Join(out, ",")
}
