package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// probeFlags are the flags of `committer probe`.
type probeFlags struct {
	Addr    string
	Path    string
	Timeout time.Duration
	TLS     clientTLSFlags
}

// newProbeCommand is the health check of images without a shell (compose,
// plain Docker): it asks a replica's HTTP port and exits 0 only on 200.
func newProbeCommand() *cobra.Command {
	var f probeFlags
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Ask a replica's /readyz (or another HTTP endpoint) and exit 0 only if it answers 200",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return probe(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&f.Addr, "addr", "127.0.0.1:6884", "the replica's HTTP address (host:port)")
	cmd.Flags().StringVar(&f.Path, "path", "/readyz", "endpoint to ask: /readyz (ready to serve) or /healthz (alive)")
	cmd.Flags().DurationVar(&f.Timeout, "timeout", 5*time.Second, "deadline for the request")
	f.TLS.register(cmd.Flags())
	return cmd
}

// errProbeFailed marks an answer other than 200; the message carries it.
var errProbeFailed = errors.New("probe failed")

func probe(ctx context.Context, f probeFlags, out io.Writer) error {
	if !strings.HasPrefix(f.Path, "/") {
		return fmt.Errorf("--path %q must start with /", f.Path)
	}
	cfg, err := f.TLS.config()
	if err != nil {
		return err
	}
	scheme := "http"
	if cfg != nil {
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+f.Addr+f.Path, nil)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", f.Addr, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errProbeFailed, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s%s answered %d: %s", errProbeFailed, f.Addr, f.Path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprintf(out, "%s%s: %s\n", f.Addr, f.Path, strings.TrimSpace(string(body)))
	return err
}
