package pgtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requireEnv names the variable that makes a missing PostgreSQL a failure.
const requireEnv = "COMMITTER_REQUIRE_PG"

// adminTimeout bounds CREATE/DROP DATABASE, which wait for nothing but the
// server itself.
const adminTimeout = time.Minute

func requirePG() bool { return os.Getenv(requireEnv) == "1" }

// CreateDatabase creates a fresh, uniquely named database, returns its URL and
// drops it (terminating leftover sessions) when the test ends.
func (s *Server) CreateDatabase(t testing.TB) string {
	t.Helper()
	name := s.databaseName(t.Name())
	if err := s.admin(fmt.Sprintf("CREATE DATABASE %s", pgx.Identifier{name}.Sanitize())); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		running := s.proc != nil
		s.mu.Unlock()
		if !running {
			// Stopped by the test itself; the whole cluster goes with the dir.
			return
		}
		if err := s.admin(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// databaseName derives a readable, unique identifier from a test name.
func (s *Server) databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	base := b.String()
	// PostgreSQL truncates identifiers at 63 bytes; keep room for the suffix.
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("t_%s_%d", base, s.dbSeq.Add(1))
}

// admin runs one statement on the maintenance database.
func (s *Server) admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// RunMain is for TestMain: it starts a server when the binaries exist, runs
// the tests, stops the server and returns the exit code. Without binaries,
// *srv stays nil (tests calling Require skip) unless COMMITTER_REQUIRE_PG=1,
// in which case it reports why and returns 1.
func RunMain(m *testing.M, srv **Server) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	s, err := Start(ctx, Options{Logger: logger})
	cancel()
	switch {
	case errors.Is(err, ErrNotInstalled):
		if requirePG() {
			fmt.Fprintf(os.Stderr, "%v (%s=1 requires PostgreSQL)\n", err, requireEnv)
			return 1
		}
		fmt.Fprintf(os.Stderr, "%v: tests that need PostgreSQL are skipped\n", err)
		*srv = nil
		return m.Run()
	case err != nil:
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 1
	}
	*srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Require returns srv, or skips the test when there is no server (failing it
// instead when COMMITTER_REQUIRE_PG=1).
func Require(t testing.TB, srv *Server) *Server {
	t.Helper()
	if srv != nil {
		return srv
	}
	if requirePG() {
		t.Fatalf("PostgreSQL is required (%s=1) but no server is running", requireEnv)
	}
	t.Skipf("PostgreSQL binaries not found; set %s=1 to fail instead of skipping", requireEnv)
	return nil
}
