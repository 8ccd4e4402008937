package proctest

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
)

// TLSOptions configures a TLS cluster: every replica gets a client-facing
// certificate for 127.0.0.1 signed by the client CA, which also signs the
// clients' certificates (so --tls-client-ca-file is set and clients must
// present one), and its own peer certificate signed by the peer CA.
type TLSOptions struct {
	// AdminIdentities and ClientIdentities become the replicas' flags of
	// the same name when set.
	AdminIdentities  []string
	ClientIdentities []string
}

// AdminIdentity is the common name of the certificate the cluster's own
// clients, probes and admin connections present.
const AdminIdentity = "proctest-admin"

// Certificates are the CAs and files of a TLS cluster, for tests that make
// their own clients or peers.
type Certificates struct {
	Dir      string
	ClientCA *certgen.CA
	PeerCA   *certgen.CA
	// ClientCAFile verifies the replicas' client-facing certificates (and
	// signs client certificates); PeerCAFile signs peer certificates.
	ClientCAFile, PeerCAFile string
	// Admin is the cluster's own client certificate (CN AdminIdentity),
	// with ClientCAFile as its CA.
	Admin tlsconfig.Files
	// Server is the replicas' client-facing certificate.
	Server tlsconfig.Files

	opts         TLSOptions
	clientConfig *tls.Config
}

func newCertificates(dir string, opts TLSOptions) (*Certificates, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cc, pc, err := certgen.NewCAPair("proctest")
	if err != nil {
		return nil, err
	}
	c := &Certificates{Dir: dir, ClientCA: cc, PeerCA: pc, opts: opts,
		ClientCAFile: filepath.Join(dir, "client-ca.crt"), PeerCAFile: filepath.Join(dir, "peer-ca.crt")}
	if err := cc.WriteCA(c.ClientCAFile); err != nil {
		return nil, err
	}
	if err := pc.WriteCA(c.PeerCAFile); err != nil {
		return nil, err
	}
	if c.Server, err = cc.WriteLeaf(dir, "server", certgen.Leaf{CommonName: "committer", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}); err != nil {
		return nil, err
	}
	if c.Admin, err = cc.WriteLeaf(dir, "admin", certgen.Leaf{CommonName: AdminIdentity, Client: true}); err != nil {
		return nil, err
	}
	if c.clientConfig, err = tlsconfig.Client(c.Admin, ""); err != nil {
		return nil, err
	}
	return c, nil
}

// PeerFiles writes (once) and returns the peer certificate of replica id,
// valid for 127.0.0.1.
func (c *Certificates) PeerFiles(id string) (tlsconfig.Files, error) {
	f := tlsconfig.Files{Cert: filepath.Join(c.Dir, "peer-"+id+".crt"), Key: filepath.Join(c.Dir, "peer-"+id+".key"), CA: c.PeerCAFile}
	if _, err := os.Stat(f.Cert); err == nil {
		return f, nil
	}
	w, err := c.PeerCA.WriteLeaf(c.Dir, "peer-"+id, certgen.Leaf{CommonName: id, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true})
	if err != nil {
		return tlsconfig.Files{}, fmt.Errorf("peer certificate of %s: %w", id, err)
	}
	w.CA = c.PeerCAFile
	return w, nil
}

// replicaFlags are the TLS flags of replica id.
func (c *Certificates) replicaFlags(id string) ([]string, error) {
	p, err := c.PeerFiles(id)
	if err != nil {
		return nil, err
	}
	flags := []string{
		"--tls-cert-file=" + c.Server.Cert, "--tls-key-file=" + c.Server.Key, "--tls-client-ca-file=" + c.ClientCAFile,
		"--peer-tls-cert-file=" + p.Cert, "--peer-tls-key-file=" + p.Key, "--peer-tls-ca-file=" + p.CA,
	}
	for _, id := range c.opts.AdminIdentities {
		flags = append(flags, "--admin-identities="+id)
	}
	for _, id := range c.opts.ClientIdentities {
		flags = append(flags, "--client-identities="+id)
	}
	return flags, nil
}

// TLS returns the certificates of a TLS cluster, nil for plaintext.
func (c *Cluster) TLS() *Certificates { return c.tls }
