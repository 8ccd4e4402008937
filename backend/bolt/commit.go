package bolt

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hacommit/committer/backend"
)

// maxGroup bounds how many writes share one transaction, so that one commit
// cannot grow without bound under a flood of writers.
const maxGroup = 1024

// applyFunc runs one write inside the shared write transaction. It records
// the operation's outcome (committed, deleted, fenced, ...) in its closure,
// resetting it first, because a group that rolls back is re-run write by
// write. changed reports whether it modified the transaction; err is a
// storage fault, which rolls back the whole transaction.
type applyFunc func(tx *bbolt.Tx) (changed bool, err error)

// write is one caller's request to the commit loop.
type write struct {
	ctx   context.Context
	apply applyFunc
	// done receives exactly one result; buffered so the loop never blocks on
	// a caller that stopped waiting.
	done chan error
}

// submit hands apply to the commit loop and waits for its result. A nil result
// means apply's outcome is final: its changes, if any, are durable.
func (st *store) submit(ctx context.Context, apply applyFunc) error {
	if err := ctx.Err(); err != nil {
		return backend.NewDeterminate(err)
	}
	w := &write{ctx: ctx, apply: apply, done: make(chan error, 1)}
	select {
	case st.writes <- w:
	case <-st.closing:
		return backend.NewDeterminate(ErrClosed)
	case <-ctx.Done():
		return backend.NewDeterminate(ctx.Err())
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The loop owns the write now and may still commit it.
		return backend.Indeterminatef("bolt: gave up waiting for the commit: %w", ctx.Err())
	}
}

// commitLoop is the store's only writer. It takes the first waiting write and
// every other write already queued behind it (they arrived while the previous
// commit was syncing), and runs them in one transaction. Unlike
// bbolt.DB.Batch it never waits on a timer: a lone writer commits at once,
// and grouping comes from writers that queue up during an fsync. Close stops
// it; it answers every write it received before it returns.
func (st *store) commitLoop() {
	defer close(st.loopDone)
	group := make([]*write, 0, maxGroup)
	for {
		group = group[:0]
		select {
		case w := <-st.writes:
			group = append(group, w)
		case <-st.closing:
			return
		}
	gather:
		for len(group) < maxGroup {
			select {
			case w := <-st.writes:
				group = append(group, w)
			default:
				break gather
			}
		}
		st.commitGroup(dropAbandoned(group))
		clear(group) // let finished writes and their data be collected
	}
}

// dropAbandoned answers writes whose caller's context ended while they
// queued; they have not touched the file, so the answer is determinate.
func dropAbandoned(group []*write) []*write {
	live := group[:0]
	for _, w := range group {
		if err := w.ctx.Err(); err != nil {
			w.done <- backend.NewDeterminate(err)
			continue
		}
		live = append(live, w)
	}
	return live
}

// commitGroup runs the group's writes in one transaction and answers each.
//
// A group that changed nothing (every CaS mismatched, every write was fenced,
// a fence at the stored epoch) is rolled back instead of committed: the
// outcomes were decided under the writer lock against committed state, and
// skipping the commit saves an fsync.
//
// A group that rolled back on a fault is re-run write by write, so that one
// write's fault (or its size) does not fail the neighbours it happened to
// share a transaction with.
func (st *store) commitGroup(group []*write) {
	if len(group) == 0 {
		return
	}
	err := st.runGroup(group)
	switch {
	case err == nil:
		for _, w := range group {
			w.done <- nil
		}
	case !backend.IsDeterminate(err):
		st.log.Error("commit failed; outcome unknown", "writes", len(group), "err", err)
		for _, w := range group {
			w.done <- err
		}
	case len(group) > 1:
		for _, w := range group {
			st.commitGroup([]*write{w})
		}
	default:
		st.log.Warn("write rolled back", "err", err)
		group[0].done <- err
	}
}

// runGroup applies and commits the group, and classifies a failure.
//
// Determinacy, following bbolt's Tx.Commit:
//   - Begin failed, or an apply returned an error: the transaction is rolled
//     back before Commit, and bbolt writes nothing to the file before Commit.
//     Nothing happened: determinate.
//   - Commit failed with ErrMaxSizeReached: that comes from page allocation
//     while spilling, before any page is written, and Commit rolls back.
//     Determinate.
//   - Commit failed otherwise: spill, grow and the data page writes precede
//     the meta page write, and pages no meta page reaches are invisible; but a
//     failure writing or syncing the meta page leaves the new meta possibly
//     on disk (after a failed fsync the page cache's fate is unknown), so a
//     reopen may see the commit. The error does not say which step failed,
//     so it is indeterminate.
func (st *store) runGroup(group []*write) (err error) {
	tx, err := st.db.Begin(true)
	if err != nil {
		return backend.Determinatef("bolt: begin write: %w", err)
	}
	// After a successful or failed Commit the transaction is closed and this
	// returns ErrTxClosed; otherwise it discards the transaction. Neither
	// result changes an outcome.
	defer func() { _ = tx.Rollback() }()
	changed := false
	for _, w := range group {
		c, err := w.apply(tx)
		if err != nil {
			return backend.Determinatef("bolt: write rolled back: %w", err)
		}
		changed = changed || c
	}
	if !changed {
		return nil
	}
	if err := tx.Commit(); err != nil {
		if errors.Is(err, berrors.ErrMaxSizeReached) {
			return backend.Determinatef("bolt: file size limit: %w", err)
		}
		return backend.NewIndeterminate(fmt.Errorf("bolt: commit: %w", err))
	}
	return nil
}
