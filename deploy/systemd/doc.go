// Package systemd holds the systemd unit of a committer replica (one per
// VM), its environment file, the TLS drop-in, and the tests that keep them
// working: the unit is parsed as systemd parses it and its hardening and stop
// timeout asserted, the environment file is read by the rules of
// EnvironmentFile=, and the unit's ExecStart then runs with the environment of
// three VMs (the file's, and the two derived from it by its per-VM lines) as
// real processes against a real PostgreSQL. Where systemd-analyze exists, it
// verifies the unit too.
package systemd
