package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestProbeExitsZeroOnlyOn200(t *testing.T) {
	var ready atomic.Bool // the handler runs on the server's goroutines
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/readyz" && ready.Load():
			w.Write([]byte(`{"ready":true}` + "\n"))
		case r.URL.Path == "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"ready":false,"reason":"no leader"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	f := probeFlags{Addr: addr, Path: "/readyz", Timeout: 5 * time.Second}

	var out bytes.Buffer
	if err := probe(context.Background(), f, &out); err != nil {
		t.Fatalf("ready replica: %v", err)
	}
	if got, want := out.String(), addr+`/readyz: {"ready":true}`+"\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}

	ready.Store(false)
	err := probe(context.Background(), f, &out)
	if !errors.Is(err, errProbeFailed) || !strings.Contains(err.Error(), `answered 503: {"ready":false,"reason":"no leader"}`) {
		t.Fatalf("unready replica: %v, want a failed probe quoting the 503", err)
	}

	f.Path = "readyz"
	if err := probe(context.Background(), f, &out); err == nil || !strings.Contains(err.Error(), "must start with /") {
		t.Fatalf("bad path: %v", err)
	}

	srv.Close()
	f.Path = "/readyz"
	if err := probe(context.Background(), f, &out); !errors.Is(err, errProbeFailed) {
		t.Fatalf("nothing listening: %v, want a failed probe", err)
	}
}
