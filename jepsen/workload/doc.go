// Package workload drives the system under test through the Go client and
// records every operation in the history: per-key register traffic (head,
// compare-and-set with unique data, scan, truncate, list_keys and multi-key
// compare-and-set) from concurrent workers.
//
// Workers come in groups that share one key at a time, so that at most a
// group's few workers race on a key (multi-key writes aside) and the
// linearizability search per key stays small; a group moves to a fresh key
// after a number of operations or of indeterminate writes. In each group
// one worker uses the routing client (it follows the leader a replica names)
// and the others are pinned to one replica each, one of them only
// reading heads: clients pinned to a deposed leader or to a follower are what
// exposes stale reads and unfenced writes.
//
// A worker whose operation ends indeterminate (an error that may have taken
// effect, or a timeout) records it as info, continues as a new process (the
// old one may still be in flight) and reads before it writes again. At the
// end, Final reads every key ever used (a full scan and a head each, then
// list_keys) so that the checker sees the final state.
package workload
