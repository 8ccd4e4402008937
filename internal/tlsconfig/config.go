package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
)

// PeerALPN is the ALPN protocol a replica offers when it dials another
// replica's gRPC port. The server answers it with the peer identity and
// demands one back; the HTTP/2 that follows is gRPC as usual (gRPC only
// requires that some protocol was negotiated).
const PeerALPN = "committer-peer/1"

// minVersion: TLS 1.2 is the oldest version without known breaks that
// every supported client speaks.
const minVersion = tls.VersionTLS12

// Server is the TLS material of a replica: the identity it shows clients
// (Client: certificate, key, and optionally the CA that signs client
// certificates) and the one it shows other replicas (Peer: certificate,
// key and the peer CA; always mutual).
type Server struct {
	Client *Source
	Peer   *Source
}

// NewServer reads the client-facing and the peer files. TLS is all or
// nothing: replicas call each other on the gRPC port, so a TLS gRPC port
// needs the peer identity, and peer TLS needs a TLS gRPC port. It returns
// nil (plaintext) when no file is named.
func NewServer(client, peer Files, log *slog.Logger) (*Server, error) {
	if client.Empty() && peer.Empty() {
		return nil, nil
	}
	var errs []error
	if client.Cert == "" || client.Key == "" {
		errs = append(errs, errors.New("TLS needs --tls-cert-file and --tls-key-file, the gRPC and HTTP ports' identity"))
	}
	if peer.Cert == "" || peer.Key == "" || peer.CA == "" {
		errs = append(errs, errors.New("TLS needs --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file: replicas call each other on the gRPC and Raft ports, always with mutual TLS"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c, err := NewSource(client, log)
	if err != nil {
		return nil, fmt.Errorf("client-facing TLS: %w", err)
	}
	p, err := NewSource(peer, log)
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	return &Server{Client: c, Peer: p}, nil
}

// GRPC returns the configuration of the gRPC port: the peer branch for a
// handshake that offers PeerALPN, the client branch otherwise.
func (s *Server) GRPC() *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if slices.Contains(hello.SupportedProtos, PeerALPN) {
				return s.peerServer([]string{PeerALPN}), nil
			}
			return s.clientServer([]string{"h2"}, tls.RequireAndVerifyClientCert), nil
		},
	}
}

// HTTP returns the configuration of the HTTP port: the client-facing
// certificate; a client certificate is verified when given, and the
// handler decides which paths need one (probes do not: a kubelet cannot
// present one).
func (s *Server) HTTP() *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.clientServer([]string{"h2", "http/1.1"}, tls.VerifyClientCertIfGiven), nil
		},
	}
}

// Raft returns the configuration of the Raft port's listener: peers only,
// always mutual.
func (s *Server) Raft() *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.peerServer(nil), nil
		},
	}
}

// ClientCAs reports whether client certificates are verified (a client CA
// is set).
func (s *Server) ClientCAs() bool { return s.Client.HasCA() }

func (s *Server) peerServer(protos []string) *tls.Config {
	return &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.Peer.Certificate() },
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      s.Peer.Pool(),
		NextProtos:     protos,
	}
}

// clientServer is the client branch; withCA is the client authentication
// used when a client CA is set.
func (s *Server) clientServer(protos []string, withCA tls.ClientAuthType) *tls.Config {
	c := &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.Client.Certificate() },
		NextProtos:     protos,
	}
	if pool := s.Client.Pool(); pool != nil {
		c.ClientAuth, c.ClientCAs = withCA, pool
	}
	return c
}

// PeerClient returns what a replica dials other replicas with: its peer
// certificate, offered to any server that asks, and verification of the
// server's certificate against the peer CA as it is at each handshake (so
// that the CA file, too, rotates without a restart) and against the name
// dialled. alpn is PeerALPN for the gRPC port and nil for the Raft port.
func (s *Server) PeerClient(alpn []string) *tls.Config {
	return &tls.Config{
		MinVersion:           minVersion,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.Peer.Certificate() },
		NextProtos:           alpn,
		// Verification happens in VerifyConnection, against the pool as
		// it is now; crypto/tls would otherwise fix RootCAs for the life
		// of the config.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyServer(cs, s.Peer.Pool())
		},
	}
}

// VerifyServer checks a server's certificate chain against roots and the
// name the client asked for, as crypto/tls does when InsecureSkipVerify is
// off.
func VerifyServer(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: the server's certificate: %w", err)
	}
	return nil
}

// Client builds the configuration of a client (the CLI, a Go client) from
// files: CA verifies the server (empty: the system's roots), Cert and Key
// are the client certificate, needed when the server verifies clients.
// serverName overrides the name verified (empty: the host dialled).
func Client(files Files, serverName string) (*tls.Config, error) {
	if (files.Cert == "") != (files.Key == "") {
		return nil, errors.New("tls: --cert needs --key and --key needs --cert")
	}
	c := &tls.Config{MinVersion: minVersion, ServerName: serverName}
	if files.CA != "" {
		pemBytes, err := os.ReadFile(files.CA)
		if err != nil {
			return nil, fmt.Errorf("tls CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("tls: %s holds no PEM certificate", files.CA)
		}
	}
	if files.Cert != "" {
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: loading %s and %s: %w", files.Cert, files.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Identities are the names a certificate proves: its subject's common name
// and every subject alternative name (DNS names, e-mail addresses, URIs,
// IP addresses), in that order.
func Identities(cert *x509.Certificate) []string {
	var ids []string
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	ids = append(ids, cert.DNSNames...)
	ids = append(ids, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	for _, ip := range cert.IPAddresses {
		ids = append(ids, ip.String())
	}
	return ids
}

// IsPeer reports whether a server-side connection is from another replica:
// it negotiated PeerALPN, which the server grants only after verifying a
// client certificate against the peer CA.
func IsPeer(cs tls.ConnectionState) bool { return cs.NegotiatedProtocol == PeerALPN }

// HostOf is the host part of a host:port address, for a dial's ServerName.
func HostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
