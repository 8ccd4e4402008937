// Package coalesce batches a leader's writes into few backend transactions
// (docs/architecture.md §7.3).
//
// A Coalescer sits between the leader's cache and the backend bound to the
// term's epoch. Compare-and-sets and multi-CaS calls queue as members of
// the next batch; while a batch is in flight the next one fills, and it is
// sent the moment a batch slot frees, so a lone writer pays no wait and
// writers that arrive together share one transaction, one fence read and one
// commit. There is no timer on the hot path.
//
// The rules that keep this linearizable:
//
//   - A batch holds distinct shards. The per-shard FIFO above the cache
//     (package shardlock) already admits one write per shard at a time; the
//     coalescer also never puts two members on one shard into one batch,
//     whoever calls it.
//   - A batch is one backend call, CompareAndSetMulti over every member's
//     operations: one transaction, so every member's outcome holds at its
//     commit, and a multi-CaS member stays atomic.
//   - A batch that fails gives every member the batch's error, with its
//     determinacy: indeterminate for all (the transaction may have
//     committed), fenced for all, determinate retryable for all after
//     serialization failures.
//   - A member whose context ends while it waits to be sent leaves the queue
//     and gets a determinate error (nothing was sent); one whose context
//     ends while its batch is in flight gets an indeterminate one.
//   - A batch already sent when leadership is lost runs to its end: its
//     answer is the backend's, and the fence orders it before the next
//     leader's reads.
//
// Truncates pass through unbatched: they are rare, the shard lock above
// orders them with the shard's writes, and each keeps its own error
// (truncate above the head) that a shared transaction would turn into the
// batch's.
package coalesce
