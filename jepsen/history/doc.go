// Package history is the record of a correctness run: every client operation
// as an invocation followed by its completion (ok, fail or info), and every
// fault as nemesis events, with monotonic timestamps. It is written and read
// as JSON lines.
package history
