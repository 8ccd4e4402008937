package proctest

import (
	"fmt"
	"net"
)

// freeAddrs returns n distinct 127.0.0.1:port addresses that were free a
// moment ago. All listeners stay open until every port is chosen, so the
// kernel cannot hand out one port twice; another program may still take one
// before a replica binds it, which Start and AddReplica handle by retrying
// with fresh ports.
func freeAddrs(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}
