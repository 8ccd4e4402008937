package proctest_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/pgtest"
	"github.com/hacommit/committer/cluster/proctest"
	"github.com/hacommit/committer/rpc/adminpb"
)

// runCommitter runs the committer binary to completion.
func runCommitter(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(timeout(t, time.Minute), committerBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// lastAcked returns, per writer, the highest seqno acknowledged so far (-1
// for none).
func lastAcked(ld *load) []int64 {
	var out []int64
	for _, w := range ld.writers {
		last := int64(-1)
		for _, a := range w.snapshot() {
			if a.outcome == committed {
				last = max(last, int64(a.seqno))
			}
		}
		out = append(out, last)
	}
	return out
}

// waitVoters polls ListMembers on via until it lists exactly want, for up to
// a minute: a joining replica may first be staged as a non-voter.
func waitVoters(t testing.TB, via *proctest.Replica, want []memberView) {
	t.Helper()
	ctx := timeout(t, time.Minute)
	var last []memberView
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := via.Admin().ListMembers(cctx, &adminpb.ListMembersRequest{})
		cancel()
		if lastErr = err; err == nil {
			if last = viewOf(resp.GetMembers()); slices.Equal(last, want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("members via %s never became %+v; last %+v (err %v)", via.ID(), want, last, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLogSince waits until r has logged msg with the given field values at
// or after since.
func waitLogSince(t testing.TB, r *proctest.Replica, msg string, since time.Time, fields map[string]string) {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	for {
		recs, err := r.LogRecords(msg)
		must(t, err)
		for _, rec := range recs {
			match := !rec.Time.Before(since)
			for k, v := range fields {
				match = match && fmt.Sprint(rec.Fields[k]) == v
			}
			if match {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never logged %q with %v after %v", r.ID(), msg, fields, since.Format(time.StampMicro))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logCountSince counts r's log records msg at or after since.
func logCountSince(t testing.TB, r *proctest.Replica, msg string, since time.Time) int {
	t.Helper()
	recs, err := r.LogRecords(msg)
	must(t, err)
	n := 0
	for _, rec := range recs {
		if !rec.Time.Before(since) {
			n++
		}
	}
	return n
}

// Disaster recovery under CaS load (docs/architecture.md §8.3): two of three
// replicas are SIGKILLed for good, the survivor is killed too and recovered
// with the real `committer recover` on its data dir, then restarted as
// before: it leads a one-replica cluster with every acknowledged write. The
// lost replicas come back, one under its old id with a wiped data dir and one
// as a new id, and the cluster survives the loss of its leader again. The
// replica replaced by a new id then returns with its old data dir and old
// three-member configuration: its vote requests are refused, the cluster's
// term and membership do not move, and it serves nothing.
func TestRecoverFromALostQuorum(t *testing.T) {
	backendURL := pgtest.Require(t, pg).CreateDatabase(t)
	c := proctest.Start(t, proctest.Options{Binary: committerBin, Backend: backendURL})
	l := leader(t, c)
	orig := c.Replicas()
	survivor := without(orig, l)[0]
	// gone is lost with its disk and comes back under its id; kept is
	// replaced by a new id, and its disk turns up again later.
	gone, kept := l, without(orig, l, survivor)[0]

	ld := startLoad(t, "recover", 5*time.Second, loadClients(t, c, 4, survivor, gone)...)
	ld.waitProgress(t, 5, 20*time.Second)
	// The survivor knows every member's addresses: the records recover
	// forgets.
	waitMembers(t, survivor, votersOf(orig...))
	before, err := l.Status(timeout(t, 5*time.Second))
	must(t, err)
	must(t, gone.Kill())
	must(t, kept.Kill())

	recoverArgs := []string{"recover", "--data-dir", survivor.DataDir(), "--id", survivor.ID(),
		"--peers", survivor.ID() + "=" + survivor.RaftAddr(), "--backend", backendURL, "--log-level", "warn"}
	// The survivor still runs: its data dir is refused.
	_, stderr, err := runCommitter(t, recoverArgs...)
	if want := "is a replica still running on " + survivor.DataDir() + "?"; err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("recover of a running replica: %v, stderr %q; want a failure saying %q", err, stderr, want)
	}
	must(t, survivor.Kill())
	acked := lastAcked(ld)
	stdout, stderr, err := runCommitter(t, recoverArgs...)
	if err != nil {
		t.Fatalf("recover: %v\n%s", err, stderr)
	}
	var oldConfig []string
	for _, r := range orig {
		oldConfig = append(oldConfig, r.ID()+"="+r.RaftAddr())
	}
	forgotten := []string{}
	for _, r := range []*proctest.Replica{gone, kept} {
		forgotten = append(forgotten, fmt.Sprintf("%s (raft %s, grpc %s)", r.ID(), r.RaftAddr(), r.GRPCAddr()))
	}
	slices.Sort(forgotten)
	for _, line := range []string{
		"old configuration: " + strings.Join(oldConfig, ","),
		"new configuration: " + survivor.ID() + "=" + survivor.RaftAddr(),
		fmt.Sprintf("term:              %d (kept)", before.GetTerm()),
		fmt.Sprintf("cluster id:        %s (kept)", before.GetClusterId()),
		fmt.Sprintf("database fence:    owned by %s at epoch %d", before.GetClusterId(), before.GetTerm()),
		"forgotten members: " + strings.Join(forgotten, ", "),
	} {
		if !regexp.MustCompile("(?m)^" + regexp.QuoteMeta(line) + "$").MatchString(stdout) {
			t.Errorf("recover's output has no line %q:\n%s", line, stdout)
		}
	}

	// Restarted with its usual command line, it is the ready leader of a
	// one-replica cluster of the same id, in a later term.
	must(t, survivor.Restart(timeout(t, 30*time.Second)))
	if got := leader(t, c, survivor); got != survivor {
		t.Fatalf("ready leader %s, want %s", got.ID(), survivor.ID())
	}
	waitVoters(t, survivor, votersOf(survivor))
	st, err := survivor.Status(timeout(t, 5*time.Second))
	must(t, err)
	if st.GetClusterId() != before.GetClusterId() || st.GetTerm() <= before.GetTerm() {
		t.Fatalf("recovered cluster %s in term %d, want %s after term %d", st.GetClusterId(), st.GetTerm(), before.GetClusterId(), before.GetTerm())
	}
	// Every write acknowledged before the loss is there (or a later one).
	o := ops{t: t, cl: pinned(t, c, survivor), via: survivor.ID() + " (recovered)"}
	for i, w := range ld.writers {
		h, err := o.cl.Head(o.ctx(), w.shard)
		if err != nil || (acked[i] >= 0 && (h == nil || int64(h.SeqNo) < acked[i])) {
			t.Fatalf("head(%s) after recovery = %+v, %v; want seqno %d or later", w.shard, h, err, acked[i])
		}
	}
	ld.waitProgress(t, 5, 30*time.Second)

	// The lost replicas come back through the survivor: gone under its id
	// on a wiped data dir, kept's place taken by a new id.
	must(t, gone.WipeDataDir())
	back, err := c.AddReplica(timeout(t, 30*time.Second), proctest.JoinSpec{ID: gone.ID(), Via: []*proctest.Replica{survivor}, Replaces: gone})
	must(t, err)
	fresh, err := c.AddReplica(timeout(t, 30*time.Second), proctest.JoinSpec{ID: "r4", Via: []*proctest.Replica{survivor}})
	must(t, err)
	three := []*proctest.Replica{survivor, back, fresh}
	for _, r := range three {
		waitVoters(t, r, votersOf(three...))
	}
	waitFollowerOf(t, back, survivor)
	waitFollowerOf(t, fresh, survivor)
	ld.waitProgress(t, 5, 30*time.Second)

	// kept was not lost for good after all: it returns on its old data dir
	// with the old configuration {r1, r2, r3}. Both replicas at addresses
	// that configuration names refuse its pre-votes: it is not in theirs.
	st, err = survivor.Status(timeout(t, 5*time.Second))
	must(t, err)
	returned := time.Now()
	must(t, kept.Restart(timeout(t, 30*time.Second)))
	for _, r := range []*proctest.Replica{survivor, back} {
		waitLogSince(t, r, "rejecting pre-vote request since node is not in configuration", returned, map[string]string{"from": kept.RaftAddr()})
	}
	// Refused before its term was looked at: nothing moved.
	now, err := survivor.Status(timeout(t, 5*time.Second))
	must(t, err)
	if now.GetTerm() != st.GetTerm() || now.GetState() != adminpb.RaftState_RAFT_STATE_LEADER {
		t.Fatalf("after %s returned the survivor is %v in term %d, want leader in term %d", kept.ID(), now.GetState(), now.GetTerm(), st.GetTerm())
	}
	for _, r := range three {
		checkMembers(t, r, votersOf(three...))
	}
	// It knows no leader, so it serves nothing: a read is refused, determinate.
	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = pinned(t, c, kept).Head(hctx, ld.writers[0].shard)
	cancel()
	wantErr(t, "head through the returned "+kept.ID(), err, backend.ErrUnavailable)
	ld.waitProgress(t, 5, 30*time.Second)

	// Three voters again: the cluster survives the loss of its leader, with
	// kept still running and still refused.
	must(t, survivor.Kill())
	next := leader(t, c, back, fresh)
	ld.waitProgress(t, 5, 30*time.Second)
	final := ld.verify(t, pinned(t, c, next))
	for _, r := range []*proctest.Replica{back, fresh} {
		o := ops{t: t, cl: pinned(t, c, r), via: r.ID()}
		for shard, vs := range final {
			if len(vs) == 0 {
				t.Fatalf("%s has no versions", shard)
			}
			last := vs[len(vs)-1]
			o.head(shard, &last)
		}
	}
	checkMembers(t, next, votersOf(three...))
	for _, msg := range []string{"ready leader", "registered with the cluster"} {
		if n := logCountSince(t, kept, msg, returned); n != 0 {
			t.Fatalf("%s logged %q %d times after it returned", kept.ID(), msg, n)
		}
	}
}
