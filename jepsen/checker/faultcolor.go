package checker

import (
	"fmt"
	"image/color"
)

// FaultKindColor is the fixed colour of a fault kind the nemeses inject (the
// Kind values of package nemesis, which are what Fault.Kind holds), and
// false for any other kind. The kinds of one family share a hue, so that the
// family reads at a glance and its members still differ.
func FaultKindColor(kind string) (color.NRGBA, bool) {
	switch kind {
	// kill: reds
	case "kill-leader":
		return rgb(0xd62728), true
	case "kill-follower":
		return rgb(0xff9896), true
	case "kill-minority":
		return rgb(0xa50f15), true
	// pause: oranges
	case "pause-leader":
		return rgb(0xff7f0e), true
	case "pause-follower":
		return rgb(0xffbb78), true
	// partition: blues
	case "partition-leader":
		return rgb(0x1f77b4), true
	case "partition-halves":
		return rgb(0x6baed6), true
	case "partition-ring":
		return rgb(0x08519c), true
	case "partition-bridge":
		return rgb(0xaec7e8), true
	case "partition-one-way":
		return rgb(0x3182bd), true
	case "loss":
		return rgb(0x9467bd), true
	case "slow":
		return rgb(0x8c564b), true
	// membership: greens
	case "member-remove-add":
		return rgb(0x2ca02c), true
	case "member-replace":
		return rgb(0x98df8a), true
	case "transfer-leadership":
		return rgb(0x17becf), true
	// backend: olives
	case "backend-terminate":
		return rgb(0xbcbd22), true
	case "backend-restart":
		return rgb(0xdbdb8d), true
	case "backend-stall-leader":
		return rgb(0x7f8012), true
	}
	return color.NRGBA{}, false
}

// spareFaultColor is the colour of the i-th kind (from 0) without a fixed
// one. The spares are hues no family uses; they repeat after four.
func spareFaultColor(i int) color.NRGBA {
	spares := [...]color.NRGBA{rgb(0xe377c2), rgb(0x7f7f7f), rgb(0x393b79), rgb(0x637939)}
	return spares[i%len(spares)]
}

// FaultColors lists the kinds of faults in order of first appearance and
// gives each its colour: FaultKindColor's, or else a spare colour in order of
// first appearance. Every view of a run (the timeline image, the
// linearizability page) calls it on the same faults, so a kind has one
// colour everywhere.
func FaultColors(faults []Fault) ([]string, map[string]color.NRGBA) {
	var kinds []string
	colors := make(map[string]color.NRGBA)
	spare := 0
	for _, f := range faults {
		if _, ok := colors[f.Kind]; ok {
			continue
		}
		kinds = append(kinds, f.Kind)
		c, ok := FaultKindColor(f.Kind)
		if !ok {
			c = spareFaultColor(spare)
			spare++
		}
		colors[f.Kind] = c
	}
	return kinds, colors
}

// backgroundTint is c mixed with 70% white, as "#rrggbb": light enough
// behind the black text of porcupine's annotations, and still recognisably
// the colour of the kind in the timeline.
func backgroundTint(c color.NRGBA) string {
	mix := func(v uint8) uint8 { return v + uint8((255-int(v))*7/10) }
	return fmt.Sprintf("#%02x%02x%02x", mix(c.R), mix(c.G), mix(c.B))
}

func rgb(hex uint32) color.NRGBA {
	return color.NRGBA{R: uint8(hex >> 16), G: uint8(hex >> 8), B: uint8(hex), A: 0xff}
}
