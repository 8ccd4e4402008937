package cluster

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is Raft's TCP stream layer. It listens on the bind address,
// advertises a possibly different address (a StatefulSet DNS name, say), and
// binds outbound dials to the node's own IP so that peers and packet filters
// see one stable source address per node.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dialer    net.Dialer
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// advertisedAddr is a net.Addr that may carry a host name.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// newStreamLayer listens on bind. advertise may be empty (then the bound
// address is advertised, which must not be unspecified).
func newStreamLayer(bind, advertise string) (*streamLayer, error) {
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
	s := &streamLayer{Listener: ln, advertise: advertisedAddr(advertise)}
	if !tcp.IP.IsUnspecified() {
		s.dialer.LocalAddr = &net.TCPAddr{IP: tcp.IP}
	}
	return s, nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := s.dialer
	d.Timeout = timeout
	return d.Dial("tcp", string(address))
}
