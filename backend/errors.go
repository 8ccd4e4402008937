package backend

import (
	"errors"
	"fmt"
)

// Determinacy says whether a failed operation is known to have had no effect.
type Determinacy int

const (
	// Indeterminate: the operation may or may not have taken effect.
	Indeterminate Determinacy = iota
	// Determinate: the operation certainly had no effect.
	Determinate
)

func (d Determinacy) String() string {
	if d == Determinate {
		return "determinate"
	}
	return "indeterminate"
}

// Sentinel causes, matched with errors.Is. Each is always carried inside an
// *Error that states its determinacy.
var (
	// ErrFenced: a higher leadership epoch is stored; nothing was written.
	ErrFenced = errors.New("fenced")
	// ErrInvalidArgument: the request was rejected before touching storage.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTruncateAboveHead: truncate of an empty shard or beyond its head.
	ErrTruncateAboveHead = errors.New("truncate seqno above head")
	// ErrRetryable: storage aborted the operation (e.g. a serialization
	// conflict) before it took effect; the caller may retry.
	ErrRetryable = errors.New("aborted by storage, retry")
	// ErrNotLeader: the replica cannot serve the request because it is not the
	// ready leader; it never reached storage.
	ErrNotLeader = errors.New("not leader")
	// ErrUnavailable: no replica could be reached to serve the request.
	ErrUnavailable = errors.New("unavailable")
	// ErrForeignOwner: the database's fence belongs to another cluster, so
	// this one may neither fence nor write it without an operator's
	// takeover (Fencer.Adopt).
	ErrForeignOwner = errors.New("database owned by another cluster")
	// ErrFenceLost: the fence row vanished from a database that had one. No
	// leader writes until an operator recreates it (Fencer.Adopt), since a
	// new row could not know the epoch the old one held.
	ErrFenceLost = errors.New("fence lost")
)

// Error is an operation error with a known determinacy.
type Error struct {
	Determinacy Determinacy
	Err         error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v", e.Determinacy, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NewDeterminate wraps err as an error known to have had no effect.
func NewDeterminate(err error) error {
	return &Error{Determinacy: Determinate, Err: err}
}

// NewIndeterminate wraps err as an error that may have taken effect.
func NewIndeterminate(err error) error {
	return &Error{Determinacy: Indeterminate, Err: err}
}

// Determinatef builds a determinate error; %w verbs wrap as usual.
func Determinatef(format string, args ...any) error {
	return NewDeterminate(fmt.Errorf(format, args...))
}

// Indeterminatef builds an indeterminate error; %w verbs wrap as usual.
func Indeterminatef(format string, args ...any) error {
	return NewIndeterminate(fmt.Errorf(format, args...))
}

// IsDeterminate reports whether err is known to have had no effect. An error
// that carries no *Error is conservatively indeterminate. When several *Error
// values are nested, the outermost decides.
func IsDeterminate(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Determinacy == Determinate
	}
	return false
}

// DeterminacyOf returns the determinacy IsDeterminate would report.
func DeterminacyOf(err error) Determinacy {
	if IsDeterminate(err) {
		return Determinate
	}
	return Indeterminate
}
