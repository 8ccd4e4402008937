// Package bench drives closed-loop load against consensus targets and
// reports throughput and latency side by side (committer bench,
// docs/benchmarks.md).
//
// A target is anything that implements backend.Consensus: a committer
// cluster through the Go client, PostgreSQL driven directly with the
// single-statement SQL persist itself uses (Direct), or a bare in-memory
// store behind the same gRPC server (Memory), the ceiling of the transport.
// Rounds run the targets interleaved (A B A B ...) so that the machine's
// drift affects them alike; a figure is the median over rounds.
package bench
