package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hacommit/committer/bench"
	"github.com/hacommit/committer/internal/delayproxy"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/server"
)

type benchFlags struct {
	Cluster    string
	Via        string
	Postgres   string
	Memory     bool
	Scenarios  string
	Workers    int
	Shards     int
	ValueBytes int
	Duration   time.Duration
	Rounds     int
	PGMaxConns int32
	Progress   bool
	JSON       bool
	// BackendDelay puts the direct target's database that much further
	// away (added round-trip time).
	BackendDelay time.Duration
	// TLS dials the cluster and via targets.
	TLS clientTLSFlags
}

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a cluster against PostgreSQL driven directly and the bare transport",
		Long: "bench runs closed-loop workers against each target in turn, interleaved round\n" +
			"by round (A B A B ...), and prints ops/s (median over rounds), p50, p99 and\n" +
			"the ratio to a baseline: direct PostgreSQL for the CaS scenarios, the bare\n" +
			"in-memory gRPC server for head.\n\n" +
			"Targets: --cluster (replicas' gRPC addresses, through the Go client),\n" +
			"--postgres (a database driven directly with persist's single-statement CaS,\n" +
			"in its own table) and --memory (an in-memory store behind the committer's\n" +
			"gRPC server in this process). Point --postgres at the cluster's database to\n" +
			"also count the database transactions per operation of both.\n\n" +
			"--via ADDR adds a target that sends every call to that replica and never to\n" +
			"the leader it names: give a follower to measure forwarding.\n\n" +
			"Scenarios: cas (every worker on its own shard), cas-contended (the workers\n" +
			"share --shards shards and re-read the head after losing), head, scan-tail\n" +
			"(scans from a few versions behind the head of 16), persist-mix (per worker a\n" +
			"cycle of 5 CaS, 3 Head, a Scan and a Truncate on its own shard).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, f) },
	}
	cmd.AddCommand(newDelayProxyCommand())
	fs := cmd.Flags()
	f.TLS.register(fs)
	fs.StringVar(&f.Cluster, "cluster", "", "gRPC addresses of the cluster's replicas (host:port,...)")
	fs.StringVar(&f.Via, "via", "", "gRPC address of one replica that every call of the via target goes to")
	fs.StringVar(&f.Postgres, "postgres", "", "PostgreSQL URL to drive directly")
	fs.BoolVar(&f.Memory, "memory", true, "also run the in-memory gRPC target")
	fs.StringVar(&f.Scenarios, "scenarios", "cas,cas-contended,head,scan-tail,persist-mix", "comma-separated scenarios")
	fs.IntVar(&f.Workers, "workers", 64, "closed-loop workers per target")
	fs.IntVar(&f.Shards, "shards", 8, "shards the cas-contended workers share")
	fs.IntVar(&f.ValueBytes, "value-bytes", 1024, "payload of every write")
	fs.DurationVar(&f.Duration, "duration", 5*time.Second, "length of one target's run in one round")
	fs.IntVar(&f.Rounds, "rounds", 3, "rounds; each runs every target once, in rotating order")
	fs.Int32Var(&f.PGMaxConns, "pg-max-conns", 64, "pool size of the direct PostgreSQL target")
	fs.BoolVar(&f.Progress, "progress", true, "print a line per second while a target runs")
	fs.BoolVar(&f.JSON, "json", false, "print the rows as JSON instead of a table")
	fs.DurationVar(&f.BackendDelay, "backend-delay", 0, "round-trip time a delaying TCP proxy adds in front of the --postgres database (start the cluster's replicas behind `committer bench delay-proxy` with the same delay)")
	return cmd
}

func newDelayProxyCommand() *cobra.Command {
	var listen, upstream string
	var delay time.Duration
	cmd := &cobra.Command{
		Use:   "delay-proxy",
		Short: "Forward TCP connections to a server, adding a fixed round-trip time",
		Long: "delay-proxy puts a server (a database) --delay further away, for benchmarks on\n" +
			"machines without netem: every byte waits half the delay on the way there and\n" +
			"half on the way back, without throttling the stream. It runs until interrupted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" || upstream == "" || delay < 0 {
				return errors.New("--listen and --upstream are required and --delay must not be negative")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p, err := delayproxy.Start(ctx, listen, upstream, delay, nil)
			if err != nil {
				return fmt.Errorf("delay-proxy: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "delay-proxy: %s -> %s, +%s round trip\n", p.Addr(), upstream, delay)
			<-ctx.Done()
			return p.Close()
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (host:port)")
	cmd.Flags().StringVar(&upstream, "upstream", "", "address to forward to (host:port)")
	cmd.Flags().DurationVar(&delay, "delay", time.Millisecond, "round-trip time to add")
	return cmd
}

// delayedURL starts a delaying proxy in front of the host of a postgres://
// URL and returns the URL through it.
func delayedURL(ctx context.Context, raw string, delay time.Duration) (string, *delayproxy.Proxy, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return "", nil, fmt.Errorf("--backend-delay needs --postgres as a postgres://host:port/... URL")
	}
	upstream := u.Host
	if u.Port() == "" {
		upstream = net.JoinHostPort(u.Hostname(), "5432")
	}
	p, err := delayproxy.Start(ctx, "127.0.0.1:0", upstream, delay, nil)
	if err != nil {
		return "", nil, fmt.Errorf("--backend-delay: %w", err)
	}
	u.Host = p.Addr()
	return u.String(), p, nil
}

func runBench(cmd *cobra.Command, f benchFlags) error {
	ctx := cmd.Context()
	var scenarios []bench.Scenario
	for _, s := range splitList(f.Scenarios) {
		if !slices.Contains(bench.Scenarios(), bench.Scenario(s)) {
			return fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", s, scenarioNames())
		}
		scenarios = append(scenarios, bench.Scenario(s))
	}
	switch {
	case len(scenarios) == 0:
		return errors.New("--scenarios: none given")
	case f.Workers < 1 || f.Shards < 1 || f.Rounds < 1 || f.Duration <= 0 || f.ValueBytes < 0:
		return errors.New("--workers, --shards, --rounds and --duration must be positive and --value-bytes not negative")
	case f.Cluster == "" && f.Via == "" && f.Postgres == "" && !f.Memory:
		return errors.New("no target: give --cluster, --via, --postgres or --memory")
	}
	var targets []bench.Target
	var counter func(context.Context) (int64, error)
	if f.BackendDelay < 0 || (f.BackendDelay > 0 && f.Postgres == "") {
		return errors.New("--backend-delay must not be negative, and needs --postgres")
	}
	if f.Postgres != "" {
		pgURL := f.Postgres
		if f.BackendDelay > 0 {
			u, p, err := delayedURL(ctx, pgURL, f.BackendDelay)
			if err != nil {
				return err
			}
			defer p.Close()
			pgURL = u
		}
		d, err := bench.OpenDirect(ctx, pgURL, f.PGMaxConns)
		if err != nil {
			return err
		}
		defer d.Close()
		counter = d.Transactions
		targets = append(targets, bench.Target{Name: "postgres", Store: d, Transactions: d.Transactions})
	}
	tlsOpts, err := f.TLS.clientOptions()
	if err != nil {
		return err
	}
	if f.Cluster != "" {
		c, err := client.New(splitList(f.Cluster), append(tlsOpts, client.WithCallTimeout(30*time.Second))...)
		if err != nil {
			return fmt.Errorf("--cluster: %w", err)
		}
		defer c.Close()
		targets = append(targets, bench.Target{Name: "cluster", Store: c, Transactions: counter})
	}
	if f.Via != "" {
		c, err := client.New([]string{f.Via}, append(tlsOpts, client.WithCallTimeout(30*time.Second), client.WithoutLeaderRouting())...)
		if err != nil {
			return fmt.Errorf("--via: %w", err)
		}
		defer c.Close()
		targets = append(targets, bench.Target{Name: "via", Store: c, Transactions: counter})
	}
	if f.Memory {
		addr, stop, err := serveMemory()
		if err != nil {
			return err
		}
		defer stop()
		c, err := client.New([]string{addr})
		if err != nil {
			return err
		}
		defer c.Close()
		targets = append(targets, bench.Target{Name: "memory", Store: c})
	}
	out := cmd.OutOrStdout()
	cfg := bench.Config{Workers: f.Workers, Shards: f.Shards, ValueBytes: f.ValueBytes, Duration: f.Duration, Rounds: f.Rounds}
	if f.Progress {
		cfg.Progress = func(line string) { fmt.Fprintln(cmd.ErrOrStderr(), "bench:", line) }
	}
	segs, err := bench.Run(ctx, cfg, targets, scenarios)
	if err != nil {
		return err
	}
	rows := bench.Summarize(segs, map[bench.Scenario]string{
		bench.CAS: "postgres", bench.CASContended: "postgres", bench.Head: "memory",
		bench.ScanTail: "postgres", bench.Mix: "postgres",
	})
	if f.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	fmt.Fprintf(out, "%d workers, %d-byte values, %d rounds of %s per target, targets %s", f.Workers, f.ValueBytes, f.Rounds, f.Duration, targetNames(targets))
	if f.BackendDelay > 0 {
		fmt.Fprintf(out, ", postgres +%s round trip", f.BackendDelay)
	}
	fmt.Fprint(out, "\n\n")
	return bench.WriteTable(out, rows)
}

func scenarioNames() string {
	var names []string
	for _, s := range bench.Scenarios() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func targetNames(ts []bench.Target) string {
	var names []string
	for _, t := range ts {
		names = append(names, t.Name)
	}
	return strings.Join(names, ", ")
}

// serveMemory serves an in-memory store on a loopback port with the
// committer's own gRPC server.
func serveMemory() (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("memory target: %w", err)
	}
	srv := server.New(bench.NewMemory(), server.Config{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	return lis.Addr().String(), func() {
		srv.GRPC().Stop()
		<-done
	}, nil
}
