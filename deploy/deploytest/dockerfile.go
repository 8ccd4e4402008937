package deploytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ImageDockerfile is the image's Dockerfile, whose runtime stage every
// manifest's container runs on.
func ImageDockerfile() string { return filepath.Join(DeployDir(), "image", "Dockerfile") }

// Image is what a container of the image starts with, besides what a
// manifest sets: the runtime stage's ENV, ENTRYPOINT, CMD and USER.
type Image struct {
	Env        map[string]string
	Entrypoint []string
	Cmd        []string
	User       string
}

// ReadDockerfile reads the runtime (last) stage of a Dockerfile. It knows
// only the forms the image's Dockerfile uses (ENV KEY=VALUE, the exec form
// of ENTRYPOINT and CMD, USER) and refuses others, so that a change of form fails
// here instead of being misread.
func ReadDockerfile(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("reading the image's Dockerfile: %w", err)
	}
	defer f.Close()
	var spec Image
	stages := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(text, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			stages++
			spec = Image{Env: map[string]string{}}
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(v, `"'$\`) {
					return Image{}, fmt.Errorf("%s:%d: ENV %q is not the KEY=VALUE form this reader takes", path, line, rest)
				}
				spec.Env[k] = v
			}
		case "USER":
			spec.User = rest
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				return Image{}, fmt.Errorf("%s:%d: %s %q is not the exec (JSON) form: %w", path, line, instr, rest, err)
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				spec.Entrypoint = argv
			} else {
				spec.Cmd = argv
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Image{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if stages == 0 {
		return Image{}, fmt.Errorf("%s has no FROM", path)
	}
	return spec, nil
}
