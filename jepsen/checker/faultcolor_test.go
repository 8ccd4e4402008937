package checker

import (
	"image/color"
	"slices"
	"testing"

	"github.com/hacommit/committer/jepsen/nemesis"
)

func TestEveryNemesisKindHasItsOwnColor(t *testing.T) {
	// The table is keyed by the strings the nemesis runner records as
	// Fault.Kind; a kind missing here would silently take a spare colour.
	owner := map[color.NRGBA]string{}
	for i := range 4 {
		owner[spareFaultColor(i)] = "spare"
	}
	for _, k := range nemesis.Kinds() {
		c, ok := FaultKindColor(string(k))
		if !ok {
			t.Errorf("nemesis kind %q has no colour", k)
			continue
		}
		if c.A != 0xff {
			t.Errorf("kind %q: colour %v is not opaque", k, c)
		}
		if other, dup := owner[c]; dup {
			t.Errorf("kind %q has the colour of %s: %v", k, other, c)
		}
		owner[c] = string(k)
	}
	for _, family := range nemesis.Families() {
		// --nemesis names families, but faults are recorded by kind.
		if _, ok := FaultKindColor(family); ok && !slices.Contains(nemesis.Kinds(), nemesis.Kind(family)) {
			t.Errorf("family name %q has a colour of its own; no fault is recorded under it", family)
		}
	}
}

func TestFaultColorsAssignsSparesInOrderOfFirstAppearance(t *testing.T) {
	faults := []Fault{
		{Kind: "partition-halves"}, {Kind: "disk-full"}, {Kind: "kill-leader"}, {Kind: "partition-halves"},
		{Kind: "clock-skew"}, {Kind: "disk-full"}, {Kind: "u3"}, {Kind: "u4"}, {Kind: "u5"},
	}
	kinds, colors := FaultColors(faults)
	wantKinds := []string{"partition-halves", "disk-full", "kill-leader", "clock-skew", "u3", "u4", "u5"}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("kinds %v, want %v", kinds, wantKinds)
	}
	want := map[string]color.NRGBA{
		"partition-halves": {R: 0x6b, G: 0xae, B: 0xd6, A: 0xff},
		"kill-leader":      {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		"disk-full":        {R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, // spare 0
		"clock-skew":       {R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, // spare 1
		"u3":               {R: 0x39, G: 0x3b, B: 0x79, A: 0xff}, // spare 2
		"u4":               {R: 0x63, G: 0x79, B: 0x39, A: 0xff}, // spare 3
		"u5":               {R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, // the spares repeat
	}
	if len(colors) != len(want) {
		t.Fatalf("%d colours, want %d: %v", len(colors), len(want), colors)
	}
	for k, c := range want {
		if colors[k] != c {
			t.Errorf("kind %q: colour %v, want %v", k, colors[k], c)
		}
	}
}

func TestFaultAnnotationsAreTintsOfTheTableColors(t *testing.T) {
	faults := []Fault{
		{Kind: "kill-leader", Targets: []string{"n1"}, Start: 1, End: 2, Ended: true},
		{Kind: "disk-full", Start: 2, End: 3, Ended: true},
		{Kind: "partition-halves", Targets: []string{"n1", "n2|n3"}, Start: 3, End: 9},
		{Kind: "kill-leader", Targets: []string{"n2"}, Start: 4, End: 5, Ended: true},
	}
	// 70% white over each colour: 0xd6 -> 0xd6 + (0xff-0xd6)*7/10 = 0xf2.
	want := []struct{ tag, background string }{
		{"fault: kill-leader", "#f2bebe"},      // #d62728
		{"fault: disk-full", "#f6d6ec"},        // spare #e377c2
		{"fault: partition-halves", "#d2e6f2"}, // #6baed6
		{"fault: kill-leader", "#f2bebe"},
	}
	got := faultAnnotations(faults)
	if len(got) != len(want) {
		t.Fatalf("%d annotations, want %d", len(got), len(want))
	}
	for i, a := range got {
		if a.Tag != want[i].tag || a.BackgroundColor != want[i].background {
			t.Errorf("annotation %d: %s %s, want %s %s", i, a.Tag, a.BackgroundColor, want[i].tag, want[i].background)
		}
	}
	if got := backgroundTint(color.NRGBA{A: 0xff}); got != "#b2b2b2" {
		t.Errorf("tint of black %s, want #b2b2b2", got)
	}
	if got := backgroundTint(color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xff}); got != "#ffffff" {
		t.Errorf("tint of white %s, want #ffffff", got)
	}
}
