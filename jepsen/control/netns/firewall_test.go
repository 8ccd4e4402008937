package netns

import "testing"

const header = `table inet jepsen {
	chain faults {
		type filter hook input priority filter; policy accept;
	}
}
flush chain inet jepsen faults
`

func TestRulesetOfNoFaultsOnlyFlushes(t *testing.T) {
	if got := Ruleset(Faults{}); got != header {
		t.Fatalf("Ruleset(no faults) =\n%s\nwant:\n%s", got, header)
	}
	if !(Faults{}).Empty() || !(Faults{Lossy: []string{"127.0.0.11"}}).Empty() {
		t.Fatal("faults without drops or a loss percentage must be empty")
	}
	if (Faults{Drop: []Link{{From: "a", To: "b"}}}).Empty() || (Faults{Lossy: []string{"a"}, LossPercent: 1}).Empty() {
		t.Fatal("drops or loss are not empty")
	}
}

func TestRulesetSortsAndDeduplicatesDrops(t *testing.T) {
	f := Faults{Drop: []Link{
		{From: "127.0.0.13", To: "127.0.0.11"},
		{From: "127.0.0.11", To: "127.0.0.13"},
		{From: "127.0.0.11", To: "127.0.0.12"},
		{From: "127.0.0.13", To: "127.0.0.11"},
	}}
	want := header +
		"add rule inet jepsen faults ip saddr 127.0.0.11 ip daddr 127.0.0.12 drop\n" +
		"add rule inet jepsen faults ip saddr 127.0.0.11 ip daddr 127.0.0.13 drop\n" +
		"add rule inet jepsen faults ip saddr 127.0.0.13 ip daddr 127.0.0.11 drop\n"
	if got := Ruleset(f); got != want {
		t.Fatalf("Ruleset =\n%s\nwant:\n%s", got, want)
	}
	if f.Drop[0] != (Link{From: "127.0.0.13", To: "127.0.0.11"}) {
		t.Fatalf("Ruleset reordered its input: %v", f.Drop)
	}
}

func TestRulesetLoss(t *testing.T) {
	f := Faults{Lossy: []string{"127.0.0.12", "127.0.0.11", "127.0.0.12"}, LossPercent: 25}
	want := header +
		"add rule inet jepsen faults ip saddr { 127.0.0.11, 127.0.0.12 } numgen random mod 100 < 25 drop\n" +
		"add rule inet jepsen faults ip daddr { 127.0.0.11, 127.0.0.12 } numgen random mod 100 < 25 drop\n"
	if got := Ruleset(f); got != want {
		t.Fatalf("Ruleset =\n%s\nwant:\n%s", got, want)
	}
	f.LossPercent = 250
	if got := Ruleset(f); got != header+
		"add rule inet jepsen faults ip saddr { 127.0.0.11, 127.0.0.12 } numgen random mod 100 < 100 drop\n"+
		"add rule inet jepsen faults ip daddr { 127.0.0.11, 127.0.0.12 } numgen random mod 100 < 100 drop\n" {
		t.Fatalf("loss above 100%% is not capped:\n%s", got)
	}
}

func TestRulesetDropsAndLossTogether(t *testing.T) {
	f := Faults{Drop: []Link{{From: "127.0.0.11", To: "127.0.0.12"}}, Lossy: []string{"127.0.0.13"}, LossPercent: 10}
	want := header +
		"add rule inet jepsen faults ip saddr 127.0.0.11 ip daddr 127.0.0.12 drop\n" +
		"add rule inet jepsen faults ip saddr { 127.0.0.13 } numgen random mod 100 < 10 drop\n" +
		"add rule inet jepsen faults ip daddr { 127.0.0.13 } numgen random mod 100 < 10 drop\n"
	if got := Ruleset(f); got != want {
		t.Fatalf("Ruleset =\n%s\nwant:\n%s", got, want)
	}
}
