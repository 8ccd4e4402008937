package backendurl

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/backend/postgres"
)

var pg *pgtest.Server

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestMain(m *testing.M) {
	os.Exit(pgtest.RunMain(m, &pg))
}

func TestBoltPath(t *testing.T) {
	for raw, want := range map[string]string{
		"bolt:///var/lib/committer/c.db": "/var/lib/committer/c.db",
		"bolt://data/c.db":               "data/c.db",
		"bolt://c.db":                    "c.db",
		"bolt:c.db":                      "c.db",
		"bolt:./dir/c.db":                "./dir/c.db",
		"bolt:///tmp/with%20space.db":    "/tmp/with space.db",
		"BOLT:///x.db":                   "/x.db",
	} {
		got, err := boltPath(raw)
		if err != nil || got != want {
			t.Errorf("boltPath(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"bolt://", "bolt:///", "bolt:///x.db?mode=ro", "bolt://u:secret@x/y.db", "bolt:///x.db#frag"} {
		if got, err := boltPath(raw); err == nil || !errors.Is(err, ErrUnsupported) {
			t.Errorf("boltPath(%q) = %q, %v; want ErrUnsupported", raw, got, err)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("boltPath(%q) error %q shows the password", raw, err)
		}
	}
}

func TestOpenBoltAbsoluteAndRelative(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "abs.db")
	t.Chdir(dir)
	for raw, file := range map[string]string{"bolt://" + abs: abs, "bolt://rel.db": filepath.Join(dir, "rel.db")} {
		store, err := Open(t.Context(), raw, Options{MaxDataBytes: 16, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open(%q): %v", raw, err)
		}
		if _, ok := store.(*bolt.Backend); !ok {
			t.Errorf("Open(%q) = %T, want *bolt.Backend", raw, store)
		}
		ok, err := store.CompareAndSet(t.Context(), "s", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
		if err != nil || !ok {
			t.Errorf("cas on %q = %v, %v; want committed", raw, ok, err)
		}
		// The data limit reached the backend.
		_, err = store.CompareAndSet(t.Context(), "s", backend.VersionedData{SeqNo: 1, Data: make([]byte, 17)})
		if !errors.Is(err, backend.ErrInvalidArgument) || !strings.Contains(err.Error(), "limit of 16 bytes") {
			t.Errorf("cas of 17 bytes on %q: %v, want the 16-byte limit", raw, err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close %q: %v", raw, err)
		}
		if _, err := os.Stat(file); err != nil {
			t.Errorf("%q did not create %s: %v", raw, file, err)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	srv := pgtest.Require(t, pg)
	url := srv.CreateDatabase(t)
	for _, raw := range []string{url, strings.Replace(url, "postgres://", "postgresql://", 1)} {
		store, err := Open(t.Context(), raw, Options{Isolation: postgres.ReadCommitted, MaxConns: 2, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("Open(%q): %v", raw, err)
		}
		if _, ok := store.(*postgres.Backend); !ok {
			t.Errorf("Open(%q) = %T, want *postgres.Backend", raw, store)
		}
		keys, err := store.ListKeys(t.Context())
		if err != nil || len(keys) != 0 {
			t.Errorf("list keys on %q = %q, %v; want none", raw, keys, err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

func TestOpenErrorsNeverShowPasswords(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, raw := range []string{
		"postgres://committer:hunter2secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
		"postgresql://committer:hunter2secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
		"postgres://committer:hunter2secret@[::1/db",
		"mysql://root:hunter2secret@localhost/db",
		"committer:hunter2secret@localhost/db",
		"/var/lib/hunter2secret.db",
		"",
	} {
		store, err := Open(ctx, raw, Options{Logger: quietLogger()})
		if err == nil {
			_ = store.Close()
			t.Errorf("Open(%q) succeeded, want an error", raw)
			continue
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("Open error shows the password: %v", err)
		}
	}
	for _, raw := range []string{"mysql://root:hunter2secret@localhost/db", "committer:hunter2secret@localhost/db", "", "/var/lib/x.db"} {
		_, err := Open(ctx, raw, Options{Logger: quietLogger()})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "use bolt:///path/to/file.db or postgres://user@host/database") {
			t.Errorf("Open(%q) = %v, want ErrUnsupported with the accepted forms", raw, err)
		}
	}
}

func TestDescribe(t *testing.T) {
	for raw, want := range map[string]string{
		"bolt:///x.db": "bolt:///x.db",
		"postgres://u:hunter2@h:5432/db?sslmode=require":       "postgres://u:xxxxx@h:5432/db?sslmode=require",
		"postgresql://u@h/db?password=hunter2&sslmode=disable": "postgresql://u@h/db?password=xxxxx&sslmode=disable",
		"postgres://u:hunter2@[::1/db":                         "postgres://(unparsable URL)",
		"mysql://u:hunter2@h/db":                               "(unsupported backend URL)",
	} {
		if got := Describe(raw); got != want {
			t.Errorf("Describe(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestParseIsolation(t *testing.T) {
	for in, want := range map[string]postgres.Isolation{
		"serializable": postgres.Serializable, "SERIALIZABLE": postgres.Serializable,
		"read-committed": postgres.ReadCommitted, "read_committed": postgres.ReadCommitted, "Read Committed": postgres.ReadCommitted,
	} {
		got, err := ParseIsolation(in)
		if err != nil || got != want {
			t.Errorf("ParseIsolation(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "repeatable-read", "snapshot"} {
		if _, err := ParseIsolation(in); err == nil || !strings.Contains(err.Error(), "want serializable or read-committed") {
			t.Errorf("ParseIsolation(%q) = %v, want an error listing the choices", in, err)
		}
	}
}
