package deploytest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hacommit/committer/deploy/deploytest"
)

func TestReadDockerfileTakesTheLastStage(t *testing.T) {
	path := t.TempDir() + "/Dockerfile"
	content := "FROM golang AS build\nENV CGO_ENABLED=0\nCMD [\"go\"]\n" +
		"FROM scratch\nENV A=1 B=/x\nUSER 65532:65532\nENTRYPOINT [\"/bin/app\"]\nCMD [\"serve\", \"--x\"]\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	spec, err := deploytest.ReadDockerfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(spec.Env) != "map[A:1 B:/x]" || fmt.Sprint(spec.Entrypoint) != "[/bin/app]" || fmt.Sprint(spec.Cmd) != "[serve --x]" || spec.User != "65532:65532" {
		t.Fatalf("read %+v, want the runtime stage's env A=1 B=/x, entrypoint [/bin/app], cmd [serve --x], user 65532:65532", spec)
	}

	if err := os.WriteFile(path, []byte("FROM scratch\nENTRYPOINT /bin/app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := deploytest.ReadDockerfile(path); err == nil || !strings.Contains(err.Error(), "exec (JSON) form") {
		t.Fatalf("shell-form ENTRYPOINT: %v, want refused as not the exec form", err)
	}
}
