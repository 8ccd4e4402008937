package control

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
)

// maxSlots bounds the node addresses the certificates name: replacements
// reuse slots, so the largest cluster's slots are enough.
const maxSlots = 9

// TLS is the certificates of a mutual-TLS run: a client CA that signs the
// replicas' client-facing certificate and the harness's own client
// certificate (an admin identity), and a peer CA that signs the replicas'
// peer certificate. One certificate of each kind names every node address,
// so a replacement on any slot uses them as they are.
type TLS struct {
	// Client is what the harness dials replicas with.
	Client *tls.Config
	// ServeArgs are the TLS flags of every `committer serve`.
	ServeArgs []string
}

// HarnessIdentity is the common name of the harness's client certificate,
// listed in the replicas' --admin-identities and --client-identities.
const HarnessIdentity = "jepsen"

// NewTLS writes the certificates of a run into dir.
func NewTLS(dir string) (*TLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	clientCA, peerCA, err := certgen.NewCAPair("jepsen")
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for slot := 1; slot <= maxSlots; slot++ {
		ips = append(ips, net.ParseIP(NodeAt(slot).IP))
	}
	server, err := clientCA.WriteLeaf(dir, "server", certgen.Leaf{CommonName: "committer", IPs: ips, Server: true})
	if err != nil {
		return nil, err
	}
	peer, err := peerCA.WriteLeaf(dir, "peer", certgen.Leaf{CommonName: "committer-peer", IPs: ips, Server: true, Client: true})
	if err != nil {
		return nil, err
	}
	harness, err := clientCA.WriteLeaf(dir, "harness", certgen.Leaf{CommonName: HarnessIdentity, Client: true})
	if err != nil {
		return nil, err
	}
	cfg, err := tlsconfig.Client(harness, "")
	if err != nil {
		return nil, err
	}
	return &TLS{
		Client: cfg,
		ServeArgs: []string{
			"--tls-cert-file=" + server.Cert, "--tls-key-file=" + server.Key, "--tls-client-ca-file=" + server.CA,
			"--peer-tls-cert-file=" + peer.Cert, "--peer-tls-key-file=" + peer.Key, "--peer-tls-ca-file=" + peer.CA,
			"--admin-identities=" + HarnessIdentity, "--client-identities=" + HarnessIdentity,
		},
	}, nil
}

// String describes the certificates for the run's log.
func (t *TLS) String() string {
	if t == nil {
		return "plaintext"
	}
	return fmt.Sprintf("mutual TLS on every port (client identity %s, certificates in %s)", HarnessIdentity, filepath.Dir(t.ServeArgs[0][len("--tls-cert-file="):]))
}
