package checker

import (
	"slices"
	"strings"

	"github.com/hacommit/committer/jepsen/history"
)

// Fault is one fault window: a nemesis invoke (the fault starts) and the
// matching completion (it ends).
type Fault struct {
	Kind    string   `json:"kind"`
	Targets []string `json:"targets,omitempty"`
	// Start and End are nanoseconds since the start of the run. A fault that
	// never ended lasts until the end of the history.
	Start int64 `json:"start_ns"`
	End   int64 `json:"end_ns"`
	Ended bool  `json:"ended"`
}

// Faults pairs the nemesis events of a history into fault windows, ordered by
// start time.
func Faults(events []history.Event) []Fault {
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b history.Event) int { return a.Index - b.Index })
	var end int64
	for _, e := range sorted {
		end = max(end, e.Time+1)
	}
	return faults(sorted, end)
}

// faults pairs nemesis events of an index-ordered history. An end closes the
// oldest open fault of the same kind on the same targets, or failing that the
// oldest open fault of the same kind, since a nemesis may describe the nodes
// it healed differently from those it broke.
func faults(sorted []history.Event, end int64) []Fault {
	var out []Fault
	var open []int // indices into out, oldest first
	for _, e := range sorted {
		if e.F != history.FNemesis {
			continue
		}
		if e.Type == history.Invoke {
			open = append(open, len(out))
			out = append(out, Fault{Kind: e.Fault, Targets: e.Targets, Start: e.Time, End: end})
			continue
		}
		match := -1
		for j, i := range open {
			if out[i].Kind == e.Fault && sameTargets(out[i].Targets, e.Targets) {
				match = j
				break
			}
		}
		if match < 0 {
			for j, i := range open {
				if out[i].Kind == e.Fault {
					match = j
					break
				}
			}
		}
		if match < 0 {
			continue
		}
		f := &out[open[match]]
		f.End, f.Ended = e.Time, true
		open = slices.Delete(open, match, match+1)
	}
	return out
}

func sameTargets(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
