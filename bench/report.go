package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one target's figures for one scenario, over every round.
type Row struct {
	Scenario Scenario `json:"scenario"`
	Target   string   `json:"target"`
	// OpsPerSecond is the median over rounds; PerRound each round's.
	OpsPerSecond float64   `json:"ops_per_second"`
	PerRound     []float64 `json:"per_round"`
	P50          Duration  `json:"p50"`
	P99          Duration  `json:"p99"`
	Mismatches   int64     `json:"mismatches"`
	Errors       int64     `json:"errors"`
	FirstError   string    `json:"first_error,omitempty"`
	// TransactionsPerOp is the database's write transactions per
	// operation, -1 when not measured.
	TransactionsPerOp float64 `json:"transactions_per_op"`
	// Baseline names the target Ratio compares with; Ratio is
	// OpsPerSecond / the baseline's.
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
}

// Duration marshals as a string like "1.2ms".
type Duration time.Duration

// MarshalText renders d.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Summarize turns segments into rows, in scenario then target order. The
// baseline of a scenario is baselines[scenario] when that target ran.
func Summarize(segs []Segment, baselines map[Scenario]string) []Row {
	type key struct {
		sc Scenario
		t  string
	}
	var order []key
	by := map[key][]Segment{}
	for _, s := range segs {
		k := key{s.Scenario, s.Target}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], s)
	}
	var rows []Row
	for _, k := range order {
		ss := by[k]
		r := Row{Scenario: k.sc, Target: k.t, TransactionsPerOp: -1}
		var lat []time.Duration
		var ops, txns int64
		measured := true
		for _, s := range ss {
			r.PerRound = append(r.PerRound, s.OpsPerSecond())
			r.Mismatches += s.Mismatches
			r.Errors += s.Errors
			if r.FirstError == "" {
				r.FirstError = s.FirstError
			}
			lat = append(lat, s.Latencies...)
			ops += s.Ops + s.Mismatches
			if s.Transactions < 0 {
				measured = false
			}
			txns += s.Transactions
		}
		sorted := slices.Clone(r.PerRound)
		slices.Sort(sorted)
		r.OpsPerSecond = median(sorted)
		slices.Sort(lat)
		r.P50, r.P99 = Duration(quantile(lat, 0.50)), Duration(quantile(lat, 0.99))
		if measured && ops > 0 {
			r.TransactionsPerOp = float64(txns) / float64(ops)
		}
		rows = append(rows, r)
	}
	for i := range rows {
		base := baselines[rows[i].Scenario]
		if base == "" || base == rows[i].Target {
			continue
		}
		for _, b := range rows {
			if b.Scenario == rows[i].Scenario && b.Target == base && b.OpsPerSecond > 0 {
				rows[i].Baseline, rows[i].Ratio = base, rows[i].OpsPerSecond/b.OpsPerSecond
			}
		}
	}
	return rows
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// WriteTable prints rows as a table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\tops/s (median)\trounds\tp50\tp99\tmismatches\terrors\ttxn/op\tratio\t")
	for _, r := range rows {
		var rounds []string
		for _, v := range r.PerRound {
			rounds = append(rounds, fmt.Sprintf("%.0f", v))
		}
		txn, ratio := "-", "-"
		if r.TransactionsPerOp >= 0 {
			txn = fmt.Sprintf("%.3f", r.TransactionsPerOp)
		}
		if r.Baseline != "" {
			ratio = fmt.Sprintf("%.2fx %s", r.Ratio, r.Baseline)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", r.Scenario, r.Target, r.OpsPerSecond, strings.Join(rounds, " "),
			time.Duration(r.P50).Round(time.Microsecond), time.Duration(r.P99).Round(time.Microsecond), r.Mismatches, r.Errors, txn, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s on %s: first error: %s\n", r.Scenario, r.Target, r.FirstError)
		}
	}
	return nil
}
