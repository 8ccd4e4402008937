// Package report turns a checked run into its artifacts: the history as JSON
// lines, a summary (JSON and text) of operations, faults and the checker's
// findings, a timeline plot of throughput and latency with the fault windows,
// porcupine's linearizability visualization, an index page tying them
// together, and the verdict line and exit code the harness ends with.
package report
