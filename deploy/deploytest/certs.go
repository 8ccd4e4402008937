package deploytest

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
)

// WriteGenCerts writes into dir the files scripts/gen-certs.sh writes
// (client-ca.crt, peer-ca.crt, server, peer and admin .crt/.key), valid for
// the loopback addresses hosts (see Loopback) in place of the names a
// deployment would use, and returns the admin
// client's configuration. The compose and systemd artifacts read these
// files by these names.
func WriteGenCerts(t testing.TB, dir string, hosts []string) *tls.Config {
	t.Helper()
	var ips []net.IP
	for _, h := range hosts {
		ip := net.ParseIP(h)
		if ip == nil {
			t.Fatalf("deploytest: certificate host %q is not an IP address", h)
		}
		ips = append(ips, ip)
	}
	clientCA, peerCA, err := certgen.NewCAPair("committer")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("client-ca.crt", clientCA.PEM())
	write("peer-ca.crt", peerCA.PEM())
	for _, leaf := range []struct {
		name string
		ca   *certgen.CA
		spec certgen.Leaf
	}{
		{"server", clientCA, certgen.Leaf{CommonName: "committer", IPs: ips, Server: true}},
		{"peer", peerCA, certgen.Leaf{CommonName: "committer-peer", IPs: ips, Server: true, Client: true}},
		{"admin", clientCA, certgen.Leaf{CommonName: "admin", Client: true}},
	} {
		certPEM, keyPEM, err := leaf.ca.Issue(leaf.spec)
		if err != nil {
			t.Fatal(err)
		}
		write(leaf.name+".crt", certPEM)
		write(leaf.name+".key", keyPEM)
	}
	cfg, err := tlsconfig.Client(tlsconfig.Files{
		Cert: filepath.Join(dir, "admin.crt"), Key: filepath.Join(dir, "admin.key"), CA: filepath.Join(dir, "client-ca.crt"),
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
