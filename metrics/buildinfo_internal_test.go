package metrics

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// Linked values win; then what the toolchain recorded; then "unknown".
func TestBuildInfoSources(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main:     debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "false"}, {Key: "vcs.revision", Value: "abc123"}},
	}
	for _, tc := range []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		want              BuildInfo
	}{
		{"linked", "v9.9.9", "fedcba", vcs, BuildInfo{"v9.9.9", "fedcba", runtime.Version()}},
		{"recorded by the toolchain", "", "", vcs, BuildInfo{"v1.2.3", "abc123", runtime.Version()}},
		{"source tree without vcs", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, BuildInfo{"(devel)", Unknown, runtime.Version()}},
		{"nothing at all", "", "", nil, BuildInfo{Unknown, Unknown, runtime.Version()}},
		{"only a linked revision", "", "0011", &debug.BuildInfo{}, BuildInfo{Unknown, "0011", runtime.Version()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildInfo(tc.version, tc.revision, tc.bi); got != tc.want {
				t.Errorf("buildInfo = %+v, want %+v", got, tc.want)
			}
		})
	}
}
