package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind names a fault. It is the Fault of the fault's history events.
type Kind string

// The faults.
const (
	KillLeader   Kind = "kill-leader"
	KillFollower Kind = "kill-follower"
	KillMinority Kind = "kill-minority"

	PauseLeader   Kind = "pause-leader"
	PauseFollower Kind = "pause-follower"

	PartitionLeader  Kind = "partition-leader"
	PartitionHalves  Kind = "partition-halves"
	PartitionRing    Kind = "partition-ring"
	PartitionBridge  Kind = "partition-bridge"
	PartitionOneWay  Kind = "partition-one-way"
	Loss             Kind = "loss"
	Slow             Kind = "slow"
	MemberRemoveAdd  Kind = "member-remove-add"
	MemberReplace    Kind = "member-replace"
	TransferLeader   Kind = "transfer-leadership"
	BackendTerminate Kind = "backend-terminate"
	BackendRestart   Kind = "backend-restart"
	// BackendStallLeader stops the PostgreSQL server processes of the
	// leader's sessions, moves leadership away, and resumes them after the
	// hold: the deposed leader's writes in flight land late, the case the
	// backend's fence exists for.
	BackendStallLeader Kind = "backend-stall-leader"
)

// family is what --nemesis names: a group of related faults.
type family struct {
	name  string
	kinds []Kind
	// hold is the range of a fault's duration.
	holdMin, holdMax time.Duration
	// long, if set, is a second range, drawn half of the time.
	longMin, longMax time.Duration
}

// families is the constant table of fault families, in --nemesis order.
//
// Pauses outlast the election timeout, so that another leader takes over
// meanwhile, and come in two lengths. Short ones (below the workload's 5s
// write timeout) leave the writes queued at a paused leader still awaited
// when it resumes: unfenced, those would commit behind the new leader's
// back. Long ones outlast the write timeout, so that the clients stuck on
// the paused leader give up and write through the new one, while reads
// queued at the old leader meet a state that moved on: served from its
// cache without a leadership check, they are stale.
var families = []family{
	{name: "kill", kinds: []Kind{KillLeader, KillFollower, KillMinority}, holdMin: time.Second, holdMax: 5 * time.Second},
	{name: "pause", kinds: []Kind{PauseLeader, PauseFollower}, holdMin: 2500 * time.Millisecond, holdMax: 4500 * time.Millisecond,
		longMin: 6500 * time.Millisecond, longMax: 9 * time.Second},
	{name: "partition", kinds: []Kind{PartitionLeader, PartitionHalves, PartitionRing, PartitionBridge, PartitionOneWay}, holdMin: 3 * time.Second, holdMax: 8 * time.Second},
	{name: "loss", kinds: []Kind{Loss}, holdMin: 3 * time.Second, holdMax: 8 * time.Second},
	{name: "slow", kinds: []Kind{Slow}, holdMin: 3 * time.Second, holdMax: 8 * time.Second},
	{name: "membership", kinds: []Kind{MemberRemoveAdd, MemberReplace}, holdMin: 2 * time.Second, holdMax: 6 * time.Second},
	{name: "transfer", kinds: []Kind{TransferLeader}, holdMin: time.Second, holdMax: 2 * time.Second},
	{name: "backend", kinds: []Kind{BackendTerminate, BackendRestart, BackendStallLeader}, holdMin: 2 * time.Second, holdMax: 5 * time.Second},
}

// Families returns the family names --nemesis accepts (besides "all",
// "none" and single fault names).
func Families() []string {
	out := make([]string, len(families))
	for i, f := range families {
		out[i] = f.name
	}
	return out
}

// Kinds returns every fault name.
func Kinds() []Kind {
	var out []Kind
	for _, f := range families {
		out = append(out, f.kinds...)
	}
	return out
}

// ParseFamilies parses what --nemesis names: a comma-separated list of
// family names and single fault names (pause-leader, say), or "all", or
// "none" (no faults).
func ParseFamilies(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "all" {
		return Families(), nil
	}
	if s == "none" {
		return nil, nil
	}
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(Families(), name) && !slices.Contains(Kinds(), Kind(name)) {
			return nil, fmt.Errorf("unknown nemesis %q: want a comma-separated list of families (%s) or fault names (%s), or all, or none",
				name, strings.Join(Families(), ", "), joinKinds(Kinds()))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nemesis named in %q (use none for a fault-free run)", s)
	}
	return out, nil
}

func joinKinds(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// available reports whether a fault makes sense on a cluster of n nodes.
func available(k Kind, n int) bool {
	switch k {
	case PartitionRing, PartitionBridge:
		return n >= 5
	case KillMinority:
		return n >= 3
	case BackendStallLeader:
		return n >= 2
	case PauseFollower, KillFollower, PartitionLeader, PartitionHalves, PartitionOneWay, MemberRemoveAdd, MemberReplace, TransferLeader:
		return n >= 2
	}
	return true
}

// Step is one planned fault.
type Step struct {
	// At is when the fault starts, from the start of the run (later if the
	// previous fault took longer to heal than planned).
	At time.Duration `json:"at"`
	// Kind is the fault.
	Kind Kind `json:"kind"`
	// Hold is how long the fault lasts once injected.
	Hold time.Duration `json:"hold"`
	// Pick resolves the choices that depend on the live cluster (which
	// follower, which minority) deterministically.
	Pick uint64 `json:"pick"`
	// Percent is the packet loss of a Loss fault.
	Percent int `json:"percent,omitempty"`
}

// Timing of a schedule.
const (
	// firstQuiet lets the workload warm up before the first fault.
	firstQuiet = 3 * time.Second
	// quietMin and quietMax bound the quiet period after each fault.
	quietMin = 2 * time.Second
	quietMax = 5 * time.Second
	// tailQuiet is the fault-free end of the run: no fault starts later
	// than total - tailQuiet.
	tailQuiet = 2 * time.Second
	// stallMin and stallMax bound the hold of BackendStallLeader.
	stallMin = time.Second
	stallMax = 1500 * time.Millisecond
)

// Plan returns the schedule of a run of length total on n nodes with the
// given families, as determined by seed alone.
func Plan(seed int64, names []string, n int, total time.Duration) []Step {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e656d65736973)) // "nemesis"
	var fams []family
	for _, f := range families {
		whole := slices.Contains(names, f.name)
		var kinds []Kind
		for _, k := range f.kinds {
			if (whole || slices.Contains(names, string(k))) && available(k, n) {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) > 0 {
			f.kinds = kinds
			fams = append(fams, f)
		}
	}
	var steps []Step
	if len(fams) == 0 {
		return steps
	}
	at := firstQuiet
	for at < total-tailQuiet {
		f := fams[rng.IntN(len(fams))]
		s := Step{
			At:   at,
			Kind: f.kinds[rng.IntN(len(f.kinds))],
			Hold: between(rng, f.holdMin, f.holdMax),
			Pick: rng.Uint64(),
		}
		if f.longMin > 0 && rng.IntN(2) == 0 {
			s.Hold = between(rng, f.longMin, f.longMax)
		}
		if s.Kind == BackendStallLeader {
			// Every client stuck behind the stalled sessions must still
			// be waiting when they resume, so that none moves its key on
			// meanwhile: the hold, the pile-up before the transfer and the
			// transfer itself stay below the workload's read timeout (2s).
			s.Hold = between(rng, stallMin, stallMax)
		}
		if s.Kind == Loss {
			s.Percent = 10 + rng.IntN(31)
		}
		steps = append(steps, s)
		at += s.Hold + between(rng, quietMin, quietMax)
	}
	return steps
}

// between returns a duration in [lo, hi], at millisecond resolution.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	ms := int64((hi - lo) / time.Millisecond)
	return lo + time.Duration(rng.Int64N(ms+1))*time.Millisecond
}
