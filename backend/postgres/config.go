package postgres

import (
	"fmt"
	"log/slog"
)

// Isolation is the transaction isolation level every connection runs at.
type Isolation int

const (
	// Serializable is the default, and the only level CockroachDB guarantees
	// to honour on every version.
	Serializable Isolation = iota
	// ReadCommitted trades SSI bookkeeping (PostgreSQL) for row locks on the
	// fence row. On CockroachDB before v24.1, or with READ COMMITTED disabled
	// by cluster setting, the database silently runs SERIALIZABLE instead,
	// which is stronger, so correctness does not depend on it.
	ReadCommitted
)

func (i Isolation) String() string {
	switch i {
	case Serializable:
		return "serializable"
	case ReadCommitted:
		return "read committed"
	}
	return fmt.Sprintf("Isolation(%d)", int(i))
}

// sqlLevel is the level's spelling in SET ... ISOLATION LEVEL.
func (i Isolation) sqlLevel() (string, error) {
	switch i {
	case Serializable:
		return "SERIALIZABLE", nil
	case ReadCommitted:
		return "READ COMMITTED", nil
	}
	return "", fmt.Errorf("postgres: unknown isolation level %d", int(i))
}

// DefaultMaxConns is the pool size when Config.MaxConns is 0: enough for the
// leader's coalesced write batches plus concurrent reads, small enough that
// several replicas never crowd a default max_connections of 100.
const DefaultMaxConns = 16

// Config configures Open.
type Config struct {
	// URL is a libpq connection URL or keyword/value string. It may carry a
	// password; it is never logged or put into an error. Sessions get
	// application_name=committer unless the URL sets one.
	URL string
	// Isolation is Serializable (the zero value) or ReadCommitted.
	Isolation Isolation
	// MaxDataBytes bounds one version's payload; 0 means
	// backend.DefaultMaxDataBytes.
	MaxDataBytes int
	// MaxConns bounds the pool; 0 means DefaultMaxConns.
	MaxConns int32
	// Logger receives connection and schema events; nil means slog.Default().
	Logger *slog.Logger
}
