// Package hclogslog adapts a *slog.Logger into the hclog.Logger that
// hashicorp/raft insists on, so Raft's own log lines obey the replica's
// --log-level and --log-format flags instead of going to stderr through a
// separately configured hclog logger.
//
// Everything Raft says goes through the replica's slog handler: with
// --log-format json every line is a JSON object (no hclog text lines mixed
// into the stream), and with --log-level warn Raft's Is* guards report false
// for info and below, so Raft does not even build those lines.
//
// The package owns only the translation: hclog levels to slog levels,
// hclog's loosely typed alternating key/value arguments to slog attributes,
// the logger name to an attribute (NameKey), and hclog's standard-library
// shims (StandardLogger, StandardWriter). It holds no package-level state;
// every logger returned by New is independent of every other New call.
package hclogslog
