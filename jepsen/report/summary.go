package report

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// Run describes how a run was configured, for the record.
type Run struct {
	Seed            int64         `json:"seed"`
	Nodes           int           `json:"nodes"`
	Duration        time.Duration `json:"duration_ns"`
	Nemeses         []string      `json:"nemeses"`
	ReadConsistency string        `json:"read_consistency"`
	UnsafeSkipFence bool          `json:"unsafe_skip_fence"`
	// Isolation is the replicas' PostgreSQL transaction isolation
	// (serializable or read-committed).
	Isolation string `json:"isolation"`
	// Elections counts the leader changes the harness observed.
	Elections int `json:"elections"`
	// CommitterArgs are extra replica flags.
	CommitterArgs []string `json:"committer_args,omitempty"`
}

// Outcomes counts operations by how they completed. Unfinished operations
// were invoked but the history ended before they completed.
type Outcomes struct {
	OK         int `json:"ok"`
	Fail       int `json:"fail"`
	Info       int `json:"info"`
	Unfinished int `json:"unfinished"`
}

func (o *Outcomes) add(typ history.Type) {
	switch typ {
	case history.OK:
		o.OK++
	case history.Fail:
		o.Fail++
	case history.Info:
		o.Info++
	}
}

// Latency summarizes the latencies of acknowledged operations.
type Latency struct {
	Count int           `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// FaultStats summarizes the fault windows of one kind. A fault that never
// ended counts until the end of the history.
type FaultStats struct {
	Count   int           `json:"count"`
	Total   time.Duration `json:"total_ns"`
	Unended int           `json:"unended"`
}

// CheckerStats is what the checker covered and found.
type CheckerStats struct {
	Duration        time.Duration `json:"duration_ns"`
	Keys            int           `json:"keys"`
	Ops             int           `json:"ops"`
	Linearizable    string        `json:"linearizable"`
	IllegalKeys     []string      `json:"illegal_keys,omitempty"`
	UnknownKeys     []string      `json:"unknown_keys,omitempty"`
	ListKeysChecked int           `json:"list_keys_checked"`
	DurabilityKeys  int           `json:"durability_keys"`
	// Pruned counts indeterminate cas elements proven to have had no effect
	// and left out of the linearizability search.
	Pruned int `json:"pruned_indeterminate"`
}

// Summary is the machine-readable account of a run.
type Summary struct {
	Run     Run             `json:"run"`
	Verdict checker.Verdict `json:"verdict"`
	Events  int             `json:"events"`
	// Span is the time from the start of the run to the last event.
	Span time.Duration `json:"span_ns"`
	// Ops counts client operations by name (F) and outcome.
	Ops   map[string]Outcomes `json:"ops"`
	Total Outcomes            `json:"total"`
	// Latency is per operation name, over acknowledged operations.
	Latency  map[string]Latency    `json:"latency"`
	Faults   map[string]FaultStats `json:"faults"`
	Checker  CheckerStats          `json:"checker"`
	Problems []string              `json:"problems"`
	// Anomalies counts the problems by kind (see Anomalies); absent when
	// there are none.
	Anomalies map[AnomalyKind]int `json:"anomalies,omitempty"`
	Notes     []string            `json:"notes,omitempty"`
}

// Summarize counts a run's operations and faults and records the checker's
// result.
func Summarize(run Run, events []history.Event, res *checker.Result) Summary {
	s := Summary{
		Run:       run,
		Verdict:   res.Verdict,
		Events:    len(events),
		Ops:       make(map[string]Outcomes),
		Latency:   make(map[string]Latency),
		Faults:    make(map[string]FaultStats),
		Problems:  slices.Clone(res.Problems),
		Anomalies: Anomalies(res),
		Notes:     slices.Clone(res.Notes),
		Checker: CheckerStats{
			Duration:        res.Duration,
			Keys:            res.Keys,
			Ops:             res.Ops,
			Linearizable:    string(res.Linearizable),
			IllegalKeys:     res.IllegalKeys,
			UnknownKeys:     res.UnknownKeys,
			ListKeysChecked: res.ListKeysChecked,
			DurabilityKeys:  res.DurabilityKeys,
			Pruned:          res.Pruned,
		},
	}
	if s.Problems == nil {
		s.Problems = []string{}
	}
	ops := pairOps(events)
	latencies := make(map[string][]time.Duration)
	for _, o := range ops {
		s.Span = max(s.Span, time.Duration(o.invoke.Time))
		counts := s.Ops[o.invoke.F]
		if o.done == nil {
			counts.Unfinished++
			s.Total.Unfinished++
		} else {
			s.Span = max(s.Span, time.Duration(o.done.Time))
			counts.add(o.done.Type)
			s.Total.add(o.done.Type)
			if o.done.Type == history.OK {
				latencies[o.invoke.F] = append(latencies[o.invoke.F], o.latency())
			}
		}
		s.Ops[o.invoke.F] = counts
	}
	for f, ls := range latencies {
		s.Latency[f] = latencyOf(ls)
	}
	for _, e := range events {
		s.Span = max(s.Span, time.Duration(e.Time))
	}
	for _, f := range res.Faults {
		st := s.Faults[f.Kind]
		st.Count++
		st.Total += time.Duration(f.End - f.Start)
		if !f.Ended {
			st.Unended++
		}
		s.Faults[f.Kind] = st
	}
	return s
}

// op is a client operation: an invocation and its completion, if any.
type op struct {
	invoke history.Event
	done   *history.Event
}

func (o op) latency() time.Duration { return time.Duration(o.done.Time - o.invoke.Time) }

// pairOps matches completions to invocations by process, in index order.
// The checker reports malformed pairings; here they are only skipped.
func pairOps(events []history.Event) []op {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b history.Event) int { return a.Index - b.Index })
	var ops []op
	pending := make(map[int]int)
	for _, e := range sorted {
		if e.F == history.FNemesis || e.Process == history.NemesisProcess {
			continue
		}
		if e.Type == history.Invoke {
			pending[e.Process] = len(ops)
			ops = append(ops, op{invoke: e})
			continue
		}
		if i, ok := pending[e.Process]; ok && ops[i].invoke.F == e.F {
			done := e
			ops[i].done = &done
			delete(pending, e.Process)
		}
	}
	return ops
}

// latencyOf computes nearest-rank percentiles.
func latencyOf(ls []time.Duration) Latency {
	sorted := slices.Clone(ls)
	slices.Sort(sorted)
	return Latency{
		Count: len(sorted),
		P50:   percentile(sorted, 0.50),
		P99:   percentile(sorted, 0.99),
		Max:   sorted[len(sorted)-1],
	}
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

// VerdictLine is the line the harness prints last.
func VerdictLine(v checker.Verdict) string { return "VERDICT: " + string(v) }

// ExitCode is the harness's exit status for a verdict: 0 for PASS, 1 for
// FAIL, 2 for UNKNOWN. Anything else is a failure.
func ExitCode(v checker.Verdict) int {
	switch v {
	case checker.Pass:
		return 0
	case checker.Unknown:
		return 2
	default:
		return 1
	}
}

// WriteText writes the human-readable summary, ending with the verdict line.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	r := s.Run
	fence := "on"
	if r.UnsafeSkipFence {
		fence = "OFF (unsafe)"
	}
	fmt.Fprintf(&b, "committer correctness run\n")
	fmt.Fprintf(&b, "seed %d, %d nodes, %s, read consistency %s, fencing %s, isolation %s\n",
		r.Seed, r.Nodes, r.Duration, orNone(r.ReadConsistency), fence, orDefault(r.Isolation))
	fmt.Fprintf(&b, "nemeses: %s\n", orNone(strings.Join(r.Nemeses, ", ")))
	if len(r.CommitterArgs) > 0 {
		fmt.Fprintf(&b, "replica flags: %s\n", strings.Join(r.CommitterArgs, " "))
	}
	fmt.Fprintf(&b, "leader changes observed: %d\n", r.Elections)
	fmt.Fprintf(&b, "history: %d events over %s\n\n", s.Events, s.Span.Round(time.Millisecond))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tok\tfail\tinfo\tunfinished\tp50\tp99\tmax\t")
	for _, f := range slices.Sorted(maps.Keys(s.Ops)) {
		o, l := s.Ops[f], s.Latency[f]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", f, o.OK, o.Fail, o.Info, o.Unfinished,
			showLatency(l, l.P50), showLatency(l, l.P99), showLatency(l, l.Max))
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t\t\t\t\n", s.Total.OK, s.Total.Fail, s.Total.Info, s.Total.Unfinished)
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	if len(s.Faults) == 0 {
		b.WriteString("faults: none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "fault\tcount\ttotal time\tnever ended\t")
		for _, k := range slices.Sorted(maps.Keys(s.Faults)) {
			f := s.Faults[k]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", k, f.Count, f.Total.Round(time.Millisecond), f.Unended)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	c := s.Checker
	fmt.Fprintf(&b, "\nchecker: %d operations on %d keys in %s; linearizable: %s; list_keys checked: %d; keys checked for durability: %d; indeterminate writes proven void: %d\n",
		c.Ops, c.Keys, showDuration(c.Duration), c.Linearizable, c.ListKeysChecked, c.DurabilityKeys, c.Pruned)
	if len(c.IllegalKeys) > 0 {
		fmt.Fprintf(&b, "not linearizable: %s\n", strings.Join(c.IllegalKeys, ", "))
	}
	if len(c.UnknownKeys) > 0 {
		fmt.Fprintf(&b, "search timed out: %s\n", strings.Join(c.UnknownKeys, ", "))
	}
	if len(s.Anomalies) > 0 {
		fmt.Fprintf(&b, "anomalies: %s\n", FormatAnomalies(s.Anomalies))
	}
	if len(s.Problems) > 0 {
		fmt.Fprintf(&b, "\nproblems (%d):\n", len(s.Problems))
		for _, p := range s.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	if len(s.Notes) > 0 {
		fmt.Fprintf(&b, "\nnotes:\n")
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", VerdictLine(s.Verdict))
	// tabwriter pads the last cells of short rows
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

func showLatency(l Latency, d time.Duration) string {
	if l.Count == 0 {
		return "-"
	}
	return showDuration(d)
}

// showDuration rounds to three significant digits or so.
func showDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// orDefault shows an unset replica setting (a summary written before the
// harness recorded it) as the replica's default.
func orDefault(s string) string {
	if s == "" {
		return "replica default"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
