package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/nemesis"
	"github.com/hacommit/committer/jepsen/report"
)

// canary is a run the harness must catch: replicas started with a flag that
// breaks one safety mechanism, under the fault that exposes the breakage. It
// is caught only when the checker finds one of the anomalies the broken
// mechanism exists to prevent; a run that fails any other way (a crash,
// UNKNOWN, a harness error, some other anomaly) proves nothing about it.
type canary struct {
	// Name names the canary's runs: canary-<name>-seed<seed>.
	Name string
	// Description says in one line what breaks and how the fault exposes it.
	Description string
	// ServeFlags go to every `committer serve` (jepsen run --serve-arg).
	ServeFlags []string
	// FaultDelays are `committer serve --fault-delay` flags that widen the
	// timing window the canary needs, so that every fault can enter it.
	// They go to the canary's attempts and to its control: a run with the
	// same delays and fault but without ServeFlags, which must PASS, so
	// that what the canary's attempts find is the broken mechanism's doing,
	// not the delays'.
	FaultDelays []string
	// Nemesis is the --nemesis value.
	Nemesis string
	// Isolation is the replicas' --isolation; empty: the campaign's first
	// level.
	Isolation string
	// Concurrency is the run's --concurrency; 0: the run's default. A canary
	// whose anomaly needs many writes in flight at the moment of a fault
	// asks for more workers.
	Concurrency int
	// Expect lists the anomaly kinds, as the report counts the checker's
	// problems, of which at least one must be found.
	Expect []report.AnomalyKind
}

// canaries is the table of canaries, in the order a campaign runs them. A
// new unsafe flag of `committer serve` gets its entry here.
func canaries() []canary {
	return []canary{
		{
			Name:        "stale-reads",
			Description: "reads skip the leadership check (--read-consistency=leader); a paused leader, deposed meanwhile, answers queued reads from its cache when it resumes",
			ServeFlags:  []string{"--read-consistency=leader"},
			// The resumed leader races its own step-down for the queued
			// reads, and wins only sometimes (caught on the third 60s
			// attempt in one CI run); held in its old term for 500ms after
			// it learns it lost leadership, it always answers them.
			FaultDelays: []string{"--fault-delay=leadership-lost=500ms"},
			Nemesis:     string(nemesis.PauseLeader),
			Expect:      []report.AnomalyKind{report.NotLinearizable},
		},
		{
			Name:        "join-inflight-reads",
			Description: "a read joins the leadership confirmation round already in flight (--unsafe-join-inflight-reads), whose evidence may predate it; a leader paused after a round was decided, and slow to notice its deposition when it resumes, answers reads that arrived during the pause with that round",
			ServeFlags:  []string{"--unsafe-join-inflight-reads"},
			// Without the delays the window is a scheduling race at the
			// moment the paused leader resumes, which Raft's own step-down
			// nearly always wins: the pause must land after a round was
			// decided and before its reads were answered, and the resumed
			// replica must still take the reads as leader.
			FaultDelays: []string{"--fault-delay=read-round-decided=100ms", "--fault-delay=leadership-lost=500ms"},
			Nemesis:     string(nemesis.PauseLeader),
			Expect:      []report.AnomalyKind{report.NotLinearizable},
		},
		{
			Name:        "no-fencing",
			Description: "leaders skip the backend fence (--unsafe-skip-fence); a deposed leader's stalled PostgreSQL writes land after the new leader cached the heads",
			ServeFlags:  []string{"--unsafe-skip-fence"},
			Nemesis:     string(nemesis.BackendStallLeader),
			// The late writes show up as heads older than acknowledged
			// writes (not linearizable); one that overwrote an acknowledged
			// version would also be missing from the final reads.
			Expect: []report.AnomalyKind{report.NotLinearizable, report.LostWrite},
		},
		{
			Name:        "no-shard-exclusion",
			Description: "the leader lets writes to one shard reach PostgreSQL concurrently (--unsafe-skip-shard-exclusion); under READ COMMITTED a multi-CaS's elements are decided at different moments and a single CaS commits in between",
			// With one write batch in flight (the default) batches never
			// overlap in the database, and only the cache-visibility race
			// is left to expose the flag: one CI run missed it three times.
			// Four batches in flight let two transactions on one shard
			// overlap again, which shard exclusion exists to prevent.
			ServeFlags: []string{"--unsafe-skip-shard-exclusion", "--batch-max-in-flight=4"},
			// The anomaly needs only concurrency, not faults; a pause
			// keeps the run like the others.
			Nemesis:   string(nemesis.PauseFollower),
			Isolation: "read-committed",
			Expect:    []report.AnomalyKind{report.NotLinearizable},
		},
		{
			Name:        "no-cache-generation",
			Description: "the leader's cache fills what an operation read even after the shard was evicted while it was in flight (--unsafe-skip-cache-generation); with a two-entry cache a slow head miss puts back a version older than a commit acknowledged meanwhile, and later heads answer it",
			// A tiny cache evicts all the time, which is what makes the
			// late fill common; the same cache without the canary's flag
			// passes.
			ServeFlags: []string{"--unsafe-skip-cache-generation", "--cache-max-entries=2"},
			// Like shard exclusion, the race needs only concurrency.
			Nemesis: string(nemesis.PauseFollower),
			Expect:  []report.AnomalyKind{report.NotLinearizable},
		},
		{
			Name:        "determinate-forward-errors",
			Description: "followers report a forwarded write whose call broke after it was sent as determinate unavailable (--unsafe-determinate-forward-errors); when the leader is killed after committing, the client retries or records a failure, and the checker sees a version no successful write produced",
			ServeFlags:  []string{"--unsafe-determinate-forward-errors"},
			// The leader holds every forwarded write's answer 50 ms after
			// it committed, so that the kill finds writes in that window
			// (the relay stream made the window too short to hit
			// reliably); its control, with the same delay and no unsafe
			// flag, must pass.
			FaultDelays: []string{"--fault-delay=forwarded-write-done=50ms"},
			Nemesis:     string(nemesis.KillLeader),
			// The anomaly needs a forwarded write between its commit and its
			// answer at the moment of the kill; twice the default workers
			// put twice as many pinned writers on the followers.
			Concurrency: 24,
			// The retried write finds its own commit and answers "mismatch",
			// or the write is recorded as failed while a read sees it.
			Expect: []report.AnomalyKind{report.NotLinearizable},
		},
	}
}

// canaryRun plans attempt (from 0) of a canary.
func canaryRun(c canary, attempt int, baseSeed int64, levels []string, d time.Duration) plannedRun {
	pr := plannedRun{
		Canary:     c.Name,
		Nodes:      3,
		Nemesis:    c.Nemesis,
		Isolation:  c.Isolation,
		ServeFlags: append(slices.Clone(c.ServeFlags), c.FaultDelays...),
		Expect:     c.Expect,
		Attempt:    attempt + 1,
		// Far from the regular runs' seeds, so that no attempt repeats one.
		Seed: baseSeed + int64(1000*(attempt+1)),
		Args: []string{"--time", d.String()},
	}
	if c.Concurrency > 0 {
		pr.Args = append(pr.Args, "--concurrency", strconv.Itoa(c.Concurrency))
	}
	if pr.Isolation == "" {
		pr.Isolation = levels[0]
	}
	pr.Name = fmt.Sprintf("canary-%s-seed%d", c.Name, pr.Seed)
	return pr
}

// controlRun plans the control of a canary with fault delays: the same
// fault, delays and length without the canary's unsafe flags, judged like a
// regular run (it must PASS). It reports false for a canary without delays,
// whose regular runs are its control.
func controlRun(c canary, baseSeed int64, levels []string, d time.Duration) (plannedRun, bool) {
	if len(c.FaultDelays) == 0 {
		return plannedRun{}, false
	}
	pr := canaryRun(c, 0, baseSeed, levels, d)
	pr.Canary, pr.Expect, pr.Attempt = "", nil, 0
	pr.Control = c.Name
	pr.ServeFlags = slices.Clone(c.FaultDelays)
	pr.Name = fmt.Sprintf("control-%s-seed%d", c.Name, pr.Seed)
	return pr, true
}

// judgeCanary decides whether a canary run was caught and says what became
// of it. Caught means: the run completed, the checker said FAIL, and among
// the anomalies it found is one the canary expects.
func judgeCanary(expect []report.AnomalyKind, r campaignResult) (caught bool, outcome string) {
	s := r.Summary
	if s == nil {
		return false, fmt.Sprintf("no summary: the run crashed or could not be carried out (exit status %d)", r.ExitCode)
	}
	found := report.FormatAnomalies(s.Anomalies)
	switch s.Verdict {
	case checker.Pass:
		return false, "PASS: the checker found nothing"
	case checker.Unknown:
		return false, fmt.Sprintf("UNKNOWN: the linearizability search ran out of time on %d keys; anomalies: %s", len(s.Checker.UnknownKeys), found)
	case checker.Fail:
	default:
		return false, fmt.Sprintf("verdict %q", s.Verdict)
	}
	if r.ExitCode != exitFail {
		return false, fmt.Sprintf("FAIL in the summary, but the run exited with status %d: the harness failed after checking", r.ExitCode)
	}
	for _, kind := range expect {
		if s.Anomalies[kind] > 0 {
			return true, "caught: " + found
		}
	}
	return false, fmt.Sprintf("FAIL without the expected anomaly (%s): found %s", showKinds(expect), found)
}

// showKinds joins anomaly kinds with " or ".
func showKinds(kinds []report.AnomalyKind) string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, " or ")
}

// canarySummary is one canary's account in campaign.json and campaign.md.
type canarySummary struct {
	Name        string               `json:"name"`
	Description string               `json:"description"`
	ServeFlags  []string             `json:"serve_flags"`
	Nemesis     string               `json:"nemesis"`
	Isolation   string               `json:"isolation"`
	Expect      []report.AnomalyKind `json:"expect"`
	FaultDelays []string             `json:"fault_delays,omitempty"`
	// Attempts are the runs made, in order; the last is the one that was
	// caught, if any was.
	Attempts []canaryAttempt `json:"attempts"`
	Caught   bool            `json:"caught"`
	// Control is the run with the canary's fault delays but not its flags,
	// for a canary with delays; Verdict PASS is what it must come out as.
	Control *canaryAttempt `json:"control,omitempty"`
}

// canaryAttempt is one run of a canary.
type canaryAttempt struct {
	Run       string                     `json:"run"`
	Seed      int64                      `json:"seed"`
	Verdict   checker.Verdict            `json:"verdict"`
	Anomalies map[report.AnomalyKind]int `json:"anomalies,omitempty"`
	Outcome   string                     `json:"outcome"`
}

// summarizeCanaries gathers each canary's attempts from the results, in
// table order; canaries that never ran (the campaign was interrupted, or
// --canaries=false) are left out.
func summarizeCanaries(table []canary, results []campaignResult) []canarySummary {
	var out []canarySummary
	for _, c := range table {
		cs := canarySummary{Name: c.Name, Description: c.Description, ServeFlags: c.ServeFlags, FaultDelays: c.FaultDelays,
			Nemesis: c.Nemesis, Expect: c.Expect}
		for _, r := range results {
			if r.Control == c.Name {
				cs.Control = &canaryAttempt{Run: r.Name, Seed: r.Seed, Verdict: r.Verdict, Outcome: r.Outcome}
				if r.Summary != nil {
					cs.Control.Anomalies = r.Summary.Anomalies
				}
				continue
			}
			if r.Canary != c.Name {
				continue
			}
			cs.Isolation = r.Isolation
			a := canaryAttempt{Run: r.Name, Seed: r.Seed, Verdict: r.Verdict, Outcome: r.Outcome}
			if r.Summary != nil {
				a.Anomalies = r.Summary.Anomalies
			}
			cs.Attempts = append(cs.Attempts, a)
			cs.Caught = cs.Caught || r.OK
		}
		if len(cs.Attempts) > 0 {
			out = append(out, cs)
		}
	}
	return out
}

// canaryLine is what the campaign prints once a canary is done, e.g.
// "canary stale-reads: caught on attempt 2 (not-linearizable 7)".
func canaryLine(cs canarySummary) string {
	n := len(cs.Attempts)
	control := ""
	if c := cs.Control; c != nil {
		control = fmt.Sprintf("; its control, with the same fault delays and no unsafe flag: %s", c.Outcome)
	}
	if cs.Caught {
		last := cs.Attempts[n-1]
		return fmt.Sprintf("canary %s: caught on attempt %d (%s)%s", cs.Name, n, report.FormatAnomalies(last.Anomalies), control)
	}
	outcomes := make([]string, n)
	for i, a := range cs.Attempts {
		outcomes[i] = fmt.Sprintf("attempt %d: %s", i+1, a.Outcome)
	}
	return fmt.Sprintf("canary %s: NOT caught in %d attempts, want %s; %s%s", cs.Name, n, showKinds(cs.Expect), strings.Join(outcomes, "; "), control)
}
