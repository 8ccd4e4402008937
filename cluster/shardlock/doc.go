// Package shardlock gives the leader per-shard exclusion for writes: a
// write to a shard waits, in arrival order, until every earlier write to
// that shard is decided, and a CompareAndSetMulti holds all of its shards at
// once.
//
// That is what makes a multi-CaS atomic whatever the database's isolation
// level (docs/architecture.md §7.3): the database decides a multi-CaS's
// elements at different moments (a predicate mismatch at the statement's
// snapshot, a conflict wait later, the commit at commit), and under READ
// COMMITTED a single CaS on one of its shards could commit in between, so
// that an observer sees one element's effect and a state that contradicts
// another element's verdict. While no other write can touch any of its
// shards until it is decided, all of its outcomes hold at one point. It is
// also the per-shard FIFO that the write coalescer batches on.
//
// Lock order: shards are acquired in ascending byte order, so two writes
// over overlapping shard sets never wait for each other in a cycle. A
// waiter whose context ends leaves its queues without having held anything.
package shardlock
