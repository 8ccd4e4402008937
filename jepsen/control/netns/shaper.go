package netns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Shaping disciplines.
const (
	// Netem adds delay with jitter to every packet on lo.
	Netem = "netem"
	// TBF rate-limits lo, so queued packets wait: latency that grows with
	// the load, and drops once the queue is full. Used when the kernel has
	// no netem module.
	TBF = "tbf"
)

// Parameters of the slow-network fault. netem: 40ms +- 20ms per packet (a
// request crosses lo several times: client, follower, leader, PostgreSQL).
// tbf: 2 Mbit/s with a queue of at most 300ms; lo's MTU is 1500 in the
// namespace (see SetMTU), so a 16 KB burst holds several full packets.
var (
	netemArgs = []string{"delay", "40ms", "20ms"}
	tbfArgs   = []string{"rate", "2mbit", "burst", "16kb", "latency", "300ms"}
)

// ErrNoShaping: neither netem nor tbf works in this kernel.
var ErrNoShaping = errors.New("no traffic shaping available (neither tc netem nor tc tbf)")

// Shaper slows lo down and restores it. It is safe for concurrent use.
type Shaper struct {
	mu   sync.Mutex
	kind string // Netem, TBF or "" (none available)
}

// NewShaper finds which discipline this kernel supports by installing each
// and removing it again.
func NewShaper(ctx context.Context) *Shaper {
	s := &Shaper{}
	for _, kind := range []string{Netem, TBF} {
		if err := replaceRoot(ctx, kind); err == nil {
			s.kind = kind
			_ = s.Heal(ctx)
			break
		}
	}
	return s
}

// Kind returns the discipline in use: Netem, TBF or "" when none works.
func (s *Shaper) Kind() string { return s.kind }

// Describe says what Slow does, for reports.
func (s *Shaper) Describe() string {
	switch s.kind {
	case Netem:
		return "tc netem " + strings.Join(netemArgs, " ")
	case TBF:
		return "tc tbf " + strings.Join(tbfArgs, " ")
	}
	return "unavailable"
}

// Slow installs the discipline on lo.
func (s *Shaper) Slow(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kind == "" {
		return ErrNoShaping
	}
	return replaceRoot(ctx, s.kind)
}

// Heal removes any discipline from lo. Removing when none is installed is
// not an error.
func (s *Shaper) Heal(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := output(ctx, "", "tc", "qdisc", "show", "dev", "lo")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "netem") && !strings.Contains(out, "tbf") {
		return nil
	}
	return run(ctx, "tc", "qdisc", "del", "dev", "lo", "root")
}

func replaceRoot(ctx context.Context, kind string) error {
	args := []string{"qdisc", "replace", "dev", "lo", "root", kind}
	if kind == Netem {
		args = append(args, netemArgs...)
	} else {
		args = append(args, tbfArgs...)
	}
	if err := run(ctx, "tc", args...); err != nil {
		return fmt.Errorf("tc %s: %w", kind, err)
	}
	return nil
}

// SetMTU sets lo's MTU in the current namespace. Loopback's default (64 KiB)
// would let one packet exceed any reasonable token-bucket burst; 1500 is what
// a LAN between replicas has.
func SetMTU(ctx context.Context, mtu int) error {
	return run(ctx, "ip", "link", "set", "dev", "lo", "mtu", fmt.Sprint(mtu))
}
