package postgres

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs the backend reacts to.
const (
	codeSerializationFailure  = "40001" // aborted, nothing written: retry
	codeDeadlockDetected      = "40P01" // the deadlock victim rolled back: retry
	codeAmbiguousResult       = "40003" // CockroachDB: may have committed
	codeUniqueViolation       = "23505" // another writer took the key first
	codeUndefinedTable        = "42P01" // the table vanished: recreate it
	codeFeatureNotSupported   = "0A000" // with "cached plan must not change result type"
	codeInsufficientPrivilege = "42501"
	codeDuplicateSchema       = "42P06"
	codeDuplicateTable        = "42P07"
	codeDuplicateObject       = "42710" // a table's row type, created by a racing CREATE TABLE
)

// errFenceRowMissing: the fence table exists but its row was deleted; the
// write wrote nothing (its epoch predicate compared against NULL).
var errFenceRowMissing = errors.New("fence row missing")

// sqlState returns the SQLSTATE of a server error in err's chain, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// isCachedPlanChanged recognises the error both databases return when a
// prepared statement's result shape changed under it (after a schema
// change); pgx has already dropped the statement, so one retry re-prepares.
func isCachedPlanChanged(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeFeatureNotSupported &&
		strings.Contains(pgErr.Message, "cached plan must not change result type")
}

// isDeterminate decides whether a failed write is known to have had no
// effect.
//
//   - A server ERROR (severity ERROR) ends the implicit transaction with a
//     rollback: nothing was written, whatever statement raised it, including
//     a serialization failure raised at commit. The exception is
//     CockroachDB's 40003, which says the outcome is unknown.
//   - A FATAL or PANIC ends the session; the server may have committed just
//     before (pg_terminate_backend, shutdown, crash), so it is indeterminate.
//   - A failure while pgx preprocesses a batch (preparing its statements in
//     a separate Sync, or encoding arguments) is determinate whatever its
//     cause: no statement of the batch was executed yet.
//   - Anything else (a broken connection, a cancelled context, a timeout) is
//     indeterminate unless pgx reports that nothing was sent
//     (pgconn.SafeToRetry).
func isDeterminate(err error) bool {
	var preprocessing pgx.ErrPreprocessingBatch
	if errors.As(err, &preprocessing) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == codeAmbiguousResult {
			return false
		}
		severity := pgErr.SeverityUnlocalized
		if severity == "" {
			severity = pgErr.Severity
		}
		return severity != "FATAL" && severity != "PANIC"
	}
	return pgconn.SafeToRetry(err)
}
