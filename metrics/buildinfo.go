package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// The build target of the Makefile sets these at link time
// (-ldflags "-X github.com/hacommit/committer/metrics.linkedVersion=..."),
// because builds here run with -buildvcs=false and would otherwise carry no
// revision. They are never written at run time.
var (
	linkedVersion  string
	linkedRevision string
)

// Unknown is what BuildInfo says of a field nothing recorded.
const Unknown = "unknown"

// BuildInfo says which build of committer is running.
type BuildInfo struct {
	// Version is the release (git describe), or the Go module version
	// ("(devel)" for a build from a source tree).
	Version string `json:"version"`
	// Revision is the source revision (a git commit).
	Revision string `json:"revision"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// Build returns this binary's BuildInfo: the values linked in by the
// Makefile first, then what the Go toolchain recorded (the module version,
// the vcs.revision setting), then Unknown.
func Build() BuildInfo {
	return buildInfo(linkedVersion, linkedRevision, readBuildInfo())
}

func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

func buildInfo(version, revision string, bi *debug.BuildInfo) BuildInfo {
	b := BuildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if bi != nil {
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Revision == "" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = Unknown
	}
	if b.Revision == "" {
		b.Revision = Unknown
	}
	return b
}

// NewBuildInfo returns the committer_build_info gauge: always 1, with the
// build's version, revision and go_version as labels, so that a query can
// join any series with the build that produced it.
func NewBuildInfo(b BuildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: clusterNamespace, Name: "build_info",
		Help:        "Always 1; its labels name the running build: version, revision and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "go_version": b.GoVersion},
	})
	g.Set(1)
	return g
}
