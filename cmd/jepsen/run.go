package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/jepsen/control/netns"
	"github.com/hacommit/committer/jepsen/nemesis"
)

// runFlags are the flags of `jepsen run`.
type runFlags struct {
	Nodes           int
	Time            time.Duration
	Nemesis         string
	Seed            int64
	Out             string
	ReadConsistency string
	UnsafeSkipFence bool
	Isolation       string
	// ServeArgs are further flags for every `committer serve`, as given.
	ServeArgs        []string
	CommitterBin     string
	Concurrency      int
	OpTimeout        time.Duration
	ReadTimeout      time.Duration
	CheckTimeout     time.Duration
	ProgressInterval time.Duration
	// TLS runs the cluster with mutual TLS on every port.
	TLS bool
}

// The values of --isolation: the PostgreSQL transaction isolation of the
// replicas, as `committer serve --isolation` spells them.
const (
	isolationSerializable  = "serializable"
	isolationReadCommitted = "read-committed"
)

// isolationLevels lists the values of --isolation, the default first.
func isolationLevels() []string { return []string{isolationSerializable, isolationReadCommitted} }

// harnessServeFlags are the `committer serve` flags the harness sets
// itself, which --serve-arg must not override.
func harnessServeFlags() []string {
	return []string{"backend", "id", "data-dir", "grpc-addr", "raft-addr", "http-addr",
		"bootstrap-expect", "peers", "join", "log-format", "isolation"}
}

func newRunCommand(code *int) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the committer cluster under faults and check the history",
		Long: "run starts PostgreSQL and --nodes committer replicas (the real binary) in a\n" +
			"private network namespace, runs a register workload through the Go client for\n" +
			"--time while the nemeses inject faults, heals everything, reads the final state,\n" +
			"checks the history for linearizability and writes a report into --out.\n\n" +
			"It needs root (network namespaces, nftables) and the ip, nft and tc commands.\n" +
			"The last line printed is VERDICT: PASS, FAIL or UNKNOWN; the exit code is 0 for\n" +
			"PASS, 1 for FAIL and 2 for UNKNOWN or a run that could not be carried out.\n\n" +
			"Nemeses: " + strings.Join(nemesis.Families(), ", ") + " (or all, or none).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("seed") {
				f.Seed = rand.Int64N(1 << 40)
			}
			if f.Out == "" {
				f.Out = filepath.Join("jepsen-out", fmt.Sprintf("%s-seed%d", time.Now().UTC().Format("20060102T150405"), f.Seed))
			}
			if _, inside := netns.Inside(); inside {
				*code = runInside(cmd.Context(), f, cmd.OutOrStdout())
			} else {
				*code = runOutside(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.Nodes, "nodes", 3, "number of replicas (3 or 5)")
	fs.DurationVar(&f.Time, "time", 60*time.Second, "how long the workload and the nemeses run")
	fs.StringVar(&f.Nemesis, "nemesis", "all", "comma-separated fault families ("+strings.Join(nemesis.Families(), ",")+"), all, or none")
	fs.Int64Var(&f.Seed, "seed", 0, "seed of the fault schedule and the workload's choices (default: random, printed)")
	fs.StringVar(&f.Out, "out", "", "directory for the history, report and logs (default: jepsen-out/<time>-seed<seed>)")
	fs.StringVar(&f.ReadConsistency, "read-consistency", "", "passed to every replica (leader: the stale-read canary)")
	fs.BoolVar(&f.UnsafeSkipFence, "unsafe-skip-fence", false, "start replicas with --unsafe-skip-fence (the fencing canary)")
	fs.StringVar(&f.Isolation, "isolation", isolationSerializable, "PostgreSQL transaction isolation of every replica: "+strings.Join(isolationLevels(), " or "))
	fs.BoolVar(&f.TLS, "tls", false, "run the replicas with mutual TLS on every port (certificates generated into <out>/tls) and authorization on; the harness presents an admin client certificate")
	fs.StringArrayVar(&f.ServeArgs, "serve-arg", nil, "a further `flag` for every replica's committer serve, as one word, --name or --name=value (repeatable), e.g. --serve-arg=--unsafe-skip-fence")
	fs.DurationVar(&f.ProgressInterval, "progress-interval", 5*time.Second, "print a progress line this often while the workload runs (0: never)")
	fs.StringVar(&f.CommitterBin, "committer-bin", "", "committer binary (default: go build ./cmd/committer into <out>/bin)")
	fs.IntVar(&f.Concurrency, "concurrency", 12, "number of client workers")
	fs.DurationVar(&f.OpTimeout, "op-timeout", 5*time.Second, "timeout of a write")
	fs.DurationVar(&f.ReadTimeout, "read-timeout", 2*time.Second, "timeout of a read (head, scan, list_keys); a read that outlasts a pause is served when the paused replica resumes")
	fs.DurationVar(&f.CheckTimeout, "check-timeout", 120*time.Second, "budget of the linearizability search")
	return cmd
}

// validate checks the flags before anything is started.
func (f *runFlags) validate() error {
	var errs []error
	if f.Nodes < 1 || f.Nodes > 9 {
		errs = append(errs, fmt.Errorf("--nodes %d: want 1 to 9 (3 or 5 in practice)", f.Nodes))
	}
	if f.Time <= 0 {
		errs = append(errs, fmt.Errorf("--time %s: must be positive", f.Time))
	}
	if _, err := nemesis.ParseFamilies(f.Nemesis); err != nil {
		errs = append(errs, fmt.Errorf("--nemesis: %w", err))
	}
	if f.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: must be at least 1", f.Concurrency))
	}
	if f.OpTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--op-timeout %s: must be positive", f.OpTimeout))
	}
	if f.ReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--read-timeout %s: must be positive", f.ReadTimeout))
	}
	if !slices.Contains(isolationLevels(), f.Isolation) {
		errs = append(errs, fmt.Errorf("--isolation %q: want %s", f.Isolation, strings.Join(isolationLevels(), " or ")))
	}
	for _, arg := range f.ServeArgs {
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		switch {
		case !strings.HasPrefix(arg, "--") || name == "":
			errs = append(errs, fmt.Errorf("--serve-arg %q: want one word, --name or --name=value", arg))
		case name == "isolation":
			errs = append(errs, fmt.Errorf("--serve-arg %q: use --isolation, which the report records", arg))
		case slices.Contains(harnessServeFlags(), name):
			errs = append(errs, fmt.Errorf("--serve-arg %q: the harness sets --%s itself", arg, name))
		}
	}
	if rc := f.effectiveReadConsistency(); !slices.Contains([]string{"", "linearizable", "leader"}, rc) {
		errs = append(errs, fmt.Errorf("--read-consistency %q: want linearizable or leader", rc))
	}
	if f.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("--progress-interval %s: must not be negative (0 turns progress lines off)", f.ProgressInterval))
	}
	return errors.Join(errs...)
}

// replicaFlags are the flags the run passes to every replica beyond the
// cluster layout, in the order they are given: the later of two wins.
func (f runFlags) replicaFlags() []string {
	out := []string{"--isolation=" + f.Isolation}
	if f.ReadConsistency != "" {
		out = append(out, "--read-consistency="+f.ReadConsistency)
	}
	if f.UnsafeSkipFence {
		out = append(out, "--unsafe-skip-fence")
	}
	return append(out, f.ServeArgs...)
}

// effectiveReadConsistency is the --read-consistency the replicas get,
// from --read-consistency or a --serve-arg ("": the replica's default).
func (f runFlags) effectiveReadConsistency() string {
	value, _ := lastFlagValue(f.replicaFlags(), "read-consistency")
	return value
}

// effectiveSkipFence says whether the replicas skip the fence, from
// --unsafe-skip-fence or a --serve-arg.
func (f runFlags) effectiveSkipFence() bool {
	value, set := lastFlagValue(f.replicaFlags(), "unsafe-skip-fence")
	if !set {
		return false
	}
	if value == "" {
		return true
	}
	on, err := strconv.ParseBool(value)
	return err == nil && on
}

// lastFlagValue finds the last --name or --name=value word in args, as
// the replica's flag parser would take it.
func lastFlagValue(args []string, name string) (value string, set bool) {
	for _, arg := range args {
		if arg == "--"+name {
			value, set = "", true
		} else if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			value, set = v, true
		}
	}
	return value, set
}

// runOutside prepares the run (flags, output directory, binary), creates
// the namespace, runs this program again inside it and removes the
// namespace afterwards. The inner run prints the verdict; this returns its
// exit code.
func runOutside(ctx context.Context, f runFlags, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "jepsen:", err)
		fmt.Fprintln(stdout, "VERDICT: UNKNOWN")
		return exitOther
	}
	if err := f.validate(); err != nil {
		return fail(err)
	}
	if err := netns.CheckPrerequisites(); err != nil {
		return fail(fmt.Errorf("%w\njepsen run creates a network namespace and nftables rules; it must run as root with iproute2 and nftables installed", err))
	}
	out, err := prepareOut(f.Out)
	if err != nil {
		return fail(err)
	}
	bin := f.CommitterBin
	if bin == "" {
		fmt.Fprintln(stdout, "jepsen: building committer")
		if bin, err = buildCommitter(ctx, filepath.Join(out, "bin")); err != nil {
			return fail(err)
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(bin); err != nil {
		return fail(fmt.Errorf("--committer-bin: %w", err))
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("locating this program to run it inside the namespace: %w", err))
	}

	bg := context.WithoutCancel(ctx)
	netns.RemoveStale(bg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	name, err := netns.Create(bg)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := netns.Delete(bg, name); err != nil {
			fmt.Fprintln(stderr, "jepsen:", err)
		}
	}()

	// The inner run gets the resolved values, so that it sees exactly what
	// this run decided (the seed and output directory above all).
	args := []string{exe, "run",
		"--nodes", strconv.Itoa(f.Nodes),
		"--time", f.Time.String(),
		"--nemesis", f.Nemesis,
		"--seed", strconv.FormatInt(f.Seed, 10),
		"--out", out,
		"--read-consistency", f.ReadConsistency,
		"--unsafe-skip-fence=" + strconv.FormatBool(f.UnsafeSkipFence),
		"--isolation", f.Isolation,
		"--committer-bin", bin,
		"--concurrency", strconv.Itoa(f.Concurrency),
		"--op-timeout", f.OpTimeout.String(),
		"--read-timeout", f.ReadTimeout.String(),
		"--check-timeout", f.CheckTimeout.String(),
		"--progress-interval", f.ProgressInterval.String(),
		"--tls=" + strconv.FormatBool(f.TLS),
	}
	for _, arg := range f.ServeArgs {
		args = append(args, "--serve-arg="+arg)
	}
	child := netns.Command(name, args)
	child.Stdout, child.Stderr = stdout, stderr
	// Its own process group: a Ctrl-C reaches only this process, which
	// passes it on once (a second one aborts the inner run).
	child.SysProcAttr.Setpgid = true
	if err := child.Start(); err != nil {
		return fail(fmt.Errorf("start the run inside namespace %s: %w", name, err))
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	waited := make(chan error, 1)
	go func() { waited <- child.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = child.Process.Signal(sig)
		case err := <-waited:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return exitPass
			case errors.As(err, &exit) && exit.ExitCode() >= 0:
				return exit.ExitCode()
			default:
				fmt.Fprintln(stderr, "jepsen: the run inside the namespace ended abnormally:", err)
				fmt.Fprintln(stdout, "VERDICT: UNKNOWN")
				return exitOther
			}
		}
	}
}

// prepareOut creates the output directory, refusing one that holds an
// earlier run (its PostgreSQL data would be reused).
func prepareOut(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for _, marker := range []string{"history.jsonl", "nodes", "postgres"} {
		if _, err := os.Stat(filepath.Join(abs, marker)); err == nil {
			return "", fmt.Errorf("--out %s holds an earlier run; choose a new directory", abs)
		}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	return abs, nil
}

// buildCommitter builds ./cmd/committer of the module this program is run
// from into dir.
func buildCommitter(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return replicaproc.Build(ctx, dir, replicaproc.BuildOptions{ModuleDir: root})
}

// moduleRoot finds the committer module above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/hacommit/committer\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the committer source tree: run from it, or pass --committer-bin")
		}
		dir = parent
	}
}
