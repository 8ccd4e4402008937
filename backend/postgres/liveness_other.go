//go:build !linux && !darwin

package postgres

import "net"

// peekPending cannot inspect sockets on this platform; the pool falls back to
// pinging connections after idlePingAfter only.
func peekPending(net.Conn) bool { return false }
