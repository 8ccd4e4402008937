package peerserver

import (
	"context"

	"google.golang.org/grpc"

	pb "github.com/hacommit/committer/rpc/peerpb"
)

// Replica is what the peer service needs from a replica.
type Replica interface {
	// CurrentTerm is the replica's current Raft term.
	CurrentTerm() uint64
}

// Server implements pb.PeerServer.
type Server struct {
	pb.UnimplementedPeerServer
	replica Replica
}

// Register adds the Peer service to s.
func Register(s *grpc.Server, r Replica) {
	pb.RegisterPeerServer(s, &Server{replica: r})
}

// CurrentTerm answers with the replica's term as of the moment the request
// is handled, which is after the asking leader sent it.
func (s *Server) CurrentTerm(context.Context, *pb.CurrentTermRequest) (*pb.CurrentTermResponse, error) {
	return &pb.CurrentTermResponse{Term: s.replica.CurrentTerm()}, nil
}
