package proctest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
)

// binaryPackage is the import path of the committer command.
const binaryPackage = "github.com/hacommit/committer/cmd/committer"

// BuildOptions tunes Build.
type BuildOptions struct {
	// Race builds the binary with the race detector, so that a data race in
	// a replica under faults shows up in its log (and fails the test that
	// started it; see Cluster). It makes replicas several times slower.
	Race bool
}

// Build compiles the committer binary into dir and returns its path. It must
// run inside the committer module (a test's working directory is).
func Build(ctx context.Context, dir string, opts BuildOptions) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "committer")
	args := []string{"build", "-o", bin}
	if opts.Race {
		args = append(args, "-race")
	}
	args = append(args, binaryPackage)
	out, err := exec.CommandContext(ctx, goTool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %v: %w\n%s", args, err, out)
	}
	return bin, nil
}
