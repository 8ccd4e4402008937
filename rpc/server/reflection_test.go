package server_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
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

// A server built without a readiness source (server.New alone, as rpctest
// serves a bare store) serves whenever it runs: the whole server and the
// consensus service are SERVING at once, until Shutdown.
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

// readiness is a hand-driven readiness source for FollowReadiness.
type readiness struct {
	mu      sync.Mutex
	ready   bool
	changed chan struct{}
}

func newReadiness() *readiness { return &readiness{changed: make(chan struct{})} }

func (r *readiness) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}

func (r *readiness) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *readiness) set(ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready = ready
	close(r.changed)
	r.changed = make(chan struct{})
}

// watch opens a health Watch stream on service.
func watch(ctx context.Context, t *testing.T, health healthpb.HealthClient, service string) healthpb.Health_WatchClient {
	t.Helper()
	w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("watch %q: %v", service, err)
	}
	return w
}

func next(t *testing.T, w healthpb.Health_WatchClient, service string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	resp, err := w.Recv()
	if err != nil || resp.GetStatus() != want {
		t.Fatalf("watch %q: next update = %v, %v; want %v", service, resp.GetStatus(), err, want)
	}
}

func check(ctx context.Context, t *testing.T, health healthpb.HealthClient, want map[string]healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for svc, st := range want {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != st {
			t.Errorf("health of %q = %v, %v; want %v", svc, resp.GetStatus(), err, st)
		}
	}
}

// With a readiness source, the whole server and the consensus service
// follow it, on Check and on Watch streams, from before the first
// connection; a service set apart (as a replica sets Admin) keeps its own
// status; Shutdown turns everything NOT_SERVING for good.
func TestHealthFollowsReadiness(t *testing.T) {
	const (
		serving    = healthpb.HealthCheckResponse_SERVING
		notServing = healthpb.HealthCheckResponse_NOT_SERVING
		admin      = "committer.admin.v1.Admin"
	)
	store := rpctest.OpenBolt(t, bolt.Options{Logger: quietLogger()})
	built := server.New(store, server.Config{Logger: quietLogger()})
	adminpb.RegisterAdminServer(built.GRPC(), adminpb.UnimplementedAdminServer{})
	built.SetServing(admin, true)
	src := newReadiness()
	followCtx, stopFollowing := context.WithCancel(context.Background())
	defer stopFollowing()
	done := built.FollowReadiness(followCtx, src.Ready, src.Changed)
	// Set before FollowReadiness returned, with no server running yet.
	for _, svc := range []string{"", server.ConsensusServiceName} {
		if resp, err := built.Health().Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc}); err != nil || resp.GetStatus() != notServing {
			t.Fatalf("health of %q right after FollowReadiness = %v, %v; want NOT_SERVING", svc, resp.GetStatus(), err)
		}
	}
	srv := rpctest.StartWith(t, built)
	health := healthpb.NewHealthClient(dialRaw(t, srv.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	check(ctx, t, health, map[string]healthpb.HealthCheckResponse_ServingStatus{"": notServing, server.ConsensusServiceName: notServing, admin: serving})
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Errorf("health of an unknown service: %v; want NotFound", err)
	}
	whole, consensus, adm := watch(ctx, t, health, ""), watch(ctx, t, health, server.ConsensusServiceName), watch(ctx, t, health, admin)
	next(t, whole, "", notServing)
	next(t, consensus, server.ConsensusServiceName, notServing)
	next(t, adm, admin, serving)

	for _, ready := range []bool{true, false, true} {
		src.set(ready)
		want := notServing
		if ready {
			want = serving
		}
		next(t, whole, "", want)
		next(t, consensus, server.ConsensusServiceName, want)
		check(ctx, t, health, map[string]healthpb.HealthCheckResponse_ServingStatus{"": want, server.ConsensusServiceName: want, admin: serving})
	}

	// Shutdown first reports NOT_SERVING everywhere; the open watches keep
	// the drain from completing meanwhile.
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelShutdown()
	drained := make(chan bool, 1)
	go func() { drained <- srv.Shutdown(shutdownCtx) }()
	next(t, whole, "", notServing)
	next(t, consensus, server.ConsensusServiceName, notServing)
	next(t, adm, admin, notServing)
	<-drained
	// Readiness coming back after Shutdown changes nothing.
	src.set(false)
	src.set(true)
	stopFollowing()
	<-done
	for _, svc := range []string{"", server.ConsensusServiceName, admin} {
		if resp, err := built.Health().Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc}); err != nil || resp.GetStatus() != notServing {
			t.Errorf("health of %q after Shutdown = %v, %v; want NOT_SERVING", svc, resp.GetStatus(), err)
		}
	}
}
