package netns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Link is one direction of traffic: packets from From to To (IP addresses).
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Faults is the desired state of the packet filter.
type Faults struct {
	// Drop lists directions whose packets are all dropped.
	Drop []Link
	// Lossy lists addresses whose packets, sent or received, are dropped at
	// random with probability LossPercent/100.
	Lossy       []string
	LossPercent int
}

// Empty reports whether f lets every packet through.
func (f Faults) Empty() bool {
	return len(f.Drop) == 0 && (len(f.Lossy) == 0 || f.LossPercent <= 0)
}

const (
	tableName = "jepsen"
	chainName = "faults"
)

// Ruleset returns the nftables script that replaces the filter's rules with
// f, as one transaction (nft -f applies a script atomically, so a partition
// never exists half-installed). Rules are sorted, so equal faults give equal
// scripts.
func Ruleset(f Faults) string {
	var b strings.Builder
	// Declaring the table and chain is idempotent; the flush then replaces
	// whatever rules an earlier fault left.
	fmt.Fprintf(&b, "table inet %s {\n\tchain %s {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n", tableName, chainName)
	fmt.Fprintf(&b, "flush chain inet %s %s\n", tableName, chainName)
	drops := slices.Clone(f.Drop)
	slices.SortFunc(drops, func(a, b Link) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	drops = slices.Compact(drops)
	for _, l := range drops {
		fmt.Fprintf(&b, "add rule inet %s %s ip saddr %s ip daddr %s drop\n", tableName, chainName, l.From, l.To)
	}
	if len(f.Lossy) > 0 && f.LossPercent > 0 {
		lossy := slices.Clone(f.Lossy)
		slices.Sort(lossy)
		lossy = slices.Compact(lossy)
		set := "{ " + strings.Join(lossy, ", ") + " }"
		pct := min(f.LossPercent, 100)
		for _, dir := range []string{"saddr", "daddr"} {
			fmt.Fprintf(&b, "add rule inet %s %s ip %s %s numgen random mod 100 < %d drop\n", tableName, chainName, dir, set, pct)
		}
	}
	return b.String()
}

// Firewall installs Faults in the current network namespace. It is safe for
// concurrent use.
type Firewall struct {
	mu sync.Mutex
}

// NewFirewall installs an empty filter, proving that nft works here.
func NewFirewall(ctx context.Context) (*Firewall, error) {
	f := &Firewall{}
	if err := f.Apply(ctx, Faults{}); err != nil {
		return nil, err
	}
	return f, nil
}

// Apply replaces the current rules with faults.
func (f *Firewall) Apply(ctx context.Context, faults Faults) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := output(ctx, Ruleset(faults), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return nil
}

// Heal removes every rule.
func (f *Firewall) Heal(ctx context.Context) error { return f.Apply(ctx, Faults{}) }

// Rules returns the rules nft currently holds, for logs.
func (f *Firewall) Rules(ctx context.Context) (string, error) {
	return output(ctx, "", "nft", "list", "table", "inet", tableName)
}

// Close removes the table.
func (f *Firewall) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return run(ctx, "nft", "delete", "table", "inet", tableName)
}
