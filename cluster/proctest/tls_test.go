package proctest_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/internal/freeport"
	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/peerpb"
	"github.com/hacommit/committer/rpc/wire"
)

// clientIdentity may call the consensus API of the TLS test clusters but is
// no admin.
const clientIdentity = "persist"

func startTLSCluster(t *testing.T) *proctest.Cluster {
	t.Helper()
	return startCluster(t, proctest.Options{TLS: &proctest.TLSOptions{
		AdminIdentities:  []string{proctest.AdminIdentity},
		ClientIdentities: []string{proctest.AdminIdentity, clientIdentity},
	}})
}

// tlsClient is a client that presents a certificate with common name cn,
// signed by ca, and trusts the cluster's client CA.
func tlsClient(t *testing.T, c *proctest.Cluster, ca *certgen.CA, cn string, rs ...*proctest.Replica) *client.Client {
	t.Helper()
	certs := c.TLS()
	f, err := ca.WriteLeaf(t.TempDir(), "client", certgen.Leaf{CommonName: cn, Client: true})
	must(t, err)
	f.CA = certs.ClientCAFile
	cfg, err := tlsconfig.Client(f, "")
	must(t, err)
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.GRPCAddr())
	}
	cl, err := client.New(addrs, client.WithTLS(cfg), client.WithCallTimeout(3*time.Second), client.WithMaxAttempts(1))
	must(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// grpcConn dials r with the given TLS configuration (nil: plaintext is not
// offered here; use client.New for that).
func grpcConn(t *testing.T, r *proctest.Replica, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(r.GRPCAddr(), append(wire.DialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	must(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// cli runs the committer binary and returns its standard output.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(committerBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("committer %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// tlsArgs are the client TLS flags of the cluster's admin identity.
func tlsArgs(c *proctest.Cluster) []string {
	a := c.TLS().Admin
	return []string{"--cacert", a.CA, "--cert", a.Cert, "--key", a.Key}
}

// TestMutualTLSRefusals shows each way in that a TLS cluster refuses: a
// plaintext client, a client certificate from another CA, an identity that
// may not call the consensus API, an admin call from a non-admin, a client
// calling the peer service, a replica whose peer certificate comes from
// another CA trying to join, and Raft traffic without a valid peer
// certificate.
func TestMutualTLSRefusals(t *testing.T) {
	c := startTLSCluster(t)
	l := leader(t, c)
	certs := c.TLS()
	ctx := timeout(t, time.Minute)

	ok := anyClient(t, c)
	if committed, err := ok.CompareAndSet(ctx, "s", backend.VersionedData{SeqNo: 0, Data: []byte("a")}); err != nil || !committed {
		t.Fatalf("CaS with the admin certificate = %v, %v; want committed", committed, err)
	}

	t.Run("http port", func(t *testing.T) {
		// The cluster's own probes present the admin certificate.
		exp, _, err := l.Metric(ctx, "committer_tls_certificate_expiry_timestamp_seconds", map[string]string{"cert": "peer"})
		must(t, err)
		if until := time.Until(time.Unix(int64(exp), 0)); until < 23*time.Hour || until > 25*time.Hour {
			t.Fatalf("peer certificate expiry in %v, want about a day (certgen's validity)", until)
		}
		cfg, err := tlsconfig.Client(tlsconfig.Files{CA: certs.ClientCAFile}, "")
		must(t, err)
		anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		for path, want := range map[string]int{"/readyz": http.StatusOK, "/healthz": http.StatusOK, "/metrics": http.StatusUnauthorized, "/debug/pprof/": http.StatusNotFound} {
			resp, err := anon.Get("https://" + l.HTTPAddr() + path)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s without a client certificate = %d, want %d", path, resp.StatusCode, want)
			}
		}
		plain := &http.Client{Timeout: 5 * time.Second}
		if resp, err := plain.Get("http://" + l.HTTPAddr() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("the HTTP port answered a plaintext request")
			}
		}
	})

	t.Run("plaintext client", func(t *testing.T) {
		plain, err := client.New([]string{l.GRPCAddr()}, client.WithCallTimeout(2*time.Second), client.WithMaxAttempts(1))
		must(t, err)
		defer plain.Close()
		_, err = plain.Head(ctx, "s")
		if !errors.Is(err, backend.ErrUnavailable) || !backend.IsDeterminate(err) {
			t.Fatalf("plaintext Head = %v; want a determinate unavailable (no TLS handshake, nothing sent)", err)
		}
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		other, err := certgen.NewCA("another CA")
		must(t, err)
		// Same name as the admin: only the signature differs.
		cl := tlsClient(t, c, other, proctest.AdminIdentity, l)
		_, err = cl.Head(ctx, "s")
		if !errors.Is(err, backend.ErrUnavailable) || !backend.IsDeterminate(err) {
			t.Fatalf("Head with a foreign client certificate = %v; want a determinate unavailable (handshake refused)", err)
		}
	})

	t.Run("identity not among the client identities", func(t *testing.T) {
		cl := tlsClient(t, c, certs.ClientCA, "intruder", l)
		_, err := cl.Head(ctx, "s")
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Head as intruder = %v; want PermissionDenied", err)
		}
		if !strings.Contains(err.Error(), `identity "intruder"`) || !strings.Contains(err.Error(), "--client-identities") || !backend.IsDeterminate(err) {
			t.Fatalf("Head as intruder = %v; want a determinate refusal naming the identity and the flag", err)
		}
	})

	t.Run("admin call from a non-admin identity", func(t *testing.T) {
		f, err := certs.ClientCA.WriteLeaf(t.TempDir(), "persist", certgen.Leaf{CommonName: clientIdentity, Client: true})
		must(t, err)
		f.CA = certs.ClientCAFile
		cfg, err := tlsconfig.Client(f, "")
		must(t, err)
		admin := adminpb.NewAdminClient(grpcConn(t, l, cfg))
		_, err = admin.TransferLeadership(ctx, &adminpb.TransferLeadershipRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `identity "persist"`) || !strings.Contains(err.Error(), "--admin-identities") {
			t.Fatalf("TransferLeadership as persist = %v; want PermissionDenied naming the identity", err)
		}
		// Reading the status stays open to every client.
		if _, err := admin.Status(ctx, &adminpb.StatusRequest{}); err != nil {
			t.Fatalf("Status as persist: %v", err)
		}
		// The persist identity may use the consensus API.
		cl := tlsClient(t, c, certs.ClientCA, clientIdentity, l)
		if _, err := cl.Head(ctx, "s"); err != nil {
			t.Fatalf("Head as persist: %v", err)
		}
		n, _, err := l.Metric(ctx, "committer_refused_calls_total", map[string]string{"method": adminpb.Admin_TransferLeadership_FullMethodName, "reason": "permission_denied"})
		must(t, err)
		if n != 1 {
			t.Fatalf("refused TransferLeadership calls counted = %v, want 1", n)
		}
		if st := leader(t, c); st.ID() != l.ID() {
			t.Fatalf("leadership moved to %s after a refused transfer", st.ID())
		}
	})

	t.Run("client calling the peer service", func(t *testing.T) {
		cfg, err := tlsconfig.Client(certs.Admin, "")
		must(t, err)
		_, err = peerpb.NewPeerClient(grpcConn(t, l, cfg)).CurrentTerm(ctx, &peerpb.CurrentTermRequest{})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only replicas of this cluster") {
			t.Fatalf("CurrentTerm with a client certificate = %v; want PermissionDenied", err)
		}
	})

	t.Run("replica with a peer certificate from another CA joins", func(t *testing.T) {
		other, err := certgen.NewCA("rogue peer CA")
		must(t, err)
		dir := t.TempDir()
		f, err := other.WriteLeaf(dir, "rogue", certgen.Leaf{CommonName: "rogue", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true})
		must(t, err)
		addrs, err := freeport.Addrs("127.0.0.1", 3)
		must(t, err)
		logPath := dir + "/rogue.log"
		logf, err := os.Create(logPath)
		must(t, err)
		defer logf.Close()
		// The rogue trusts the real peer CA, so only the cluster's
		// verification of the rogue's certificate can stop it.
		cmd := exec.Command(committerBin, "serve", "--id=rogue", "--backend="+c.Backend(), "--data-dir="+dir+"/data",
			"--grpc-addr="+addrs[0], "--raft-addr="+addrs[1], "--http-addr="+addrs[2], "--join="+l.GRPCAddr(),
			"--tls-cert-file="+certs.Server.Cert, "--tls-key-file="+certs.Server.Key,
			"--peer-tls-cert-file="+f.Cert, "--peer-tls-key-file="+f.Key, "--peer-tls-ca-file="+certs.PeerCAFile,
			"--log-format=json")
		cmd.Stdout, cmd.Stderr = logf, logf
		must(t, cmd.Start())
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		// Wait until it has tried and failed to join twice.
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, _ := os.ReadFile(logPath)
			if n := strings.Count(string(b), "joining the cluster failed"); n >= 2 && strings.Contains(string(b), "certificate") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rogue replica never reported a refused join; log %s:\n%s", logPath, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		resp, err := l.Admin().ListMembers(ctx, &adminpb.ListMembersRequest{})
		must(t, err)
		for _, m := range resp.GetMembers() {
			if m.GetId() == "rogue" {
				t.Fatalf("the rogue replica became a member: %v", resp.GetMembers())
			}
		}
		if n := len(resp.GetMembers()); n != 3 {
			t.Fatalf("members = %d, want 3", n)
		}
	})

	t.Run("raft traffic without a valid peer certificate", func(t *testing.T) {
		before, err := l.Status(ctx)
		must(t, err)
		victim := followerOf(t, c, l)
		vote := &raft.RequestVoteRequest{
			RPCHeader:          raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("rogue"), Addr: []byte("127.0.0.1:1")},
			Term:               before.GetTerm() + 100,
			LastLogIndex:       1 << 40,
			LastLogTerm:        before.GetTerm() + 100,
			LeadershipTransfer: true,
		}
		// Plain TCP: the replica expects a TLS handshake.
		plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, io.Discard)
		must(t, err)
		defer plain.Close()
		var resp raft.RequestVoteResponse
		if err := plain.RequestVote(raft.ServerID(victim.ID()), raft.ServerAddress(victim.RaftAddr()), vote, &resp); err == nil {
			t.Fatalf("a plaintext RequestVote was answered: %+v", resp)
		}
		// TLS with a certificate from another CA.
		other, err := certgen.NewCA("rogue raft CA")
		must(t, err)
		f, err := other.WriteLeaf(t.TempDir(), "rogue", certgen.Leaf{CommonName: "rogue", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true})
		must(t, err)
		f.CA = certs.PeerCAFile
		cfg, err := tlsconfig.Client(f, "127.0.0.1")
		must(t, err)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", victim.RaftAddr(), cfg)
		if err == nil {
			// TLS 1.3 finishes the client's side before the server
			// checks its certificate: the refusal shows on first use.
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = conn.Write([]byte{1})
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("a TLS connection to the Raft port with a foreign certificate = %v; want a certificate error", err)
		}
		after, err := l.Status(ctx)
		must(t, err)
		if after.GetTerm() != before.GetTerm() || after.GetState() != adminpb.RaftState_RAFT_STATE_LEADER {
			t.Fatalf("after the rogue Raft traffic %s is in term %d (%v); want still leader of term %d", l.ID(), after.GetTerm(), after.GetState(), before.GetTerm())
		}
	})
}

// TestMutualTLSClusterFailsOverAndChangesMembership drives a mutual-TLS
// cluster with the CLI over TLS: status, a leadership transfer, a failover
// after the leader is killed, and a membership change; and shows a
// certificate rotated on disk serving new connections without a restart.
func TestMutualTLSClusterFailsOverAndChangesMembership(t *testing.T) {
	c := startTLSCluster(t)
	l := leader(t, c)
	o := ops{t: t, cl: anyClient(t, c), via: "tls"}
	o.cas("k", vd(0, "one"), true)

	out := cli(t, append([]string{"members", "list", "--addr", l.GRPCAddr()}, tlsArgs(c)...)...)
	for _, r := range c.Replicas() {
		if !strings.Contains(out, r.ID()) {
			t.Fatalf("members list over TLS lacks %s:\n%s", r.ID(), out)
		}
	}
	target := followerOf(t, c, l)
	cli(t, append([]string{"leader", "transfer", "--addr", l.GRPCAddr(), "--to", target.ID()}, tlsArgs(c)...)...)
	if got := leader(t, c); got.ID() != target.ID() {
		t.Fatalf("leader after transfer = %s, want %s", got.ID(), target.ID())
	}
	o.cas("k", vd(1, "two"), true)

	// Failover: kill the leader; a survivor takes over over peer TLS.
	must(t, target.Kill())
	var survivors []*proctest.Replica
	for _, r := range c.Replicas() {
		if r != target {
			survivors = append(survivors, r)
		}
	}
	nl := leader(t, c, survivors...)
	o2 := ops{t: t, cl: anyClient(t, c, survivors...), via: "tls"}
	o2.cas("k", vd(2, "three"), true)

	// Membership change over the CLI: remove the dead replica.
	cli(t, append([]string{"members", "remove", "--id", target.ID(), "--addr", nl.GRPCAddr()}, tlsArgs(c)...)...)
	waitMembers(t, nl, votersOf(survivors...))
	o2.head("k", &backend.VersionedData{SeqNo: 2, Data: []byte("three")})

	// Rotation: a new client-facing certificate written over the old
	// files serves the next connection, without a restart.
	certs := c.TLS()
	certPEM, keyPEM, err := certs.ClientCA.Issue(certgen.Leaf{CommonName: "committer-rotated", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	must(t, err)
	// Key first, then certificate: in between, the pair does not match
	// and the replica keeps serving the old one.
	must(t, writeAtomic(certs.Server.Key, keyPEM))
	if cn := serverCN(t, nl, certs); cn != "committer" {
		t.Fatalf("with only the key replaced the replica served %q, want the old certificate", cn)
	}
	must(t, writeAtomic(certs.Server.Cert, certPEM))
	if cn := serverCN(t, nl, certs); cn != "committer-rotated" {
		t.Fatalf("after rotation the replica served %q, want committer-rotated", cn)
	}
	o3 := ops{t: t, cl: anyClient(t, c, survivors...), via: "tls"}
	o3.head("k", &backend.VersionedData{SeqNo: 2, Data: []byte("three")})
}

// serverCN is the common name of the certificate r's gRPC port presents to
// a new connection.
func serverCN(t *testing.T, r *proctest.Replica, certs *proctest.Certificates) string {
	t.Helper()
	cfg, err := tlsconfig.Client(certs.Admin, "")
	must(t, err)
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.GRPCAddr(), cfg)
	must(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// writeAtomic replaces path by a rename, as a secret mount or a certificate
// manager does.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// followerOf returns a running replica other than l.
func followerOf(t *testing.T, c *proctest.Cluster, l *proctest.Replica) *proctest.Replica {
	t.Helper()
	for _, r := range c.Replicas() {
		if r != l && r.Running() {
			return r
		}
	}
	t.Fatal("no follower")
	return nil
}
