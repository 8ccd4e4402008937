package control

import (
	"net"
	"strings"
	"testing"
)

// A /proc/net/tcp excerpt: a listener on 127.0.0.12:6882 and two
// connections from 127.0.0.1 to PostgreSQL at 127.0.0.2:5432.
const tcpTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0C00007F:1AE2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C3A8 0200007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 41300 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C3AA 0200007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 41301 1 0000000000000000 20 4 30 10 -1
`

func TestParseTCPTable(t *testing.T) {
	conns, err := parseTCPTable(strings.NewReader(tcpTable))
	if err != nil {
		t.Fatal(err)
	}
	want := []tcpConn{
		{Local: net.TCPAddr{IP: net.IPv4(127, 0, 0, 12), Port: 6882}, Remote: net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 0}, Inode: 41234},
		{Local: net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50088}, Remote: net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5432}, Inode: 41300},
		{Local: net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50090}, Remote: net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5432}, Inode: 41301},
	}
	if len(conns) != len(want) {
		t.Fatalf("parsed %d connections, want %d: %v", len(conns), len(want), conns)
	}
	for i := range want {
		g, w := conns[i], want[i]
		if !g.Local.IP.Equal(w.Local.IP) || g.Local.Port != w.Local.Port || !g.Remote.IP.Equal(w.Remote.IP) || g.Remote.Port != w.Remote.Port || g.Inode != w.Inode {
			t.Errorf("line %d = %v -> %v inode %d, want %v -> %v inode %d", i, &g.Local, &g.Remote, g.Inode, &w.Local, &w.Remote, w.Inode)
		}
	}
}

func TestParseTCPTableRejectsGarbage(t *testing.T) {
	bad := "header\n   0: 0100007F 0200007F:1538 01 0 0 0 0 0 41300\n"
	if _, err := parseTCPTable(strings.NewReader(bad)); err == nil {
		t.Fatal("an address without a port parsed")
	}
}

func TestNodeAddresses(t *testing.T) {
	n := NodeAt(3)
	if n.Name != "n3" || n.IP != "127.0.0.13" || n.GRPCAddr() != "127.0.0.13:6882" || n.RaftAddr() != "127.0.0.13:6883" || n.HTTPAddr() != "127.0.0.13:6884" {
		t.Fatalf("node 3 = %+v (%s, %s, %s)", n, n.GRPCAddr(), n.RaftAddr(), n.HTTPAddr())
	}
}
