// Package control runs the system under test for the harness: one
// PostgreSQL server and N committer replicas as OS processes of the real
// binary, each on its own loopback address inside the harness's network
// namespace (package netns).
//
// It owns the processes' lifecycle (start, graceful stop, SIGKILL,
// SIGSTOP/SIGCONT, data-dir wipe, replacement under a new replica id) through
// package cluster/replicaproc, which the multi-process tests share; their
// logs (one file per node under <out>/nodes), the operator calls the harness
// makes through the Admin service (status, membership, leadership transfer),
// leader discovery, the count of elections seen while polling, and the
// backend faults (terminating PostgreSQL sessions, restarting the server).
//
// A node is a slot with a fixed address: node i (n1, n2, ...) listens on
// 127.0.0.(10+i), gRPC on 6882, Raft on 6883, HTTP on 6884. The replica id
// in a slot is n<i> at first and changes when the slot is replaced with a
// wiped data directory (n<i>-r1, n<i>-r2, ...). PostgreSQL listens on
// 127.0.0.2:5432.
package control
