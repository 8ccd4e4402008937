package metrics

import (
	"time"

	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacommit/committer/backend"
)

const (
	namespace        = "mz_persist_committer"
	clusterNamespace = "committer"
)

// Operation label values.
const (
	OpHead               = "head"
	OpScan               = "scan"
	OpCompareAndSet      = "compare_and_set"
	OpCompareAndSetMulti = "compare_and_set_multi"
	OpTruncate           = "truncate"
	OpListKeys           = "list_keys"
	OpFence              = "fence"
)

// Result label values of rpc_total, backing_total and
// forwarded_requests_total.
const (
	ResultOK                 = "ok"
	ResultCommitted          = "committed"
	ResultMismatch           = "mismatch"
	ResultDeterminateError   = "determinate_error"
	ResultIndeterminateError = "indeterminate_error"
)

// Result label values of fence_events_total.
const (
	FenceOK      = "ok"
	FenceRefused = "refused"
	FenceError   = "error"
)

// Raft state label values, as hashicorp/raft's RaftState.String() spells
// them, lower-cased.
const (
	StateFollower  = "follower"
	StateCandidate = "candidate"
	StateLeader    = "leader"
	StateShutdown  = "shutdown"
)

// consensusOps are the operations of backend.Consensus, in interface order.
var consensusOps = []string{OpHead, OpScan, OpCompareAndSet, OpCompareAndSetMulti, OpTruncate, OpListKeys}

// raftStates are pre-created so that dashboards see every state from the
// start.
var raftStates = []string{StateFollower, StateCandidate, StateLeader, StateShutdown}

// resultsOf lists the results an operation can have.
func resultsOf(op string) []string {
	if op == OpCompareAndSet {
		return []string{ResultCommitted, ResultMismatch, ResultDeterminateError, ResultIndeterminateError}
	}
	return []string{ResultOK, ResultDeterminateError, ResultIndeterminateError}
}

// Result classifies the outcome of any call except a single CompareAndSet.
func Result(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case backend.IsDeterminate(err):
		return ResultDeterminateError
	default:
		return ResultIndeterminateError
	}
}

// CASResult classifies the outcome of a CompareAndSet.
func CASResult(committed bool, err error) string {
	switch {
	case err != nil:
		return Result(err)
	case committed:
		return ResultCommitted
	default:
		return ResultMismatch
	}
}

// FenceResult classifies the outcome of a Fence.
func FenceResult(err error) string {
	switch {
	case err == nil:
		return FenceOK
	case errors.Is(err, backend.ErrFenced):
		return FenceRefused
	default:
		return FenceError
	}
}

// latencyBuckets span a cache hit (sub-millisecond) to a storage call stuck
// behind a failover (seconds).
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 15)

// batchBuckets: 1, 2, 4, ... 1024 operations.
var batchBuckets = prometheus.ExponentialBuckets(1, 2, 11)

// Metrics holds one replica's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	rpcTotal        *prometheus.CounterVec
	rpcDuration     *prometheus.HistogramVec
	inflight        prometheus.Gauge
	backingTotal    *prometheus.CounterVec
	backingDuration *prometheus.HistogramVec

	raftState     *prometheus.GaugeVec
	raftTerm      prometheus.Gauge
	leaderChanges prometheus.Counter
	forwarded     *prometheus.CounterVec
	fenceEvents   *prometheus.CounterVec
	ready         prometheus.Gauge
	batchSize     prometheus.Histogram
	batchWait     prometheus.Histogram
	warmup        *prometheus.GaugeVec
	// forwardDuration times forwarded calls, from sending to the leader's
	// answer, by op.
	forwardDuration *prometheus.HistogramVec
	// panics counts handler panics recovered into errors, by method.
	panics *prometheus.CounterVec
	// refused counts calls refused before they ran, by method and reason
	// (package rpc/admission).
	refused *prometheus.CounterVec
	// fencedWrites counts backend writes refused by a later epoch's fence.
	fencedWrites prometheus.Counter
	// heartbeatFailures counts the leader's failed heartbeats, by peer
	// (see raft.go).
	heartbeatFailures *prometheus.CounterVec

	cache *cacheCollector
	// autopilot exports the leader's autopilot assessment (autopilot.go).
	autopilot *autopilotCollector

	// stateMu serializes SetRaftState, so that two concurrent calls cannot
	// leave two states at 1; it guards otherState.
	stateMu sync.Mutex
	// otherState is a state outside raftStates that is currently set, so
	// that the next change can remove its series.
	otherState string
}

// New creates the metrics and registers them on reg. It panics if reg
// already holds metrics of the same names, as MustRegister does: that is a
// wiring mistake, not a runtime condition.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rpcTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rpc_total",
			Help: "Consensus calls served, by operation and result (ok, committed, mismatch, determinate_error, indeterminate_error).",
		}, []string{"op", "result"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "rpc_duration_seconds",
			Help:    "Time to serve one Consensus call, by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "inflight_rpcs",
			Help: "Consensus calls being served now.",
		}),
		backingTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "backing_total",
			Help: "Calls to the storage backend, by operation and result.",
		}, []string{"op", "result"}),
		backingDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "backing_duration_seconds",
			Help:    "Time of one call to the storage backend, by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		raftState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: clusterNamespace, Name: "raft_state",
			Help: "1 for this replica's current Raft state, 0 for the others.",
		}, []string{"state"}),
		raftTerm: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: clusterNamespace, Name: "raft_term",
			Help: "Current Raft term of this replica.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "leader_changes_total",
			Help: "Leadership changes this replica observed.",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "forwarded_requests_total",
			Help: "Requests this replica forwarded to the leader, by operation and result.",
		}, []string{"op", "result"}),
		fenceEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "fence_events_total",
			Help: "Backend fence attempts on becoming leader, by result (ok, refused, error).",
		}, []string{"result"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: clusterNamespace, Name: "ready",
			Help: "1 while this replica serves requests, 0 otherwise.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: clusterNamespace, Name: "batch_size",
			Help:    "Operations per storage batch.",
			Buckets: batchBuckets,
		}),
		batchWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: clusterNamespace, Name: "batch_wait_seconds",
			Help:    "How long the first write of a storage batch waited for the batch to be sent.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
		forwardDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: clusterNamespace, Name: "forwarded_request_duration_seconds",
			Help:    "How long a forwarded request took on the leader, seen from this replica: the relay's cost plus the leader's work.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"op"}),
		warmup: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: clusterNamespace, Name: "cache_warmup_head_hit_ratio",
			Help: "Share of Head calls the cache answered in the first window after this replica last became the ready leader.",
		}, []string{"window"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "handler_panics_total",
			Help: "Panics in a call's handler that were recovered into an error for that call, by gRPC method. Any is a bug to report.",
		}, []string{"method"}),
		fencedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "fenced_writes_total",
			Help: "Writes the database refused because a later leader's epoch fenced it: this replica wrote as the leader of an old term. A few around a leadership change are the fence doing its job; a steady rate means a deposed leader keeps trying.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: clusterNamespace, Name: "refused_calls_total",
			Help: "Calls refused before they ran, by gRPC method and reason: permission_denied (the caller's certificate identity is not allowed) or connection_limit (its connection had too many calls in progress).",
		}, []string{"method", "reason"}),
		heartbeatFailures: newHeartbeatFailures(),
		cache:             newCacheCollector(),
	}
	// Create every known series up front: a series that appears only on
	// its first event breaks rate() and absent() alerts.
	for _, op := range consensusOps {
		m.rpcDuration.WithLabelValues(op)
		m.backingDuration.WithLabelValues(op)
		for _, r := range resultsOf(op) {
			m.rpcTotal.WithLabelValues(op, r)
			m.backingTotal.WithLabelValues(op, r)
			m.forwarded.WithLabelValues(op, r)
		}
	}
	m.backingDuration.WithLabelValues(OpFence)
	for _, r := range resultsOf(OpFence) {
		m.backingTotal.WithLabelValues(OpFence, r)
	}
	for _, s := range raftStates {
		m.raftState.WithLabelValues(s)
	}
	for _, r := range []string{FenceOK, FenceRefused, FenceError} {
		m.fenceEvents.WithLabelValues(r)
	}
	reg.MustRegister(
		m.rpcTotal, m.rpcDuration, m.inflight, m.backingTotal, m.backingDuration,
		m.raftState, m.raftTerm, m.leaderChanges, m.forwarded, m.fenceEvents, m.ready, m.batchSize,
		m.batchWait, m.warmup, m.forwardDuration, m.panics, m.refused, m.fencedWrites, m.heartbeatFailures, m.cache,
	)
	m.autopilot = newAutopilotCollector(reg)
	return m
}

// SetRaftState sets committer_raft_state: 1 for state, 0 for every other.
// state is matched case-insensitively, so raft.RaftState.String() works.
func (m *Metrics) SetRaftState(state string) {
	state = strings.ToLower(state)
	m.stateMu.Lock()
	defer m.stateMu.Unlock()
	// Clear before set: a scrape in between sees no state at 1, never two,
	// so a cluster-wide "more than one leader" alert cannot fire on it.
	for _, s := range raftStates {
		if s != state {
			m.raftState.WithLabelValues(s).Set(0)
		}
	}
	if m.otherState != "" && m.otherState != state {
		m.raftState.DeleteLabelValues(m.otherState)
	}
	m.otherState = ""
	if !slices.Contains(raftStates, state) {
		m.otherState = state
	}
	m.raftState.WithLabelValues(state).Set(1)
}

// SetTerm sets committer_raft_term.
func (m *Metrics) SetTerm(term uint64) { m.raftTerm.Set(float64(term)) }

// LeaderChanged counts one leadership change.
func (m *Metrics) LeaderChanged() { m.leaderChanges.Inc() }

// Forwarded counts one forwarded request. op is a Consensus operation and
// result one of the Result values (see Result and CASResult); other values
// create new series, so keep them to a fixed set.
func (m *Metrics) Forwarded(op, result string, took time.Duration) {
	m.forwarded.WithLabelValues(op, result).Inc()
	m.forwardDuration.WithLabelValues(op).Observe(took.Seconds())
}

// PanicRecovered counts a handler panic that was turned into an error.
// method is the gRPC method's full name.
func (m *Metrics) PanicRecovered(method string) { m.panics.WithLabelValues(method).Inc() }

// Refused counts a call refused before it ran: reason is
// admission.ReasonPermissionDenied or admission.ReasonConnectionLimit.
func (m *Metrics) Refused(method, reason string) { m.refused.WithLabelValues(method, reason).Inc() }

// Fenced counts one fence attempt; result is FenceOK, FenceRefused or
// FenceError (see FenceResult).
func (m *Metrics) Fenced(result string) { m.fenceEvents.WithLabelValues(result).Inc() }

// SetReady sets committer_ready.
func (m *Metrics) SetReady(ready bool) {
	if ready {
		m.ready.Set(1)
		return
	}
	m.ready.Set(0)
}

// SetWarmupHitRatio records the Head hit ratio of the first window after
// this replica became the ready leader.
func (m *Metrics) SetWarmupHitRatio(window time.Duration, ratio float64) {
	m.warmup.WithLabelValues(window.String()).Set(ratio)
}

// ObserveBatch records one storage batch: its operations and how long its
// first write waited for it to be sent.
func (m *Metrics) ObserveBatch(n int, wait time.Duration) {
	m.batchSize.Observe(float64(n))
	m.batchWait.Observe(wait.Seconds())
}
