package main

import (
	"github.com/spf13/cobra"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "COMMITTER_"

func newRootCommand() *cobra.Command {
	var logCfg logConfig
	root := &cobra.Command{
		Use:   "committer",
		Short: "Highly-available persist consensus service",
		Long: "committer serves Materialize's persist consensus API over gRPC in front of\n" +
			"PostgreSQL, CockroachDB or an embedded bbolt file.\n\n" +
			"Every flag has an environment variable: COMMITTER_ and the flag name in\n" +
			"upper case with dashes as underscores (--grpc-addr: COMMITTER_GRPC_ADDR).\n" +
			"A flag on the command line wins over its variable.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	logCfg.register(root.PersistentFlags())
	root.AddCommand(newServeCommand(&logCfg), newDevCommand(&logCfg), newStatusCommand(), newMembersCommand(), newLeaderCommand(), newFenceCommand(), newBenchCommand(), newRecoverCommand(&logCfg), newVersionCommand(), newProbeCommand(), newDocsCommand())
	documentEnv(root)
	return root
}
