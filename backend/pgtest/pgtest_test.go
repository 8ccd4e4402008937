package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var srv *Server

// orphanChildEnv makes the test binary act as a process that starts a server
// and is then killed, for TestKilledOwnerLeavesNoServer.
const orphanChildEnv = "PGTEST_ORPHAN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(orphanChildEnv) == "1" {
		os.Exit(orphanChild())
	}
	os.Exit(RunMain(m, &srv))
}

func orphanChild() int {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	fmt.Println("DIR", s.Dir())
	// Wait to be killed; never returns normally.
	select {}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestServerSettingsAndURL(t *testing.T) {
	s := Require(t, srv)
	url := s.CreateDatabase(t)
	wantPrefix := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/t_testserversettingsandurl_", s.Port())
	if !strings.HasPrefix(url, wantPrefix) || !strings.HasSuffix(url, "?sslmode=disable") {
		t.Fatalf("URL = %q, want prefix %q and suffix ?sslmode=disable", url, wantPrefix)
	}
	conn := connect(t, url)
	for sql, want := range map[string]string{
		"SELECT current_user":            "postgres",
		"SHOW fsync":                     "off",
		"SHOW max_connections":           "300",
		"SHOW listen_addresses":          "127.0.0.1",
		"SELECT current_setting('port')": strconv.Itoa(s.Port()),
	} {
		if got := queryString(t, conn, sql); got != want {
			t.Errorf("%s = %q, want %q", sql, got, want)
		}
	}
	db := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	if got := queryString(t, conn, "SELECT current_database()"); got != db {
		t.Errorf("current_database() = %q, want %q", got, db)
	}
}

func TestCreateDatabaseIsUniqueAndDroppedAtCleanup(t *testing.T) {
	s := Require(t, srv)
	var names []string
	for i := 0; i < 2; i++ {
		t.Run("db", func(t *testing.T) {
			url := s.CreateDatabase(t)
			conn := connect(t, url)
			names = append(names, queryString(t, conn, "SELECT current_database()"))
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("database names = %q, want two distinct names", names)
	}
	admin := connect(t, s.URL("postgres"))
	var n int
	if err := admin.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d of %q still exist after their tests ended, want 0", n, names)
	}
}

func TestRestartKeepsDataAndPortStopRemovesDir(t *testing.T) {
	Require(t, srv)
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	port := s.Port()
	conn := connect(t, s.URL("postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Port() != port {
		t.Fatalf("port after restart = %d, want %d", s.Port(), port)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a connection from before the restart still works, want it broken")
	}
	conn2 := connect(t, s.URL("postgres"))
	if got := queryString(t, conn2, "SELECT v::text FROM kept"); got != "42" {
		t.Fatalf("value after restart = %q, want 42", got)
	}
	dir := s.Dir()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat %s after Stop: %v, want not exist", dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v, want nil", err)
	}
	if err := s.Restart(ctx); err == nil {
		t.Fatal("Restart after Stop succeeded, want an error")
	}
}

func TestGivenDirIsKeptAndReused(t *testing.T) {
	Require(t, srv)
	ctx := context.Background()
	// Not t.TempDir: its parent is private to this user, and the server may
	// run as another one.
	dir, err := os.MkdirTemp("", "pgtest-given-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, s.URL("postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('again')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, dataDirName, "PG_VERSION")); err != nil {
		t.Fatalf("data dir not kept: %v", err)
	}
	s2, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Stop() })
	if got := queryString(t, connect(t, s2.URL("postgres")), "SELECT v FROM kept"); got != "again" {
		t.Fatalf("value in reused cluster = %q, want again", got)
	}
}

func TestStartupFailureIncludesServerLog(t *testing.T) {
	Require(t, srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s, err := Start(context.Background(), Options{Port: port})
	if err == nil {
		s.Stop()
		t.Fatalf("Start on busy port %d succeeded, want an error", port)
	}
	if !strings.Contains(err.Error(), "could not bind") || !strings.Contains(err.Error(), logFileName) {
		t.Fatalf("error = %v\nwant it to quote the server log's bind failure", err)
	}
}

func TestKilledOwnerLeavesNoServer(t *testing.T) {
	Require(t, srv)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), orphanChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child output: %q, %v", line, err)
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(line), "DIR ")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, want DIR <path>", line)
	}
	pidFile, err := os.ReadFile(filepath.Join(dir, dataDirName, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if !processAlive(pid) {
		t.Fatalf("postmaster %d not running before the kill", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The postmaster is not our child, so poll for its disappearance.
	deadline := time.Now().Add(60 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d survived its owner's SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The next Start sweeps the dead owner's directory away.
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale dir %s: %v, want removed by the next Start", dir, err)
	}
}

func TestDatabaseNameIsAValidIdentifier(t *testing.T) {
	s := &Server{}
	got := s.databaseName("TestX/sub test-with-a-very-long-name-that-goes-on-and-on")
	want := "t_testx_sub_test_with_a_very_long_name_tha_1"
	if got != want {
		t.Fatalf("databaseName = %q, want %q", got, want)
	}
	if len(got) > 63 {
		t.Fatalf("name %q longer than 63 bytes", got)
	}
}

// A Dir below a directory private to root (mode 0700, like t.TempDir or a
// home directory) is out of the postgres user's reach; the server must still
// start, with its data in a directory of that user, and leave the private
// directory as it was.
func TestGivenDirUnderAPrivateDirectoryStarts(t *testing.T) {
	Require(t, srv)
	if os.Geteuid() != 0 {
		t.Skip("not root: the server runs as this user, and only root can run it as postgres, the user a private directory shuts out")
	}
	ctx := context.Background()
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(private, "run", "postgres")
	s, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start under a mode-0700 directory: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		s.RemoveData()
	})
	conn := connect(t, s.URL("postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('relocated')"); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, conn, "SELECT v FROM kept"); got != "relocated" {
		t.Fatalf("value = %q, want relocated", got)
	}
	conn.Close(ctx)

	st, err := os.Stat(private)
	if err != nil {
		t.Fatal(err)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; st.Mode().Perm() != 0o700 || owner != 0 {
		t.Fatalf("%s is mode %o owned by uid %d after Start, want 700 and uid 0 as before", private, st.Mode().Perm(), owner)
	}
	link := filepath.Join(dir, dataDirName)
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatalf("%s: %v, want a link to the relocated data", link, err)
	}
	if target != s.DataDir() || strings.HasPrefix(target, private) {
		t.Fatalf("%s -> %s, DataDir %s; want the link to name DataDir, outside %s", link, target, s.DataDir(), private)
	}
	if _, err := os.Stat(filepath.Join(target, "PG_VERSION")); err != nil {
		t.Fatalf("relocated data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, logFileName)); err != nil {
		t.Fatalf("server log not in Dir: %v", err)
	}
	relocated, err := os.Stat(filepath.Dir(target))
	if err != nil {
		t.Fatal(err)
	}
	if relocated.Mode().Perm() != 0o700 || relocated.Sys().(*syscall.Stat_t).Uid != s.cred.Uid {
		t.Fatalf("%s is mode %o owned by uid %d, want 700 owned by the postgres user (uid %d)",
			filepath.Dir(target), relocated.Mode().Perm(), relocated.Sys().(*syscall.Stat_t).Uid, s.cred.Uid)
	}

	// Stop keeps the data, and the next Start on the Dir finds it again.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("second Start on the relocated Dir: %v", err)
	}
	if s2.DataDir() != target {
		t.Fatalf("second Start's DataDir %s, want the first one's, %s", s2.DataDir(), target)
	}
	if got := queryString(t, connect(t, s2.URL("postgres")), "SELECT v FROM kept"); got != "relocated" {
		t.Fatalf("value in the reused cluster = %q, want relocated", got)
	}
	if err := s2.RemoveData(); err == nil {
		t.Fatal("RemoveData of a running server succeeded, want an error")
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s2.RemoveData(); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{dir, filepath.Dir(target)} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat %s after RemoveData: %v, want not exist", gone, err)
		}
	}
}
