// Package jepsen is committer's black-box correctness harness: it runs the
// real committer binary as OS processes with a real PostgreSQL inside a
// private network namespace, injects faults, drives a workload through the
// Go client, records a history, and checks it for linearizability.
//
// Sub-packages: history (the recorded operations), control (namespace,
// processes, PostgreSQL), nemesis (faults), workload (clients), checker
// (porcupine models and other checks) and report (summary, plots, verdict).
package jepsen
