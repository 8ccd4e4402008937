package postgres

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// idlePingAfter is pgxpool's default: ping a connection idle this long
// before handing it out.
const idlePingAfter = time.Second

// shouldPing decides whether the pool pings a connection before handing it
// out: after a second of idleness (pgxpool's default), or at once when its
// socket shows that the server spoke or hung up while it sat idle. A server
// never sends anything unprompted on an idle session of this service (no
// LISTEN), so pending bytes are almost always the FATAL of
// pg_terminate_backend or a shutdown, followed by EOF. Pinging such a
// connection (and so discarding it) costs one round trip; using it for a
// write would turn a harmless dead connection into an indeterminate outcome.
func shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	if p.IdleDuration > idlePingAfter {
		return true
	}
	return socketSuspicious(p.Conn.PgConn().Conn())
}

// socketSuspicious peeks at the connection's socket without blocking or
// consuming anything.
func socketSuspicious(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		// TLS records (a post-handshake session ticket, say) may sit
		// there harmlessly; a ping then costs one round trip, not a
		// connection.
		c = tc.NetConn()
	}
	return peekPending(c)
}
