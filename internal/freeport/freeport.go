package freeport

import (
	"fmt"
	"net"
	"strconv"
)

// Addrs returns n distinct host:port addresses whose ports were free a
// moment ago. Every listener stays open until all n ports are chosen, so the
// kernel cannot hand out one port twice; once Addrs returns they are closed,
// and any of them may be taken by another process before the caller binds
// it. The addresses keep host as given (a name stays a name).
func Addrs(host string, n int) ([]string, error) {
	if n < 0 {
		return nil, fmt.Errorf("freeport: %d addresses asked for", n)
	}
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close() // it never accepted anything, so nothing is lost
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, port, err := listen(host)
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return addrs, nil
}

// Port returns a port on host that was free a moment ago. Nothing holds it
// afterwards: see Addrs for the race that remains, and use Addrs rather than
// several calls of Port when more than one port is needed.
func Port(host string) (int, error) {
	ln, port, err := listen(host)
	if err != nil {
		return 0, err
	}
	_ = ln.Close()
	return port, nil
}

// listen binds a port the kernel chooses on host.
func listen(host string) (net.Listener, int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, 0, fmt.Errorf("freeport: pick a free port on %q: %w", host, err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port, nil
}
