// Package peerserver serves the committer.peer.v1.Peer service: the calls
// replicas of one cluster make on each other: the term a leader asks for to
// confirm a read (docs/architecture.md §6), and the relay stream that
// carries the consensus calls a follower forwards (§7.1).
package peerserver
