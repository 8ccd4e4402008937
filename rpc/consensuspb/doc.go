// Package consensuspb holds the Go bindings of rpc/proto/mz_persist_committer:
// the persist consensus wire API (service ProtoPersistConsensus). The *.pb.go
// files are produced by `make proto` and checked by `make proto-check`; edit
// the .proto file, never them.
package consensuspb
