// Package pgtest starts a real, throwaway PostgreSQL server for tests from the
// binaries installed on the machine (initdb and postgres, found on PATH or
// under /usr/lib/postgresql/*/bin).
//
// It owns the whole life of that server: initdb into a private directory (as
// the postgres OS user when the tests run as root, because initdb refuses
// root), start on a free port with durability turned off for speed, wait
// until it accepts connections, restart it for fault tests, stop it and remove
// the directory. A given directory the postgres user cannot reach (below a
// directory private to root) gets its data directory placed in a private
// directory of that user instead, linked from it (see Options.Dir).
// Packages use it from TestMain through RunMain, then call
// Require and CreateDatabase in each test:
//
//	var srv *pgtest.Server
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.RunMain(m, &srv)) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.Require(t, srv).CreateDatabase(t)
//		...
//	}
//
// Without PostgreSQL binaries the tests that call Require are skipped, unless
// COMMITTER_REQUIRE_PG=1, which turns the absence into a failure (CI).
package pgtest
