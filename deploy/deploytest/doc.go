// Package deploytest runs the command lines that the deployment artifacts
// under deploy/ spell out (a StatefulSet's container, compose services, a
// systemd unit) as real committer processes against a real PostgreSQL, and
// checks that they form a cluster that serves.
//
// A test package owns one Env from TestMain (RunMain): the committer binary,
// built once without cgo as the container image builds it, and one
// PostgreSQL server. Each test then asks for a fresh database, picks a block
// of loopback addresses (Loopback), one per pod, container or VM, so that the
// manifests' fixed ports stay as written, and starts the nodes (Start). The
// only rewriting a test does is the one a platform does: names to addresses,
// paths to directories, secrets to values.
package deploytest
