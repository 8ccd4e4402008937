package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/metrics"
)

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, source revision and Go version of this build",
		Long: "version prints what the committer_build_info metric of a running replica\n" +
			"says: the release (git describe) or module version, the source revision and\n" +
			"the Go toolchain that built the binary. `make build` links the first two in\n" +
			"from git; without them they come from the Go toolchain or read \"unknown\".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(cmd, metrics.Build(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: version, revision, go_version")
	return cmd
}

func printVersion(cmd *cobra.Command, b metrics.BuildInfo, asJSON bool) error {
	out := cmd.OutOrStdout()
	if asJSON {
		return json.NewEncoder(out).Encode(b)
	}
	_, err := fmt.Fprintf(out, "committer %s (revision %s, %s)\n", b.Version, b.Revision, b.GoVersion)
	return err
}
