// Package checker decides whether a recorded history of the harness is
// correct. It owns the porcupine model of the shards, the conversion of a
// history into linearizability problems, and the checks that sit outside
// that model: list_keys completeness and phantoms, duplicate commits, and
// durability of acknowledged writes in the final reads after healing.
//
// A multi_cas is atomic: all its outcomes hold at one point in time. Keys
// that multi_cas operations link (transitively) are therefore checked
// together, in one partition whose state is that of all its keys and in
// which a multi_cas is one step: its element verdicts are read off the
// state at that point and its committed elements applied together. Every
// other key is a partition of its own. Linked keys are first checked one
// by one, each multi_cas cut into independent elements, which finds any
// anomaly of a single key quickly; the partition is searched whole only if
// they all pass. A linked partition too large for one search (the
// workload's key rotation links every key of a long run) is searched
// instead on the key set of each multi_cas, which still finds a multi_cas
// that was not atomic against the other operations on its own keys; a note
// in the result says so.
//
// The verdict is PASS only when every check passed; a linearizability search
// that ran out of time is UNKNOWN, which callers treat as a failure.
package checker
