//go:build linux || darwin

package postgres

import (
	"errors"
	"net"
	"syscall"
)

// peekPending reports whether the socket has unread bytes or has reached EOF
// (or cannot be inspected at all), using a non-blocking MSG_PEEK receive: one
// system call, nothing consumed.
//
// It runs under RawConn.Control, not RawConn.Read: pgconn may leave a
// background reader blocked in Read on an idle connection (after a slow
// write), holding the descriptor's read lock until data arrives, and Read
// would wait for that lock forever. Control takes no lock. When such a
// reader is there it will consume a FATAL itself, and this probe sees
// nothing: the check is best effort, and the call then fails as it would
// without it.
func peekPending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var buf [1]byte
	var rerr error
	err = raw.Control(func(fd uintptr) {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	switch {
	case err != nil:
		return true
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK):
		return false // nothing pending: the healthy case
	default:
		// Data pending, EOF (a zero-length read), or a socket error: all
		// mean the connection must prove itself before it is used.
		return true
	}
}
