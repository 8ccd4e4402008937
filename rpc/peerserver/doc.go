// Package peerserver serves the committer.peer.v1.Peer service: the calls
// replicas of one cluster make on each other, today the term a leader asks
// for to confirm a read (docs/architecture.md §6).
package peerserver
