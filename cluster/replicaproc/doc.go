// Package replicaproc controls the real committer binary as OS processes:
// the one process layer under the multi-process tests (cluster/proctest) and
// the correctness harness (jepsen/control).
//
// It owns building the binary (Build), the typed `committer serve` command
// line (ServeArgs), and a replica's process life (Replica): start, wait for
// /healthz, SIGKILL, SIGTERM with a grace period, SIGSTOP and SIGCONT,
// restart on the same data dir, the /readyz probe, and the log file that
// collects every run's output. Pause returns only once every thread of the
// process is stopped (read from /proc on Linux): kill(SIGSTOP) returns
// before that, and a "paused" replica whose other threads still run can
// serve a request sent after the signal, so a fault timed from the signal
// would be timed from before the replica stopped.
//
// Every process dies with its parent (a parent-death signal on Linux).
// Nothing here knows about PostgreSQL, Raft or the harness's network
// namespace; callers decide the arguments.
package replicaproc
