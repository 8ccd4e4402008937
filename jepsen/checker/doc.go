// Package checker decides whether a recorded history of the harness is
// correct. It owns the porcupine model of one shard, the conversion of a
// history into per-shard linearizability problems, and the checks that sit
// outside that model: list_keys completeness and phantoms, duplicate commits,
// and durability of acknowledged writes in the final reads after healing.
//
// The verdict is PASS only when every check passed; a linearizability search
// that ran out of time is UNKNOWN, which callers treat as a failure.
//
// Not checked: the atomicity of a multi_cas across shards. Each element is
// checked as an independent cas on its own shard, with the call and return
// times of the whole call, so a multi_cas that committed on one shard and not
// on another is accepted as long as every shard's history is linearizable.
package checker
