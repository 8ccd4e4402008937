package postgres

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/internal/freeport"
)

// closedPort returns a local port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Port("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// wantNoSecret fails if text holds the password in any spelling.
func wantNoSecret(t *testing.T, what, text, password string) {
	t.Helper()
	for _, spelling := range []string{password, url.QueryEscape(password), url.PathEscape(password)} {
		if strings.Contains(text, spelling) {
			t.Errorf("%s leaks the password (as %q):\n%s", what, spelling, text)
		}
	}
}

func TestPasswordNeverInErrorsOrLogs(t *testing.T) {
	const simple = "hunter2Secret"
	const tricky = "S3cret-P@ss/w0rd:x"
	port := strconv.Itoa(closedPort(t))
	enc := url.UserPassword("postgres", tricky).String()
	for _, tc := range []struct {
		name, url, password string
	}{
		{"url", "postgres://postgres:" + simple + "@127.0.0.1:" + port + "/db?sslmode=disable&connect_timeout=2", simple},
		{"url with escapes", "postgres://" + enc + "@127.0.0.1:" + port + "/db?sslmode=disable&connect_timeout=2", tricky},
		{"password query parameter", "postgres://127.0.0.1:" + port + "/db?user=postgres&password=" + url.QueryEscape(tricky) + "&sslmode=disable&connect_timeout=2", tricky},
		{"keyword/value", "host=127.0.0.1 port=" + port + " user=postgres password=" + simple + " dbname=db sslmode=disable connect_timeout=2", simple},
		{"keyword/value quoted", "host=127.0.0.1 port=" + port + " user=postgres password='" + simple + " with space' dbname=db sslmode=disable connect_timeout=2", simple + " with space"},
		{"malformed port", "postgres://postgres:" + simple + "@127.0.0.1:notaport/db", simple},
		{"malformed escape", "postgres://postgres:" + simple + "%zz@127.0.0.1:" + port + "/db", simple},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logCapture
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := Open(ctx, Config{URL: tc.url, Logger: logs.logger()})
			if err == nil {
				b.Close()
				t.Fatalf("Open succeeded on a closed port / malformed URL")
			}
			for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err)} {
				wantNoSecret(t, "error", text, tc.password)
			}
			wantNoSecret(t, "log", logs.String(), tc.password)
			t.Logf("error: %v", err)
		})
	}
}

// TestPasswordNeverInLogsWhileServing connects with a password (the test
// server trusts, so it is accepted and ignored), then drives the paths that
// log or fail, and checks logs and errors.
func TestPasswordNeverInLogsWhileServing(t *testing.T) {
	const password = "hunter2Secret"
	base := pgtestURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	var logs logCapture
	ctx := context.Background()
	b, err := Open(ctx, Config{URL: u.String(), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	admin := adminConn(t, base)

	var errs []error
	wantCAS(t, b, "K", 0, "v", true)
	mustExec(t, admin, `DROP TABLE consensus.consensus`) // warn log
	wantHead(t, b, "K", nil)
	if err := b.Fence(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, err = b.CompareAndSet(ctx, "K", vd(0, "fenced"))
	errs = append(errs, err)
	_, err = b.Truncate(ctx, "K", 9)
	errs = append(errs, err)
	terminateCommitterSessions(t, admin)
	_, err = b.AtEpoch(2).CompareAndSet(ctx, "K", vd(0, "after kill"))
	errs = append(errs, err)

	for _, err := range errs {
		if err != nil {
			wantNoSecret(t, "error", err.Error(), password)
		}
	}
	if !backend.IsDeterminate(errs[0]) {
		t.Fatalf("fenced cas: %v, want determinate", errs[0])
	}
	text := logs.String()
	wantNoSecret(t, "log", text, password)
	if !strings.Contains(text, "consensus schema missing") || !strings.Contains(text, "postgres backend ready") {
		t.Fatalf("expected log lines missing:\n%s", text)
	}
}

func TestScrub(t *testing.T) {
	for _, tc := range []struct {
		conn, text, want string
	}{
		{"postgres://u:pw1secret@h/db", "cannot parse `postgres://u:pw1secret@h/db`", "cannot parse `postgres://u:xxxxx@h/db`"},
		{"postgres://u:p%40ss@h/db", "raw p%40ss and decoded p@ss", "raw xxxxx and decoded xxxxx"},
		{"host=h password='a b c' user=u", "password='a b c' or a b c", "password=xxxxx or xxxxx"},
		{"postgres://h/db?password=qwerty123", "q: password=qwerty123", "q: password=xxxxx"},
		{"postgres://u@h/db", "no password here", "no password here"},
	} {
		if got := scrub(tc.text, passwordCandidates(tc.conn)); got != tc.want {
			t.Errorf("scrub(%q) with %q = %q, want %q", tc.text, tc.conn, got, tc.want)
		}
	}
}
