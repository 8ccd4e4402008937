package replicaproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// binaryPackage is the import path of the committer command.
const binaryPackage = "github.com/hacommit/committer/cmd/committer"

// BuildOptions tunes Build.
type BuildOptions struct {
	// ModuleDir is a directory inside the committer module; empty means the
	// working directory (a test's is).
	ModuleDir string
	// Race builds with the race detector, so that a data race in a replica
	// under faults shows up in its log. It makes replicas several times
	// slower.
	Race bool
	// Static builds without cgo, as the container image does, so the
	// binary tested is the one shipped.
	Static bool
}

// Build compiles the committer binary into dir and returns its path.
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
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = opts.ModuleDir
	if opts.Static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %w\n%s", args, err, out)
	}
	return bin, nil
}
