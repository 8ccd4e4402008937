package postgres

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// redactionMask replaces every password spelling found in error text.
const redactionMask = "xxxxx"

// keywordPassword finds password=... in a keyword/value connection string.
var keywordPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// redactedError carries scrubbed text while keeping the original error for
// errors.Is/As (context cancellation, *pgconn.PgError).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err unchanged if its text holds no password spelling, and a
// scrubbed wrapper otherwise.
func (s *shared) redact(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	clean := scrub(text, s.secrets)
	if clean == text {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// passwordCandidates extracts every way the password of a connection string
// might be spelled in some error text: as written, percent-decoded, and
// percent-encoded. It works on malformed input too, where it over-collects
// rather than miss.
func passwordCandidates(conn string) []string {
	var out []string
	if u, err := url.Parse(conn); err == nil {
		if u.User != nil {
			if p, ok := u.User.Password(); ok {
				out = append(out, passwordSpellings(p)...)
			}
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, passwordSpellings(p)...)
		}
	}
	if i := strings.Index(conn, "://"); i >= 0 {
		rest := conn[i+3:]
		// The user info ends at an '@'; a malformed password may itself hold
		// '@', so try both the first and the last one.
		for _, at := range []int{strings.Index(rest, "@"), strings.LastIndex(rest, "@")} {
			if at < 0 {
				continue
			}
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				out = append(out, passwordSpellings(rest[colon+1:at])...)
			}
		}
	}
	for _, m := range keywordPassword.FindAllStringSubmatch(conn, -1) {
		v := m[1]
		out = append(out, passwordSpellings(v)...)
		if unq, ok := strings.CutPrefix(v, "'"); ok {
			out = append(out, passwordSpellings(strings.TrimSuffix(unq, "'"))...)
		}
	}
	return out
}

// passwordSpellings returns p as written, decoded and encoded.
func passwordSpellings(p string) []string {
	if p == "" {
		return nil
	}
	out := []string{p, url.QueryEscape(p), url.PathEscape(p), (&url.URL{User: url.UserPassword("", p)}).User.String()[1:]}
	if d, err := url.PathUnescape(p); err == nil {
		out = append(out, d)
	}
	return out
}

// scrub masks every non-empty secret in text, longest first so that a
// secret containing another is masked whole.
func scrub(text string, secrets []string) string {
	sorted := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			sorted = append(sorted, s)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, s := range sorted {
		text = strings.ReplaceAll(text, s, redactionMask)
	}
	return text
}
