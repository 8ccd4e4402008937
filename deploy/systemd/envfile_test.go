package systemd_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// envVar is one assignment of an environment file, in file order.
type envVar struct {
	Key, Value string
}

// envName is what systemd accepts as a variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnvFile reads an environment file by the rules systemd applies to
// EnvironmentFile= (env-file.c): # or ; at the start of a line begins a
// comment; KEY=VALUE with whitespace around both trimmed; a value may be
// single-quoted (literal) or double-quoted (\ escapes only " \ ` $ and a
// newline), and pieces concatenate; outside quotes a backslash takes the
// next character literally and a backslash-newline continues the line.
// Where systemd would only warn and skip (a line without =, an invalid name)
// or where its versions differ (a comment ending in a backslash continues
// onto the next line in some), this parser fails instead: a file the tests
// accept means the same to every systemd.
func parseEnvFile(text string) ([]envVar, error) {
	const (
		preKey = iota
		key
		preValue
		value
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
		comment
	)
	var (
		vars      []envVar
		state     = preKey
		k, v      strings.Builder
		line      = 1
		keyTrail  = -1 // length of k before its trailing whitespace
		valTrail  = -1 // length of v before its trailing unquoted whitespace
		commentBS bool
	)
	push := func() error {
		name := k.String()
		if keyTrail >= 0 {
			name = name[:keyTrail]
		}
		val := v.String()
		if valTrail >= 0 {
			val = val[:valTrail]
		}
		if !envName.MatchString(name) {
			return fmt.Errorf("line %d: %q is no valid variable name", line, name)
		}
		vars = append(vars, envVar{name, val})
		k.Reset()
		v.Reset()
		keyTrail, valTrail = -1, -1
		return nil
	}
	isSpace := func(c rune) bool { return c == ' ' || c == '\t' }
	isNewline := func(c rune) bool { return c == '\n' || c == '\r' }
	for _, c := range text {
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state, commentBS = comment, false
			case isNewline(c):
				line++
			case isSpace(c):
			default:
				state = key
				k.WriteRune(c)
			}
		case key:
			switch {
			case isNewline(c):
				return nil, fmt.Errorf("line %d: %q has no =", line, k.String())
			case c == '=':
				state = preValue
			default:
				if !isSpace(c) {
					keyTrail = -1
				} else if keyTrail < 0 {
					keyTrail = k.Len()
				}
				k.WriteRune(c)
			}
		case preValue:
			switch {
			case isNewline(c):
				if err := push(); err != nil {
					return nil, err
				}
				state = preKey
				line++
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case isSpace(c):
			default:
				state = value
				v.WriteRune(c)
			}
		case value:
			switch {
			case isNewline(c):
				if err := push(); err != nil {
					return nil, err
				}
				state = preKey
				line++
			case c == '\\':
				state, valTrail = valueEscape, -1
			default:
				if !isSpace(c) {
					valTrail = -1
				} else if valTrail < 0 {
					valTrail = v.Len()
				}
				v.WriteRune(c)
			}
		case valueEscape:
			state = value
			if isNewline(c) {
				line++ // a continuation: the newline is dropped
			} else {
				v.WriteRune(c)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
			} else {
				v.WriteRune(c)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
			case '\\':
				state = doubleQuoteEscape
			default:
				v.WriteRune(c)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			switch {
			case strings.ContainsRune("\"\\`$", c):
				v.WriteRune(c)
			case c == '\n':
				line++
			default:
				v.WriteRune('\\')
				v.WriteRune(c)
			}
		case comment:
			if isNewline(c) {
				if commentBS {
					return nil, fmt.Errorf("line %d: a comment ends in a backslash, which systemd versions read differently", line)
				}
				state = preKey
				line++
			}
			commentBS = c == '\\'
		}
	}
	switch state {
	case key:
		return nil, fmt.Errorf("line %d: %q has no =", line, k.String())
	case preValue, value, valueEscape, singleQuote, doubleQuote, doubleQuoteEscape:
		if err := push(); err != nil {
			return nil, err
		}
	}
	return vars, nil
}

// envMap is vars with later assignments winning, as in the process.
func envMap(vars []envVar) map[string]string {
	m := make(map[string]string, len(vars))
	for _, kv := range vars {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestParseEnvFileFollowsSystemd(t *testing.T) {
	text := "# comment\n" +
		"; another comment\n" +
		"\n" +
		"  PLAIN = value with  spaces  \t\n" +
		"EMPTY=\n" +
		"SINGLE='a \"b\" \\n c'\n" +
		"DOUBLE=\"a \\\"b\\\" \\$x \\n\"\n" +
		"JOINED=\"x\" 'y' z\n" +
		"CONT=one\\\ntwo\n" +
		"ESCAPED=a\\ b\\#c\n" +
		"HASH=a#b\n" +
		"PLAIN=again\n" +
		"LAST=no newline"
	got, err := parseEnvFile(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []envVar{
		{"PLAIN", "value with  spaces"},
		{"EMPTY", ""},
		{"SINGLE", `a "b" \n c`},
		{"DOUBLE", `a "b" $x \n`},
		{"JOINED", "xyz"},
		{"CONT", "onetwo"},
		{"ESCAPED", "a b#c"},
		{"HASH", "a#b"},
		{"PLAIN", "again"},
		{"LAST", "no newline"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parsed\n%q\nwant\n%q", got, want)
	}
	if m := envMap(got); m["PLAIN"] != "again" {
		t.Fatalf("PLAIN is %q, want the later assignment", m["PLAIN"])
	}
}

func TestParseEnvFileRefusesWhatSystemdWouldSkip(t *testing.T) {
	for _, text := range []string{
		"NOVALUE\n",
		"1BAD=x\n",
		"BAD-NAME=x\n",
		"export A=b\n",
		"# continued \\\nA=b\n",
		"TRAILING",
	} {
		if vars, err := parseEnvFile(text); err == nil {
			t.Errorf("%q parsed as %q, want an error", text, vars)
		}
	}
}
