// Package adminserver serves the committer.admin.v1.Admin gRPC service over a
// replica: status, membership and leadership transfer. The replica decides
// where a call runs (a follower hands mutations to the leader); this package
// only translates between the wire and the replica's Go API.
package adminserver
