package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// reflect sends one reflection request on a fresh stream and returns the
// answer.
func reflect(t *testing.T, cc *grpc.ClientConn, req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("reflection stream: %v", err)
	}
	if err := stream.Send(req); err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection recv: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("reflection close: %v", err)
	}
	return resp
}

func listServices(t *testing.T, cc *grpc.ClientConn) []string {
	t.Helper()
	resp := reflect(t, cc, &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	})
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	slices.Sort(names)
	return names
}

// describeService resolves a service through reflection and returns its
// method names with their request and response types.
func describeService(t *testing.T, cc *grpc.ClientConn, name string) []string {
	t.Helper()
	resp := reflect(t, cc, &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: name},
	})
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) == 0 {
		t.Fatalf("reflection knows no file for %s: %v", name, resp.GetErrorResponse())
	}
	for _, raw := range files {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fd); err != nil {
			t.Fatalf("file descriptor: %v", err)
		}
		for _, svc := range fd.GetService() {
			if fd.GetPackage()+"."+svc.GetName() != name {
				continue
			}
			var methods []string
			for _, m := range svc.GetMethod() {
				methods = append(methods, m.GetName()+"("+m.GetInputType()+") "+m.GetOutputType())
			}
			return methods
		}
	}
	t.Fatalf("service %s is not in the files reflection returned", name)
	return nil
}

func TestReflectionListsAndDescribesServices(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	cc := dialRaw(t, srv.Addr)

	want := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"mz_persist_committer.ProtoPersistConsensus",
	}
	if got := listServices(t, cc); !slices.Equal(got, want) {
		t.Errorf("services = %q, want %q", got, want)
	}
	wantMethods := []string{
		"Head(.mz_persist_committer.ProtoHeadRequest) .mz_persist_committer.ProtoHeadResponse",
		"Scan(.mz_persist_committer.ProtoScanRequest) .mz_persist_committer.ProtoScanResponse",
		"CompareAndSet(.mz_persist_committer.ProtoCompareAndSetRequest) .mz_persist_committer.ProtoCompareAndSetResponse",
		"Truncate(.mz_persist_committer.ProtoTruncateRequest) .mz_persist_committer.ProtoTruncateResponse",
		"ListKeys(.mz_persist_committer.ProtoListKeysRequest) .mz_persist_committer.ProtoListKeysResponse",
		"CompareAndSetMulti(.mz_persist_committer.ProtoCompareAndSetMultiRequest) .mz_persist_committer.ProtoCompareAndSetMultiResponse",
	}
	if got := describeService(t, cc, server.ConsensusServiceName); !slices.Equal(got, wantMethods) {
		t.Errorf("consensus methods = %q, want %q", got, wantMethods)
	}
}

// TestReflectionListsAdminWhenRegistered checks that a service registered on
// GRPC() before serving (as a replica registers Admin) is listed and
// described next to the consensus service.
func TestReflectionListsAdminWhenRegistered(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	built := server.New(store, server.Config{Logger: quietLogger()})
	adminpb.RegisterAdminServer(built.GRPC(), adminpb.UnimplementedAdminServer{})
	srv := rpctest.StartWith(t, built)
	cc := dialRaw(t, srv.Addr)

	want := []string{
		"committer.admin.v1.Admin",
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"mz_persist_committer.ProtoPersistConsensus",
	}
	if got := listServices(t, cc); !slices.Equal(got, want) {
		t.Errorf("services = %q, want %q", got, want)
	}
	wantMethods := []string{
		"Status(.committer.admin.v1.StatusRequest) .committer.admin.v1.StatusResponse",
		"ListMembers(.committer.admin.v1.ListMembersRequest) .committer.admin.v1.ListMembersResponse",
		"AddVoter(.committer.admin.v1.AddVoterRequest) .committer.admin.v1.AddVoterResponse",
		"RemoveServer(.committer.admin.v1.RemoveServerRequest) .committer.admin.v1.RemoveServerResponse",
		"TransferLeadership(.committer.admin.v1.TransferLeadershipRequest) .committer.admin.v1.TransferLeadershipResponse",
		"AdoptFence(.committer.admin.v1.AdoptFenceRequest) .committer.admin.v1.AdoptFenceResponse",
	}
	if got := describeService(t, cc, "committer.admin.v1.Admin"); !slices.Equal(got, wantMethods) {
		t.Errorf("admin methods = %q, want %q", got, wantMethods)
	}
}

func TestHealthServingThenNotServingOnShutdown(t *testing.T) {
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	health := healthpb.NewHealthClient(dialRaw(t, srv.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, svc := range []string{"", server.ConsensusServiceName} {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v, want SERVING", svc, resp.GetStatus())
		}
	}

	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: server.ConsensusServiceName})
	if err != nil {
		t.Fatalf("health watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch update = %v, %v; want SERVING", resp.GetStatus(), err)
	}
	// The open watch keeps the drain from completing, so Shutdown waits out
	// its deadline; meanwhile the watcher must learn the server is going.
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShutdown()
	drained := make(chan bool, 1)
	go func() { drained <- srv.Shutdown(shutdownCtx) }()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch update after shutdown = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	if <-drained {
		t.Errorf("Shutdown reported a complete drain while a watch stream was open")
	}
}
