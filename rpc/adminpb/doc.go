// Package adminpb holds the Go bindings of rpc/proto/committer/admin/v1: the
// operator service (status, membership, leadership). The *.pb.go files are
// produced by `make proto` and checked by `make proto-check`; edit the .proto
// file, never them.
package adminpb
