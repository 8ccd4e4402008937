package nemesis

import (
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/jepsen/control/netns"
)

var five = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15"}

// reach returns, for each address, the addresses it can send to under the
// dropped links.
func reach(nodes []string, drop []netns.Link) map[string][]string {
	out := map[string][]string{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b && !slices.Contains(drop, netns.Link{From: a, To: b}) {
				out[a] = append(out[a], b)
			}
		}
	}
	return out
}

func TestIsolateCutsOneNodeBothWays(t *testing.T) {
	got := isolate("127.0.0.11", []string{"127.0.0.12", "127.0.0.13"})
	want := []netns.Link{
		{From: "127.0.0.11", To: "127.0.0.12"}, {From: "127.0.0.12", To: "127.0.0.11"},
		{From: "127.0.0.11", To: "127.0.0.13"}, {From: "127.0.0.13", To: "127.0.0.11"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("isolate = %v, want %v", got, want)
	}
	script := netns.Ruleset(netns.Faults{Drop: got})
	wantScript := `table inet jepsen {
	chain faults {
		type filter hook input priority filter; policy accept;
	}
}
flush chain inet jepsen faults
add rule inet jepsen faults ip saddr 127.0.0.11 ip daddr 127.0.0.12 drop
add rule inet jepsen faults ip saddr 127.0.0.11 ip daddr 127.0.0.13 drop
add rule inet jepsen faults ip saddr 127.0.0.12 ip daddr 127.0.0.11 drop
add rule inet jepsen faults ip saddr 127.0.0.13 ip daddr 127.0.0.11 drop
`
	if script != wantScript {
		t.Fatalf("ruleset:\n%s\nwant:\n%s", script, wantScript)
	}
}

func TestHalves(t *testing.T) {
	minority, majority, links := halves(five)
	if !slices.Equal(minority, five[:2]) || !slices.Equal(majority, five[2:]) {
		t.Fatalf("halves of 5 = %v | %v", minority, majority)
	}
	if len(links) != 2*2*3 {
		t.Fatalf("%d links, want 12", len(links))
	}
	r := reach(five, links)
	for _, n := range minority {
		if !slices.Equal(r[n], without(minority, n)) {
			t.Errorf("minority node %s reaches %v", n, r[n])
		}
	}
	for _, n := range majority {
		if !slices.Equal(r[n], without(majority, n)) {
			t.Errorf("majority node %s reaches %v", n, r[n])
		}
	}

	three := five[:3]
	minority, majority, links = halves(three)
	if !slices.Equal(minority, three[:1]) || !slices.Equal(majority, three[1:]) || len(links) != 4 {
		t.Fatalf("halves of 3 = %v | %v with %d links", minority, majority, len(links))
	}
}

func TestRingGivesEveryNodeItsTwoNeighbours(t *testing.T) {
	order := []string{five[2], five[0], five[4], five[1], five[3]}
	links := ring(order)
	if len(links) != 10 { // 5 nodes x 2 non-neighbours, one direction each
		t.Fatalf("%d links, want 10: %v", len(links), links)
	}
	r := reach(five, links)
	for i, n := range order {
		want := []string{order[(i+1)%5], order[(i+4)%5]}
		slices.Sort(want)
		got := slices.Clone(r[n])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s reaches %v, want its ring neighbours %v", n, got, want)
		}
	}
	// Every node sees a majority (itself and two neighbours), and no two
	// nodes see the same one.
	seen := map[string]bool{}
	for _, n := range five {
		group := append(slices.Clone(r[n]), n)
		slices.Sort(group)
		key := strings.Join(group, ",")
		if len(group) != 3 || seen[key] {
			t.Errorf("%s sees %v", n, group)
		}
		seen[key] = true
	}
}

func TestBridge(t *testing.T) {
	links := bridge(five)
	r := reach(five, links)
	want := map[string][]string{
		five[0]: {five[1], five[2]},
		five[1]: {five[0], five[2]},
		five[2]: {five[0], five[1], five[3], five[4]},
		five[3]: {five[2], five[4]},
		five[4]: {five[2], five[3]},
	}
	for _, n := range five {
		if !slices.Equal(r[n], want[n]) {
			t.Errorf("%s reaches %v, want %v", n, r[n], want[n])
		}
	}
}

func TestOneWayDropsOnlyTheNodesOwnPackets(t *testing.T) {
	links := oneWay(five[0], five[1:3])
	want := []netns.Link{{From: five[0], To: five[1]}, {From: five[0], To: five[2]}}
	if !slices.Equal(links, want) {
		t.Fatalf("oneWay = %v, want %v", links, want)
	}
	r := reach(five[:3], links)
	if len(r[five[0]]) != 0 || !slices.Contains(r[five[1]], five[0]) || !slices.Contains(r[five[2]], five[0]) {
		t.Fatalf("reach under one-way: %v", r)
	}
}

func TestShuffledIsAPermutationDeterminedByPick(t *testing.T) {
	slots := []int{1, 2, 3, 4, 5}
	a, b := shuffled(slots, 99), shuffled(slots, 99)
	if !slices.Equal(a, b) {
		t.Fatalf("pick 99 shuffled to %v and %v", a, b)
	}
	sorted := slices.Clone(a)
	slices.Sort(sorted)
	if !slices.Equal(sorted, slots) {
		t.Fatalf("shuffled(%v) = %v is not a permutation", slots, a)
	}
	if !slices.Equal(slots, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("shuffled modified its input: %v", slots)
	}
	differ := false
	for pick := uint64(0); pick < 20 && !differ; pick++ {
		differ = !slices.Equal(shuffled(slots, pick), a)
	}
	if !differ {
		t.Fatalf("20 picks all gave %v", a)
	}
}

func without(s []string, x string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(y string) bool { return y == x })
}
