package compose_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/deploy/deploytest"
)

// documentedGenCerts returns the gen-certs.sh command line that the header
// of compose.tls.yaml tells the operator to run, split into words.
func documentedGenCerts(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(composeDir(), "compose.tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmd string
	collecting := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "#")
		if !ok {
			break // the header comment ends
		}
		line = strings.TrimSpace(line)
		if !collecting && !strings.HasPrefix(line, "scripts/gen-certs.sh ") {
			continue
		}
		collecting = true
		cont := strings.HasSuffix(line, `\`)
		cmd += " " + strings.TrimSuffix(line, `\`)
		if !cont {
			break
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cmd == "" {
		t.Fatal("compose.tls.yaml's header does not give the scripts/gen-certs.sh command")
	}
	return strings.Fields(cmd)
}

// The certificates compose.tls.yaml asks for are the ones its documented
// command makes: running that command (into a temporary directory in place
// of deploy/compose/certs) writes every file the override names, a server
// certificate valid for each name it is dialled by, a peer certificate valid
// for each service name with both key usages, and the client certificates
// whose names the identity settings allow.
func TestDocumentedGenCertsCommandMakesWhatTheOverrideReads(t *testing.T) {
	for _, tool := range []string{"bash", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: no %s on this machine (install Debian's %s to run scripts/gen-certs.sh)", tool, tool)
		}
	}
	words := documentedGenCerts(t)
	if len(words) < 3 || words[1] != "deploy/compose/certs" {
		t.Fatalf("documented command %q, want scripts/gen-certs.sh deploy/compose/certs SAN...", words)
	}
	dir := t.TempDir()
	words[1] = dir
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", words...)
	cmd.Dir = deploytest.RepositoryRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%q: %v\n%s", words, err, out)
	}

	for _, file := range tlsFiles() {
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			t.Errorf("the override reads %s, which the command did not write: %v", file, err)
		}
	}
	server := readCert(t, filepath.Join(dir, "server.crt"))
	wantDNS := append(replicaNames(), "localhost")
	if !slices.Equal(slices.Sorted(slices.Values(server.DNSNames)), slices.Sorted(slices.Values(wantDNS))) ||
		len(server.IPAddresses) != 1 || !server.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("server.crt names DNS %v IP %v, want DNS %v and IP 127.0.0.1", server.DNSNames, server.IPAddresses, wantDNS)
	}
	peer := readCert(t, filepath.Join(dir, "peer.crt"))
	for _, n := range replicaNames() {
		if err := peer.VerifyHostname(n); err != nil {
			t.Errorf("peer.crt is not valid for %s, which the replicas dial: %v", n, err)
		}
	}
	if !slices.Contains(peer.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(peer.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("peer.crt key usages %v, want server and client", peer.ExtKeyUsage)
	}
	for _, id := range []string{"admin", "persist"} {
		c := readCert(t, filepath.Join(dir, id+".crt"))
		if c.Subject.CommonName != id || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("%s.crt: common name %q, key usages %v; want %q with client usage", id, c.Subject.CommonName, c.ExtKeyUsage, id)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}
