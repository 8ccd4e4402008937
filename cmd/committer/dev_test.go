package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/rpc/client"
)

// freeBasePort finds a port p with p, p+1, p+2, p+10, ... p+22 all free.
func freeBasePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		_, ps, _ := net.SplitHostPort(freeLoopbackAddr(t))
		base, _ := strconv.Atoi(ps)
		if base+22 > 65535 {
			continue
		}
		ok := true
		for i := range 3 {
			for off := range 3 {
				l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+10*i+off)))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("committer %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

type statusJSON struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Ready  bool   `json:"ready"`
	Leader struct {
		ID       string `json:"id"`
		GrpcAddr string `json:"grpcAddr"`
	} `json:"leader"`
	Members []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
		Leader   bool   `json:"leader"`
	} `json:"members"`
}

func status(t *testing.T, bin, addr string) statusJSON {
	t.Helper()
	var st statusJSON
	out := runCLI(t, bin, "status", "--addr", addr, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// The dev cluster serves through every replica, and the operator commands
// see and move its leadership.
func TestDevClusterAndOperatorCommands(t *testing.T) {
	bin := buildCommitter(t)
	dir := t.TempDir()
	base := freeBasePort(t)
	addrs := []string{
		fmt.Sprintf("127.0.0.1:%d", base), fmt.Sprintf("127.0.0.1:%d", base+10), fmt.Sprintf("127.0.0.1:%d", base+20),
	}
	p := start(t, bin, nil, "dev", "--dir", dir, "--base-port", strconv.Itoa(base), "--log-format", "json")
	p.waitLog(t, "ready leader")

	// A CaS chain where each step goes through another replica.
	for i, addr := range addrs {
		c, err := client.New([]string{addr}, client.WithCallTimeout(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ok, err := c.CompareAndSet(t.Context(), "dev", backend.VersionedData{SeqNo: uint64(i), Data: []byte(addr)})
		if !ok || err != nil {
			t.Fatalf("cas %d via %s = %v, %v", i, addr, ok, err)
		}
		c.Close()
	}
	c, err := client.New(addrs[:1], client.WithCallTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Head(t.Context(), "dev"); err != nil || v == nil || v.SeqNo != 2 || string(v.Data) != addrs[2] {
		t.Fatalf("head = %+v, %v; want {2 %s}", v, err, addrs[2])
	}

	st := status(t, bin, addrs[1])
	if st.ID != "r2" || len(st.Members) != 3 || st.Leader.ID == "" {
		t.Fatalf("status via r2 = %+v", st)
	}
	leaders := 0
	for _, m := range st.Members {
		if m.Suffrage != "SUFFRAGE_VOTER" {
			t.Fatalf("member %s suffrage %s, want voter", m.ID, m.Suffrage)
		}
		if m.Leader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d members marked leader, want 1", leaders)
	}
	list := runCLI(t, bin, "members", "list", "--addr", addrs[2])
	for _, id := range []string{"r1", "r2", "r3"} {
		if !strings.Contains(list, id+" ") {
			t.Fatalf("members list lacks %s:\n%s", id, list)
		}
	}

	// Hand leadership to a named follower, through a third replica.
	target := "r1"
	if st.Leader.ID == "r1" {
		target = "r3"
	}
	out := runCLI(t, bin, "leader", "transfer", "--addr", addrs[1], "--to", target)
	if !strings.Contains(out, "leader is now "+target) {
		t.Fatalf("leader transfer printed %q, want the new leader %s", out, target)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st = status(t, bin, addrs[0])
		if st.Leader.ID == target {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader is %q after transferring to %s", st.Leader.ID, target)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := c.Head(t.Context(), "dev"); err != nil || v == nil || v.SeqNo != 2 {
		t.Fatalf("head after transfer = %+v, %v", v, err)
	}
	p.stop(t, syscall.SIGINT)
}
