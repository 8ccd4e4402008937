package backendurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/postgres"
)

// ErrUnsupported: the URL names no backend this build can open.
var ErrUnsupported = errors.New("unsupported backend URL")

// Options configures the backend Open creates. Fields a backend has no use
// for are ignored by it.
type Options struct {
	// MaxDataBytes bounds one version's data; <= 0 means
	// backend.DefaultMaxDataBytes.
	MaxDataBytes int
	// Isolation is the PostgreSQL transaction isolation level (default
	// serializable).
	Isolation postgres.Isolation
	// MaxConns bounds the PostgreSQL pool; 0 means postgres.DefaultMaxConns.
	MaxConns int32
	// Logger receives the backend's events; nil means slog.Default().
	Logger *slog.Logger
}

// Open opens the backend raw names. The caller closes it.
func Open(ctx context.Context, raw string, opts Options) (backend.Fencer, error) {
	maxData := opts.MaxDataBytes
	if maxData < 0 {
		maxData = 0
	}
	switch scheme(raw) {
	case "bolt":
		path, err := boltPath(raw)
		if err != nil {
			return nil, err
		}
		b, err := bolt.Open(path, bolt.Options{MaxDataBytes: maxData, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
		return b, nil
	case "postgres", "postgresql":
		// postgres.Open keeps the password out of its errors and logs.
		b, err := postgres.Open(ctx, postgres.Config{
			URL:          raw,
			Isolation:    opts.Isolation,
			MaxDataBytes: maxData,
			MaxConns:     opts.MaxConns,
			Logger:       opts.Logger,
		})
		if err != nil {
			return nil, err
		}
		return b, nil
	case "":
		return nil, fmt.Errorf("%w: it has no scheme; use bolt:///path/to/file.db or postgres://user@host/database", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: scheme %q; use bolt:///path/to/file.db or postgres://user@host/database", ErrUnsupported, scheme(raw))
	}
}

// scheme returns the lower-cased scheme of raw, or "" if raw does not start
// with a well-formed one. It never parses the rest, which may hold a password.
func scheme(raw string) string {
	s, _, ok := strings.Cut(raw, ":")
	if !ok || s == "" {
		return ""
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return ""
		}
	}
	return strings.ToLower(s)
}

// boltPath extracts the file path of a bolt URL: bolt:///abs/path is
// absolute; bolt://rel/path and bolt:rel/path are relative to the working
// directory. Percent-escapes are decoded.
func boltPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the input, which could hold a password typed
		// by mistake: say what is wrong without it.
		return "", fmt.Errorf("%w: the bolt URL does not parse as a URL (check its percent-escapes and characters)", ErrUnsupported)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: bolt URL %q: only a file path is allowed (no user, query or fragment)", ErrUnsupported, u.Redacted())
	}
	var path string
	if u.Opaque != "" {
		if path, err = url.PathUnescape(u.Opaque); err != nil {
			return "", fmt.Errorf("%w: the bolt URL has an invalid percent-escape", ErrUnsupported)
		}
	} else {
		path = u.Host + u.Path
	}
	if path == "" || path == "/" {
		return "", fmt.Errorf("%w: bolt URL %q names no file; use bolt:///path/to/file.db", ErrUnsupported, raw)
	}
	return path, nil
}

// Describe returns raw with any password masked, for logs.
func Describe(raw string) string {
	switch scheme(raw) {
	case "bolt":
		return raw
	case "postgres", "postgresql":
		u, err := url.Parse(raw)
		if err != nil {
			return scheme(raw) + "://(unparsable URL)"
		}
		if u.Query().Has("password") {
			q := u.Query()
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	default:
		return "(unsupported backend URL)"
	}
}

// ParseIsolation parses the names operators use for a PostgreSQL isolation
// level: "serializable", "read-committed" (also "read_committed" and
// "read committed"), case-insensitively.
func ParseIsolation(s string) (postgres.Isolation, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "serializable":
		return postgres.Serializable, nil
	case "read-committed", "read_committed", "read committed":
		return postgres.ReadCommitted, nil
	}
	return 0, fmt.Errorf("unknown isolation level %q (want serializable or read-committed)", s)
}
