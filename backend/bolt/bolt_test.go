package bolt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/backend/conformance"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openAt(t testing.TB, path string, opts bolt.Options) *bolt.Backend {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := bolt.Open(path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return s
}

func openTemp(t testing.TB, opts bolt.Options) *bolt.Backend {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "consensus.db"), opts)
}

func TestConformance(t *testing.T) {
	before := runtime.NumGoroutine()
	conformance.Run(t, func(t *testing.T) backend.Fencer { return openTemp(t, bolt.Options{}) })
	// Every subtest's store is closed by now; neither the suite's goroutines
	// nor any commit loop may outlive it. Exiting goroutines need a moment.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the suite, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

func wantDeterminate(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if err == nil || !errors.Is(err, sentinel) || !backend.IsDeterminate(err) {
		t.Errorf("%s: got %v, want a determinate error matching %q", what, err, sentinel)
	}
}

func mustCAS(t *testing.T, s backend.Consensus, shard string, v backend.VersionedData, want bool) {
	t.Helper()
	got, err := s.CompareAndSet(t.Context(), shard, v)
	if err != nil || got != want {
		t.Fatalf("cas(%q, {%d, %q}) = %v, %v; want %v, nil", shard, v.SeqNo, v.Data, got, err, want)
	}
}

func mustScan(t *testing.T, s backend.Consensus, shard string, want ...backend.VersionedData) {
	t.Helper()
	got, err := s.Scan(t.Context(), shard, 0, backend.MaxSeqNo)
	if err != nil {
		t.Fatalf("scan(%q): %v", shard, err)
	}
	if !slices.EqualFunc(got, want, func(a, b backend.VersionedData) bool {
		return a.SeqNo == b.SeqNo && bytes.Equal(a.Data, b.Data)
	}) {
		t.Errorf("scan(%q) = %v, want %v", shard, got, want)
	}
}

func mustKeys(t *testing.T, s backend.Consensus, want ...string) {
	t.Helper()
	got, err := s.ListKeys(t.Context())
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("list_keys = %q, %v; want %q", got, err, want)
	}
}

// TestDurableAcrossReopen closes the store and opens the file again: versions,
// truncations and the fence epoch must all come back.
func TestDurableAcrossReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "consensus.db")
	first, err := bolt.Open(path, bolt.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := first.Fence(ctx, 3); err != nil {
		t.Fatalf("fence(3): %v", err)
	}
	w3 := first.AtEpoch(3)
	for seqno := range uint64(5) {
		mustCAS(t, w3, "a", vd(seqno, fmt.Sprintf("a%d", seqno)), true)
	}
	if deleted, err := w3.Truncate(ctx, "a", 2); err != nil || deleted != 2 {
		t.Fatalf("truncate(a, 2) = %d, %v; want 2, nil", deleted, err)
	}
	got, err := w3.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "c", New: vd(0, "c0")}, {Shard: "b", New: vd(0, "")}})
	if err != nil || !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("multi = %v, %v; want [true true]", got, err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := w3.Close(); err != nil {
		t.Errorf("second close through another handle: %v, want nil", err)
	}

	// Every handle on the closed store refuses work without touching the file.
	_, err = w3.CompareAndSet(ctx, "a", vd(5, "a5"))
	wantDeterminate(t, "cas on a closed store", err, bolt.ErrClosed)
	_, err = w3.Head(ctx, "a")
	wantDeterminate(t, "head on a closed store", err, bolt.ErrClosed)
	wantDeterminate(t, "fence on a closed store", first.Fence(ctx, 4), bolt.ErrClosed)

	second := openAt(t, path, bolt.Options{})
	mustScan(t, second, "a", vd(2, "a2"), vd(3, "a3"), vd(4, "a4"))
	mustScan(t, second, "b", vd(0, ""))
	mustScan(t, second, "c", vd(0, "c0"))
	mustKeys(t, second, "a", "b", "c")

	_, err = second.AtEpoch(2).CompareAndSet(ctx, "a", vd(5, "from epoch 2"))
	wantDeterminate(t, "epoch 2 cas after reopen", err, backend.ErrFenced)
	_, err = second.CompareAndSet(ctx, "a", vd(5, "from epoch 0"))
	wantDeterminate(t, "epoch 0 cas after reopen", err, backend.ErrFenced)
	wantDeterminate(t, "fence(2) after reopen", second.Fence(ctx, 2), backend.ErrFenced)
	mustCAS(t, second.AtEpoch(3), "a", vd(5, "a5"), true)
	mustScan(t, second, "a", vd(2, "a2"), vd(3, "a3"), vd(4, "a4"), vd(5, "a5"))
}

const (
	childEnv   = "COMMITTER_BOLT_KILL_CHILD"
	childPath  = "COMMITTER_BOLT_KILL_PATH"
	killShards = 4
)

// TestMain lets the test binary double as the process that
// TestAcknowledgedWritesSurviveKill kills.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runKillChild(os.Getenv(childPath)))
	}
	os.Exit(m.Run())
}

func killData(shard string, seqno uint64) []byte {
	return fmt.Appendf(nil, "%s version %d", shard, seqno)
}

// runKillChild writes to killShards shards as fast as it can and prints every
// acknowledged write, until it is killed.
func runKillChild(path string) int {
	s, err := bolt.Open(path, bolt.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex // serializes lines on stdout
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for i := range killShards {
		wg.Go(func() {
			shard := fmt.Sprintf("shard-%d", i)
			for seqno := uint64(0); ; seqno++ {
				ok, err := s.CompareAndSet(context.Background(), shard, backend.VersionedData{SeqNo: seqno, Data: killData(shard, seqno)})
				if err != nil || !ok {
					fmt.Fprintf(os.Stderr, "cas(%s, %d) = %v, %v\n", shard, seqno, ok, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "%s %d\n", shard, seqno)
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait() // never returns: the writers stop only when the process dies
	return 0
}

// TestAcknowledgedWritesSurviveKill SIGKILLs a process in the middle of a
// stream of writes. Every write it acknowledged must be in the file, each
// shard's history must be gap-free, and the file must accept writes again.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	const wantAcks = 400
	path := filepath.Join(t.TempDir(), "consensus.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childPath+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	acked := make(map[string]uint64)
	lines := bufio.NewScanner(stdout)
	for n := 0; n < wantAcks; n++ {
		if !lines.Scan() {
			t.Fatalf("child stopped after %d acknowledgements: %v; stderr:\n%s", n, lines.Err(), stderr.String())
		}
		shard, seqno, ok := strings.Cut(lines.Text(), " ")
		v, err := strconv.ParseUint(seqno, 10, 64)
		if !ok || err != nil {
			t.Fatalf("child printed %q", lines.Text())
		}
		acked[shard] = max(acked[shard], v)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	// Acknowledgements printed between our last read and the kill count too.
	for lines.Scan() {
		shard, seqno, _ := strings.Cut(lines.Text(), " ")
		if v, err := strconv.ParseUint(seqno, 10, 64); err == nil {
			acked[shard] = max(acked[shard], v)
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL; stderr:\n%s", err, stderr.String())
	}

	s := openAt(t, path, bolt.Options{})
	var keys []string
	for i := range killShards {
		shard := fmt.Sprintf("shard-%d", i)
		keys = append(keys, shard)
		versions, err := s.Scan(t.Context(), shard, 0, backend.MaxSeqNo)
		if err != nil {
			t.Fatalf("scan(%s): %v", shard, err)
		}
		if n := uint64(len(versions)); n < acked[shard]+1 {
			t.Errorf("%s: %d versions in the file, but seqno %d was acknowledged", shard, n, acked[shard])
		}
		for i, v := range versions {
			if v.SeqNo != uint64(i) || !bytes.Equal(v.Data, killData(shard, v.SeqNo)) {
				t.Errorf("%s: version %d is {%d, %q}, want {%d, %q}", shard, i, v.SeqNo, v.Data, i, killData(shard, uint64(i)))
				break
			}
		}
		next := uint64(len(versions))
		mustCAS(t, s, shard, backend.VersionedData{SeqNo: next, Data: killData(shard, next)}, true)
	}
	mustKeys(t, s, keys...)
	t.Logf("acknowledged before the kill: %v", acked)
}

func TestMaxDataBytes(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t, bolt.Options{MaxDataBytes: 16})
	_, err := s.CompareAndSet(ctx, "a", backend.VersionedData{SeqNo: 0, Data: make([]byte, 17)})
	wantDeterminate(t, "cas of 17 bytes with a 16 byte limit", err, backend.ErrInvalidArgument)
	_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "b", New: vd(0, "ok")}, {Shard: "a", New: backend.VersionedData{Data: make([]byte, 17)}}})
	wantDeterminate(t, "multi with 17 bytes with a 16 byte limit", err, backend.ErrInvalidArgument)
	mustKeys(t, s)
	mustCAS(t, s, "a", vd(0, "exactly16bytes!!"), true)
	mustScan(t, s, "a", vd(0, "exactly16bytes!!"))

	if _, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.Options{MaxDataBytes: bbolt.MaxValueSize + 1}); err == nil {
		t.Errorf("open with MaxDataBytes above bbolt's value limit succeeded, want an error")
	}
}

// TestDataIsCopied checks that the store neither keeps the caller's buffer nor
// hands out its memory map: mutating either side must not show through (and
// writing into the read-only map would crash).
func TestDataIsCopied(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t, bolt.Options{})
	buf := []byte("original")
	mustCAS(t, s, "a", backend.VersionedData{SeqNo: 0, Data: buf}, true)
	copy(buf, "MUTATED!")
	got, err := s.Head(ctx, "a")
	if err != nil || got == nil || string(got.Data) != "original" {
		t.Fatalf("head(a) = %v, %v; want {0, original}", got, err)
	}
	copy(got.Data, "mutated!")
	versions, err := s.Scan(ctx, "a", 0, 1)
	if err != nil || len(versions) != 1 || string(versions[0].Data) != "original" {
		t.Fatalf("scan(a) = %v, %v; want [{0, original}]", versions, err)
	}
	copy(versions[0].Data, "mutated!")
	mustScan(t, s, "a", vd(0, "original"))
}

// TestLongShardName: the protocol's bound on shard names (below bolt's own
// key limit) holds on every call, and the longest allowed name is stored.
func TestLongShardName(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t, bolt.Options{})
	if backend.MaxShardBytes >= bbolt.MaxKeySize {
		t.Fatalf("MaxShardBytes %d does not fit a bolt key (%d bytes)", backend.MaxShardBytes, bbolt.MaxKeySize)
	}
	long := strings.Repeat("s", backend.MaxShardBytes+1)
	_, err := s.CompareAndSet(ctx, long, vd(0, "x"))
	wantDeterminate(t, "cas with an over-long shard name", err, backend.ErrInvalidArgument)
	_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "a")}, {Shard: long, New: vd(0, "x")}})
	wantDeterminate(t, "multi with an over-long shard name", err, backend.ErrInvalidArgument)
	_, err = s.Head(ctx, long)
	wantDeterminate(t, "head with an over-long shard name", err, backend.ErrInvalidArgument)
	mustKeys(t, s)
	longest := strings.Repeat("s", backend.MaxShardBytes)
	mustCAS(t, s, longest, vd(0, "x"), true)
	mustKeys(t, s, longest)
}

// TestCanceledContext: a write whose context ended before it was issued never
// reaches the file.
func TestCanceledContext(t *testing.T) {
	s := openTemp(t, bolt.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.CompareAndSet(ctx, "a", vd(0, "x"))
	wantDeterminate(t, "cas with a canceled context", err, context.Canceled)
	_, err = s.CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "a", New: vd(0, "x")}})
	wantDeterminate(t, "multi with a canceled context", err, context.Canceled)
	_, err = s.Truncate(ctx, "a", 0)
	wantDeterminate(t, "truncate with a canceled context", err, context.Canceled)
	wantDeterminate(t, "fence with a canceled context", s.Fence(ctx, 1), context.Canceled)
	_, err = s.Head(ctx, "a")
	wantDeterminate(t, "head with a canceled context", err, context.Canceled)
	mustKeys(t, s)
	mustCAS(t, s, "a", vd(0, "x"), true) // epoch still 0: the fence did not happen
}

// TestFileSizeCap fills the file against MaxFileBytes while small writes run
// beside the oversized one: only the oversized write fails, determinately,
// even when it shared a transaction with the others.
func TestFileSizeCap(t *testing.T) {
	const writers = 8
	ctx := t.Context()
	s := openTemp(t, bolt.Options{MaxFileBytes: 4 << 20})
	start := make(chan struct{})
	var wg sync.WaitGroup
	var bigErr error
	wg.Go(func() {
		<-start
		_, bigErr = s.CompareAndSet(ctx, "big", backend.VersionedData{SeqNo: 0, Data: make([]byte, 8<<20)})
	})
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			<-start
			for seqno := range uint64(20) {
				ok, err := s.CompareAndSet(ctx, fmt.Sprintf("small-%d", w), vd(seqno, "x"))
				if err != nil || !ok {
					errs[w] = fmt.Errorf("cas seqno %d = %v, %w", seqno, ok, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	wantDeterminate(t, "8 MiB cas into a 4 MiB file", bigErr, berrors.ErrMaxSizeReached)
	for w, err := range errs {
		if err != nil {
			t.Errorf("small writer %d: %v", w, err)
		}
	}
	if head, err := s.Head(ctx, "big"); err != nil || head != nil {
		t.Errorf("head(big) = %v, %v; want none", head, err)
	}
	var want []string
	for w := range writers {
		shard := fmt.Sprintf("small-%d", w)
		want = append(want, shard)
		head, err := s.Head(ctx, shard)
		if err != nil || head == nil || head.SeqNo != 19 {
			t.Errorf("head(%s) = %v, %v; want seqno 19", shard, head, err)
		}
	}
	mustKeys(t, s, want...)
}

func TestFileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consensus.db")
	openAt(t, path, bolt.Options{})
	s, err := bolt.Open(path, bolt.Options{LockTimeout: 50 * time.Millisecond, Logger: testLogger(t)})
	if !errors.Is(err, berrors.ErrTimeout) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("second open of a locked file = %v, want %v", err, berrors.ErrTimeout)
	}
}

func TestFormatMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "consensus.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return meta.Put([]byte("format"), []byte("99"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(path, bolt.Options{Logger: testLogger(t)})
	if !errors.Is(err, bolt.ErrFormat) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("open of a format 99 file = %v, want %v", err, bolt.ErrFormat)
	}
}

func BenchmarkHead(b *testing.B) {
	s := openTemp(b, bolt.Options{})
	ctx := b.Context()
	data := bytes.Repeat([]byte("x"), 1024)
	for seqno := range uint64(100) {
		if ok, err := s.CompareAndSet(ctx, "a", backend.VersionedData{SeqNo: seqno, Data: data}); err != nil || !ok {
			b.Fatalf("cas: %v, %v", ok, err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if head, err := s.Head(ctx, "a"); err != nil || head.SeqNo != 99 {
			b.Fatalf("head = %v, %v", head, err)
		}
	}
}

// BenchmarkCompareAndSet is one writer: every CaS pays a full fsync.
func BenchmarkCompareAndSet(b *testing.B) {
	s := openTemp(b, bolt.Options{})
	ctx := b.Context()
	data := bytes.Repeat([]byte("x"), 1024)
	var seqno uint64
	for b.Loop() {
		if ok, err := s.CompareAndSet(ctx, "a", backend.VersionedData{SeqNo: seqno, Data: data}); err != nil || !ok {
			b.Fatalf("cas: %v, %v", ok, err)
		}
		seqno++
	}
}

// BenchmarkCompareAndSetParallel has many writers on distinct shards, which
// share fsyncs through the commit loop.
func BenchmarkCompareAndSetParallel(b *testing.B) {
	s := openTemp(b, bolt.Options{})
	ctx := b.Context()
	data := bytes.Repeat([]byte("x"), 1024)
	var mu sync.Mutex
	next := 0
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		shard := fmt.Sprintf("shard-%d", next)
		next++
		mu.Unlock()
		for seqno := uint64(0); pb.Next(); seqno++ {
			if ok, err := s.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: seqno, Data: data}); err != nil || !ok {
				b.Errorf("cas: %v, %v", ok, err)
				return
			}
		}
	})
}
