package main

import (
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
}

// runOverhead is what a run costs beyond its workload time (start, healing,
// final reads, checking, the report, shutdown), for the budget.
const runOverhead = 20 * time.Second

func newCampaignCommand(code *int) *cobra.Command {
	var f campaignFlags
	cmd := &cobra.Command{
		Use:   "campaign",
		Short: "Run `jepsen run` repeatedly within a time budget, then the canaries",
		Long: "campaign runs `jepsen run` one run after another, rotating over the nemeses and\n" +
			"the cluster sizes, until the next run would not fit in --time; every run must\n" +
			"PASS. Then it runs the canaries, which must FAIL: replicas started with\n" +
			"--read-consistency=leader under leader pauses (stale reads), and with\n" +
			"--unsafe-skip-fence while a deposed leader's backend writes land late. A canary\n" +
			"that passes is retried with another seed, up to --canary-attempts runs.\n\n" +
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
	fs.IntVar(&f.CanaryAttempts, "canary-attempts", 2, "runs a canary gets to FAIL")
	return cmd
}

// plannedRun is one `jepsen run` of a campaign.
type plannedRun struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Nodes int      `json:"nodes"`
	// Nemesis is the --nemesis value.
	Nemesis string `json:"nemesis"`
	Seed    int64  `json:"seed"`
	// Canary runs must FAIL; the others must PASS.
	Canary string `json:"canary,omitempty"`
}

// campaignResult is one finished run.
type campaignResult struct {
	plannedRun
	Dir      string          `json:"dir"`
	Verdict  checker.Verdict `json:"verdict"`
	ExitCode int             `json:"exit_code"`
	Wall     time.Duration   `json:"wall_ns"`
	Summary  *report.Summary `json:"-"`
	// OK says whether the verdict is the expected one.
	OK bool `json:"ok"`
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

// canaryRuns are the runs that must FAIL.
func canaryRuns(seed int64, d time.Duration) []plannedRun {
	return []plannedRun{
		{Canary: "stale reads (--read-consistency=leader, leader paused)", Nodes: 3, Nemesis: string(nemesis.PauseLeader), Seed: seed,
			Args: []string{"--read-consistency", "leader", "--time", d.String()}},
		{Canary: "no fencing (--unsafe-skip-fence, deposed leader's writes land late)", Nodes: 3, Nemesis: string(nemesis.BackendStallLeader), Seed: seed,
			Args: []string{"--unsafe-skip-fence", "--time", d.String()}},
	}
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
	say("seed %d, budget %s, runs of %s on %v nodes, nemeses %s; output %s", f.Seed, f.Time, f.RunTime, sizes, strings.Join(orNone(families), ","), out)

	began := time.Now()
	var results []campaignResult
	rot := rotation(families)
	for i := 0; ; i++ {
		if i > 0 && time.Since(began)+f.RunTime+runOverhead > f.Time {
			break
		}
		if ctx.Err() != nil {
			break
		}
		pr := plannedRun{Nodes: sizes[i%len(sizes)], Nemesis: rot[i%len(rot)], Seed: f.Seed + int64(i),
			Args: []string{"--time", f.RunTime.String()}}
		if len(families) == 0 {
			pr.Nemesis = "none"
		}
		pr.Name = fmt.Sprintf("run%02d-n%d-%s-seed%d", i+1, pr.Nodes, strings.ReplaceAll(pr.Nemesis, ",", "+"), pr.Seed)
		results = append(results, campaignRun(ctx, exe, bin, out, pr, say))
	}
	if f.Canaries {
		for _, c := range canaryRuns(f.Seed, f.CanaryTime) {
			for attempt := 0; attempt < max(1, f.CanaryAttempts) && ctx.Err() == nil; attempt++ {
				c.Seed = f.Seed + int64(1000*(attempt+1))
				c.Name = fmt.Sprintf("canary-%s-seed%d", c.Nemesis, c.Seed)
				r := campaignRun(ctx, exe, bin, out, c, say)
				results = append(results, r)
				if r.OK {
					break
				}
			}
		}
	}

	ok := campaignOK(results)
	if err := writeCampaign(out, f, results, time.Since(began)); err != nil {
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

// campaignOK says whether every regular run passed and every canary failed
// at least once.
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

// campaignRun runs one `jepsen run` as a child process and reads its
// summary.
func campaignRun(ctx context.Context, exe, bin, out string, pr plannedRun, say func(string, ...any)) campaignResult {
	r := campaignResult{plannedRun: pr, Dir: filepath.Join(out, pr.Name)}
	args := append([]string{"run", "--nodes", strconv.Itoa(pr.Nodes), "--nemesis", pr.Nemesis,
		"--seed", strconv.FormatInt(pr.Seed, 10), "--out", r.Dir, "--committer-bin", bin}, pr.Args...)
	kind := "run"
	if pr.Canary != "" {
		kind = "canary"
	}
	say("%s %s: jepsen %s", kind, pr.Name, strings.Join(args, " "))
	start := time.Now()
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		say("  %v", err)
		return r
	}
	logPath := filepath.Join(out, pr.Name+".out")
	log, err := os.Create(logPath)
	if err != nil {
		say("  %v", err)
		return r
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = log, log
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
		r.OK = r.Verdict == checker.Fail
	} else {
		r.OK = r.Verdict == checker.Pass
	}
	expect := "PASS"
	if pr.Canary != "" {
		expect = "FAIL"
	}
	mark := "as expected"
	if !r.OK {
		mark = "UNEXPECTED, want " + expect + "; see " + logPath
	}
	ops, faults := 0, 0
	if s := r.Summary; s != nil {
		ops = s.Total.OK + s.Total.Fail + s.Total.Info + s.Total.Unfinished
		for _, fs := range s.Faults {
			faults += fs.Count
		}
	}
	say("  %s (%s): %d operations, %d faults, %s", r.Verdict, mark, ops, faults, r.Wall.Round(time.Second))
	return r
}

// writeCampaign writes campaign.json and campaign.md.
func writeCampaign(out string, f campaignFlags, results []campaignResult, wall time.Duration) error {
	if err := writeJSON(filepath.Join(out, "campaign.json"), results); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Jepsen campaign\n\nseed %d, budget %s, runs of %s, nodes %s, nemeses %s; wall time %s\n\n",
		f.Seed, f.Time, f.RunTime, f.Nodes, f.Nemesis, wall.Round(time.Second))
	b.WriteString("| run | nodes | nemesis | seed | verdict | expected | operations | ok | fail | info | faults | elections | checker |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var regular, ops, okOps, failOps, infoOps, elections int
	var checkerTime time.Duration
	faults := map[string]int{}
	violations := 0
	for _, r := range results {
		expect := "PASS"
		if r.Canary != "" {
			expect = "FAIL (canary)"
		}
		s := r.Summary
		if s == nil {
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | - | - | - | - | - | - | - |\n", r.Name, r.Nodes, r.Nemesis, r.Seed, r.Verdict, expect)
			continue
		}
		n, nf := s.Total.OK+s.Total.Fail+s.Total.Info+s.Total.Unfinished, 0
		for _, fs := range s.Faults {
			nf += fs.Count
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | %d | %d | %d | %d | %d | %d | %s |\n", r.Name, r.Nodes, r.Nemesis, r.Seed,
			r.Verdict, expect, n, s.Total.OK, s.Total.Fail, s.Total.Info, nf, s.Run.Elections, s.Checker.Duration.Round(time.Millisecond))
		if r.Canary != "" {
			continue
		}
		regular++
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
	fmt.Fprintf(&b, "\nRegular runs: %d; operations: %d (%d ok, %d fail, %d info); elections: %d; violations: %d; checker time: %s\n\n",
		regular, ops, okOps, failOps, infoOps, elections, violations, checkerTime.Round(time.Millisecond))
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
	return os.WriteFile(filepath.Join(out, "campaign.md"), []byte(b.String()), 0o644)
}
