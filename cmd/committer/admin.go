package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/wire"
)

// adminFlags are shared by every operator command.
type adminFlags struct {
	Addr    string
	Timeout time.Duration
	JSON    bool
	TLS     clientTLSFlags
}

func (f *adminFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.Addr, "addr", "127.0.0.1:6882", "gRPC address of any replica")
	cmd.Flags().DurationVar(&f.Timeout, "timeout", 15*time.Second, "deadline for the call")
	cmd.Flags().BoolVar(&f.JSON, "json", false, "print the reply as JSON")
	f.TLS.register(cmd.Flags())
}

// call dials the replica and runs fn with a deadline.
func (f *adminFlags) call(ctx context.Context, fn func(context.Context, adminpb.AdminClient) (proto.Message, error), out io.Writer, human func(io.Writer, proto.Message)) error {
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	var resp proto.Message
	err := f.with(f.Addr, func(c adminpb.AdminClient) (err error) {
		resp, err = fn(ctx, c)
		return err
	})
	if err != nil {
		return err
	}
	return f.print(out, resp, human)
}

// with dials addr with the TLS flags and runs fn on its admin service.
func (f *adminFlags) with(addr string, fn func(adminpb.AdminClient) error) error {
	creds, err := f.TLS.dialOption()
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(addr, append(wire.DialOptions(), creds)...)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", addr, err)
	}
	defer cc.Close()
	return fn(adminpb.NewAdminClient(cc))
}

// print writes resp as JSON or, without --json, as human does.
func (f *adminFlags) print(out io.Writer, resp proto.Message, human func(io.Writer, proto.Message)) error {
	if f.JSON {
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	human(out, resp)
	return nil
}

func newStatusCommand() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a replica's Raft state and the cluster it sees",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c adminpb.AdminClient) (proto.Message, error) {
				return c.Status(ctx, &adminpb.StatusRequest{})
			}, cmd.OutOrStdout(), printStatus)
		},
	}
	f.register(cmd)
	return cmd
}

func printStatus(w io.Writer, m proto.Message) {
	st := m.(*adminpb.StatusResponse)
	fmt.Fprintf(w, "id:            %s\n", st.GetId())
	fmt.Fprintf(w, "state:         %s (ready: %v)\n", st.GetState(), st.GetReady())
	if l := st.GetLeader(); l != nil {
		fmt.Fprintf(w, "leader:        %s (grpc %s)\n", l.GetId(), l.GetGrpcAddr())
	} else {
		fmt.Fprintf(w, "leader:        none known\n")
	}
	fmt.Fprintf(w, "term:          %d\n", st.GetTerm())
	if id := st.GetClusterId(); id != "" {
		fmt.Fprintf(w, "cluster id:    %s\n", id)
	}
	if p := st.GetFenceProblem(); p != "" {
		fmt.Fprintf(w, "CANNOT SERVE:  %s\n", p)
	}
	fmt.Fprintf(w, "commit/applied/last index: %d/%d/%d\n", st.GetCommitIndex(), st.GetAppliedIndex(), st.GetLastLogIndex())
	if d := st.GetLastLeaderContact(); d != nil {
		fmt.Fprintf(w, "last leader contact: %s\n", d.AsDuration().Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	printMembers(w, st.GetMembers())
}

// printMembers prints one line per member. The columns up to LAST CONTACT
// are the original ones; HEALTH, TRAILING and LAST INDEX are the leader's
// autopilot's view, "-" when the answer does not have it.
func printMembers(w io.Writer, members []*adminpb.Member) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUFFRAGE\tLEADER\tRAFT\tGRPC\tHTTP\tLAST CONTACT\tHEALTH\tTRAILING\tLAST INDEX")
	for _, m := range members {
		trailing, last := "-", "-"
		if m.GetHealth() != adminpb.Health_HEALTH_UNSPECIFIED {
			trailing, last = fmt.Sprint(m.GetTrailingLogs()), fmt.Sprint(m.GetLastIndex())
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetId(), suffrage(m.GetSuffrage()), m.GetLeader(),
			m.GetRaftAddr(), orDash(m.GetGrpcAddr()), orDash(m.GetHttpAddr()), contact(m.GetLastContact()),
			health(m), trailing, last)
	}
	tw.Flush()
}

// health is a member's health with how long it has been so, and "dead"
// for a member the leader has not reached for the dead-server threshold.
func health(m *adminpb.Member) string {
	var s string
	switch m.GetHealth() {
	case adminpb.Health_HEALTH_HEALTHY:
		s = "healthy"
	case adminpb.Health_HEALTH_UNHEALTHY:
		s = "unhealthy"
		if m.GetFailed() {
			s = "dead"
		}
	default:
		return "-"
	}
	if since := m.GetHealthSince(); since != nil {
		s += fmt.Sprintf(" (%s)", time.Since(since.AsTime()).Round(time.Second))
	}
	return s
}

// printMemberList prints a ListMembers answer: the members, then the
// cluster's health as the leader's autopilot sees it, and which replica
// answered.
func printMemberList(w io.Writer, resp *adminpb.ListMembersResponse, from string) {
	printMembers(w, resp.GetMembers())
	fmt.Fprintln(w)
	if !resp.GetHealthKnown() {
		fmt.Fprintf(w, "health: not known to %s, which does not lead (only the leader's autopilot assesses members)\n", from)
		return
	}
	state := "healthy"
	if !resp.GetHealthy() {
		state = "NOT healthy"
	}
	leader := from
	for _, m := range resp.GetMembers() {
		if m.GetLeader() {
			leader = fmt.Sprintf("%s (%s)", m.GetId(), orDash(m.GetGrpcAddr()))
		}
	}
	fmt.Fprintf(w, "cluster %s, failure tolerance %d (autopilot of leader %s, assessed %s ago)\n", state, resp.GetFailureTolerance(),
		leader, time.Since(resp.GetAssessedAt().AsTime()).Round(time.Millisecond))
}

func suffrage(s adminpb.Suffrage) string {
	switch s {
	case adminpb.Suffrage_SUFFRAGE_VOTER:
		return "voter"
	case adminpb.Suffrage_SUFFRAGE_NONVOTER:
		return "nonvoter"
	case adminpb.Suffrage_SUFFRAGE_STAGING:
		return "staging"
	}
	return "unknown"
}

func contact(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Millisecond).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newMembersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "members", Short: "List, add or remove replicas"}

	var lf adminFlags
	var local bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the members of the cluster with their health",
		Long: "list prints the Raft configuration as the replica at --addr knows it. Each\n" +
			"member's health (healthy: answering, heard from the leader recently, in its\n" +
			"term and caught up), its last log index and how far it trails the leader are\n" +
			"known to the leader's autopilot only: when --addr is a follower, list asks the\n" +
			"leader it names instead, unless --local is given. A staged member is a\n" +
			"non-voter that the leader promotes once it has been healthy for\n" +
			"--autopilot-server-stabilization-time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), lf.Timeout)
			defer cancel()
			resp, from, err := listMembers(ctx, &lf, local)
			if err != nil {
				return err
			}
			return lf.print(cmd.OutOrStdout(), resp, func(w io.Writer, _ proto.Message) { printMemberList(w, resp, from) })
		},
	}
	lf.register(list)
	list.Flags().BoolVar(&local, "local", false, "print what the replica at --addr knows, without asking the leader for the members' health")

	var af adminFlags
	var req adminpb.AddVoterRequest
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a replica, staged as a non-voter until the leader promotes it (or update its addresses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return af.call(cmd.Context(), func(ctx context.Context, c adminpb.AdminClient) (proto.Message, error) {
				return c.AddVoter(ctx, &req)
			}, cmd.OutOrStdout(), func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "added %s at index %d\n", req.GetId(), m.(*adminpb.AddVoterResponse).GetIndex())
			})
		},
	}
	af.register(add)
	add.Flags().StringVar(&req.Id, "id", "", "replica id (required)")
	add.Flags().StringVar(&req.RaftAddr, "raft-addr", "", "the replica's advertised Raft address (required)")
	add.Flags().StringVar(&req.GrpcAddr, "grpc-addr", "", "the replica's advertised gRPC address")
	add.Flags().StringVar(&req.HttpAddr, "http-addr", "", "the replica's advertised HTTP address")
	_ = add.MarkFlagRequired("id")
	_ = add.MarkFlagRequired("raft-addr")

	var rf adminFlags
	var id string
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove a replica from the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return rf.call(cmd.Context(), func(ctx context.Context, c adminpb.AdminClient) (proto.Message, error) {
				return c.RemoveServer(ctx, &adminpb.RemoveServerRequest{Id: id})
			}, cmd.OutOrStdout(), func(w io.Writer, m proto.Message) {
				fmt.Fprintf(w, "removed %s at index %d\n", id, m.(*adminpb.RemoveServerResponse).GetIndex())
			})
		},
	}
	rf.register(remove)
	remove.Flags().StringVar(&id, "id", "", "replica id (required)")
	_ = remove.MarkFlagRequired("id")

	cmd.AddCommand(list, add, remove)
	return cmd
}

// listMembers asks --addr for the members and, unless local, asks the
// leader it names when --addr does not know the members' health. It
// returns the answer and which replica gave it.
func listMembers(ctx context.Context, f *adminFlags, local bool) (*adminpb.ListMembersResponse, string, error) {
	var resp *adminpb.ListMembersResponse
	err := f.with(f.Addr, func(c adminpb.AdminClient) (err error) {
		resp, err = c.ListMembers(ctx, &adminpb.ListMembersRequest{})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	from := f.Addr
	if resp.GetHealthKnown() || local {
		return resp, from, nil
	}
	for _, m := range resp.GetMembers() {
		if !m.GetLeader() || m.GetGrpcAddr() == "" || m.GetGrpcAddr() == f.Addr {
			continue
		}
		var lresp *adminpb.ListMembersResponse
		err := f.with(m.GetGrpcAddr(), func(c adminpb.AdminClient) (err error) {
			lresp, err = c.ListMembers(ctx, &adminpb.ListMembersRequest{})
			return err
		})
		if err == nil && lresp.GetHealthKnown() {
			return lresp, fmt.Sprintf("%s (%s)", m.GetId(), m.GetGrpcAddr()), nil
		}
	}
	return resp, from, nil
}

func newLeaderCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "leader", Short: "Leadership operations"}
	var f adminFlags
	var to string
	transfer := &cobra.Command{
		Use:   "transfer",
		Short: "Transfer leadership to a named replica, or to the most up-to-date voter",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c adminpb.AdminClient) (proto.Message, error) {
				return c.TransferLeadership(ctx, &adminpb.TransferLeadershipRequest{TargetId: to})
			}, cmd.OutOrStdout(), func(w io.Writer, m proto.Message) {
				r := m.(*adminpb.TransferLeadershipResponse)
				fmt.Fprintf(w, "leader is now %s (grpc %s), term %d\n", r.GetLeader().GetId(), r.GetLeader().GetGrpcAddr(), r.GetTerm())
			})
		},
	}
	f.register(transfer)
	transfer.Flags().StringVar(&to, "to", "", "id of the replica to hand leadership to (empty: any)")
	cmd.AddCommand(transfer)
	return cmd
}

func newFenceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "fence", Short: "The database's fence: which cluster owns it"}
	var f adminFlags
	var force bool
	adopt := &cobra.Command{
		Use:   "adopt",
		Short: "Make this cluster the owner of the database (a takeover)",
		Long: "adopt makes the cluster of the replica at --addr the owner of the database's\n" +
			"fence, at its leader's term. A database belongs to the first cluster that\n" +
			"fenced it; replicas of any other cluster stay not ready and say so in\n" +
			"`committer status`. Taking a database over is an explicit act: without --force\n" +
			"adopt refuses whenever another cluster is recorded as the owner, or the fence\n" +
			"row was lost, because it cannot prove that the other cluster stopped. Stop\n" +
			"every replica of the old cluster first: once adopted, its writes are refused.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c adminpb.AdminClient) (proto.Message, error) {
				return c.AdoptFence(ctx, &adminpb.AdoptFenceRequest{Force: force})
			}, cmd.OutOrStdout(), func(w io.Writer, m proto.Message) {
				r := m.(*adminpb.AdoptFenceResponse)
				before := fmt.Sprintf("owned by %s at epoch %d", orUnowned(r.GetPreviousOwner()), r.GetPreviousEpoch())
				if r.GetPreviousLost() {
					before = "lost"
				}
				fmt.Fprintf(w, "fence was %s; now owned by %s at epoch %d\n", before, orUnowned(r.GetOwner()), r.GetEpoch())
			})
		},
	}
	f.register(adopt)
	adopt.Flags().BoolVar(&force, "force", false, "take the database over although another cluster is recorded as its owner, or its fence was lost")
	cmd.AddCommand(adopt)
	return cmd
}

func orUnowned(owner string) string {
	if owner == "" {
		return "no cluster (unowned)"
	}
	return owner
}
