package peerserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hacommit/committer/cluster"
	pb "github.com/hacommit/committer/rpc/peerpb"
)

// Replica is what the peer service needs from a replica.
type Replica interface {
	// CurrentTerm is the replica's current Raft term.
	CurrentTerm() uint64
	// ServerStats is the replica's view of its Raft log.
	ServerStats() cluster.ServerStats
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

// ServerStats answers with the replica's view of its Raft log as of the
// moment the request is handled.
func (s *Server) ServerStats(context.Context, *pb.ServerStatsRequest) (*pb.ServerStatsResponse, error) {
	st := s.replica.ServerStats()
	resp := &pb.ServerStatsResponse{Id: st.ID, LastTerm: st.LastTerm, LastIndex: st.LastIndex}
	if st.LastContact >= 0 {
		resp.LastContact = durationpb.New(st.LastContact)
	}
	return resp, nil
}
