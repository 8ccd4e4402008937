// Package wire owns what the consensus gRPC server and client must agree on
// beyond the .proto file: message size limits, metadata keys, the
// machine-readable error codes of ProtoOperationError, and the translation
// between backend values and errors and their protobuf form.
package wire
