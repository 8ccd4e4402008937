// Package statslog writes a replica's periodic one-line stats log: every
// interval, one slog record ("stats") with what happened since the previous
// one: calls per operation, their mean latency, the compare-and-set
// outcomes, errors, the head cache's hit rate, forwarded requests, and the
// calls in flight at that moment.
//
// Every figure is computed from the replica's Prometheus registry (Gather),
// from the very series /metrics exports (package metrics), so the log and
// the metrics never disagree; the log only takes differences between two
// gathers. The goroutine that runs it (Run) belongs to whoever starts the
// replica's servers (package cluster/embed) and ends with their context.
package statslog
