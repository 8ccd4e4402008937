package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/hacommit/committer/internal/backoff"
)

// ceiling is min(initial * 2^(attempt-1), limit), with a limit <= 0 standing
// for initial, computed with big integers so that it cannot overflow the way
// a shift would.
func ceiling(initial, limit time.Duration, attempt int) time.Duration {
	if limit <= 0 {
		limit = initial
	}
	d := new(big.Int).Lsh(big.NewInt(int64(initial)), uint(attempt-1))
	if d.Cmp(big.NewInt(int64(limit))) > 0 {
		return limit
	}
	return time.Duration(d.Int64())
}

func TestDelayStaysWithinBounds(t *testing.T) {
	for _, p := range []backoff.Policy{
		{Initial: 25 * time.Millisecond, Max: time.Second},
		{Initial: time.Millisecond, Max: 64 * time.Millisecond},
		{Initial: 250 * time.Millisecond, Max: 250 * time.Millisecond},
		{Initial: 3, Max: math.MaxInt64},
		{Initial: math.MaxInt64 / 3, Max: math.MaxInt64},
	} {
		for attempt := 1; attempt <= 70; attempt++ {
			hi := ceiling(p.Initial, p.Max, attempt)
			lo := hi / 2
			for range 50 {
				d := p.Delay(attempt)
				if d < lo || d > hi {
					t.Fatalf("%+v attempt %d: delay %d outside [%d, %d]", p, attempt, d, lo, hi)
				}
				if d > p.Max || d < p.Initial/2 {
					t.Fatalf("%+v attempt %d: delay %d above Max or below Initial/2", p, attempt, d)
				}
			}
		}
	}
}

func TestDelayDoublesUpToTheCap(t *testing.T) {
	p := backoff.Policy{Initial: 3, Max: math.MaxInt64}
	// 3 << 61 is the last doubling below MaxInt64; 3 << 62 would overflow
	// to a negative number.
	for attempt, want := range map[int]time.Duration{
		1: 3, 2: 6, 3: 12, 61: 3 << 60, 62: 3 << 61, 63: math.MaxInt64, 70: math.MaxInt64, math.MaxInt: math.MaxInt64,
	} {
		for range 50 {
			if d := p.Delay(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: delay %d outside [%d, %d]", attempt, d, want/2, want)
			}
		}
	}
}

func TestDelayJittersOverTheWholeRange(t *testing.T) {
	// With a ceiling of 2ns the only possible pauses are 1ns and 2ns; 200
	// draws miss one of them with probability 2^-199.
	p := backoff.Policy{Initial: 2, Max: 2}
	seen := map[time.Duration]bool{}
	for range 200 {
		seen[p.Delay(5)] = true
	}
	if len(seen) != 2 || !seen[1] || !seen[2] {
		t.Fatalf("delays seen %v, want exactly 1ns and 2ns", seen)
	}
}

func TestDelayWithoutInitialIsZero(t *testing.T) {
	for _, p := range []backoff.Policy{{}, {Max: time.Second}, {Initial: -time.Second, Max: time.Second}} {
		for _, attempt := range []int{1, 2, 70} {
			if d := p.Delay(attempt); d != 0 {
				t.Fatalf("%+v attempt %d: delay %s, want 0", p, attempt, d)
			}
		}
	}
}

func TestDelayWithoutMaxIsFixed(t *testing.T) {
	// Attempts below 1 count as 1.
	p := backoff.Policy{Initial: 100 * time.Millisecond}
	for _, attempt := range []int{-1, 0, 1, 2, 50, 70} {
		if d := p.Delay(attempt); d < 50*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("%+v attempt %d: delay %s outside [50ms, 100ms]", p, attempt, d)
		}
	}
}

func TestDelayNeverExceedsAMaxBelowInitial(t *testing.T) {
	p := backoff.Policy{Initial: 2 * time.Second, Max: time.Second}
	for _, attempt := range []int{1, 2, 70} {
		if d := p.Delay(attempt); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("%+v attempt %d: delay %s outside [500ms, 1s]", p, attempt, d)
		}
	}
}

func TestSleepSleepsOnALiveContext(t *testing.T) {
	start := time.Now()
	if !backoff.Sleep(context.Background(), 20*time.Millisecond) {
		t.Fatal("Sleep on a live context reported false")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("Sleep(20ms) returned after %s", el)
	}
	if !backoff.Sleep(context.Background(), 0) {
		t.Fatal("Sleep(0) on a live context reported false")
	}
}

func TestSleepStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if backoff.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a cancelled context reported true")
	}
	if backoff.Sleep(ctx, 0) {
		t.Fatal("Sleep(0) on a cancelled context reported true")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Sleep on a cancelled context took %s", el)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	// The clock starts before the timer is set, so that the timer cannot
	// fire less than 20ms after it.
	start = time.Now()
	time.AfterFunc(20*time.Millisecond, cancel)
	if backoff.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep cancelled midway reported true")
	}
	if el := time.Since(start); el < 20*time.Millisecond || el > 10*time.Second {
		t.Fatalf("Sleep cancelled after 20ms returned after %s", el)
	}
}

func TestSleepWithinGivesUpAtOnceBeforeADeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if backoff.SleepWithin(ctx, time.Hour) {
		t.Fatal("SleepWithin(1h) a minute before the deadline reported true")
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("SleepWithin gave up after %s, not at once", el)
	}
	if ctx.Err() != nil {
		t.Fatal("the context ended: SleepWithin waited for the deadline")
	}
	if !backoff.SleepWithin(ctx, 10*time.Millisecond) {
		t.Fatal("SleepWithin(10ms) a minute before the deadline reported false")
	}
	if !backoff.SleepWithin(context.Background(), 10*time.Millisecond) {
		t.Fatal("SleepWithin without a deadline reported false")
	}
}

// fast keeps the retry tests quick.
func fast() backoff.Policy {
	return backoff.Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond}
}

func TestRetryStopsOnSuccess(t *testing.T) {
	calls := 0
	err := backoff.Retry(context.Background(), fast(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, calls)
	}
}

type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

func TestRetryStopsOnPermanent(t *testing.T) {
	fatal := &codeError{code: 7}
	calls := 0
	err := backoff.Retry(context.Background(), fast(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("transient")
		}
		return backoff.Permanent(fatal)
	})
	if err != fatal || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want the unmarked %v after 3", err, calls, fatal)
	}

	// A mark inside fn's own wrapping stops the loop too, and the wrapping
	// is kept.
	calls = 0
	err = backoff.Retry(context.Background(), fast(), func(context.Context) error {
		calls++
		return fmt.Errorf("remove n1: %w", backoff.Permanent(fatal))
	})
	if calls != 1 || err == nil || err.Error() != "remove n1: code 7" {
		t.Fatalf("Retry = %v after %d calls, want \"remove n1: code 7\" after 1", err, calls)
	}
	var ce *codeError
	if !errors.As(err, &ce) || ce != fatal || !errors.Is(err, fatal) {
		t.Fatalf("errors.As/Is do not see %v through %v", fatal, err)
	}
}

func TestPermanentKeepsTheErrorVisible(t *testing.T) {
	if backoff.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	base := &codeError{code: 3}
	err := backoff.Permanent(base)
	var ce *codeError
	if !errors.Is(err, base) || !errors.As(err, &ce) || ce != base || err.Error() != "code 3" {
		t.Fatalf("Permanent(%v) = %v hides the error", base, err)
	}
}

func TestRetryStopsWhenTheContextEndsWithTheLastError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var last error
	calls := 0
	err := backoff.Retry(ctx, fast(), func(context.Context) error {
		calls++
		last = fmt.Errorf("attempt %d", calls)
		return last
	})
	if err != last || calls < 2 {
		t.Fatalf("Retry = %v after %d calls, want the last error %v after at least 2", err, calls, last)
	}
	if ctx.Err() == nil {
		t.Fatal("Retry returned before the context ended")
	}
}

func TestRetryCallsOnceOnAnEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := errors.New("unreachable")
	calls := 0
	err := backoff.Retry(ctx, backoff.Policy{Initial: time.Hour}, func(context.Context) error {
		calls++
		return want
	})
	if err != want || calls != 1 {
		t.Fatalf("Retry = %v after %d calls, want %v after 1", err, calls, want)
	}
}
