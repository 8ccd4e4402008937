package nemesis

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hacommit/committer/cluster/replicaproc/spintest"
	"github.com/hacommit/committer/jepsen/history"
)

func TestMain(m *testing.M) { spintest.Main(m) }

// probeRecorder runs probe at every event added, so a test can look at the
// world at the moment an event is recorded.
type probeRecorder struct {
	mu     sync.Mutex
	events []history.Event
	probe  func(history.Event)
}

func (p *probeRecorder) Add(e history.Event) history.Event {
	p.probe(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	return e
}

// A pause fault is recorded as started only once every thread of the target
// is stopped, and as ended after it runs again.
func TestFaultStartIsRecordedOnceTheFaultIsInEffect(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread states need /proc")
	}
	proc := spintest.Replica(t, "spin", nil)
	if err := proc.Spawn(); err != nil {
		t.Fatal(err)
	}
	pid := proc.PID()
	var atInvoke, atEnd []bool
	rec := &probeRecorder{probe: func(e history.Event) {
		stopped, _ := spintest.Stopped(t, pid)
		if e.Type == history.Invoke {
			atInvoke = append(atInvoke, stopped)
		} else {
			atEnd = append(atEnd, stopped)
		}
	}}
	r := &Runner{rec: rec, log: slog.New(slog.DiscardHandler)}
	for range 10 {
		r.apply(t.Context(), Step{Kind: PauseLeader, Hold: time.Millisecond}, fault{
			targets: []string{"n1"},
			inject:  func(ctx context.Context) error { return proc.Pause(ctx) },
			heal:    func(context.Context) error { return proc.Resume() },
		})
	}
	for i := range atInvoke {
		if !atInvoke[i] {
			t.Fatalf("fault %d was recorded as started while the process still ran", i)
		}
		if atEnd[i] {
			t.Fatalf("fault %d was recorded as healed while the process was still stopped", i)
		}
	}
	if len(atInvoke) != 10 || len(rec.events) != 20 {
		t.Fatalf("%d invokes, %d events; want 10 and 20", len(atInvoke), len(rec.events))
	}
}

// A fault that is an event (a transfer, a restart) runs in then: it is
// recorded as started before it begins, and its error ends up in the end
// event.
func TestEventFaultIsRecordedBeforeItRuns(t *testing.T) {
	var order []string
	rec := &probeRecorder{probe: func(e history.Event) { order = append(order, string(e.Type)) }}
	r := &Runner{rec: rec, log: slog.New(slog.DiscardHandler)}
	r.apply(t.Context(), Step{Kind: TransferLeader, Hold: time.Millisecond}, fault{
		targets: []string{"n1"},
		then: func(context.Context) error {
			order = append(order, "then")
			return errors.New("no leader to transfer from")
		},
		heal: func(context.Context) error { order = append(order, "heal"); return nil },
	})
	want := []string{"invoke", "then", "heal", "ok"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if got := rec.events[1].Error; got != "no leader to transfer from" {
		t.Fatalf("end event error %q, want the then step's error", got)
	}
}
