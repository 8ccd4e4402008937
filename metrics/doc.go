// Package metrics owns committer's Prometheus metrics: their names, labels,
// buckets and meaning, and the decorators and hooks that feed them.
//
// Everything registers on the prometheus.Registerer handed to New; nothing
// touches the global registry, so several replicas (committer dev) or tests
// can run in one process.
//
// Persist committer metrics (namespace mz_persist_committer):
//
//	rpc_total{op,result}             counter   Consensus calls served, by outcome
//	rpc_duration_seconds{op}         histogram time to serve one call
//	inflight_rpcs                    gauge     calls being served now
//	backing_duration_seconds{op}     histogram time of one storage call
//	backing_total{op,result}         counter   storage calls, by outcome
//	cache_hits_total{op}             counter   answered by the leader's head cache
//	cache_misses_total{op}           counter   sent on to storage by the cache
//	cache_evictions_total            counter   entries evicted by the cache bounds
//	cache_drops_total                counter   entries dropped as no longer provable
//	cached_shards                    gauge     shards in the head cache
//	cached_bytes                     gauge     bytes the head cache accounts
//
// Cluster metrics (namespace committer):
//
//	committer_raft_state{state}            gauge     1 for the current Raft state, 0 for the others
//	committer_raft_term                    gauge     current Raft term
//	committer_leader_changes_total         counter   leadership changes this replica observed
//	committer_forwarded_requests_total{op,result} counter requests a follower forwarded
//	committer_forwarded_request_duration_seconds{op} histogram a forwarded request's time on the leader, as the follower sees it
//	committer_fence_events_total{result}   counter   fence attempts on becoming leader
//	committer_ready                        gauge     1 while this replica serves, as /readyz and the gRPC health service say (cluster.Replica.Readiness)
//	committer_raft_heartbeat_failures_total{peer_id} counter heartbeats this replica, leading, failed to deliver
//	committer_build_info{version,revision,go_version} gauge always 1: the running build
//	committer_batch_size                   histogram operations per storage batch (coalescing)
//	committer_batch_wait_seconds           histogram how long a batch's first write waited to be sent
//	committer_cache_warmup_head_hit_ratio{window} gauge share of heads the cache answered in the first 1s / 5s as ready leader
//
// Raft's own metrics (InstallRaftMetrics) are hashicorp/raft's names with
// dots as underscores under committer_: committer_raft_commitTime,
// committer_raft_fsm_apply, committer_raft_replication_appendEntries_rpc{peer_id},
// committer_raft_replication_heartbeat{peer_id},
// committer_raft_transition_heartbeat_timeout, ... (timings are summaries in
// milliseconds). They are process-wide: in committer dev every replica shows
// the same series, summed over the three.
//
// op is one of head, scan, compare_and_set, compare_and_set_multi, truncate,
// list_keys (and fence for the backing metrics; cache metrics use head,
// compare_and_set, compare_and_set_multi, counting multi-CaS elements).
//
// result is one of:
//
//	ok                   the call succeeded (every op except compare_and_set)
//	committed            a compare_and_set that committed
//	mismatch             a compare_and_set answered "not committed" (not an error)
//	determinate_error    failed, certainly without effect (backend.IsDeterminate)
//	indeterminate_error  failed, may have taken effect
//
// A multi-CaS counts as ok whatever its elements decided: rpc_total counts
// calls, and per-element outcomes would need a second unit in one metric.
//
// Fence results are ok (the epoch is stored), refused (a higher epoch was
// already stored: backend.ErrFenced) and error (anything else); FenceResult
// classifies an error that way.
package metrics
