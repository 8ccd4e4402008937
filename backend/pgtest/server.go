package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hacommit/committer/internal/freeport"
)

// Options configures Start. The zero value is a server on 127.0.0.1, on a
// free port, in a temporary directory removed by Stop.
type Options struct {
	// ListenAddr is the TCP address the server listens on (default 127.0.0.1).
	ListenAddr string
	// Port is the TCP port; 0 picks a free one.
	Port int
	// Dir holds the data directory, socket and server log. Empty means a new
	// temporary directory that Stop removes; a given Dir is kept, and an
	// existing cluster in it is reused (RemoveData deletes it).
	//
	// When the server runs as the postgres user (the caller is root) and
	// that user cannot reach Dir, because a directory above it is private,
	// the data directory and socket go to a new private directory of the
	// postgres user in os.TempDir() instead, and Dir/data is a symbolic
	// link to it; the log stays in Dir. The directories above Dir keep
	// their permissions.
	Dir string
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

const (
	defaultListenAddr = "127.0.0.1"
	// tempDirPrefix marks directories this package owns in os.TempDir(), so
	// leftovers of killed test binaries can be recognised and removed.
	tempDirPrefix = "pgtest-"
	// relocatedDirPrefix names the directories that hold the data of a
	// given Dir the server user cannot reach. It must not match
	// tempDirPrefix+"*": those are swept away once their owner is gone,
	// while relocated data belongs to Dir and lives as long as it does.
	relocatedDirPrefix = "pgdata-"
	// ownerFile records the pid of the process that created a temp dir.
	ownerFile   = "owner.pid"
	logFileName = "postgres.log"
	dataDirName = "data"
	// readyTimeout bounds startup when the caller's context has no deadline:
	// a server that is not up by then is broken, not slow.
	readyTimeout = 90 * time.Second
	// fastShutdownTimeout is how long a SIGINT (fast shutdown: roll back
	// sessions, checkpoint) may take before the server is shot harder.
	fastShutdownTimeout = 20 * time.Second
	// maxUnixSocketPath is sun_path's size minus room for "/.s.PGSQL.NNNNN".
	maxUnixSocketPath = 107 - len("/.s.PGSQL.65535")
)

// serverSettings trade durability for speed (a crash loses the throwaway
// cluster, which nobody keeps) and leave room for many pools at once.
var serverSettings = []string{
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
	"wal_level=minimal",
	"max_wal_senders=0",
	"max_wal_size=1GB",
	"checkpoint_timeout=30min",
	"max_connections=300",
	"shared_buffers=128MB",
	"unix_socket_permissions=0777",
	"log_line_prefix=%m [%p] %q%a ",
}

// Server is a running (or stopped) throwaway PostgreSQL.
type Server struct {
	bins    binaries
	logger  *slog.Logger
	addr    string
	root    string // Options.Dir or the temp dir
	ownsDir bool   // remove root on Stop
	// serverDir holds the data directory and the socket: root, or for a
	// relocated Dir the directory root/data links into.
	serverDir string
	cred      *syscall.Credential
	dbSeq     atomic.Uint64

	// mu serialises start, stop and restart; it is never held while a test
	// talks to the server.
	mu      sync.Mutex
	port    int      // written only inside Start
	proc    *process // nil while stopped
	stopped bool     // Stop was called: the server never starts again
}

// process is one running postmaster.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd.Wait returned
	waitErr error         // valid after done is closed
	log     *os.File
}

// Start initialises (if needed) and starts a server, and returns once it
// accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{bins: bins, logger: logger, addr: opts.ListenAddr, port: opts.Port}
	if s.addr == "" {
		s.addr = defaultListenAddr
	}
	if s.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		removeStaleTempDirs(logger)
		if s.root, err = os.MkdirTemp("", tempDirPrefix); err != nil {
			return nil, fmt.Errorf("pgtest: create temp dir: %w", err)
		}
		s.ownsDir = true
		if err := os.WriteFile(filepath.Join(s.root, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			s.removeDir()
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	} else {
		if s.root, err = filepath.Abs(opts.Dir); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return nil, fmt.Errorf("pgtest: create dir: %w", err)
		}
	}
	if s.serverDir, err = s.placeServerDir(); err != nil {
		return nil, err
	}
	if err := s.initCluster(ctx); err != nil {
		s.removeDir()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(ctx, opts.Port == 0); err != nil {
		s.removeDir()
		return nil, err
	}
	return s, nil
}

// URL returns a connection URL for database on this server.
func (s *Server) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort(s.addr, strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on. It is fixed once Start
// returns (Restart reuses it), so reading it needs no lock.
func (s *Server) Port() int { return s.port }

// Dir returns the directory holding the data directory (or a symbolic link
// to it, see Options.Dir) and postgres.log.
func (s *Server) Dir() string { return s.root }

// DataDir returns where the data directory really is: Dir()/data, or the
// target of that link when Dir was out of the server user's reach.
func (s *Server) DataDir() string { return s.dataDir() }

// RemoveData deletes a stopped server's files: Dir and, when the data was
// placed elsewhere, that directory too. A caller that keeps a given Dir
// only while it is worth investigating uses it instead of os.RemoveAll,
// which would leave the relocated data behind.
func (s *Server) RemoveData() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("pgtest: RemoveData of a running server")
	}
	var errs []error
	if s.serverDir != s.root {
		errs = append(errs, os.RemoveAll(s.serverDir))
	}
	errs = append(errs, os.RemoveAll(s.root))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// Stop shuts the server down and removes its temp dir. It is idempotent.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	err := s.stopLocked()
	if s.ownsDir {
		s.removeDir()
	}
	return err
}

// Restart stops the server and starts it again on the same directory and
// port, dropping every connection: a database restart for fault tests.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: restart of a stopped server")
	}
	if err := s.stopLocked(); err != nil {
		return err
	}
	return s.startLocked(ctx, false)
}

// serverCredential returns the postgres user's identity when running as
// root (initdb and postgres refuse to run as root), nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs a postgres OS user to run the server as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.serverDir, dataDirName) }

// logPath is in root even when the data is not: this process opens the log
// and hands the server the descriptor, so the server needs no access to it.
func (s *Server) logPath() string { return filepath.Join(s.root, logFileName) }

// socketDir is where the server puts its Unix socket, or "" (no socket) when
// the path would not fit in a sockaddr_un.
func (s *Server) socketDir() string {
	if len(s.serverDir) > maxUnixSocketPath {
		return ""
	}
	return s.serverDir
}

// placeServerDir decides where the data directory and socket go: root,
// unless the server runs as another user who cannot reach root, in which
// case they go to a directory that user can reach (see Options.Dir).
func (s *Server) placeServerDir() (string, error) {
	if s.cred == nil {
		// The server runs as this process's user and reaches what it does.
		return s.root, nil
	}
	link := filepath.Join(s.root, dataDirName)
	if target, err := os.Readlink(link); err == nil {
		// A cluster relocated by an earlier Start on this Dir.
		dir := filepath.Dir(target)
		if err := s.checkReachable(dir); err != nil {
			return "", err
		}
		s.logger.Info("pgtest: reusing relocated data", "dir", s.root, "data", target)
		return dir, nil
	}
	// root itself is handed to the server user (chownTree); what matters is
	// every directory above it.
	reach, err := s.reachable(filepath.Dir(s.root))
	if err != nil || reach {
		return s.root, err
	}
	if _, err := os.Lstat(link); err == nil {
		return "", fmt.Errorf("pgtest: %s holds a data directory the postgres user cannot reach: a directory above %s is private to its owner (give that user search permission, or start with a new Dir)",
			link, s.root)
	}
	dir, err := os.MkdirTemp("", relocatedDirPrefix)
	if err != nil {
		return "", fmt.Errorf("pgtest: create a directory for the data of %s: %w", s.root, err)
	}
	// MkdirTemp made it mode 0700: once it is the server user's, only
	// that user (and root) can enter it.
	if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if err := s.checkReachable(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if err := os.Symlink(filepath.Join(dir, dataDirName), link); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("pgtest: record where the data of %s is: %w", s.root, err)
	}
	s.logger.Info("pgtest: the postgres user cannot reach the given dir; data placed in a private directory of its own",
		"dir", s.root, "data", filepath.Join(dir, dataDirName))
	return dir, nil
}

// checkReachable fails, naming the directory, unless the server user can
// enter dir.
func (s *Server) checkReachable(dir string) error {
	reach, err := s.reachable(dir)
	if err != nil {
		return err
	}
	if !reach {
		return fmt.Errorf("pgtest: the postgres user cannot reach %s: a directory on its path is private to its owner", dir)
	}
	return nil
}

// reachable reports whether the server's OS user can enter dir. It asks
// the kernel rather than reading mode bits, so ACLs and group membership
// count as they will for the server: it starts the postgres binary as that
// user in dir, which fails when dir is out of reach.
func (s *Server) reachable(dir string) (bool, error) {
	probe := func(in string) error {
		cmd := s.command(s.bins.postgres, "--version")
		cmd.Dir = in
		return cmd.Run()
	}
	if err := probe(dir); err == nil {
		return true, nil
	}
	// A child that cannot chdir fails like one that cannot exec; the same
	// binary started in / tells the two apart.
	if err := probe("/"); err != nil {
		return false, fmt.Errorf("pgtest: run %s as the server user: %w", s.bins.postgres, err)
	}
	return false, nil
}

// command builds an exec.Cmd that runs as the server's OS user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.serverDir
	// A clean, fixed environment: PG* variables of the caller (PGDATA,
	// PGPORT...) must not leak into the throwaway cluster.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

// initCluster runs initdb unless the data directory already holds a cluster.
func (s *Server) initCluster(ctx context.Context) error {
	if err := s.chownTree(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.dataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	cmd := s.command(s.bins.initdb,
		"-D", s.dataDir(), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb (%s) failed: %w\n%s", s.bins.initdb, err, out.String())
	}
	s.logger.Debug("pgtest: initdb done", "dir", s.dataDir(), "took", time.Since(start))
	return ctx.Err()
}

// chownTree hands the directory the server writes in to its OS user.
func (s *Server) chownTree() error {
	if s.cred == nil {
		return nil
	}
	uid, gid := int(s.cred.Uid), int(s.cred.Gid)
	return filepath.WalkDir(s.serverDir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("pgtest: chown %s: %w", path, err)
		}
		return nil
	})
}

// startLocked starts the postmaster and waits until it accepts connections.
// With pickPort it chooses a free port, and chooses again if another process
// grabbed it between the probe and the bind.
func (s *Server) startLocked(ctx context.Context, pickPort bool) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		if pickPort {
			if s.port, err = freeport.Port(s.addr); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
		}
		var p *process
		p, err = s.spawn()
		if err != nil {
			return err
		}
		err = s.waitReady(ctx, p)
		if err == nil {
			s.proc = p
			s.logger.Info("pgtest: postgres ready", "addr", s.addr, "port", s.port, "dir", s.root)
			return nil
		}
		s.terminate(p)
		if !pickPort || !errors.Is(err, errPortInUse) {
			break
		}
		s.logger.Warn("pgtest: port taken, retrying", "port", s.port)
	}
	logTail := tail(s.logPath(), 8<<10)
	s.logger.Error("pgtest: postgres failed to start", "err", err, "log", logTail)
	return fmt.Errorf("pgtest: start postgres on %s:%d: %w\n--- %s (tail) ---\n%s", s.addr, s.port, err, s.logPath(), logTail)
}

var errPortInUse = errors.New("port already in use")

func (s *Server) spawn() (*process, error) {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: open server log: %w", err)
	}
	args := []string{"-D", s.dataDir(), "-p", strconv.Itoa(s.port), "-k", s.socketDir(),
		"-c", "listen_addresses=" + s.addr}
	for _, setting := range serverSettings {
		args = append(args, "-c", setting)
	}
	cmd := s.command(s.bins.postgres, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies (a -timeout panic, SIGKILL), the kernel sends
	// the postmaster SIGQUIT (immediate shutdown, which also stops its
	// backends), so no orphan server outlives the tests. Go sets this after
	// switching credentials, which would otherwise clear it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("pgtest: exec %s: %w", s.bins.postgres, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls until a connection succeeds, the postmaster exits, or the
// deadline passes.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cfg, err := pgconn.ParseConfig(s.URL("postgres"))
	if err != nil {
		return err
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.ConnectConfig(attemptCtx, cfg)
		attemptCancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(tail(s.logPath(), 4<<10), "Address already in use") {
				return errPortInUse
			}
			return fmt.Errorf("postgres exited during startup: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not accepting connections: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// stopLocked stops the running postmaster, if any.
func (s *Server) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	return s.terminate(p)
}

// terminate escalates from fast shutdown (SIGINT) to immediate shutdown
// (SIGQUIT) to SIGKILL, waiting for the postmaster to exit at each step.
func (s *Server) terminate(p *process) error {
	steps := []struct {
		sig     syscall.Signal
		timeout time.Duration
	}{{syscall.SIGINT, fastShutdownTimeout}, {syscall.SIGQUIT, 5 * time.Second}, {syscall.SIGKILL, 5 * time.Second}}
	for _, step := range steps {
		if err := p.cmd.Process.Signal(step.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("pgtest: signal postgres: %w", err)
		}
		timer := time.NewTimer(step.timeout)
		select {
		case <-p.done:
			timer.Stop()
			if step.sig != syscall.SIGINT {
				s.logger.Warn("pgtest: postgres needed a harder signal to stop", "signal", step.sig)
			}
			return nil
		case <-timer.C:
		}
	}
	return fmt.Errorf("pgtest: postgres (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
}

func (s *Server) removeDir() {
	if !s.ownsDir {
		return
	}
	if err := os.RemoveAll(s.root); err != nil {
		s.logger.Warn("pgtest: remove dir", "dir", s.root, "err", err)
	}
}

// tail returns up to n bytes from the end of a file, for error reports.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return err.Error()
		}
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// removeStaleTempDirs deletes temp dirs left by test binaries that were
// killed before they could clean up: those whose owner pid no longer exists.
// Dirs without an owner file may still be being set up, so they are kept.
func removeStaleTempDirs(logger *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			logger.Debug("pgtest: removed stale dir", "dir", dir, "owner", pid)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
