package control

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hacommit/committer/cluster/replicaproc"
)

// BackendSessions returns the process ids of the PostgreSQL server
// processes that serve the slot's replica: its TCP connections to
// PostgreSQL are found through the replica's open sockets, and matched to
// pg_stat_activity by the client port (every replica connects from
// 127.0.0.1, so the port is what tells them apart).
func (c *Cluster) BackendSessions(ctx context.Context, slot int) ([]int, error) {
	pid := c.PID(slot)
	if pid == 0 {
		return nil, fmt.Errorf("%s: %w", c.nodes[slot-1].Name, replicaproc.ErrNotRunning)
	}
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	conns, err := parseTCPTable(f)
	if err != nil {
		return nil, err
	}
	pgIP := net.ParseIP(PostgresIP)
	var ports []int32
	for _, tc := range conns {
		if inodes[tc.Inode] && tc.Remote.IP.Equal(pgIP) && tc.Remote.Port == PostgresPort {
			ports = append(ports, int32(tc.Local.Port))
		}
	}
	if len(ports) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.pg.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("admin connection to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND client_port = ANY($2)`, Database, ports)
	if err != nil {
		return nil, fmt.Errorf("pg_stat_activity: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("pg_stat_activity: %w", err)
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out, nil
}

// StopSessions stops PostgreSQL server processes with SIGSTOP: their
// sessions hang mid-statement, holding whatever they hold, until
// ContinueSessions.
func StopSessions(pids []int) error { return signalAll(pids, syscall.SIGSTOP) }

// ContinueSessions resumes processes stopped by StopSessions. A process
// that has exited is not an error.
func ContinueSessions(pids []int) error { return signalAll(pids, syscall.SIGCONT) }

func signalAll(pids []int, sig syscall.Signal) error {
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %v to pid %d: %w", sig, pid, err))
		}
	}
	return errors.Join(errs...)
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out, nil
}

// tcpConn is one line of /proc/net/tcp.
type tcpConn struct {
	Local, Remote net.TCPAddr
	Inode         uint64
}

// parseTCPTable parses /proc/net/tcp (IPv4): addresses are hex, the IP in
// the kernel's byte order (little-endian on every platform Go's linux ports
// that this harness runs on), the port big-endian.
func parseTCPTable(r io.Reader) ([]tcpConn, error) {
	var out []tcpConn
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false // the header
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		local, err := parseHexAddr(fields[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseHexAddr(fields[2])
		if err != nil {
			return nil, err
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp inode %q: %w", fields[9], err)
		}
		out = append(out, tcpConn{Local: local, Remote: remote, Inode: inode})
	}
	return out, sc.Err()
}

func parseHexAddr(s string) (net.TCPAddr, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(ipHex)
	if !ok || err != nil || len(b) != 4 {
		return net.TCPAddr{}, fmt.Errorf("/proc/net/tcp address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return net.TCPAddr{}, fmt.Errorf("/proc/net/tcp port %q: %w", s, err)
	}
	return net.TCPAddr{IP: net.IPv4(b[3], b[2], b[1], b[0]), Port: int(port)}, nil
}
