package nemesis

import (
	"math/rand/v2"
	"slices"

	"github.com/hacommit/committer/jepsen/control/netns"
)

// cut returns the links that separate groups a and b completely: every
// packet from one side to the other is dropped, in both directions.
func cut(a, b []string) []netns.Link {
	var out []netns.Link
	for _, x := range a {
		for _, y := range b {
			out = append(out, netns.Link{From: x, To: y}, netns.Link{From: y, To: x})
		}
	}
	return out
}

// isolate cuts one node off from the others.
func isolate(node string, others []string) []netns.Link {
	return cut([]string{node}, others)
}

// halves splits the nodes (in the given order) into a minority of the
// first (n-1)/2 and a majority of the rest.
func halves(order []string) (minority, majority []string, links []netns.Link) {
	m := (len(order) - 1) / 2
	minority, majority = order[:m], order[m:]
	return minority, majority, cut(minority, majority)
}

// ring connects each node only to its two neighbours in order (a ring):
// on five nodes every node sees a majority (itself and two neighbours), but
// no two nodes see the same majority.
func ring(order []string) []netns.Link {
	n := len(order)
	var out []netns.Link
	for i := range n {
		for j := range n {
			d := (j - i + n) % n
			if i != j && d != 1 && d != n-1 {
				out = append(out, netns.Link{From: order[i], To: order[j]})
			}
		}
	}
	return out
}

// bridge splits five nodes (in order) into {0,1} and {3,4}, cut from each
// other, with node 2 connected to both sides.
func bridge(order []string) []netns.Link {
	return cut(order[:2], order[3:])
}

// oneWay drops every packet from one node to the others, and nothing the
// other way. Over TCP this silences the node's own connections and makes
// the others' connections to it time out, while the node still hears them.
func oneWay(from string, others []string) []netns.Link {
	out := make([]netns.Link, 0, len(others))
	for _, o := range others {
		out = append(out, netns.Link{From: from, To: o})
	}
	return out
}

// shuffled returns slots in an order determined by pick.
func shuffled(slots []int, pick uint64) []int {
	out := slices.Clone(slots)
	rng := rand.New(rand.NewPCG(pick, 0x73687566)) // "shuf"
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
