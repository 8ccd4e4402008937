// Package peer connects a replica to the other replicas of its cluster over
// gRPC: forwarded consensus calls, membership calls and status probes. A
// Dialer implements cluster.PeerDialer and keeps one connection per peer
// address for the replica's lifetime.
//
// It translates the admin service's gRPC statuses into the forwarder's
// determinacy rules (docs/architecture.md §7): a call that never left this
// replica, or that the peer refused before acting, becomes a determinate
// backend error the forwarder may retry elsewhere; anything else passes
// through as the peer reported it.
package peer
