package control

import (
	"slices"
	"testing"
)

func TestExtraServeArgsCarryTheIsolation(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want []string
	}{
		{Options{}, nil},
		{Options{Isolation: "read-committed"}, []string{"--isolation=read-committed"}},
		{Options{Isolation: "serializable", ExtraArgs: []string{"--unsafe-skip-fence"}}, []string{"--isolation=serializable", "--unsafe-skip-fence"}},
		{Options{ExtraArgs: []string{"--read-consistency=leader"}}, []string{"--read-consistency=leader"}},
	} {
		if got := tc.opts.extraServeArgs(); !slices.Equal(got, tc.want) {
			t.Errorf("extraServeArgs of %+v = %q, want %q", tc.opts, got, tc.want)
		}
	}
}
