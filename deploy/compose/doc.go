// Package compose holds the docker compose files of a three-replica
// cluster in front of PostgreSQL (compose.yaml, and compose.tls.yaml over it
// for TLS) and the tests that keep them working without Docker: the compose
// specification's own loader reads them, the cluster's invariants are
// asserted on what it produced, and then each replica service's command line,
// environment and health check run as real processes against a real
// PostgreSQL.
package compose
