// Package postgres stores persist consensus state in PostgreSQL or
// CockroachDB through a pgx/v5 connection pool.
//
// It owns the SQL: the schema (table consensus.consensus, shaped like
// persist's own consensus table so the service can front an existing
// database, and the one-row fencing table consensus.committer_fence), every
// statement the service runs, and the mapping of database errors to the
// determinate / indeterminate error model of package backend.
//
// Every statement is valid on both databases (the CockroachDB rule each one
// relies on is stated next to it in sql.go; docs/architecture.md §5.5
// summarizes them) and is commented with why it is linearizable under
// SERIALIZABLE and READ COMMITTED, and why it stays on the primary-key index.
//
// Writes (CaS, multi-CaS, truncate) are bound to a leadership epoch: each is
// one pipelined round trip that reads the fence row and performs the write in
// the same implicit transaction, so a deposed leader can never write after
// its successor called Fence. Rows with a negative sequence number (a
// sentinel some deployments keep at -1) are invisible to every operation.
package postgres
