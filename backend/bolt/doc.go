// Package bolt is the embedded storage backend: persist consensus in one
// bbolt file, durable across restarts, for a single process.
//
// Layout: bucket "shards" holds one nested bucket per shard, keyed by the
// 8-byte big-endian seqno so that bbolt's key order is seqno order; bucket
// "meta" holds the fence epoch and the file format version.
//
// Writes (CaS, multi-CaS, truncate, fence) go through one commit loop that
// applies every write waiting at that moment in a single bbolt transaction,
// so concurrent writers share an fsync without waiting for a timer. Each write
// reads the fence epoch inside the transaction that writes, so no Fence can
// fall between the check and the write. Reads run in their own read-only
// transactions, concurrently with the commit loop.
package bolt
