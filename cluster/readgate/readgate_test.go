package readgate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// controlled is a Verifier whose rounds finish only when the test says so.
type controlled struct {
	started chan int   // round number, sent when a round starts
	finish  chan error // one value finishes the running round
	n       int
}

func newControlled() *controlled {
	return &controlled{started: make(chan int, 16), finish: make(chan error)}
}

// verify confirms "term" 7 on success.
func (c *controlled) verify() (uint64, error) {
	c.n++
	c.started <- c.n
	if err := <-c.finish; err != nil {
		return 0, err
	}
	return 7, nil
}

func waitAsync(g *Gate, ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() {
		term, err := g.Wait(ctx)
		if err == nil && term != 7 {
			err = fmt.Errorf("term %d, want 7", term)
		}
		ch <- err
	}()
	return ch
}

func expectRound(t *testing.T, c *controlled, want int) {
	t.Helper()
	select {
	case n := <-c.started:
		if n != want {
			t.Fatalf("round %d started, want %d", n, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("round %d never started", want)
	}
}

func pending(ch <-chan error) bool {
	select {
	case <-ch:
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

func TestReadArrivingMidRoundWaitsForTheNextRound(t *testing.T) {
	c := newControlled()
	g := New(c.verify)
	ctx := context.Background()

	first := waitAsync(g, ctx)
	expectRound(t, c, 1)
	// These arrive while round 1 is in flight: round 1 must not serve them.
	var late []<-chan error
	for range 50 {
		late = append(late, waitAsync(g, ctx))
	}
	time.Sleep(20 * time.Millisecond) // let them register
	c.finish <- nil
	if err := <-first; err != nil {
		t.Fatalf("first read: %v", err)
	}
	expectRound(t, c, 2)
	if !pending(late[0]) {
		t.Fatal("a late read was answered by the round that started before it")
	}
	for i, ch := range late {
		select {
		case <-ch:
			t.Fatalf("late read %d was answered by the round that started before it", i)
		default:
		}
	}
	c.finish <- nil
	for i, ch := range late {
		if err := <-ch; err != nil {
			t.Fatalf("late read %d: %v", i, err)
		}
	}
	if got := g.Rounds(); got != 2 {
		t.Fatalf("rounds = %d, want 2 (late reads share one round)", got)
	}
}

func TestRoundErrorReachesEveryWaiter(t *testing.T) {
	c := newControlled()
	g := New(c.verify)
	boom := errors.New("not leader")
	var wg sync.WaitGroup
	errs := make([]error, 10)
	first := waitAsync(g, context.Background())
	expectRound(t, c, 1)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = g.Wait(context.Background()) }()
	}
	time.Sleep(20 * time.Millisecond)
	c.finish <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	expectRound(t, c, 2)
	c.finish <- boom
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Fatalf("waiter %d: err = %v, want %v", i, err, boom)
		}
	}
}

func TestContextEndsTheWait(t *testing.T) {
	c := newControlled()
	g := New(c.verify)
	ctx, cancel := context.WithCancel(context.Background())
	ch := waitAsync(g, ctx)
	expectRound(t, c, 1)
	cancel()
	if err := <-ch; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	c.finish <- nil // the round still ends; the gate is reusable
	ch = waitAsync(g, context.Background())
	expectRound(t, c, 2)
	c.finish <- nil
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

func TestIdleGateStartsARoundAtOnce(t *testing.T) {
	c := newControlled()
	g := New(c.verify)
	for i := 1; i <= 3; i++ {
		ch := waitAsync(g, context.Background())
		expectRound(t, c, i)
		c.finish <- nil
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// The canary's wait really breaks the gate: reads that arrive while a round
// is in flight are answered by that round, whose evidence may predate them,
// and no second round is started for them.
func TestWaitJoiningInFlightIsAnsweredByTheRoundInFlight(t *testing.T) {
	c := newControlled()
	g := New(c.verify)
	joining := func() <-chan error {
		ch := make(chan error, 1)
		go func() {
			term, err := g.WaitJoiningInFlight(context.Background())
			if err == nil && term != 7 {
				err = fmt.Errorf("term %d, want 7", term)
			}
			ch <- err
		}()
		return ch
	}

	first := joining() // an idle gate starts a round at once, as Wait does
	expectRound(t, c, 1)
	var late []<-chan error
	for range 50 {
		late = append(late, joining())
	}
	time.Sleep(50 * time.Millisecond) // let them join
	for i, ch := range late {
		select {
		case err := <-ch:
			t.Fatalf("late read %d returned %v before the round ended", i, err)
		default:
		}
	}
	c.finish <- nil
	if err := <-first; err != nil {
		t.Fatalf("first read: %v", err)
	}
	for i, ch := range late {
		if err := <-ch; err != nil {
			t.Fatalf("late read %d: %v", i, err)
		}
	}
	select {
	case n := <-c.started:
		t.Fatalf("round %d started; want the late reads answered by round 1", n)
	case <-time.After(50 * time.Millisecond):
	}
	if got := g.Rounds(); got != 1 {
		t.Fatalf("rounds = %d, want 1 (the late reads joined the round in flight)", got)
	}
}
