package deploytest

import (
	"fmt"
	"net"
	"testing"
)

// Loopback returns n loopback addresses 127.0.block.1 to 127.0.block.n,
// each standing in for one pod, container or VM: Linux routes all of
// 127.0.0.0/8 to the loopback interface, so every address can listen on
// the same fixed ports as its neighbours. Packages use distinct blocks so
// that their tests never share an address. It fails t when an address
// cannot be bound (a system without the whole block on lo).
func Loopback(t testing.TB, block, n int) []string {
	t.Helper()
	if block < 1 || block > 254 || n < 1 || n > 254 {
		t.Fatalf("deploytest: loopback block %d with %d addresses is out of range", block, n)
	}
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("127.0.%d.%d", block, i+1)
		ln, err := net.Listen("tcp", net.JoinHostPort(hosts[i], "0"))
		if err != nil {
			t.Fatalf("deploytest: loopback address %s cannot be bound (every address in 127.0.0.0/8 should be): %v", hosts[i], err)
		}
		_ = ln.Close() // only a probe; nothing was accepted
	}
	return hosts
}
