package client_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/backend/postgres"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// lockTable opens a session that holds an ACCESS EXCLUSIVE lock on the
// consensus table, so every read and write of the backend waits, and returns
// the session's pid and the function that releases the lock.
func lockTable(t *testing.T, url string) (pid uint32, release func()) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("locker connect: %v", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatalf("locker begin: %v", err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE consensus.consensus IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatalf("lock table: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(context.Background()); err != nil {
				t.Errorf("locker rollback: %v", err)
			}
			if err := conn.Close(context.Background()); err != nil {
				t.Errorf("locker close: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return conn.PgConn().PID(), release
}

// sessions counts the backend's sessions on the database: every session but
// the monitor's own and the locker's.
type sessions struct {
	conn      *pgx.Conn
	lockerPID uint32
}

func watchSessions(t *testing.T, url string, lockerPID uint32) *sessions {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("monitor connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return &sessions{conn: conn, lockerPID: lockerPID}
}

// count returns the number of sessions and how many of them wait for a lock.
func (s *sessions) count(ctx context.Context) (total, waiting int, err error) {
	err = s.conn.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock')
		FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1`,
		s.lockerPID).Scan(&total, &waiting)
	return total, waiting, err
}

// waitFor polls cond until it holds or the timeout passes, then reports
// whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancelledCallsFreeBackendConnections cancels 1,000 calls while they
// wait in PostgreSQL behind a table lock. A cancelled gRPC call must cancel
// its backend query, so that the database never holds more sessions than the
// pool allows, no goroutine is left behind, and the service works as soon as
// the lock goes.
func TestCancelledCallsFreeBackendConnections(t *testing.T) {
	pgSrv := pgtest.Require(t, pg)
	url := pgSrv.CreateDatabase(t)
	const maxConns = 4
	store := openPostgres(t, url, postgres.Serializable, maxConns)
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	c := rpctest.Dial(t, []string{srv.Addr}, client.WithMaxAttempts(1))
	ctx := t.Context()
	if committed, err := c.CompareAndSet(ctx, "s", vd(0, "v0")); err != nil || !committed {
		t.Fatalf("setup cas = %v, %v", committed, err)
	}

	lockerPID, release := lockTable(t, url)
	monitor := watchSessions(t, url, lockerPID)
	runtime.GC()
	baseline := runtime.NumGoroutine()

	const calls = 1000
	const workers = 50
	var next atomic.Int64
	var wrong atomic.Int64
	var firstWrong atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= calls {
					return
				}
				// Alternate reads and writes, and deadlines with explicit
				// cancellation right after the request is sent.
				callCtx, cancel := context.WithTimeout(ctx, time.Duration(5+i%20)*time.Millisecond)
				if i%4 == 3 {
					go func() { time.Sleep(2 * time.Millisecond); cancel() }()
				}
				var err error
				if i%2 == 0 {
					_, err = c.CompareAndSet(callCtx, "s", vd(1, fmt.Sprintf("never %d", i)))
				} else {
					_, err = c.Head(callCtx, "s")
				}
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("call %d: %v", i, err))
				}
			}
		}()
	}
	// Sample the database's sessions while the calls run.
	maxSessions, maxWaiting := 0, 0
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		for {
			total, waiting, err := monitor.count(ctx)
			if err != nil {
				sampled <- err
				return
			}
			maxSessions = max(maxSessions, total)
			maxWaiting = max(maxWaiting, waiting)
			select {
			case <-stop:
				sampled <- nil
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(stop)
	if err := <-sampled; err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	t.Logf("during the cancellations: up to %d sessions, up to %d waiting for the lock", maxSessions, maxWaiting)
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d of %d calls behind the lock did not fail with their context's error; first: %v", n, calls, firstWrong.Load())
	}
	if maxWaiting == 0 {
		t.Errorf("no call was ever seen waiting for the lock: the calls did not reach the database")
	}
	if maxSessions > maxConns {
		t.Errorf("the database held up to %d sessions for the backend during the cancellations, want at most the pool size %d", maxSessions, maxConns)
	}
	// The pool bounds the sessions even while cancelled ones close.
	total, _, err := monitor.count(ctx)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	if total > maxConns {
		t.Errorf("after the cancellations: %d sessions, want at most the pool size %d", total, maxConns)
	}

	release()
	// Once the lock is gone nothing waits in the database any more.
	var waiting int
	if !waitFor(20*time.Second, func() bool {
		var err error
		total, waiting, err = monitor.count(ctx)
		return err == nil && waiting == 0 && total <= maxConns
	}) {
		t.Errorf("after the lock was released: %d sessions, %d waiting for a lock; want at most %d and none waiting", total, waiting, maxConns)
	}
	// A cancelled write is indeterminate: one whose statement was still
	// waiting when the lock went (its cancellation not yet at the database)
	// may have committed. The head is v0 or one of those, and the service
	// takes the next write at once.
	head, err := c.Head(ctx, "s")
	if err != nil || head == nil || (head.SeqNo == 0) != (string(head.Data) == "v0") ||
		(head.SeqNo == 1 && !strings.HasPrefix(string(head.Data), "never ")) || head.SeqNo > 1 {
		t.Fatalf("head after the storm = %+v, %v; want {0 v0} or a cancelled {1 never ...}", head, err)
	}
	after := vd(head.SeqNo+1, "after the storm")
	committed, err := c.CompareAndSet(ctx, "s", after)
	if err != nil || !committed {
		t.Fatalf("cas after the storm = %v, %v; want committed", committed, err)
	}
	if got, err := c.Head(ctx, "s"); err != nil || got == nil || got.SeqNo != after.SeqNo || string(got.Data) != "after the storm" {
		t.Fatalf("head after the storm = %+v, %v; want %+v", got, err, after)
	}
	var now int
	if !waitFor(20*time.Second, func() bool {
		runtime.GC()
		now = runtime.NumGoroutine()
		return now <= baseline
	}) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d, baseline %d\n%s", now, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// TestServerStoppedMidCallIsIndeterminate stops the server while a write
// waits in PostgreSQL: the client cannot know whether it committed.
func TestServerStoppedMidCallIsIndeterminate(t *testing.T) {
	pgSrv := pgtest.Require(t, pg)
	url := pgSrv.CreateDatabase(t)
	store := openPostgres(t, url, postgres.Serializable, 4)
	srv := rpctest.Serve(t, store, server.Config{Logger: quietLogger()})
	c := rpctest.Dial(t, []string{srv.Addr})
	ctx := t.Context()
	if committed, err := c.CompareAndSet(ctx, "s", vd(0, "v0")); err != nil || !committed {
		t.Fatalf("setup cas = %v, %v", committed, err)
	}
	lockerPID, release := lockTable(t, url)
	monitor := watchSessions(t, url, lockerPID)

	done := make(chan error, 1)
	go func() {
		_, err := c.CompareAndSet(ctx, "s", vd(1, "v1"))
		done <- err
	}()
	if !waitFor(10*time.Second, func() bool {
		_, waiting, err := monitor.count(ctx)
		return err == nil && waiting == 1
	}) {
		t.Fatalf("the write never reached the database")
	}
	srv.Stop(t, 50*time.Millisecond)
	err := <-done
	release()
	if err == nil || backend.IsDeterminate(err) {
		t.Fatalf("write cut by a server stop: %v (determinate=%v), want indeterminate", err, backend.IsDeterminate(err))
	}
	if code := status.Code(errors.Unwrap(err)); code != codes.Unavailable {
		t.Errorf("write cut by a server stop: status %v, want Unavailable (%v)", code, err)
	}
	if !strings.Contains(err.Error(), "compare_and_set via "+srv.Addr) {
		t.Errorf("error %q does not name the call and endpoint", err)
	}
}
