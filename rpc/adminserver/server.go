package adminserver

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster"
	"github.com/hacommit/committer/fsm"
	pb "github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/wire"
)

// Replica is what the admin service needs from a replica.
type Replica interface {
	Status(ctx context.Context, probe bool) (cluster.Status, error)
	Members() ([]cluster.MemberStatus, uint64, error)
	// Health is the leader's autopilot's latest assessment; ok only on
	// the leader once it has made one.
	Health() (h cluster.ClusterHealth, ok bool)
	AddVoter(ctx context.Context, m fsm.Member) (uint64, error)
	RemoveServer(ctx context.Context, id string) (uint64, error)
	TransferLeadership(ctx context.Context, target string) (fsm.Member, uint64, error)
	AdoptFence(ctx context.Context, force bool) (cluster.FenceChange, error)
}

// Server implements pb.AdminServer.
type Server struct {
	pb.UnimplementedAdminServer
	replica Replica
}

// Register adds the Admin service to s.
func Register(s *grpc.Server, r Replica) {
	pb.RegisterAdminServer(s, &Server{replica: r})
}

// Status describes the answering replica.
func (s *Server) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := s.replica.Status(ctx, true)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.StatusResponse{
		Id:                st.ID,
		State:             raftState(st.State),
		Term:              st.Term,
		CommitIndex:       st.CommitIndex,
		AppliedIndex:      st.AppliedIndex,
		LastLogIndex:      st.LastLogIndex,
		Ready:             st.Ready,
		LastLeaderContact: duration(st.LastLeaderContact),
		ClusterId:         st.ClusterID,
		FenceProblem:      st.FenceProblem,
	}
	if st.Leader != nil {
		resp.Leader = &pb.Member{Id: st.Leader.ID, RaftAddr: st.Leader.RaftAddr, GrpcAddr: st.Leader.GRPCAddr, HttpAddr: st.Leader.HTTPAddr, Leader: true, Suffrage: pb.Suffrage_SUFFRAGE_VOTER}
	}
	for _, m := range st.Members {
		resp.Members = append(resp.Members, member(m))
	}
	return resp, nil
}

// ListMembers returns the configuration as this replica knows it, with
// each member's health when this replica leads: a follower does not know
// it, and says so (health_known unset) rather than forwarding, so that each
// replica's own view of the configuration stays observable; `committer
// members list` asks the leader then (docs/architecture.md §8.1).
func (s *Server) ListMembers(ctx context.Context, _ *pb.ListMembersRequest) (*pb.ListMembersResponse, error) {
	ms, index, err := s.replica.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListMembersResponse{ConfigurationIndex: index}
	h, known := s.replica.Health()
	if known {
		resp.HealthKnown, resp.Healthy, resp.FailureTolerance = true, h.Healthy, int32(h.FailureTolerance)
		resp.AssessedAt = timestamppb.New(h.At)
	}
	for _, m := range ms {
		pm := member(m)
		if mh, ok := h.Members[m.ID]; known && ok {
			pm.Health = pb.Health_HEALTH_UNHEALTHY
			if mh.Healthy {
				pm.Health = pb.Health_HEALTH_HEALTHY
			}
			pm.HealthSince = timestamppb.New(mh.Since)
			pm.LastContact = duration(mh.LastContact)
			pm.LastTerm, pm.LastIndex, pm.TrailingLogs, pm.Failed = mh.LastTerm, mh.LastIndex, mh.TrailingLogs, mh.Failed
		}
		resp.Members = append(resp.Members, pm)
	}
	return resp, nil
}

// AddVoter adds or updates a voter.
func (s *Server) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	idx, err := s.replica.AddVoter(ctx, fsm.Member{ID: req.GetId(), RaftAddr: req.GetRaftAddr(), GRPCAddr: req.GetGrpcAddr(), HTTPAddr: req.GetHttpAddr()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.AddVoterResponse{Index: idx}, nil
}

// RemoveServer removes a member.
func (s *Server) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	idx, err := s.replica.RemoveServer(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RemoveServerResponse{Index: idx}, nil
}

// TransferLeadership moves leadership.
func (s *Server) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	m, term, err := s.replica.TransferLeadership(ctx, req.GetTargetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.TransferLeadershipResponse{
		Leader: &pb.Member{Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr, HttpAddr: m.HTTPAddr, Leader: true, Suffrage: pb.Suffrage_SUFFRAGE_VOTER},
		Term:   term,
	}, nil
}

// AdoptFence takes the database over for the cluster.
func (s *Server) AdoptFence(ctx context.Context, req *pb.AdoptFenceRequest) (*pb.AdoptFenceResponse, error) {
	ch, err := s.replica.AdoptFence(ctx, req.GetForce())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.AdoptFenceResponse{
		PreviousOwner: ch.Before.Owner, PreviousEpoch: ch.Before.Epoch, PreviousLost: ch.Before.Lost,
		Owner: ch.Owner, Epoch: ch.Epoch,
	}, nil
}

func member(m cluster.MemberStatus) *pb.Member {
	// Every non-voter is a staged member: it joined as one, and the
	// leader's autopilot promotes it once it has caught up and stayed
	// healthy (docs/architecture.md §8.1).
	suffrage := pb.Suffrage_SUFFRAGE_STAGING
	if m.Voter {
		suffrage = pb.Suffrage_SUFFRAGE_VOTER
	}
	return &pb.Member{
		Id: m.ID, RaftAddr: m.RaftAddr, GrpcAddr: m.GRPCAddr, HttpAddr: m.HTTPAddr,
		Suffrage: suffrage, Leader: m.Leader, LastContact: duration(m.LastContact),
	}
}

func duration(d time.Duration) *durationpb.Duration {
	if d < 0 {
		return nil
	}
	return durationpb.New(d)
}

func raftState(s raft.RaftState) pb.RaftState {
	switch s {
	case raft.Follower:
		return pb.RaftState_RAFT_STATE_FOLLOWER
	case raft.Candidate:
		return pb.RaftState_RAFT_STATE_CANDIDATE
	case raft.Leader:
		return pb.RaftState_RAFT_STATE_LEADER
	case raft.Shutdown:
		return pb.RaftState_RAFT_STATE_SHUTDOWN
	}
	return pb.RaftState_RAFT_STATE_UNSPECIFIED
}

// toStatus maps replica errors onto the gRPC codes the admin proto documents.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err // a forwarded call's status passes through unchanged
	}
	if (errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress)) && !backend.IsDeterminate(err) {
		// Raft refused before appending anything: not the leader, or a
		// leadership transfer is under way.
		err = backend.Determinatef("%w: %w", backend.ErrNotLeader, err)
	}
	if refused := wire.AdminRefusal(err); refused != nil {
		// Nothing was done: a forwarding replica may try the leader again.
		return refused
	}
	switch {
	case errors.Is(err, cluster.ErrInvalidMember):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, cluster.ErrUnknownMember):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, raft.ErrLeadershipLost):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.FailedPrecondition, err.Error())
}
