package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
)

// ErrNotInstalled reports that no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql/*/bin")

// distroBinGlob is where Debian and Ubuntu install each PostgreSQL major
// version side by side.
const distroBinGlob = "/usr/lib/postgresql/*/bin"

// binaries are the two programs a server needs, from one installation.
type binaries struct {
	initdb   string
	postgres string
}

// findBinaries prefers PATH (what an operator or CI deliberately put there),
// then the newest versioned distribution directory.
func findBinaries() (binaries, error) {
	if pg, err := exec.LookPath("postgres"); err == nil {
		// initdb must come from the same installation as postgres, or the data
		// directory it writes may not match the server's catalog version.
		if real, err := filepath.EvalSymlinks(pg); err == nil {
			sibling := filepath.Join(filepath.Dir(real), "initdb")
			if isExecutable(sibling) {
				return binaries{initdb: sibling, postgres: real}, nil
			}
		}
		if initdb, err := exec.LookPath("initdb"); err == nil {
			return binaries{initdb: initdb, postgres: pg}, nil
		}
	}
	dirs, _ := filepath.Glob(distroBinGlob)
	sort.Slice(dirs, func(i, j int) bool {
		return majorVersion(dirs[i]) > majorVersion(dirs[j])
	})
	for _, dir := range dirs {
		b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, ErrNotInstalled
}

// majorVersion extracts N from /usr/lib/postgresql/N/bin; unparsable names
// sort last.
func majorVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func (b binaries) String() string {
	return fmt.Sprintf("initdb=%s postgres=%s", b.initdb, b.postgres)
}
