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
	relay   *relay // nil: Relay is refused
}

// Register adds the Peer service to s. Relay streams carry calls of
// relayed, if given.
func Register(s *grpc.Server, r Replica, relayed *Relayed) *Server {
	srv := &Server{replica: r}
	if relayed != nil {
		srv.relay = newRelay(*relayed)
	}
	pb.RegisterPeerServer(s, srv)
	return srv
}

// Drain tells every Relay stream's sender to stop sending on it, before a
// graceful stop of the gRPC server, which would otherwise wait for those
// streams to end on their own.
func (s *Server) Drain() {
	if s.relay != nil {
		s.relay.drain()
	}
}

// CurrentTerm answers with the replica's term as of the moment the request
// is handled, which is after the asking leader sent it.
func (s *Server) CurrentTerm(context.Context, *pb.CurrentTermRequest) (*pb.CurrentTermResponse, error) {
	return &pb.CurrentTermResponse{Term: s.replica.CurrentTerm()}, nil
}
