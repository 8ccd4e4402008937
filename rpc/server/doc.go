// Package server serves the persist consensus API (service
// mz_persist_committer.ProtoPersistConsensus) over gRPC in front of any
// backend.Consensus.
//
// It owns request validation (every bad input is answered with a determinate
// invalid-argument error before the backend is called), the translation of
// backend results and errors into response data (operation errors are never
// gRPC statuses), and the assembly of a complete gRPC server with message
// limits, the standard health service and server reflection.
package server
