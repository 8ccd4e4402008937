package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/control"
	"github.com/hacommit/committer/jepsen/control/netns"
	"github.com/hacommit/committer/jepsen/history"
	"github.com/hacommit/committer/jepsen/nemesis"
	"github.com/hacommit/committer/jepsen/report"
	"github.com/hacommit/committer/jepsen/workload"
)

// Timing of the phases around the workload.
const (
	healTimeout   = 2 * time.Minute
	finalAttempts = 10
	finalTimeout  = 3 * time.Minute
)

// runInside carries out the run in the namespace and returns the exit code.
func runInside(parent context.Context, f runFlags, stdout io.Writer) int {
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "jepsen: "+format+"\n", args...) }
	fail := func(err error) int {
		say("error: %v", err)
		fmt.Fprintln(stdout, "VERDICT: UNKNOWN")
		return exitOther
	}
	if err := f.validate(); err != nil {
		return fail(err)
	}
	families, _ := nemesis.ParseFamilies(f.Nemesis)
	logFile, err := os.OpenFile(filepath.Join(f.Out, "jepsen.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}),
	))

	// The first SIGINT/SIGTERM ends the workload early (the run is still
	// healed, read and checked); a second one abandons it.
	ctx, abort := context.WithCancel(parent)
	defer abort()
	early, endEarly := context.WithCancel(ctx)
	defer endEarly()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for n := 0; ; n++ {
			select {
			case <-sigs:
			case <-ctx.Done():
				return
			}
			if n == 0 {
				say("interrupted: ending the workload early (interrupt again to abandon the run)")
				endEarly()
			} else {
				say("interrupted again: abandoning the run")
				abort()
				return
			}
		}
	}()

	began := time.Now()
	if err := netns.SetMTU(ctx, 1500); err != nil {
		return fail(err)
	}
	fw, err := netns.NewFirewall(ctx)
	if err != nil {
		return fail(err)
	}
	defer fw.Close(context.WithoutCancel(ctx))
	shaper := netns.NewShaper(ctx)
	if slices.Contains(families, "slow") && shaper.Kind() == "" {
		say("warning: %v; slow faults will be skipped", netns.ErrNoShaping)
	}
	say("seed %d, %d replicas, %s, nemeses %s, isolation %s, output %s", f.Seed, f.Nodes, f.Time, strings.Join(orNone(families), ","), f.Isolation, f.Out)
	if len(f.ServeArgs) > 0 {
		say("replica flags: %s", strings.Join(f.replicaFlags(), " "))
	}

	var tlsFiles *control.TLS
	if f.TLS {
		if tlsFiles, err = control.NewTLS(filepath.Join(f.Out, "tls")); err != nil {
			return fail(err)
		}
	}
	say("transport: %s", tlsFiles)
	cluster, err := control.Start(ctx, control.Options{
		Binary:          f.CommitterBin,
		Nodes:           f.Nodes,
		Dir:             f.Out,
		ReadConsistency: f.ReadConsistency,
		UnsafeSkipFence: f.UnsafeSkipFence,
		Isolation:       f.Isolation,
		ExtraArgs:       f.ServeArgs,
		TLS:             tlsFiles,
		Logger:          log,
	})
	if err != nil {
		return fail(err)
	}
	if pgData := cluster.PostgresDataDir(); !strings.HasPrefix(pgData, f.Out+string(filepath.Separator)) {
		say("PostgreSQL data in %s (linked from %s): the postgres user cannot reach %s", pgData,
			filepath.Join(f.Out, "postgres", "data"), f.Out)
	}
	closed := false
	defer func() {
		if !closed {
			cluster.Close(context.WithoutCancel(ctx))
		}
	}()
	say("PostgreSQL and %d replicas are up (%.1fs); shaping: %s", f.Nodes, time.Since(began).Seconds(), shaper.Describe())

	var targets []workload.Target
	for _, n := range cluster.Nodes() {
		targets = append(targets, workload.Target{Name: n.Name, Addr: n.GRPCAddr()})
	}
	rec := history.NewRecorder()
	progress := newProgressRecorder(rec)
	wl, err := workload.New(workload.Config{
		Targets:      targets,
		Concurrency:  f.Concurrency,
		Seed:         f.Seed,
		WriteTimeout: f.OpTimeout,
		ReadTimeout:  f.ReadTimeout,
		TLS:          tlsClient(tlsFiles),
		Logger:       log,
	}, progress)
	if err != nil {
		return fail(err)
	}
	defer wl.Close()
	steps := nemesis.Plan(f.Seed, families, f.Nodes, f.Time)
	if err := writeJSON(filepath.Join(f.Out, "schedule.json"), steps); err != nil {
		return fail(err)
	}
	monitor := cluster.MonitorElections(ctx)
	runner := nemesis.NewRunner(cluster, fw, shaper, progress, log)

	say("running the workload for %s with %d planned faults", f.Time, len(steps))
	runCtx, endRun := context.WithTimeout(early, f.Time)
	defer endRun()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); wl.Run(runCtx) }()
	go func() { defer wg.Done(); runner.Run(runCtx, rec.Start(), steps) }()
	go func() { defer wg.Done(); reportProgress(runCtx, progress, rec.Start(), f.ProgressInterval, stdout) }()
	wg.Wait()
	workloadEnd := time.Since(rec.Start())

	say("healing")
	hctx, cancel := context.WithTimeout(ctx, healTimeout)
	healErr := runner.HealAll(hctx)
	cancel()
	if healErr != nil {
		say("warning: %v", healErr)
	}
	say("final reads of %d keys", len(wl.Keys()))
	fctx, cancel := context.WithTimeout(ctx, finalTimeout)
	err = wl.Final(fctx, finalAttempts)
	cancel()
	if err != nil {
		say("warning: %v", err)
	}
	terms := monitor.Stop()
	notes := append(cluster.Crashes(), runner.Notes()...)
	cluster.Close(context.WithoutCancel(ctx))
	closed = true
	if ctx.Err() != nil {
		return fail(fmt.Errorf("run abandoned"))
	}

	events := rec.Events()
	say("checking %d events", len(events))
	res := checker.Check(events, checker.Options{Timeout: f.CheckTimeout})
	// What healing had to do, and replica crashes, are not violations, but
	// the report should show them.
	res.Notes = append(res.Notes, notes...)
	if err := writeJSON(filepath.Join(f.Out, "elections.json"), terms); err != nil {
		return fail(err)
	}
	summary, err := report.Write(f.Out, report.Run{
		Seed:            f.Seed,
		Nodes:           f.Nodes,
		Duration:        f.Time,
		Nemeses:         orNone(families),
		ReadConsistency: f.effectiveReadConsistency(),
		UnsafeSkipFence: f.effectiveSkipFence(),
		Isolation:       f.Isolation,
		Elections:       len(terms),
		CommitterArgs:   f.replicaFlags(),
	}, events, &res)
	if err != nil {
		return fail(fmt.Errorf("writing the report: %w", err))
	}
	if res.Verdict == checker.Pass {
		// The databases are only worth their space (about 70 MB a minute)
		// when there is a violation to investigate.
		if err := cluster.RemoveData(); err != nil {
			say("warning: %v", err)
		}
	}
	say("report: %s (workload %s)", filepath.Join(f.Out, report.IndexFile), workloadEnd.Round(time.Millisecond))
	fmt.Fprintln(stdout)
	// The summary ends with the verdict line, the last line printed.
	if err := summary.WriteText(stdout); err != nil {
		return fail(err)
	}
	return report.ExitCode(res.Verdict)
}

func orNone(s []string) []string {
	if len(s) == 0 {
		return []string{"none"}
	}
	return s
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// tlsClient is the workload's client TLS of a run (nil: plaintext).
func tlsClient(t *control.TLS) *tls.Config {
	if t == nil {
		return nil
	}
	return t.Client
}
