package hclogslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// lockedBuffer exists because Raft logs from several goroutines at once and
// the test reads the buffer while they may still be running.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// line is one decoded JSON record. keys keeps the top-level key order, and
// repeats, which a map would hide.
type line struct {
	raw    string
	keys   []string
	fields map[string]any
}

func (l line) level() string  { s, _ := l.fields["level"].(string); return s }
func (l line) msg() string    { s, _ := l.fields["msg"].(string); return s }
func (l line) logger() string { s, _ := l.fields[NameKey].(string); return s }

// attrKeys drops the keys every slog JSON record has, leaving ours.
func (l line) attrKeys() []string {
	var out []string
	for _, k := range l.keys {
		switch k {
		case "time", "level", "msg":
		default:
			out = append(out, k)
		}
	}
	return out
}

func decodeLines(t *testing.T, out string) []line {
	t.Helper()
	var lines []line
	for _, raw := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if raw == "" {
			continue
		}
		l := line{raw: raw}
		if err := json.Unmarshal([]byte(raw), &l.fields); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, raw)
		}
		dec := json.NewDecoder(strings.NewReader(raw))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("token: %v", err)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			l.keys = append(l.keys, tok.(string))
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatalf("value: %v", err)
			}
		}
		lines = append(lines, l)
	}
	return lines
}

func newJSON(level slog.Leveler) (*lockedBuffer, *slog.Logger) {
	buf := &lockedBuffer{}
	return buf, slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
}

func one(t *testing.T, buf *lockedBuffer) line {
	t.Helper()
	lines := decodeLines(t, buf.String())
	if len(lines) != 1 {
		t.Fatalf("want exactly 1 line, got %d:\n%s", len(lines), buf.String())
	}
	return lines[0]
}

func wantKeys(t *testing.T, l line, want ...string) {
	t.Helper()
	if got := l.attrKeys(); !reflect.DeepEqual(got, want) {
		t.Errorf("attribute keys = %q, want %q\n%s", got, want, l.raw)
	}
}

func wantField(t *testing.T, l line, key string, want any) {
	t.Helper()
	got, ok := l.fields[key]
	if !ok {
		t.Errorf("no %q in %s", key, l.raw)
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v\n%s", key, got, want, l.raw)
	}
}

func TestLevelMapping(t *testing.T) {
	buf, sl := newJSON(LevelTrace)
	l := New(sl, "raft")
	l.Trace("t", "k", 1)
	l.Debug("d", "k", 2)
	l.Info("i", "k", 3)
	l.Warn("w", "k", 4)
	l.Error("e", "k", 5)
	l.Log(hclog.Warn, "lw", "k", 6)

	want := []struct {
		level, msg string
		k          float64
	}{
		{"DEBUG-4", "t", 1},
		{"DEBUG", "d", 2},
		{"INFO", "i", 3},
		{"WARN", "w", 4},
		{"ERROR", "e", 5},
		{"WARN", "lw", 6},
	}
	lines := decodeLines(t, buf.String())
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		l := lines[i]
		if l.level() != w.level || l.msg() != w.msg || l.logger() != "raft" {
			t.Errorf("line %d = level %q msg %q logger %q, want %q %q \"raft\"", i, l.level(), l.msg(), l.logger(), w.level, w.msg)
		}
		wantKeys(t, l, NameKey, "k")
		wantField(t, l, "k", w.k)
	}
	if got := l.GetLevel(); got != hclog.Trace {
		t.Errorf("GetLevel = %v, want trace", got)
	}
	if !l.IsTrace() || !l.IsDebug() || !l.IsInfo() || !l.IsWarn() || !l.IsError() {
		t.Error("a trace-level handler should enable every level")
	}
}

// The JSON handler's Handle does not re-check its level (slog.Logger does
// that), so this fails if the bridge hands it a record below the threshold.
func TestWarnHandlerSuppressesInfo(t *testing.T) {
	buf, sl := newJSON(slog.LevelWarn)
	l := New(sl, "raft")
	if l.IsTrace() || l.IsDebug() || l.IsInfo() {
		t.Errorf("IsTrace/IsDebug/IsInfo = %v/%v/%v, want all false", l.IsTrace(), l.IsDebug(), l.IsInfo())
	}
	if !l.IsWarn() || !l.IsError() {
		t.Errorf("IsWarn/IsError = %v/%v, want true", l.IsWarn(), l.IsError())
	}
	if got := l.GetLevel(); got != hclog.Warn {
		t.Errorf("GetLevel = %v, want warn", got)
	}
	l.Trace("t")
	l.Debug("d")
	l.Info("i")
	l.Log(hclog.Info, "li")
	l.Named("sub").Info("si")
	l.With("a", 1).Info("wi")
	if buf.String() != "" {
		t.Fatalf("lines below warn were written:\n%s", buf.String())
	}
	l.Warn("w")
	got := one(t, buf)
	if got.level() != "WARN" || got.msg() != "w" || got.logger() != "raft" {
		t.Errorf("got %s", got.raw)
	}
}

func TestLevelFollowsHandlerAtRuntime(t *testing.T) {
	var lv slog.LevelVar
	lv.Set(slog.LevelError)
	buf, sl := newJSON(&lv)
	l := New(sl, "raft")
	if l.IsWarn() || l.GetLevel() != hclog.Error {
		t.Fatalf("at error: IsWarn %v GetLevel %v", l.IsWarn(), l.GetLevel())
	}
	lv.Set(slog.LevelDebug)
	if !l.IsDebug() || l.IsTrace() || l.GetLevel() != hclog.Debug {
		t.Fatalf("at debug: IsDebug %v IsTrace %v GetLevel %v", l.IsDebug(), l.IsTrace(), l.GetLevel())
	}
	l.Debug("d")
	if got := one(t, buf); got.level() != "DEBUG" {
		t.Errorf("got %s", got.raw)
	}
}

func TestSetLevelOnlyNarrows(t *testing.T) {
	buf, sl := newJSON(slog.LevelDebug)
	l := New(sl, "raft")
	sub := l.Named("sub").With("a", 1)

	l.SetLevel(hclog.Warn)
	if l.IsInfo() || sub.IsInfo() || l.GetLevel() != hclog.Warn || sub.GetLevel() != hclog.Warn {
		t.Errorf("after SetLevel(warn): IsInfo %v/%v GetLevel %v/%v", l.IsInfo(), sub.IsInfo(), l.GetLevel(), sub.GetLevel())
	}
	l.Info("i")
	sub.Info("si")
	if buf.String() != "" {
		t.Fatalf("SetLevel(warn) let info through:\n%s", buf.String())
	}

	// A sub-logger's SetLevel reaches its parent, as in hclog.
	sub.SetLevel(hclog.Trace)
	if l.IsTrace() || l.GetLevel() != hclog.Debug {
		t.Errorf("SetLevel(trace) widened past the handler: IsTrace %v GetLevel %v", l.IsTrace(), l.GetLevel())
	}

	l.SetLevel(hclog.Off)
	if l.IsError() || l.GetLevel() != hclog.Off {
		t.Errorf("after SetLevel(off): IsError %v GetLevel %v", l.IsError(), l.GetLevel())
	}
	l.Error("e")
	l.Log(hclog.Off, "o")
	if buf.String() != "" {
		t.Fatalf("SetLevel(off) let lines through:\n%s", buf.String())
	}

	l.SetLevel(hclog.NoLevel)
	if got := l.GetLevel(); got != hclog.Debug {
		t.Errorf("after SetLevel(NoLevel): GetLevel %v, want debug", got)
	}
	l.Debug("d")
	if got := one(t, buf); got.level() != "DEBUG" || got.msg() != "d" {
		t.Errorf("got %s", got.raw)
	}
}

func TestWithNamedResetNamed(t *testing.T) {
	buf, sl := newJSON(slog.LevelInfo)
	root := New(sl, "raft")
	w := root.With("replica", "r1", "term", 3)

	if got, want := w.ImpliedArgs(), []any{"replica", "r1", "term", 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("ImpliedArgs = %#v, want %#v", got, want)
	}
	if got := root.ImpliedArgs(); len(got) != 0 {
		t.Errorf("With changed its parent: ImpliedArgs = %#v", got)
	}

	check := func(name string, l hclog.Logger, wantName string, wantAttrs map[string]any, keys ...string) {
		t.Helper()
		l.Info(name, "x", "y")
		got := one(t, buf)
		buf.buf.Reset()
		if got.msg() != name || got.logger() != wantName || l.Name() != wantName {
			t.Errorf("%s: msg %q logger %q Name() %q, want logger %q", name, got.msg(), got.logger(), l.Name(), wantName)
		}
		wantKeys(t, got, keys...)
		for k, v := range wantAttrs {
			wantField(t, got, k, v)
		}
	}

	check("root", root, "raft", nil, NameKey, "x")
	check("with", w, "raft", map[string]any{"replica": "r1", "term": 3.0}, NameKey, "replica", "term", "x")
	check("named", w.Named("snapshot"), "raft.snapshot", map[string]any{"replica": "r1"}, NameKey, "replica", "term", "x")
	check("named twice", w.Named("a").Named("b"), "raft.a.b", nil, NameKey, "replica", "term", "x")
	check("reset", w.Named("a").ResetNamed("other"), "other", map[string]any{"replica": "r1"}, NameKey, "replica", "term", "x")

	// A repeated key replaces the earlier value in place instead of being
	// written twice.
	w2 := w.With("replica", "r2", "extra", true)
	check("with again", w2, "raft", map[string]any{"replica": "r2", "extra": true}, NameKey, "replica", "term", "extra", "x")
	if got, want := w2.ImpliedArgs(), []any{"replica", "r2", "term", 3, "extra", true}; !reflect.DeepEqual(got, want) {
		t.Errorf("ImpliedArgs = %#v, want %#v", got, want)
	}

	// Editing the returned slice must not change the logger.
	args := w.ImpliedArgs()
	args[1] = "mutated"
	_ = append(args[:2], "k", "v")
	check("after mutation", w, "raft", map[string]any{"replica": "r1", "term": 3.0}, NameKey, "replica", "term", "x")

	// Named from an unnamed logger does not start with a dot; an unnamed
	// logger writes no name attribute at all.
	anon := New(sl, "")
	check("anon", anon, "", nil, "x")
	check("anon named", anon.Named("raft"), "raft", nil, NameKey, "x")

	// With on the odd argument count keeps the stray value, like Log does.
	odd := root.With("a", 1, "stray")
	if got, want := odd.ImpliedArgs(), []any{"a", 1, hclog.MissingKey, "stray"}; !reflect.DeepEqual(got, want) {
		t.Errorf("odd ImpliedArgs = %#v, want %#v", got, want)
	}
	check("odd with", odd, "raft", map[string]any{"a": 1.0, hclog.MissingKey: "stray"}, NameKey, "a", hclog.MissingKey, "x")
}

type textErr struct{}

func (textErr) Error() string { return "boom" }

// Format makes %+v differ from Error(), as it does for errors that carry a
// stack, so the test sees whether the handler or the bridge rendered it.
func (textErr) Format(f fmt.State, verb rune) { io.WriteString(f, "boom\n\tat stack frame") }

// MarshalJSON would win in slog's JSON handler if the bridge passed the
// error through untouched.
func (textErr) MarshalJSON() ([]byte, error) { return []byte(`{"not":"the message"}`), nil }

type nilPtrErr struct{ msg string }

func (e *nilPtrErr) Error() string { return e.msg }

type node struct{ id string }

func (n node) String() string { return "Node " + n.id }

type nodePtr struct{ id string }

func (n *nodePtr) String() string { return n.id }

type marshalStringer struct{}

func (marshalStringer) String() string               { return "stringer" }
func (marshalStringer) MarshalText() ([]byte, error) { return []byte("marshaled"), nil }

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.GroupValue(slog.Int("a", 1)) }

func TestArgs(t *testing.T) {
	buf, sl := newJSON(slog.LevelInfo)
	l := New(sl, "raft")
	var nilErr *nilPtrErr

	tests := []struct {
		name string
		args []any
		keys []string
		want map[string]any
	}{
		{"none", nil, []string{NameKey}, nil},
		{"odd", []any{"a", 1, "dangling"}, []string{NameKey, "a", hclog.MissingKey},
			map[string]any{"a": 1.0, hclog.MissingKey: "dangling"}},
		{"single", []any{"dangling"}, []string{NameKey, hclog.MissingKey},
			map[string]any{hclog.MissingKey: "dangling"}},
		{"non-string keys", []any{42, "v", nil, "n", errors.New("ek"), 1}, []string{NameKey, "42", "<nil>", "ek"},
			map[string]any{"42": "v", "<nil>": "n", "ek": 1.0}},
		{"fmt", []any{"servers", hclog.Fmt("%d/%s", 1, "x")}, []string{NameKey, "servers"},
			map[string]any{"servers": "1/x"}},
		{"format not string", []any{"f", hclog.Format{1, 2}}, []string{NameKey, "f"},
			map[string]any{"f": "1 2"}},
		{"format empty", []any{"f", hclog.Format{}}, []string{NameKey, "f"},
			map[string]any{"f": ""}},
		{"error", []any{"error", errors.New("disk full"), "wrapped", fmt.Errorf("ctx: %w", io.EOF)}, []string{NameKey, "error", "wrapped"},
			map[string]any{"error": "disk full", "wrapped": "ctx: EOF"}},
		{"error with marshaler", []any{"error", textErr{}}, []string{NameKey, "error"},
			map[string]any{"error": "boom"}},
		{"typed nil error", []any{"error", nilErr}, []string{NameKey, "error"}, nil},
		{"hex octal binary", []any{"h", hclog.Hex(255), "o", hclog.Octal(8), "b", hclog.Binary(5)}, []string{NameKey, "h", "o", "b"},
			map[string]any{"h": "0xff", "o": "010", "b": "0b101"}},
		{"quote", []any{"q", hclog.Quote("a\n\"b\"")}, []string{NameKey, "q"},
			map[string]any{"q": "a\n\"b\""}},
		{"trailing stacktrace", []any{"a", 1, hclog.CapturedStacktrace("goroutine 1")}, []string{NameKey, "a", "stacktrace"},
			map[string]any{"stacktrace": "goroutine 1"}},
		{"native kinds", []any{"n", 1.5, "b", false, "s", []string{"x"}, "nil", nil}, []string{NameKey, "n", "b", "s", "nil"},
			map[string]any{"n": 1.5, "b": false, "s": []any{"x"}, "nil": nil}},
		{"stringer", []any{"node", node{id: "n1"}, "nil stringer", (*nodePtr)(nil)}, []string{NameKey, "node", "nil stringer"},
			map[string]any{"node": "Node n1"}},
		{"text marshaler beats stringer", []any{"ip", marshalStringer{}}, []string{NameKey, "ip"},
			map[string]any{"ip": "marshaled"}},
		{"log valuer", []any{"v", valuer{}}, []string{NameKey, "v"},
			map[string]any{"v": map[string]any{"a": 1.0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.buf.Reset()
			l.Info(tt.name, tt.args...)
			got := one(t, buf)
			if got.msg() != tt.name || got.level() != "INFO" || got.logger() != "raft" {
				t.Errorf("got %s", got.raw)
			}
			wantKeys(t, got, tt.keys...)
			for k, v := range tt.want {
				wantField(t, got, k, v)
			}
		})
	}

	buf.buf.Reset()
	l.Info("m", "error", nilErr, "stringer", (*nodePtr)(nil))
	got := one(t, buf)
	for _, k := range []string{"error", "stringer"} {
		if s, _ := got.fields[k].(string); !strings.HasPrefix(s, "<panic: ") {
			t.Errorf("typed nil %s rendered as %q", k, s)
		}
	}
}

// slog's text handler prints errors with %+v; the bridge must not let that
// turn a one-line error into a stack dump.
func TestErrorUsesErrorMethodInTextHandler(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})), "raft")
	l.Warn("failed", "error", textErr{})
	if got, want := buf.String(), "level=WARN msg=failed logger=raft error=boom\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLevelsOutsideHclogRange(t *testing.T) {
	buf, sl := newJSON(LevelTrace)
	l := New(sl, "raft")
	l.Log(hclog.NoLevel, "never")
	if buf.String() != "" {
		t.Fatalf("NoLevel line was written:\n%s", buf.String())
	}
	l.Log(hclog.Off, "off")
	if got := one(t, buf); got.level() != "ERROR" || got.msg() != "off" {
		t.Errorf("got %s", got.raw)
	}
}

func TestStandardLogger(t *testing.T) {
	tests := []struct {
		name      string
		opts      *hclog.StandardLoggerOptions
		in        string
		wantLevel string // "" means no line
		wantMsg   string
	}{
		{"infer warn", &hclog.StandardLoggerOptions{InferLevels: true}, "[WARN] foo", "WARN", "foo"},
		{"infer err", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERR] bar", "ERROR", "bar"},
		{"infer error", &hclog.StandardLoggerOptions{InferLevels: true}, "[ERROR]  baz ", "ERROR", "baz"},
		{"infer info", &hclog.StandardLoggerOptions{InferLevels: true}, "[INFO] i", "INFO", "i"},
		{"infer debug below handler", &hclog.StandardLoggerOptions{InferLevels: true}, "[DEBUG] d", "", ""},
		{"infer trace below handler", &hclog.StandardLoggerOptions{InferLevels: true}, "[TRACE] t", "", ""},
		{"infer no prefix", &hclog.StandardLoggerOptions{InferLevels: true}, "plain", "INFO", "plain"},
		{"no inference", &hclog.StandardLoggerOptions{}, "[WARN] foo", "INFO", "[WARN] foo"},
		{"nil opts", nil, "[ERROR] foo", "INFO", "[ERROR] foo"},
		{"timestamp", &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2024/01/02 15:04:05.000000 [WARN] ts", "WARN", "ts"},
		{"timestamp ignored without flag", &hclog.StandardLoggerOptions{InferLevels: true},
			"2024/01/02 15:04:05 [WARN] ts", "INFO", "2024/01/02 15:04:05 [WARN] ts"},
		// hclog's own timestamp regexp would strip "ERROR" here.
		{"timestamp keeps words", &hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true},
			"2024-01-02T15:04:05Z ERROR: disk full", "INFO", "ERROR: disk full"},
		{"force strips prefix", &hclog.StandardLoggerOptions{ForceLevel: hclog.Error}, "[INFO] x", "ERROR", "x"},
		{"force beats infer", &hclog.StandardLoggerOptions{ForceLevel: hclog.Warn, InferLevels: true}, "[ERROR] x", "WARN", "x"},
		{"force below handler", &hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}, "x", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf, sl := newJSON(slog.LevelInfo)
			New(sl, "raft").StandardLogger(tt.opts).Print(tt.in)
			if tt.wantLevel == "" {
				if buf.String() != "" {
					t.Fatalf("want no line, got:\n%s", buf.String())
				}
				return
			}
			got := one(t, buf)
			if got.level() != tt.wantLevel || got.msg() != tt.wantMsg || got.logger() != "raft" {
				t.Errorf("got level %q msg %q logger %q, want %q %q \"raft\"", got.level(), got.msg(), got.logger(), tt.wantLevel, tt.wantMsg)
			}
			wantKeys(t, got, NameKey)
		})
	}
}

func TestStandardWriter(t *testing.T) {
	buf, sl := newJSON(slog.LevelInfo)
	w := New(sl, "raft").With("replica", "r1").StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	in := []byte("[WARN] from writer \n")
	n, err := w.Write(in)
	if n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(in))
	}
	got := one(t, buf)
	if got.level() != "WARN" || got.msg() != "from writer" || got.logger() != "raft" {
		t.Errorf("got %s", got.raw)
	}
	wantKeys(t, got, NameKey, "replica")

	// A suppressed line still reports a full write; log.Logger treats a
	// short write as an error.
	buf.buf.Reset()
	in = []byte("[DEBUG] dropped\n")
	if n, err := w.Write(in); n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(in))
	}
	if buf.String() != "" {
		t.Fatalf("debug line written:\n%s", buf.String())
	}
}

func TestNilLoggerUsesDefault(t *testing.T) {
	buf, sl := newJSON(slog.LevelInfo)
	prev := slog.Default()
	slog.SetDefault(sl)
	defer slog.SetDefault(prev)
	New(nil, "raft").Info("hello")
	if got := one(t, buf); got.msg() != "hello" || got.logger() != "raft" {
		t.Errorf("got %s", got.raw)
	}
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                    { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error)    { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error         { return rc.Close() }
func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

type nopSnapshot struct{}

// runRaft bootstraps a single in-memory voter, waits for it to lead, shuts
// it down and returns everything Raft logged through the bridge.
func runRaft(t *testing.T, level slog.Level) []line {
	t.Helper()
	buf, sl := newJSON(level)
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = New(sl, "raft")

	addr, trans := raft.NewInmemTransport("")
	defer trans.Close()
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(conf, nopFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatalf("NewRaft: %v", err)
	}
	defer func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: addr}}}
	if err := r.BootstrapCluster(boot).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 5s; state %v\n%s", r.State(), buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return decodeLines(t, buf.String())
}

func TestRaftLogsThroughSlog(t *testing.T) {
	t.Run("info", func(t *testing.T) {
		lines := runRaft(t, slog.LevelInfo)
		var named, info int
		for _, l := range lines {
			if l.logger() == "raft" {
				named++
			}
			switch l.level() {
			case "INFO":
				info++
			case "WARN", "ERROR":
			default:
				t.Errorf("line at %q from an info handler: %s", l.level(), l.raw)
			}
			if l.msg() == "initial configuration" {
				if _, ok := l.fields["servers"].(string); !ok {
					t.Errorf("hclog.Fmt value not rendered as a string: %s", l.raw)
				}
			}
			// Raft passes itself; it has a String method but no exported
			// fields, so only String() says anything useful.
			if l.msg() == "entering follower state" {
				if s, _ := l.fields["follower"].(string); !strings.HasPrefix(s, "Node at ") {
					t.Errorf("*raft.Raft not rendered with String(): %s", l.raw)
				}
			}
		}
		if named == 0 {
			t.Errorf("no line carries %q:\"raft\" among %d lines", NameKey, len(lines))
		}
		if info == 0 {
			t.Errorf("no INFO line: the warn-level run below would prove nothing")
		}
		if t.Failed() || testing.Verbose() {
			for _, l := range lines {
				t.Log(l.raw)
			}
		}
	})
	t.Run("warn", func(t *testing.T) {
		for _, l := range runRaft(t, slog.LevelWarn) {
			if l.level() != "WARN" && l.level() != "ERROR" {
				t.Errorf("line at %q from a warn handler: %s", l.level(), l.raw)
			}
		}
	})
}
