package checker

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// maxSampleOps bounds the operations shown when no key failed, so the page
// of a long run stays small enough for a browser.
const maxSampleOps = 2000

// WriteVisualization writes porcupine's HTML visualization to path: the
// non-linearizable partitions if there are any, otherwise every partition if
// the history is small, or else the smallest partitions up to a bounded
// number of operations. The page labels no partition, so when it shows
// several, every operation names its key.
// Fault windows appear as annotation rows, one per fault kind, tinted with
// the kind's FaultColors colour as in the timeline.
func (r *Result) WriteVisualization(path string) error {
	timeout := r.timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	hs := r.visualizedPartitions()
	processes := make(map[int]int)
	for _, h := range hs {
		for _, op := range h.ops {
			processes[op.ClientId] = 0
		}
	}
	ids := make([]int, 0, len(processes))
	for p := range processes {
		ids = append(ids, p)
	}
	slices.Sort(ids)
	for row, p := range ids {
		processes[p] = row
	}
	// The page draws one row per client id, so process ids become dense
	// row numbers.
	var ops []porcupine.Operation
	for _, h := range hs {
		for _, op := range h.ops {
			op.ClientId = processes[op.ClientId]
			ops = append(ops, op)
		}
	}

	model := partitionModel(len(hs) > 1)
	_, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	info.AddAnnotations(faultAnnotations(r.Faults))

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("linearizability visualization: %w", err)
	}
	werr := porcupine.Visualize(model, info, f)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("linearizability visualization %s: %w", path, err)
	}
	return nil
}

func (r *Result) visualizedPartitions() []partitionHistory {
	if len(r.IllegalKeys) > 0 {
		var out []partitionHistory
		for _, h := range r.histories {
			if slices.Contains(r.IllegalKeys, h.group.label) {
				out = append(out, h)
			}
		}
		return out
	}
	// A projection repeats operations of the linked partition it was cut
	// from. With nothing illegal, each operation is shown once: in its
	// partition searched whole, or, for one too large for that, in the
	// projection on its key alone.
	searchedWhole := make(map[*keyGroup]bool)
	for _, h := range r.histories {
		searchedWhole[h.group] = true
	}
	bySize := slices.DeleteFunc(slices.Clone(r.histories), func(h partitionHistory) bool {
		return h.whole != nil && (searchedWhole[h.whole] || h.group.multiKey())
	})
	slices.SortStableFunc(bySize, func(a, b partitionHistory) int { return len(a.ops) - len(b.ops) })
	var out []partitionHistory
	total := 0
	for _, h := range bySize {
		if len(out) > 0 && total+len(h.ops) > maxSampleOps {
			break
		}
		out = append(out, h)
		total += len(h.ops)
	}
	slices.SortFunc(out, func(a, b partitionHistory) int { return strings.Compare(a.group.label, b.group.label) })
	return out
}

func faultAnnotations(faults []Fault) []porcupine.Annotation {
	_, colors := FaultColors(faults)
	out := make([]porcupine.Annotation, 0, len(faults))
	for _, f := range faults {
		desc := f.Kind
		if len(f.Targets) > 0 {
			desc += " " + strings.Join(f.Targets, ",")
		}
		end := "the end of the run"
		if f.Ended {
			end = seconds(f.End)
		}
		out = append(out, porcupine.Annotation{
			Tag:             "fault: " + f.Kind,
			Start:           f.Start,
			End:             f.End,
			Description:     desc,
			Details:         fmt.Sprintf("%s from %s to %s", desc, seconds(f.Start), end),
			BackgroundColor: backgroundTint(colors[f.Kind]),
		})
	}
	return out
}
