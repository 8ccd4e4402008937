package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is Raft's TCP stream layer. It listens on the bind address,
// advertises a possibly different address (a StatefulSet DNS name, say), and
// binds outbound dials to the node's own IP so that peers and packet filters
// see one stable source address per node. With TLS set, every connection
// is mutual TLS with the peer identity: a dialler without a certificate
// from the peer CA gets no byte through to Raft (docs/architecture.md §12).
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dialer    net.Dialer
	tls       *RaftTLS
}

// RaftTLS is the TLS of the Raft port: Server for accepted connections,
// Client for dialled ones (it verifies the name dialled).
type RaftTLS struct {
	Server *tls.Config
	Client *tls.Config
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// advertisedAddr is a net.Addr that may carry a host name.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// newStreamLayer listens on bind. advertise may be empty (then the bound
// address is advertised, which must not be unspecified).
func newStreamLayer(bind, advertise string, tlsCfg *RaftTLS) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	tcp := ln.Addr().(*net.TCPAddr)
	if advertise == "" {
		if tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, errors.New("raft: binding to an unspecified address needs an advertise address")
		}
		advertise = tcp.String()
	}
	s := &streamLayer{Listener: ln, advertise: advertisedAddr(advertise), tls: tlsCfg}
	if !tcp.IP.IsUnspecified() {
		s.dialer.LocalAddr = &net.TCPAddr{IP: tcp.IP}
	}
	return s, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Accept wraps each connection in TLS when it is on. The handshake runs on
// the connection's first read, in Raft's goroutine for that connection, so
// a slow or hostile dialler holds up only itself.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil || s.tls == nil {
		return c, err
	}
	return tls.Server(c, s.tls.Server), nil
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := s.dialer
	d.Timeout = timeout
	c, err := d.Dial("tcp", string(address))
	if err != nil || s.tls == nil {
		return c, err
	}
	cfg := s.tls.Client.Clone()
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	cfg.ServerName = host
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft dial %s: TLS handshake: %w", address, err)
	}
	return tc, nil
}
