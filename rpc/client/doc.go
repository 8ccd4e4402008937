// Package client is the Go client of the persist consensus gRPC API: a
// backend.Consensus whose every call goes over the wire to one of several
// committer endpoints.
//
// It owns endpoint choice (sticking to the endpoint that last answered,
// following the leader a replica names in its response header), retries of
// what is provably safe to retry, and the mapping of results back into the
// backend error model: operation errors keep their determinacy and match the
// backend sentinels with errors.Is; a failed transport is indeterminate once
// the request may have left the client.
//
// Retries: reads (Head, Scan, ListKeys) are retried on any failure but an
// invalid request, with backoff and rotating endpoints. Writes (CompareAndSet,
// CompareAndSetMulti, Truncate) are retried only when the request certainly
// did not reach a backend: the connection could not be established, or a
// replica answered a determinate not_leader or unavailable. A write whose
// outcome is unknown is returned to the caller as indeterminate, never
// retried.
package client
