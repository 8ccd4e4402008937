// Package backendurl opens a storage backend named by a URL, the form in which
// operators configure committer:
//
//	bolt:///var/lib/committer/consensus.db   embedded bbolt file (absolute path)
//	bolt://data/consensus.db                 bbolt file relative to the working directory
//	postgres://user:pass@host:5432/db?sslmode=require   PostgreSQL or CockroachDB
//	postgresql://...                         the same
//
// It owns the mapping from scheme to backend package and keeps passwords out
// of every error and description it produces.
package backendurl
