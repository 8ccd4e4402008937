// Command jepsen is committer's correctness harness runner: `jepsen run`
// starts PostgreSQL and a committer cluster inside a private network
// namespace, drives a workload while injecting faults, checks the recorded
// history for linearizability and writes a report. See docs/jepsen.md.
//
// The last line it prints is the verdict (VERDICT: PASS, FAIL or UNKNOWN);
// the exit code is 0 for PASS, 1 for FAIL, and 2 for UNKNOWN or when the
// run could not be carried out (not root, nft missing, setup failure).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitPass  = 0
	exitFail  = 1
	exitOther = 2 // UNKNOWN, or the run could not be carried out
)

func main() {
	code := exitOther
	root := &cobra.Command{
		Use:           "jepsen",
		Short:         "Correctness harness for committer",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(&code), newCampaignCommand(&code))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		os.Exit(exitOther)
	}
	os.Exit(code)
}
