package tlsconfig_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
)

var quiet = slog.New(slog.DiscardHandler)

type pki struct {
	dir            string
	clientCA       *certgen.CA
	peerCA         *certgen.CA
	server, peer   tlsconfig.Files
	admin, replica tlsconfig.Files
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	p := pki{dir: dir}
	var err error
	if p.clientCA, err = certgen.NewCA("client CA"); err != nil {
		t.Fatal(err)
	}
	if p.peerCA, err = certgen.NewCA("peer CA"); err != nil {
		t.Fatal(err)
	}
	localhost := []net.IP{net.IPv4(127, 0, 0, 1)}
	must := func(f tlsconfig.Files, err error) tlsconfig.Files {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	p.server = must(p.clientCA.WriteLeaf(dir, "server", certgen.Leaf{CommonName: "server", IPs: localhost, Server: true}))
	p.admin = must(p.clientCA.WriteLeaf(dir, "admin", certgen.Leaf{CommonName: "admin", DNSNames: []string{"ops.example"}, Client: true}))
	p.peer = must(p.peerCA.WriteLeaf(dir, "peer", certgen.Leaf{CommonName: "r1", IPs: localhost, Server: true, Client: true}))
	p.replica = must(p.peerCA.WriteLeaf(dir, "replica", certgen.Leaf{CommonName: "r2", IPs: localhost, Server: true, Client: true}))
	return p
}

// serve accepts TLS connections with cfg on a loopback port and completes
// each handshake, reporting the state of each.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan tls.ConnectionState) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	states := make(chan tls.ConnectionState, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err == nil {
				select {
				case states <- tc.ConnectionState():
				default:
				}
				// Answer one byte so that the client sees the server's
				// verdict on its certificate (TLS 1.3 reports it late).
				_, _ = tc.Write([]byte{1})
			}
			tc.Close()
		}
	}()
	return ln.Addr().String(), states
}

func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func newServer(t *testing.T, p pki, withClientCA bool) *tlsconfig.Server {
	t.Helper()
	client := p.server
	client.CA = ""
	if withClientCA {
		client.CA = p.admin.CA
	}
	s, err := tlsconfig.NewServer(client, p.peer, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGRPCPortTellsPeersFromClients(t *testing.T) {
	p := newPKI(t)
	srv := newServer(t, p, true)
	addr, states := serve(t, srv.GRPC())

	// A replica offering the peer protocol gets the peer identity and
	// is recognised as a peer.
	other, err := tlsconfig.NewServer(tlsconfig.Files{Cert: p.server.Cert, Key: p.server.Key}, p.replica, quiet)
	if err != nil {
		t.Fatal(err)
	}
	pc := other.PeerClient([]string{tlsconfig.PeerALPN})
	pc.ServerName = "127.0.0.1"
	cs, err := dial(addr, pc)
	if err != nil {
		t.Fatalf("peer dial: %v", err)
	}
	if got := cs.PeerCertificates[0].Subject.CommonName; got != "r1" {
		t.Fatalf("a peer was shown %q, want the peer certificate r1", got)
	}
	if st := <-states; !tlsconfig.IsPeer(st) || tlsconfig.Identities(st.VerifiedChains[0][0])[0] != "r2" {
		t.Fatalf("server side: peer=%v, want a verified peer r2", tlsconfig.IsPeer(st))
	}

	// A client gets the client-facing certificate and is no peer.
	cc, err := tlsconfig.Client(p.admin, "")
	if err != nil {
		t.Fatal(err)
	}
	cc.NextProtos = []string{"h2"}
	cs, err = dial(addr, cc)
	if err != nil {
		t.Fatalf("client dial: %v", err)
	}
	if got := cs.PeerCertificates[0].Subject.CommonName; got != "server" {
		t.Fatalf("a client was shown %q, want the client-facing certificate", got)
	}
	if st := <-states; tlsconfig.IsPeer(st) {
		t.Fatal("a client connection counted as a peer")
	}

	// Offering the peer protocol with a client certificate is refused:
	// the peer branch verifies against the peer CA.
	fake, err := tlsconfig.NewServer(tlsconfig.Files{Cert: p.server.Cert, Key: p.server.Key},
		tlsconfig.Files{Cert: p.admin.Cert, Key: p.admin.Key, CA: p.peer.CA}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	fc := fake.PeerClient([]string{tlsconfig.PeerALPN})
	fc.ServerName = "127.0.0.1"
	if _, err := dial(addr, fc); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("peer protocol with a client certificate = %v; want a certificate error", err)
	}

	// A client without a certificate is refused when a client CA is set.
	bare, err := tlsconfig.Client(tlsconfig.Files{CA: p.admin.CA}, "")
	if err != nil {
		t.Fatal(err)
	}
	bare.NextProtos = []string{"h2"}
	if _, err := dial(addr, bare); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client without a certificate = %v; want a certificate error", err)
	}
}

func TestPeerClientVerifiesTheNameDialled(t *testing.T) {
	p := newPKI(t)
	srv := newServer(t, p, false)
	addr, _ := serve(t, srv.Raft())
	pc := srv.PeerClient(nil)
	pc.ServerName = "elsewhere.example"
	if _, err := dial(addr, pc); err == nil || !strings.Contains(err.Error(), "elsewhere.example") {
		t.Fatalf("dial with a name the certificate lacks = %v; want a name mismatch", err)
	}
}

func TestCertificatesRotateOnDisk(t *testing.T) {
	p := newPKI(t)
	srv := newServer(t, p, false)
	addr, _ := serve(t, srv.GRPC())
	cc, err := tlsconfig.Client(tlsconfig.Files{CA: p.server.CA}, "")
	if err != nil {
		t.Fatal(err)
	}
	cc.NextProtos = []string{"h2"}
	cn := func() string {
		t.Helper()
		cs, err := dial(addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		return cs.PeerCertificates[0].Subject.CommonName
	}
	if got := cn(); got != "server" {
		t.Fatalf("before rotation: %q", got)
	}
	certPEM, keyPEM, err := p.clientCA.Issue(certgen.Leaf{CommonName: "server-2", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	// A half-done rotation (new key, old certificate) keeps the old pair.
	if err := os.WriteFile(p.server.Key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "server" {
		t.Fatalf("with a mismatched pair on disk: %q, want the old certificate", got)
	}
	if err := os.WriteFile(p.server.Cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "server-2" {
		t.Fatalf("after rotation: %q, want server-2", got)
	}
	// Garbage in the file keeps the last good certificate.
	if err := os.WriteFile(p.server.Cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "server-2" {
		t.Fatalf("after a bad write: %q, want server-2", got)
	}
}

func TestCARotatesOnDisk(t *testing.T) {
	p := newPKI(t)
	srv := newServer(t, p, true)
	addr, _ := serve(t, srv.GRPC())
	newCA, err := certgen.NewCA("client CA 2")
	if err != nil {
		t.Fatal(err)
	}
	f, err := newCA.WriteLeaf(t.TempDir(), "c2", certgen.Leaf{CommonName: "c2", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	f.CA = p.server.CA
	cc, err := tlsconfig.Client(f, "")
	if err != nil {
		t.Fatal(err)
	}
	cc.NextProtos = []string{"h2"}
	if _, err := dial(addr, cc); err == nil {
		t.Fatal("a client of the new CA was accepted before the CA file changed")
	}
	// The operator appends the new CA to the bundle.
	bundle := append(append([]byte{}, p.clientCA.PEM()...), newCA.PEM()...)
	if err := os.WriteFile(p.admin.CA, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, cc); err != nil {
		t.Fatalf("a client of the new CA after the bundle changed: %v", err)
	}
}

func TestNewServerRefusesHalfConfigurations(t *testing.T) {
	p := newPKI(t)
	cases := []struct {
		name         string
		client, peer tlsconfig.Files
		want         string
	}{
		{"client only", p.server, tlsconfig.Files{}, "--peer-tls-cert-file"},
		{"peer only", tlsconfig.Files{}, p.peer, "--tls-cert-file"},
		{"peer without CA", p.server, tlsconfig.Files{Cert: p.peer.Cert, Key: p.peer.Key}, "--peer-tls-ca-file"},
		{"key of another certificate", tlsconfig.Files{Cert: p.server.Cert, Key: p.admin.Key}, p.peer, "private key does not match"},
		{"missing file", tlsconfig.Files{Cert: p.dir + "/nope.crt", Key: p.server.Key}, p.peer, "no such file"},
		{"CA without certificates", p.server, tlsconfig.Files{Cert: p.peer.Cert, Key: p.peer.Key, CA: p.peer.Key}, "holds no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tlsconfig.NewServer(tc.client, tc.peer, quiet)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewServer = %v, %v; want an error containing %q", s, err, tc.want)
			}
		})
	}
	if s, err := tlsconfig.NewServer(tlsconfig.Files{}, tlsconfig.Files{}, quiet); s != nil || err != nil {
		t.Fatalf("no files: %v, %v; want plaintext (nil, nil)", s, err)
	}
	if _, err := tlsconfig.Client(tlsconfig.Files{Cert: p.admin.Cert}, ""); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Fatalf("client certificate without key: %v", err)
	}
	if _, err := tlsconfig.Client(tlsconfig.Files{CA: p.dir + "/nope"}, ""); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing CA: %v", err)
	}
}

func TestIdentitiesAreTheCommonNameAndEverySAN(t *testing.T) {
	p := newPKI(t)
	cert, err := tls.LoadX509KeyPair(p.admin.Cert, p.admin.Key)
	if err != nil {
		t.Fatal(err)
	}
	got := tlsconfig.Identities(cert.Leaf)
	if strings.Join(got, ",") != "admin,ops.example" {
		t.Fatalf("identities = %v", got)
	}
}
