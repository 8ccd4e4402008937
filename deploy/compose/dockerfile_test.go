package compose_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// imageSpec is what a container of the image starts with, besides the
// compose file: the runtime stage's ENV, ENTRYPOINT and CMD.
type imageSpec struct {
	env        map[string]string
	entrypoint []string
	cmd        []string
}

// readDockerfile reads the runtime (last) stage of a Dockerfile. It knows
// only the forms the image's Dockerfile uses (ENV KEY=VALUE, the exec form
// of ENTRYPOINT and CMD) and refuses others, so that a change of form fails
// here instead of being misread.
func readDockerfile(path string) (imageSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return imageSpec{}, fmt.Errorf("reading the image's Dockerfile: %w", err)
	}
	defer f.Close()
	var spec imageSpec
	stages := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(text, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			stages++
			spec = imageSpec{env: map[string]string{}}
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(v, `"'$\`) {
					return imageSpec{}, fmt.Errorf("%s:%d: ENV %q is not the KEY=VALUE form this test reads", path, line, rest)
				}
				spec.env[k] = v
			}
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				return imageSpec{}, fmt.Errorf("%s:%d: %s %q is not the exec (JSON) form: %w", path, line, instr, rest, err)
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				spec.entrypoint = argv
			} else {
				spec.cmd = argv
			}
		}
	}
	if err := sc.Err(); err != nil {
		return imageSpec{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if stages == 0 {
		return imageSpec{}, fmt.Errorf("%s has no FROM", path)
	}
	return spec, nil
}

func TestReadDockerfileTakesTheLastStage(t *testing.T) {
	path := t.TempDir() + "/Dockerfile"
	content := "FROM golang AS build\nENV CGO_ENABLED=0\nCMD [\"go\"]\n" +
		"FROM scratch\nENV A=1 B=/x\nENTRYPOINT [\"/bin/app\"]\nCMD [\"serve\", \"--x\"]\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, err := readDockerfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(spec.env) != "map[A:1 B:/x]" || fmt.Sprint(spec.entrypoint) != "[/bin/app]" || fmt.Sprint(spec.cmd) != "[serve --x]" {
		t.Fatalf("read %+v, want the runtime stage's env A=1 B=/x, entrypoint [/bin/app], cmd [serve --x]", spec)
	}

	if err := os.WriteFile(path, []byte("FROM scratch\nENTRYPOINT /bin/app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readDockerfile(path); err == nil || !strings.Contains(err.Error(), "exec (JSON) form") {
		t.Fatalf("shell-form ENTRYPOINT: %v, want refused as not the exec form", err)
	}
}
