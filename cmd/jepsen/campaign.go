package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/control/netns"
	"github.com/hacommit/committer/jepsen/nemesis"
	"github.com/hacommit/committer/jepsen/report"
)

// campaignFlags are the flags of `jepsen campaign`.
type campaignFlags struct {
	Time           time.Duration
	RunTime        time.Duration
	Nodes          string
	Nemesis        string
	Seed           int64
	Out            string
	CommitterBin   string
	Canaries       bool
	CanaryTime     time.Duration
	CanaryAttempts int
	// Isolation is the comma-separated list of isolation levels the regular
	// runs are spread over; canaries use the first unless they say otherwise.
	Isolation        string
	ProgressInterval time.Duration
	// TLS runs every run and canary with mutual TLS on.
	TLS bool
}

// runOverhead is what a run costs beyond its workload time (start, healing,
// final reads, checking, the report, shutdown), for the budget.
const runOverhead = 20 * time.Second

func newCampaignCommand(code *int) *cobra.Command {
	var f campaignFlags
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Run `jepsen run` repeatedly within a time budget, then the canaries",
		Long: "campaign runs `jepsen run` one run after another, rotating over the nemeses, the\n" +
			"cluster sizes and the isolation levels, until the next run would not fit in\n" +
			"--time; every run must PASS. Then it runs the canaries, which must be caught:\n" +
			"replicas started with a flag that breaks one safety mechanism, under the fault\n" +
			"that exposes it (--read-consistency=leader under leader pauses, --unsafe-skip-fence\n" +
			"while a deposed leader's backend writes land late, ...; the table is in\n" +
			"cmd/jepsen/canary.go), each run for --canary-time. A canary is caught when the\n" +
			"checker finds the anomaly it plants; a canary run that passes, or fails some\n" +
			"other way (a crash, UNKNOWN, another anomaly), is retried with another seed, up\n" +
			"to --canary-attempts runs.\n\n" +
			"Each run keeps its directory under --out; campaign.md and campaign.json sum\n" +
			"them up. The last line printed is CAMPAIGN: PASS or CAMPAIGN: FAIL, and the exit\n" +
			"code is 0 or 1 (2 when the campaign could not be carried out).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("seed") {
				f.Seed = rand.Int64N(1 << 30)
			}
			if f.Out == "" {
				f.Out = filepath.Join("jepsen-out", "campaign-"+time.Now().UTC().Format("20060102T150405"))
			}
			*code = runCampaign(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return nil
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&f.Time, "time", 10*time.Minute, "budget of the regular runs (the canaries come on top)")
	fs.DurationVar(&f.RunTime, "run-time", 60*time.Second, "workload time of each regular run")
	fs.StringVar(&f.Nodes, "nodes", "3,5", "cluster sizes to alternate between")
	fs.StringVar(&f.Nemesis, "nemesis", "all", "fault families to cover: all runs use them together in turn with smaller groups of them")
	fs.Int64Var(&f.Seed, "seed", 0, "seed of the first run; run i uses seed+i (default: random, printed)")
	fs.StringVar(&f.Out, "out", "", "directory for the runs (default: jepsen-out/campaign-<time>)")
	fs.StringVar(&f.CommitterBin, "committer-bin", "", "committer binary (default: go build ./cmd/committer into <out>/bin)")
	fs.BoolVar(&f.Canaries, "canaries", true, "run the canaries after the regular runs")
	fs.DurationVar(&f.CanaryTime, "canary-time", 90*time.Second, "workload time of each canary run")
	fs.IntVar(&f.CanaryAttempts, "canary-attempts", 2, "runs a canary gets to be caught")
	fs.StringVar(&f.Isolation, "isolation", strings.Join(isolationLevels(), ","), "comma-separated isolation levels ("+strings.Join(isolationLevels(), ", ")+") the regular runs rotate over; canaries run under the first")
	fs.BoolVar(&f.TLS, "tls", false, "run every run and canary with mutual TLS on every port and authorization on (jepsen run --tls)")
	fs.DurationVar(&f.ProgressInterval, "progress-interval", 5*time.Second, "each run prints a progress line this often, which the campaign shows with the run's name (0: never)")
	return cmd
}

// parseIsolationList parses the campaign's --isolation.
func parseIsolationList(list string) ([]string, error) {
	var levels []string
	for _, l := range strings.Split(list, ",") {
		l = strings.TrimSpace(l)
		switch {
		case !slices.Contains(isolationLevels(), l):
			return nil, fmt.Errorf("--isolation %q: %q is not an isolation level; want a comma-separated list of %s", list, l, strings.Join(isolationLevels(), ", "))
		case slices.Contains(levels, l):
			return nil, fmt.Errorf("--isolation %q: %s is listed twice", list, l)
		}
		levels = append(levels, l)
	}
	return levels, nil
}

// plannedRun is one `jepsen run` of a campaign.
type plannedRun struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Nodes int      `json:"nodes"`
	// Nemesis is the --nemesis value.
	Nemesis   string `json:"nemesis"`
	Seed      int64  `json:"seed"`
	Isolation string `json:"isolation"`
	// Canary names the canary this run is an attempt of; the other runs
	// must PASS.
	Canary string `json:"canary,omitempty"`
	// Control names the canary this run is the control of: the canary's
	// fault delays without its unsafe flags. It must PASS like a regular
	// run.
	Control string `json:"control,omitempty"`
	// ServeFlags, Expect and Attempt (from 1) are the canary's.
	ServeFlags []string             `json:"serve_flags,omitempty"`
	Expect     []report.AnomalyKind `json:"expect,omitempty"`
	Attempt    int                  `json:"attempt,omitempty"`
}

// campaignResult is one finished run.
type campaignResult struct {
	plannedRun
	Dir      string          `json:"dir"`
	Verdict  checker.Verdict `json:"verdict"`
	ExitCode int             `json:"exit_code"`
	Wall     time.Duration   `json:"wall_ns"`
	Summary  *report.Summary `json:"-"`
	// OK says whether the run came out as it must: a regular run passed,
	// a canary was caught.
	OK bool `json:"ok"`
	// Outcome says in words what became of the run.
	Outcome string `json:"outcome"`
}

// regularRun plans the i-th regular run (from 0). Cluster sizes and the
// nemesis rotation advance every run, the isolation level every
// len(sizes) runs, so that each level meets each size (advancing it every
// run too would tie each level to one size when there are as many of both).
func regularRun(i int, baseSeed int64, sizes []int, rot, levels []string, d time.Duration) plannedRun {
	pr := plannedRun{
		Nodes:     sizes[i%len(sizes)],
		Nemesis:   rot[i%len(rot)],
		Isolation: levels[(i/len(sizes))%len(levels)],
		Seed:      baseSeed + int64(i),
		Args:      []string{"--time", d.String()},
	}
	pr.Name = fmt.Sprintf("run%02d-n%d-%s-%s-seed%d", i+1, pr.Nodes, strings.ReplaceAll(pr.Nemesis, ",", "+"), pr.Isolation, pr.Seed)
	return pr
}

// rotation returns the --nemesis values a campaign cycles through: every
// family together, then smaller groups so that each family also gets runs
// of its own.
func rotation(families []string) []string {
	out := []string{strings.Join(families, ",")}
	if slices.Equal(families, nemesis.Families()) {
		out[0] = "all"
	}
	if len(families) <= 1 {
		return out
	}
	// Pairs keep a run's faults varied while still focused.
	for i := 0; i < len(families); i += 2 {
		out = append(out, strings.Join(families[i:min(i+2, len(families))], ","))
	}
	return out
}

func runCampaign(ctx context.Context, f campaignFlags, stdout, stderr io.Writer) int {
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "campaign: "+format+"\n", args...) }
	fail := func(err error) int {
		fmt.Fprintln(stderr, "jepsen campaign:", err)
		fmt.Fprintln(stdout, "CAMPAIGN: FAIL")
		return exitOther
	}
	families, err := nemesis.ParseFamilies(f.Nemesis)
	if err != nil {
		return fail(fmt.Errorf("--nemesis: %w", err))
	}
	var sizes []int
	for _, s := range strings.Split(f.Nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fail(fmt.Errorf("--nodes %q: want a comma-separated list of cluster sizes", f.Nodes))
		}
		sizes = append(sizes, n)
	}
	levels, err := parseIsolationList(f.Isolation)
	if err != nil {
		return fail(err)
	}
	if f.ProgressInterval < 0 {
		return fail(fmt.Errorf("--progress-interval %s: must not be negative (0 turns progress lines off)", f.ProgressInterval))
	}
	if err := netns.CheckPrerequisites(); err != nil {
		return fail(err)
	}
	out, err := filepath.Abs(f.Out)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fail(err)
	}
	bin := f.CommitterBin
	if bin == "" {
		say("building committer")
		if bin, err = buildCommitter(ctx, filepath.Join(out, "bin")); err != nil {
			return fail(err)
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	say("seed %d, budget %s, runs of %s on %v nodes, nemeses %s, isolation %s; output %s",
		f.Seed, f.Time, f.RunTime, sizes, strings.Join(orNone(families), ","), strings.Join(levels, ","), out)

	began := time.Now()
	var results []campaignResult
	rot := rotation(families)
	if len(families) == 0 {
		rot = []string{"none"}
	}
	launch := func(pr plannedRun) campaignResult {
		if f.TLS {
			pr.Args = append(slices.Clone(pr.Args), "--tls")
		}
		return campaignRun(ctx, exe, bin, out, pr, f.ProgressInterval, stdout, say)
	}
	for i := 0; ; i++ {
		if i > 0 && time.Since(began)+f.RunTime+runOverhead > f.Time {
			break
		}
		if ctx.Err() != nil {
			break
		}
		results = append(results, launch(regularRun(i, f.Seed, sizes, rot, levels, f.RunTime)))
	}
	var table []canary
	if f.Canaries {
		table = canaries()
	}
	for _, c := range table {
		if pr, ok := controlRun(c, f.Seed, levels, f.CanaryTime); ok && ctx.Err() == nil {
			results = append(results, launch(pr))
		}
		for attempt := 0; attempt < max(1, f.CanaryAttempts) && ctx.Err() == nil; attempt++ {
			r := launch(canaryRun(c, attempt, f.Seed, levels, f.CanaryTime))
			results = append(results, r)
			if r.OK {
				break
			}
		}
		if cs := summarizeCanaries([]canary{c}, results); len(cs) == 1 {
			say("%s", canaryLine(cs[0]))
		}
	}

	// An interrupted campaign proves nothing, however its runs went.
	ok := campaignOK(results) && ctx.Err() == nil
	if err := writeCampaign(out, f, levels, ok, results, summarizeCanaries(table, results), time.Since(began)); err != nil {
		return fail(err)
	}
	say("summary: %s", filepath.Join(out, "campaign.md"))
	if ok {
		fmt.Fprintln(stdout, "CAMPAIGN: PASS")
		return exitPass
	}
	fmt.Fprintln(stdout, "CAMPAIGN: FAIL")
	return exitFail
}

// campaignOK says whether every regular run passed and every canary was
// caught at least once.
func campaignOK(results []campaignResult) bool {
	caught := map[string]bool{}
	for _, r := range results {
		if r.Canary == "" {
			if !r.OK {
				return false
			}
			continue
		}
		caught[r.Canary] = caught[r.Canary] || r.OK
	}
	for _, c := range caught {
		if !c {
			return false
		}
	}
	return true
}

// campaignRun runs one `jepsen run` as a child process, reads its summary
// and judges it. The child's output goes to <out>/<run>.out; its progress
// lines are also shown on stdout, prefixed with the run's name.
func campaignRun(ctx context.Context, exe, bin, out string, pr plannedRun, progressInterval time.Duration,
	stdout io.Writer, say func(string, ...any)) campaignResult {
	r := campaignResult{plannedRun: pr, Dir: filepath.Join(out, pr.Name)}
	args := []string{"run", "--nodes", strconv.Itoa(pr.Nodes), "--nemesis", pr.Nemesis,
		"--seed", strconv.FormatInt(pr.Seed, 10), "--out", r.Dir, "--committer-bin", bin,
		"--isolation", pr.Isolation, "--progress-interval", progressInterval.String()}
	for _, flag := range pr.ServeFlags {
		args = append(args, "--serve-arg="+flag)
	}
	args = append(args, pr.Args...)
	kind := "run"
	if pr.Canary != "" {
		kind = "canary"
	}
	say("%s %s: jepsen %s", kind, pr.Name, strings.Join(args, " "))
	start := time.Now()
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		r.Outcome = err.Error()
		say("  %v", err)
		return r
	}
	logPath := filepath.Join(out, pr.Name+".out")
	log, err := os.Create(logPath)
	if err != nil {
		r.Outcome = err.Error()
		say("  %v", err)
		return r
	}
	progress := &progressForwarder{prefix: "campaign: " + pr.Name + ": ", w: stdout}
	// One writer for both streams: exec then copies them in one goroutine,
	// so the forwarder sees whole lines in order.
	output := io.MultiWriter(log, progress)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = output, output
	err = cmd.Run()
	log.Close()
	r.Wall = time.Since(start)
	var exit *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &exit):
		r.ExitCode = exit.ExitCode()
	default:
		r.ExitCode = exitOther
	}
	if b, err := os.ReadFile(filepath.Join(r.Dir, report.SummaryJSONFile)); err == nil {
		var s report.Summary
		if json.Unmarshal(b, &s) == nil {
			r.Summary = &s
			r.Verdict = s.Verdict
		}
	}
	if r.Verdict == "" {
		r.Verdict = checker.Unknown
	}
	if pr.Canary != "" {
		r.OK, r.Outcome = judgeCanary(pr.Expect, r)
	} else {
		r.OK, r.Outcome = judgeRegular(r)
	}
	mark := "as expected"
	if !r.OK {
		mark = "UNEXPECTED; see " + logPath
	}
	ops, faults := 0, 0
	if s := r.Summary; s != nil {
		ops = s.Total.OK + s.Total.Fail + s.Total.Info + s.Total.Unfinished
		for _, fs := range s.Faults {
			faults += fs.Count
		}
	}
	say("  %s (%s, %s): %d operations, %d faults, %s", r.Verdict, r.Outcome, mark, ops, faults, r.Wall.Round(time.Second))
	return r
}

// judgeRegular decides whether a regular run came out right: it passed,
// and the run itself succeeded.
func judgeRegular(r campaignResult) (bool, string) {
	switch {
	case r.Summary == nil:
		return false, fmt.Sprintf("no summary: the run crashed or could not be carried out (exit status %d)", r.ExitCode)
	case r.Verdict == checker.Pass && r.ExitCode == exitPass:
		return true, "passed"
	case r.Verdict == checker.Pass:
		return false, fmt.Sprintf("PASS in the summary, but the run exited with status %d", r.ExitCode)
	case r.Verdict == checker.Fail:
		return false, "FAIL: " + report.FormatAnomalies(r.Summary.Anomalies)
	default:
		return false, string(r.Verdict)
	}
}

// progressForwarder passes the progress lines of a run's output on to w,
// each behind prefix, and drops the rest (which goes to the run's .out
// file). Writes come from one goroutine at a time.
type progressForwarder struct {
	prefix  string
	w       io.Writer
	partial []byte // the unfinished last line
}

func (p *progressForwarder) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		end := bytes.IndexByte(p.partial, '\n')
		if end < 0 {
			break
		}
		line := string(p.partial[:end])
		p.partial = p.partial[end+1:]
		if rest, ok := strings.CutPrefix(line, progressPrefix); ok {
			// Progress reaches the terminal on a best-effort basis: a
			// failing stdout must not fail the run's .out file.
			_, _ = fmt.Fprintf(p.w, "%sprogress %s\n", p.prefix, rest)
		}
	}
	// A run prints no line this long; do not let one grow without bound.
	if len(p.partial) > 64<<10 {
		p.partial = p.partial[:0]
	}
	return len(b), nil
}

// campaignRecord is campaign.json.
type campaignRecord struct {
	Seed      int64            `json:"seed"`
	Isolation []string         `json:"isolation"`
	Wall      time.Duration    `json:"wall_ns"`
	OK        bool             `json:"ok"`
	Runs      []campaignResult `json:"runs"`
	Canaries  []canarySummary  `json:"canaries"`
}

// writeCampaign writes campaign.json and campaign.md.
func writeCampaign(out string, f campaignFlags, levels []string, ok bool, results []campaignResult, canaries []canarySummary, wall time.Duration) error {
	rec := campaignRecord{Seed: f.Seed, Isolation: levels, Wall: wall, OK: ok, Runs: results, Canaries: canaries}
	if err := writeJSON(filepath.Join(out, "campaign.json"), rec); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "campaign.md"), []byte(campaignMarkdown(f, levels, results, canaries, wall)), 0o644)
}

// campaignMarkdown is campaign.md: every run, the regular runs' totals,
// faults by kind, and each canary's attempts.
func campaignMarkdown(f campaignFlags, levels []string, results []campaignResult, canaries []canarySummary, wall time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Jepsen campaign\n\nseed %d, budget %s, runs of %s, nodes %s, nemeses %s, isolation %s; wall time %s\n\n",
		f.Seed, f.Time, f.RunTime, f.Nodes, f.Nemesis, strings.Join(levels, ","), wall.Round(time.Second))
	b.WriteString("| run | nodes | nemesis | isolation | seed | verdict | expected | outcome | operations | ok | fail | info | faults | elections | checker |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var regular, ops, okOps, failOps, infoOps, elections int
	var checkerTime time.Duration
	faults := map[string]int{}
	violations := 0
	perLevel := map[string]int{}
	for _, r := range results {
		expect := "PASS"
		if r.Control != "" {
			expect = "PASS (control of " + r.Control + ")"
		}
		if r.Canary != "" {
			expect = "caught: " + showKinds(r.Expect)
		}
		s := r.Summary
		if s == nil {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %s | %s | %s | - | - | - | - | - | - | - |\n",
				r.Name, r.Nodes, r.Nemesis, r.Isolation, r.Seed, r.Verdict, expect, r.Outcome)
			continue
		}
		n, nf := s.Total.OK+s.Total.Fail+s.Total.Info+s.Total.Unfinished, 0
		for _, fs := range s.Faults {
			nf += fs.Count
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %s | %s | %s | %d | %d | %d | %d | %d | %d | %s |\n",
			r.Name, r.Nodes, r.Nemesis, r.Isolation, r.Seed, r.Verdict, expect, r.Outcome,
			n, s.Total.OK, s.Total.Fail, s.Total.Info, nf, s.Run.Elections, s.Checker.Duration.Round(time.Millisecond))
		if r.Canary != "" {
			continue
		}
		regular++
		perLevel[r.Isolation]++
		ops += n
		okOps += s.Total.OK
		failOps += s.Total.Fail
		infoOps += s.Total.Info
		elections += s.Run.Elections
		checkerTime += s.Checker.Duration
		if r.Verdict == checker.Fail {
			violations += len(s.Problems)
		}
		for k, fs := range s.Faults {
			faults[k] += fs.Count
		}
	}
	var byLevel []string
	for _, l := range levels {
		byLevel = append(byLevel, fmt.Sprintf("%d %s", perLevel[l], l))
	}
	fmt.Fprintf(&b, "\nRegular runs: %d (%s); operations: %d (%d ok, %d fail, %d info); elections: %d; violations: %d; checker time: %s\n\n",
		regular, strings.Join(byLevel, ", "), ops, okOps, failOps, infoOps, elections, violations, checkerTime.Round(time.Millisecond))
	b.WriteString("| fault | count |\n|---|---|\n")
	var kinds []string
	total := 0
	for k, n := range faults {
		kinds = append(kinds, k)
		total += n
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "| %s | %d |\n", k, faults[k])
	}
	fmt.Fprintf(&b, "| total | %d |\n", total)

	if len(canaries) > 0 {
		b.WriteString("\n## Canaries\n\nA canary is caught when the checker finds one of the anomalies it must produce.\n\n")
		b.WriteString("| canary | serve flags | fault delays | nemesis | isolation | must find | attempts | caught | what each attempt found | control (delays only, must PASS) |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, c := range canaries {
			caught := "**no**"
			if c.Caught {
				caught = fmt.Sprintf("yes (attempt %d)", len(c.Attempts))
			}
			found := make([]string, len(c.Attempts))
			for i, a := range c.Attempts {
				found[i] = fmt.Sprintf("%d: %s", i+1, a.Outcome)
			}
			delays, control := "-", "-"
			if len(c.FaultDelays) > 0 {
				delays = "`" + strings.Join(c.FaultDelays, " ") + "`"
				control = "**did not run**"
			}
			if c.Control != nil {
				control = c.Control.Outcome
			}
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s | %d | %s | %s | %s |\n", c.Name, strings.Join(c.ServeFlags, " "), delays, c.Nemesis,
				c.Isolation, showKinds(c.Expect), len(c.Attempts), caught, strings.Join(found, "; "), control)
		}
		b.WriteString("\n")
		for _, c := range canaries {
			fmt.Fprintf(&b, "- %s: %s\n", c.Name, c.Description)
		}
	}
	return b.String()
}
