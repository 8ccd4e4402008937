package hclogslog

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NameKey is the attribute that carries the hclog logger name. hclog puts the
// name in the line header; slog has no header, so it becomes an ordinary
// attribute that a JSON consumer can filter on ("logger":"raft").
const NameKey = "logger"

// LevelTrace is the slog level hclog.Trace maps to. slog has no trace level;
// four below Debug follows slog's own spacing convention, so a handler set to
// LevelDebug drops Raft's trace lines while one set to LevelTrace keeps them.
const LevelTrace = slog.LevelDebug - 4

// New returns an hclog.Logger that writes every line through l's handler,
// with name recorded under NameKey (omitted when name is empty). A nil l
// means slog.Default(), resolved now rather than per line.
//
// Which lines are emitted is decided by the handler's Enabled, so the
// replica's --log-level governs Raft too; SetLevel can only narrow that.
func New(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	lg := &logger{
		root:  l.Handler(),
		name:  name,
		floor: new(atomic.Int32),
	}
	lg.h = lg.derive()
	return lg
}

var _ hclog.Logger = (*logger)(nil)

// logger is immutable after construction apart from the shared floor, so
// sub-loggers can be handed to Raft's goroutines without locking.
type logger struct {
	// root is the caller's handler before our name and implied attributes.
	// Sub-loggers derive from it afresh so that Named and With replace the
	// name and repeated keys instead of stacking duplicate attributes.
	root slog.Handler
	// h is root with the name and implied attributes already applied, so a
	// handler that pre-renders WithAttrs (JSON, text) does that work once per
	// sub-logger rather than once per line.
	h       slog.Handler
	name    string
	implied []pair
	// floor is SetLevel's minimum. It is shared by every logger derived
	// from one New call because hclog documents SetLevel as affecting all
	// related loggers.
	floor *atomic.Int32
}

// pair keeps the caller's original value so ImpliedArgs hands back what
// With was given, not our slog rendering of it.
type pair struct {
	key string
	val any
}

func (l *logger) derive() slog.Handler {
	attrs := make([]slog.Attr, 0, 1+len(l.implied))
	if l.name != "" {
		attrs = append(attrs, slog.String(NameKey, l.name))
	}
	for _, p := range l.implied {
		attrs = append(attrs, slog.Attr{Key: p.key, Value: value(p.val)})
	}
	if len(attrs) == 0 {
		return l.root
	}
	return l.root.WithAttrs(attrs)
}

func (l *logger) sub(name string, implied []pair) *logger {
	s := &logger{root: l.root, name: name, implied: implied, floor: l.floor}
	s.h = s.derive()
	return s
}

// clamp folds levels hclog has no line header for into ones it does. NoLevel
// lines are dropped because hclog itself never emits them (NoLevel sorts
// below every threshold); Off and anything unknown sort above every
// threshold, so hclog always emits them and we keep them visible as errors.
func clamp(level hclog.Level) (hclog.Level, bool) {
	switch {
	case level <= hclog.NoLevel:
		return hclog.NoLevel, false
	case level > hclog.Error:
		return hclog.Error, true
	default:
		return level, true
	}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// enabled expects a clamped level. The handler is asked on every call rather
// than cached because handlers such as one built on a slog.LevelVar may
// change their threshold at runtime.
func (l *logger) enabled(level hclog.Level) bool {
	if floor := hclog.Level(l.floor.Load()); floor != hclog.NoLevel && level < floor {
		return false
	}
	return l.h.Enabled(context.Background(), slogLevel(level))
}

func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	level, ok := clamp(level)
	if !ok || !l.enabled(level) {
		return
	}
	// PC 0: source location would cost a runtime.Callers on every Raft line,
	// and through this adapter it would mostly point at Raft internals anyway.
	r := slog.NewRecord(time.Now(), slogLevel(level), msg, 0)
	addArgs(&r, args)
	// A handler's write error has nowhere useful to go: hclog.Logger has no
	// error return and Raft would not act on one.
	_ = l.h.Handle(context.Background(), r)
}

func (l *logger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *logger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *logger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *logger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *logger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *logger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *logger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *logger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *logger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *logger) IsError() bool { return l.enabled(hclog.Error) }

// GetLevel reports the most verbose level that would actually be emitted,
// combining the handler's threshold with SetLevel's; Off means nothing would.
func (l *logger) GetLevel() hclog.Level {
	for level := hclog.Trace; level <= hclog.Error; level++ {
		if l.enabled(level) {
			return level
		}
	}
	return hclog.Off
}

// SetLevel sets a minimum level shared by this logger and every logger
// derived from the same New call. It can only narrow what the slog handler
// lets through, never widen it: the replica's --log-level stays the upper
// bound on verbosity. SetLevel(hclog.NoLevel) removes the extra minimum and
// SetLevel(hclog.Off) silences the logger entirely.
func (l *logger) SetLevel(level hclog.Level) { l.floor.Store(int32(level)) }

func (l *logger) Name() string { return l.name }

// Named appends with a dot, exactly as hclog does (including producing
// "a." for Named("")), so Raft's sub-logger names look the same as before.
func (l *logger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.sub(name, l.implied)
}

func (l *logger) ResetNamed(name string) hclog.Logger { return l.sub(name, l.implied) }

// With follows hclog in letting a repeated key replace the earlier value
// rather than appearing twice; it keeps first-seen key order instead of
// hclog's sorted order because slog output is not sorted either.
func (l *logger) With(args ...any) hclog.Logger {
	if len(args) == 0 {
		return l
	}
	implied := make([]pair, len(l.implied), len(l.implied)+(len(args)+1)/2)
	copy(implied, l.implied)
	set := func(key string, val any) {
		for i := range implied {
			if implied[i].key == key {
				implied[i].val = val
				return
			}
		}
		implied = append(implied, pair{key, val})
	}
	for i := 0; i+1 < len(args); i += 2 {
		set(key(args[i]), args[i+1])
	}
	if len(args)%2 == 1 {
		a := oddAttr(args[len(args)-1])
		set(a.Key, args[len(args)-1])
	}
	return l.sub(l.name, implied)
}

// ImpliedArgs returns a fresh slice so a caller that appends to or edits it
// cannot change what this logger, or loggers derived from it, emit.
func (l *logger) ImpliedArgs() []any {
	out := make([]any, 0, 2*len(l.implied))
	for _, p := range l.implied {
		out = append(out, p.key, p.val)
	}
	return out
}

func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	// No prefix or flags: the slog handler adds its own time, and a prefix
	// would defeat level inference.
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{
		l:       l,
		infer:   opts.InferLevels,
		inferTS: opts.InferLevelsWithTimestamp,
		force:   opts.ForceLevel,
	}
}

// stdWriter gives code written against the standard library's log package
// (and its "[WARN] ..." prefix convention) the same route into slog.
type stdWriter struct {
	l       *logger
	infer   bool
	inferTS bool
	force   hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, " \t\n"))
	var level hclog.Level
	switch {
	case w.force != hclog.NoLevel:
		// A forced level still strips a prefix, or the line would carry a
		// contradictory "[DEBUG]" inside an error record.
		_, line = pickLevel(line)
		level = w.force
	case w.infer:
		if w.inferTS {
			line = trimTimestamp(line)
		}
		level, line = pickLevel(line)
	default:
		level = hclog.Info
	}
	// hclog's adapter sends levels it cannot dispatch to Info.
	if level < hclog.Trace || level > hclog.Error {
		level = hclog.Info
	}
	w.l.Log(level, line)
	// Report the whole input as written: a *log.Logger treats a short write
	// as an error, and a suppressed line is not a failure.
	return len(p), nil
}

// pickLevel uses hclog's prefixes verbatim so lines written for an hclog
// standard logger are classified the same way.
func pickLevel(s string) (hclog.Level, string) {
	for _, p := range [...]struct {
		prefix string
		level  hclog.Level
	}{
		{"[DEBUG]", hclog.Debug},
		{"[TRACE]", hclog.Trace},
		{"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn},
		{"[ERROR]", hclog.Error},
		{"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, s
}

// trimTimestamp strips the characters a leading timestamp is made of. hclog's
// own regexp for this, `^[\d\s\:\/\.\+-TZ]*`, contains the accidental range
// '+'..'T', which also eats upper-case letters A-T and would swallow a line
// such as "ERROR: disk full"; this keeps to the set hclog meant.
func trimTimestamp(s string) string {
	return strings.TrimLeftFunc(s, func(r rune) bool {
		switch r {
		case ' ', '\t', '\n', '\f', '\r', ':', '/', '.', '+', '-', 'T', 'Z':
			return true
		}
		return '0' <= r && r <= '9'
	})
}

// addArgs adds attributes one at a time so the common case (a handful of
// pairs) stays within slog.Record's inline storage and allocates no slice.
func addArgs(r *slog.Record, args []any) {
	for i := 0; i+1 < len(args); i += 2 {
		r.AddAttrs(slog.Attr{Key: key(args[i]), Value: value(args[i+1])})
	}
	if len(args)%2 == 1 {
		r.AddAttrs(oddAttr(args[len(args)-1]))
	}
}

// oddAttr names a trailing unpaired argument the way hclog does: a captured
// stack trace is its own "stacktrace" field, anything else is kept under
// hclog.MissingKey rather than silently dropped.
func oddAttr(v any) slog.Attr {
	if st, ok := v.(hclog.CapturedStacktrace); ok {
		return slog.String("stacktrace", string(st))
	}
	return slog.Attr{Key: hclog.MissingKey, Value: value(v)}
}

// key accepts any key because hclog's interface is untyped and a bad key in
// a rarely hit log call must not panic inside Raft.
func key(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// value renders hclog's special value types here rather than leaving them to
// the handler, which knows nothing of them: slog's JSON handler would write
// an hclog.Format as an array and Hex as a bare number, and its text handler
// would print an error with %+v (a full stack for many error packages).
// Errors always become their Error() string, even ones that marshal
// themselves, so an error reads the same under every handler.
func value(v any) slog.Value {
	switch v := v.(type) {
	case string:
		return slog.StringValue(v)
	case slog.LogValuer:
		// The value chose its own slog form; the handler resolves it.
		return slog.AnyValue(v)
	case hclog.Format:
		return slog.StringValue(format(v))
	case hclog.Hex:
		return slog.StringValue("0x" + strconv.FormatUint(uint64(v), 16))
	case hclog.Octal:
		return slog.StringValue("0" + strconv.FormatUint(uint64(v), 8))
	case hclog.Binary:
		return slog.StringValue("0b" + strconv.FormatUint(uint64(v), 2))
	case hclog.Quote:
		// Left unquoted: slog handlers already escape control characters,
		// and quoting here would double-quote the value in JSON.
		return slog.StringValue(string(v))
	case hclog.CapturedStacktrace:
		return slog.StringValue(string(v))
	case error:
		return slog.StringValue(safeString(v.Error))
	}
	sv := slog.AnyValue(v)
	if sv.Kind() != slog.KindAny {
		// Numbers, bools, times and durations: slog has native forms.
		return sv
	}
	switch v.(type) {
	case json.Marshaler, encoding.TextMarshaler:
		// The type chose its own encoding; handlers use it.
		return sv
	case fmt.Stringer:
		// Raft logs *raft.Raft and similar structs with unexported fields,
		// which JSON renders as {}; hclog printed them with %v, i.e. String().
		return slog.StringValue(safeString(v.(fmt.Stringer).String))
	}
	return sv
}

// format tolerates a Format whose first element is not a string, where hclog
// would panic.
func format(f hclog.Format) string {
	if len(f) == 0 {
		return ""
	}
	if s, ok := f[0].(string); ok {
		return fmt.Sprintf(s, f[1:]...)
	}
	return fmt.Sprint(f...)
}

// safeString survives a typed-nil receiver whose Error or String method
// dereferences it, which would otherwise crash the logging goroutine.
func safeString(method func() string) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("<panic: %v>", p)
		}
	}()
	return method()
}
