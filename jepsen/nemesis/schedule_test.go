package nemesis

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestPlanIsReproducibleFromTheSeed(t *testing.T) {
	all := Families()
	a := Plan(42, all, 5, 10*time.Minute)
	b := Plan(42, all, 5, 10*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two plans from seed 42 differ:\n%v\n%v", a, b)
	}
	c := Plan(43, all, 5, 10*time.Minute)
	if reflect.DeepEqual(a, c) {
		t.Fatalf("seeds 42 and 43 gave the same plan: %v", a)
	}
	// Same seed, shorter run: the same faults, cut where the run ends.
	short := Plan(42, all, 5, 2*time.Minute)
	if len(short) == 0 || len(short) >= len(a) {
		t.Fatalf("a 2-minute plan has %d steps, the 10-minute one %d", len(short), len(a))
	}
	if !reflect.DeepEqual(short, a[:len(short)]) {
		t.Fatalf("the 2-minute plan is not a prefix of the 10-minute one:\n%v\n%v", short, a[:len(short)])
	}
}

func TestPlanTiming(t *testing.T) {
	const total = 10 * time.Minute
	for _, seed := range []int64{1, 2, 3, 4, 5} {
		steps := Plan(seed, Families(), 5, total)
		if len(steps) < 40 {
			t.Fatalf("seed %d: only %d faults in %s", seed, len(steps), total)
		}
		if steps[0].At != firstQuiet {
			t.Errorf("seed %d: first fault at %s, want %s", seed, steps[0].At, firstQuiet)
		}
		for i, s := range steps {
			if s.At >= total-tailQuiet {
				t.Errorf("seed %d step %d starts at %s, after %s", seed, i, s.At, total-tailQuiet)
			}
			if s.Hold <= 0 {
				t.Errorf("seed %d step %d (%s) holds %s", seed, i, s.Kind, s.Hold)
			}
			if i > 0 {
				prev := steps[i-1]
				if gap := s.At - (prev.At + prev.Hold); gap < quietMin || gap > quietMax {
					t.Errorf("seed %d: quiet period before step %d is %s, want [%s, %s]", seed, i, gap, quietMin, quietMax)
				}
			}
			switch s.Kind {
			case PauseLeader, PauseFollower:
				short := s.Hold >= 2500*time.Millisecond && s.Hold <= 4500*time.Millisecond
				long := s.Hold >= 6500*time.Millisecond && s.Hold <= 9*time.Second
				if !short && !long {
					t.Errorf("seed %d: pause held %s, neither short nor long", seed, s.Hold)
				}
			case BackendStallLeader:
				if s.Hold < stallMin || s.Hold > stallMax {
					t.Errorf("seed %d: stall held %s, outside [%s, %s]", seed, s.Hold, stallMin, stallMax)
				}
			case Loss:
				if s.Percent < 10 || s.Percent > 40 {
					t.Errorf("seed %d: loss of %d%%", seed, s.Percent)
				}
			}
			if s.Kind != Loss && s.Percent != 0 {
				t.Errorf("seed %d: %s has a loss percentage", seed, s.Kind)
			}
		}
	}
}

func TestPlanCoversEveryFaultAndOnlyTheNamedOnes(t *testing.T) {
	kinds := func(steps []Step) []Kind {
		var out []Kind
		for _, s := range steps {
			if !slices.Contains(out, s.Kind) {
				out = append(out, s.Kind)
			}
		}
		slices.Sort(out)
		return out
	}
	all := kinds(Plan(7, Families(), 5, time.Hour))
	want := Kinds()
	slices.Sort(want)
	if !slices.Equal(all, want) {
		t.Errorf("an hour on 5 nodes with every family planned %v, want %v", all, want)
	}

	three := kinds(Plan(7, Families(), 3, time.Hour))
	for _, k := range []Kind{PartitionRing, PartitionBridge} {
		if slices.Contains(three, k) {
			t.Errorf("%s planned on 3 nodes", k)
		}
	}
	if len(three) != len(want)-2 {
		t.Errorf("3 nodes planned %v, want every fault but ring and bridge", three)
	}

	if got := kinds(Plan(7, []string{"pause", "transfer"}, 3, time.Hour)); !slices.Equal(got, []Kind{PauseFollower, PauseLeader, TransferLeader}) {
		t.Errorf("pause,transfer planned %v", got)
	}
	if got := kinds(Plan(7, []string{"pause-leader"}, 3, time.Hour)); !slices.Equal(got, []Kind{PauseLeader}) {
		t.Errorf("pause-leader planned %v", got)
	}
	if got := Plan(7, nil, 3, time.Hour); len(got) != 0 {
		t.Errorf("no families planned %v", got)
	}
	if got := Plan(7, []string{"partition-ring"}, 3, time.Hour); len(got) != 0 {
		t.Errorf("a ring on 3 nodes planned %v", got)
	}
}

func TestParseFamilies(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "all", want: Families()},
		{in: "none", want: nil},
		{in: "kill", want: []string{"kill"}},
		{in: " kill, pause ,kill", want: []string{"kill", "pause"}},
		{in: "pause-leader,backend", want: []string{"pause-leader", "backend"}},
		{in: "kill,nuke", err: true},
		{in: "", err: true},
		{in: ",", err: true},
	} {
		got, err := ParseFamilies(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseFamilies(%q) error = %v, want error: %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("ParseFamilies(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	want := []string{"kill", "pause", "partition", "loss", "slow", "membership", "transfer", "backend"}
	if got := Families(); !slices.Equal(got, want) {
		t.Errorf("Families() = %v, want %v", got, want)
	}
}
