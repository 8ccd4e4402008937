// Package readgate makes leader reads linearizable without writing to the
// Raft log (docs/architecture.md §6, Reads).
//
// A read that arrives at time a may be answered from the leader's state only
// if the node was still the leader at some moment at or after a. The gate
// proves that with a leadership-confirmation round that *started after the
// read arrived*, run by a Verifier whose evidence must itself be produced
// after the round started (the replica's term confirmation; see
// docs/architecture.md §6.4 for why raft.VerifyLeader is not enough). Rounds
// are shared: every read that arrives while a round is in flight waits for
// the next round, which starts as soon as the current one ends and serves
// all of them at once. Joining the round already in flight would be the
// classic stale-read bug, since its evidence may predate the read;
// Gate.WaitJoiningInFlight does exactly that, as a canary the correctness
// harness must catch.
package readgate
