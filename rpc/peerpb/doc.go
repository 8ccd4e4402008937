// Package peerpb holds the Go bindings of rpc/proto/committer/peer/v1: the
// calls replicas of one cluster make on each other (read confirmation). The
// *.pb.go files are produced by `make proto` and checked by
// `make proto-check`; edit the .proto file, never them.
package peerpb
