package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff: the pause before retry attempt n
// (counting from 1) is drawn from [d/2, d] with d = Initial * 2^(n-1),
// capped at Max. Max caps every pause, even one below Initial; a Max <= 0
// means no growth, so that Policy{Initial: x} pauses about x every time.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
}

// Delay returns the jittered pause before attempt (>= 1; smaller values count
// as 1). It is 0 if Initial is not positive.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.ceiling(attempt)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// ceiling is the pause before jitter. The doubling is done by comparison
// rather than by shifting, so that a large attempt cannot overflow into a
// negative or tiny pause.
func (p Policy) ceiling(attempt int) time.Duration {
	if p.Initial <= 0 {
		return 0
	}
	limit := p.Max
	if limit <= 0 {
		limit = p.Initial
	}
	d := min(p.Initial, limit)
	for n := 1; n < attempt && d < limit; n++ {
		if d > limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// Sleep pauses for d and reports true, or reports false as soon as ctx ends.
// A d <= 0 does not pause and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// SleepWithin is Sleep, except that it reports false at once, without
// pausing, if ctx's deadline would pass before d elapses: a caller that
// retries within a deadline learns immediately that no attempt is left,
// instead of sleeping until it is too late.
func SleepWithin(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return false
	}
	return Sleep(ctx, d)
}

// Retry calls fn until it returns nil, returns an error marked by Permanent,
// or ctx ends; it pauses p.Delay(n) after the nth failure. fn is called at
// least once, even if ctx has already ended. Retry returns fn's last error;
// if fn returned Permanent(e) itself, Retry returns e, so that callers see
// the error fn built.
func Retry(ctx context.Context, p Policy, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if _, ok := errors.AsType[*permanentError](err); ok {
			// Only a mark fn returned as is comes off: one wrapped
			// inside fn's own context stays, as does that context.
			if perm, top := err.(*permanentError); top {
				return perm.err
			}
			return err
		}
		if !Sleep(ctx, p.Delay(attempt)) {
			return err
		}
	}
}

// Permanent marks err as one Retry must not retry. errors.Is and errors.As
// see through the mark. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
