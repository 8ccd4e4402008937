// Package proctest runs a committer cluster as real OS processes for fault
// tests: every replica is the `committer serve` binary on 127.0.0.1 with its
// own ports and data dir, all fronting one PostgreSQL database.
//
// It owns a test's cluster: picking free ports, starting replicas
// (bootstrap, join, restart on the same data dir), the faults a test
// inflicts on them (SIGKILL, SIGTERM, SIGSTOP and SIGCONT, wiping a data
// dir), finding the ready leader, and clients that reach the cluster through
// any subset of replicas or pinned to one. The processes themselves are run
// by package replicaproc, as the correctness harness runs them. Each
// process logs to a file in the test's temporary directory; when a test
// fails, the tail of every log is written to the test log. Every process is
// killed when the test ends, and dies with the test binary (parent-death
// signal) if that ends first.
//
// A typical test:
//
//	c := proctest.Start(t, proctest.Options{Binary: bin, Backend: url})
//	leader, err := c.Leader(ctx)
//	...
//	err = leader.Kill()
package proctest
