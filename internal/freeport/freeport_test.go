package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/hacommit/committer/internal/freeport"
)

func TestAddrsAreDistinctAndBindable(t *testing.T) {
	const n = 50
	addrs, err := freeport.Addrs("127.0.0.1", n)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != n {
		t.Fatalf("got %d addresses, want %d", len(addrs), n)
	}
	seen := make(map[string]bool, n)
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("address %q: %v", a, err)
		}
		if host != "127.0.0.1" {
			t.Fatalf("address %q: host %q, want 127.0.0.1", a, host)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			t.Fatalf("address %q: port %q is not a port number", a, port)
		}
		if seen[a] {
			t.Fatalf("address %s handed out twice in %v", a, addrs)
		}
		seen[a] = true
	}
	// The listeners were closed: every port can be bound again (unless some
	// other process on the machine took one meanwhile, which is the race
	// the package documents and this test accepts as unlikely).
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s after Addrs: %v", a, err)
		}
		ln.Close()
	}
}

func TestAddrsKeepsTheHostAsGiven(t *testing.T) {
	addrs, err := freeport.Addrs("localhost", 1)
	if err != nil {
		t.Skipf("no localhost here: %v", err)
	}
	if host, _, _ := net.SplitHostPort(addrs[0]); host != "localhost" {
		t.Fatalf("address %q: host %q, want localhost", addrs[0], host)
	}
}

func TestAddrsOfZeroAndErrors(t *testing.T) {
	addrs, err := freeport.Addrs("127.0.0.1", 0)
	if err != nil || len(addrs) != 0 {
		t.Fatalf("Addrs(0) = %v, %v; want no addresses and no error", addrs, err)
	}
	if _, err := freeport.Addrs("127.0.0.1", -1); err == nil {
		t.Fatal("Addrs(-1) did not fail")
	}
	// 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
	if addrs, err := freeport.Addrs("192.0.2.1", 2); err == nil {
		t.Fatalf("Addrs on a foreign address = %v, want an error", addrs)
	}
	if _, err := freeport.Port("192.0.2.1"); err == nil {
		t.Fatal("Port on a foreign address did not fail")
	}
}

func TestPortIsBindable(t *testing.T) {
	p, err := freeport.Port("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if p <= 0 || p > 65535 {
		t.Fatalf("port %d is not a port number", p)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("bind port %d after Port: %v", p, err)
	}
	ln.Close()
}
