// Package nemesis plans and injects faults: which fault, when and against
// whom is planned from a seed (Plan), so a run's schedule can be replayed;
// the Runner resolves roles (leader, follower, minority) against the live
// cluster, injects each fault, holds it, heals it, and records its start
// and end in the history (process -1, f "nemesis": invoke when the fault
// starts, ok when it has healed, with the fault's name and targets).
//
// Faults: SIGKILL and restart (leader, follower, minority); SIGSTOP and
// SIGCONT for longer than an election timeout (leader, follower); network
// partitions by address (isolated leader, majority/minority halves, a ring
// of overlapping majorities and a bridge on five nodes, one-way loss of the
// leader's outbound traffic); random packet loss; a slow network; membership
// changes (remove and re-add a voter, replace a replica with a wiped one
// under a new id); leadership transfer; backend faults (terminating every
// PostgreSQL session, restarting PostgreSQL). Faults alternate with quiet
// periods and never overlap; HealAll undoes whatever is left before the
// final reads.
package nemesis
