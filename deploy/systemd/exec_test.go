package systemd_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// execCommand is an Exec*= line as systemd runs it.
type execCommand struct {
	// Path is the executable; Argv is the whole argv, argv[0] included
	// (Path, unless the @ prefix names another).
	Path string
	Argv []string
	// IgnoreFailure is the - prefix.
	IgnoreFailure bool
}

// parseExec splits an Exec*= value as systemd does: the prefixes (@ - : + !
// !!) come off first; then words split at whitespace, with double or single
// quotes grouping and C-style backslash escapes; $$ and %% stand for $ and %,
// ${NAME} is replaced by the variable within its word, and $NAME as a whole
// word by the variable's whitespace-separated words (not with the :
// prefix). Specifiers (%i, %n, ...) are refused, as are several commands on
// one line: the units here use neither.
func parseExec(line string, environ map[string]string) (execCommand, error) {
	var cmd execCommand
	rest := strings.TrimSpace(line)
	at, expand := false, true
prefixes:
	for len(rest) > 0 {
		switch rest[0] {
		case '@':
			at = true
		case '-':
			cmd.IgnoreFailure = true
		case ':':
			expand = false
		case '+', '!':
			// Privilege prefixes change who runs the command, not its argv.
		default:
			break prefixes
		}
		rest = rest[1:]
	}
	type word struct {
		text   string
		quoted bool
	}
	var ws []word
	var cur strings.Builder
	inWord, quoted := false, false
	var quote rune
	runes := []rune(rest)
	for i := 0; i < len(runes); i++ {
		c := runes[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, inWord, quoted = c, true, true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				ws = append(ws, word{cur.String(), quoted})
				cur.Reset()
				inWord, quoted = false, false
			}
		case c == '\\':
			i++
			if i == len(runes) {
				return cmd, errors.New("a backslash ends the line")
			}
			esc, ok := map[rune]string{'\\': `\`, '"': `"`, '\'': `'`, 'n': "\n", 't': "\t", 's': " ", ' ': " ", ';': ";"}[runes[i]]
			if !ok {
				return cmd, fmt.Errorf(`escape \%c is not modelled here`, runes[i])
			}
			cur.WriteString(esc)
			inWord = true
		case c == '%':
			if i+1 < len(runes) && runes[i+1] == '%' {
				cur.WriteRune('%')
				i++
				inWord = true
				continue
			}
			return cmd, fmt.Errorf("specifier %q is not modelled here", string(runes[i:min(i+2, len(runes))]))
		case c == '$' && expand:
			if i+1 < len(runes) && runes[i+1] == '$' {
				cur.WriteRune('$')
				i++
				inWord = true
				continue
			}
			if i+1 < len(runes) && runes[i+1] == '{' {
				end := slices.Index(runes[i+2:], '}')
				if end < 0 {
					return cmd, errors.New("${ without }")
				}
				cur.WriteString(environ[string(runes[i+2:i+2+end])])
				i += 2 + end
				inWord = true
				continue
			}
			// $NAME must be a word of its own; it becomes the variable's words.
			j := i + 1
			for j < len(runes) && (runes[j] == '_' || runes[j] >= 'A' && runes[j] <= 'Z' || runes[j] >= 'a' && runes[j] <= 'z' || runes[j] >= '0' && runes[j] <= '9') {
				j++
			}
			if inWord || quote != 0 || j == i+1 || j < len(runes) && runes[j] != ' ' && runes[j] != '\t' {
				return cmd, fmt.Errorf("$ at %d is neither $$, ${NAME} nor a word $NAME", i)
			}
			for _, f := range strings.Fields(environ[string(runes[i+1:j])]) {
				ws = append(ws, word{f, true})
			}
			i = j - 1
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if quote != 0 {
		return cmd, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		ws = append(ws, word{cur.String(), quoted})
	}
	var argv []string
	for _, w := range ws {
		if w.text == ";" && !w.quoted {
			return cmd, errors.New("several commands on one line are not modelled here")
		}
		argv = append(argv, w.text)
	}
	if len(argv) == 0 {
		return cmd, errors.New("no command")
	}
	cmd.Path = argv[0]
	if at {
		if len(argv) < 2 {
			return cmd, errors.New("@ needs the executable and argv[0]")
		}
		argv = argv[1:]
	}
	cmd.Argv = argv
	return cmd, nil
}

// parseTimespan reads a systemd time span ("45s", "1min 30s", "90"): a bare
// number is seconds. "infinity" is refused, as a stop timeout must end.
func parseTimespan(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"us": time.Microsecond, "usec": time.Microsecond,
		"ms": time.Millisecond, "msec": time.Millisecond,
		"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, errors.New("empty time span")
	}
	var total time.Duration
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i == 0 {
			return 0, fmt.Errorf("time span %q: expected a number at %q", s, rest)
		}
		num := rest
		if i > 0 {
			num = rest[:i]
		}
		rest = strings.TrimLeft(rest[len(num):], " ")
		j := strings.IndexFunc(rest, func(r rune) bool { return r < 'a' || r > 'z' })
		unit := rest
		if j >= 0 {
			unit = rest[:j]
		}
		rest = strings.TrimLeft(rest[len(unit):], " ")
		mult, ok := units[unit]
		if !ok {
			return 0, fmt.Errorf("time span %q: unknown unit %q", s, unit)
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		total += time.Duration(n * float64(mult))
	}
	return total, nil
}

func TestParseExecSplitsAsSystemd(t *testing.T) {
	environ := map[string]string{"FLAGS": "--a  --b", "DIR": "/var/lib/x y"}
	for _, tc := range []struct {
		line string
		want execCommand
	}{
		{"/usr/local/bin/committer serve", execCommand{Path: "/usr/local/bin/committer", Argv: []string{"/usr/local/bin/committer", "serve"}}},
		{"-/bin/x  'a b' \"c \\\"d\\\"\" e\\sf", execCommand{Path: "/bin/x", Argv: []string{"/bin/x", "a b", `c "d"`, "e f"}, IgnoreFailure: true}},
		{"@/bin/x name arg", execCommand{Path: "/bin/x", Argv: []string{"name", "arg"}}},
		{"+/bin/x $FLAGS --dir=${DIR} 100%% $$HOME", execCommand{Path: "/bin/x", Argv: []string{"/bin/x", "--a", "--b", "--dir=/var/lib/x y", "100%", "$HOME"}}},
		{":/bin/x $FLAGS", execCommand{Path: "/bin/x", Argv: []string{"/bin/x", "$FLAGS"}}},
	} {
		got, err := parseExec(tc.line, environ)
		if err != nil || got.Path != tc.want.Path || !slices.Equal(got.Argv, tc.want.Argv) || got.IgnoreFailure != tc.want.IgnoreFailure {
			t.Errorf("parseExec(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, line := range []string{"", "/bin/x %i", "/bin/x 'open", "/bin/x ; /bin/y", "/bin/x a$B", "@/bin/x"} {
		if got, err := parseExec(line, environ); err == nil {
			t.Errorf("parseExec(%q) = %+v, want an error", line, got)
		}
	}
}

func TestParseTimespan(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"45s": 45 * time.Second, "45": 45 * time.Second, "1min 30s": 90 * time.Second,
		"2m": 2 * time.Minute, "1.5s": 1500 * time.Millisecond, "500ms": 500 * time.Millisecond, "1h": time.Hour,
	} {
		if got, err := parseTimespan(s); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "infinity", "5 parsecs", "s"} {
		if got, err := parseTimespan(s); err == nil {
			t.Errorf("parseTimespan(%q) = %v, want an error", s, got)
		}
	}
}
