package image_test

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/deploy/deploytest"
)

// imageConfig is the part of `podman image inspect` the manifests rely on.
type imageConfig struct {
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Env          []string
	}
}

// TestMakeImageBuildsTheRuntimeImage runs `make image` and checks the image:
// its configuration, and that the binary inside runs on its own (static).
func TestMakeImageBuildsTheRuntimeImage(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("SKIPPED: no image builder on this machine (install Debian's podman to build and check the image)")
	}
	root := deploytest.RepositoryRoot()
	tag := fmt.Sprintf("localhost/committer-imagetest:%d", os.Getpid())
	run(t, root, "make", "image", "IMAGE="+tag)
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", tag).Run() })

	out := run(t, root, podman, "image", "inspect", tag)
	var cfgs []imageConfig
	if err := json.Unmarshal([]byte(out), &cfgs); err != nil || len(cfgs) != 1 {
		t.Fatalf("podman image inspect: %v, %d images:\n%s", err, len(cfgs), out)
	}
	c := cfgs[0].Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root, numeric for runAsNonRoot)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/committer"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %q cmd %q, want [/usr/local/bin/committer] [serve]", c.Entrypoint, c.Cmd)
	}
	for _, p := range []string{"6882/tcp", "6883/tcp", "6884/tcp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed; exposed %v", p, c.ExposedPorts)
		}
	}
	if !slices.Contains(c.Env, "COMMITTER_DATA_DIR=/var/lib/committer") {
		t.Errorf("env %q lacks COMMITTER_DATA_DIR=/var/lib/committer", c.Env)
	}

	// The image's files: the binary, the CA roots, the data dir, and
	// nothing that would need a shell.
	archive := filepath.Join(t.TempDir(), "image.tar")
	run(t, root, podman, "save", "--format", "docker-archive", "-o", archive, tag)
	dir := t.TempDir()
	files := extractLayers(t, archive, dir)
	for _, want := range []string{"usr/local/bin/committer", "etc/ssl/certs/ca-certificates.crt", "var/lib/committer/"} {
		if !slices.Contains(files, want) {
			t.Errorf("image lacks %s; it holds %q", want, files)
		}
	}
	if slices.Contains(files, "bin/sh") {
		t.Errorf("image holds a shell: %q", files)
	}
	version := run(t, dir, filepath.Join(dir, "usr/local/bin/committer"), "version", "--json")
	var v struct{ Version, Revision string }
	if err := json.Unmarshal([]byte(version), &v); err != nil || v.Version == "" {
		t.Fatalf("the image's binary: version --json = %q (%v)", version, err)
	}
}

// extractLayers unpacks every layer of a docker-archive into dir and
// returns the paths it held.
func extractLayers(t *testing.T, archive, dir string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []string
	outer := tar.NewReader(f)
	for {
		h, err := outer.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", archive, err)
		}
		if !strings.HasSuffix(h.Name, ".tar") {
			continue
		}
		layer := tar.NewReader(outer)
		for {
			lh, err := layer.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("reading layer %s: %v", h.Name, err)
			}
			name := strings.TrimPrefix(lh.Name, "./")
			files = append(files, name)
			target := filepath.Join(dir, filepath.FromSlash(name))
			switch lh.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(target, 0o755); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
					t.Fatal(err)
				}
				out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(lh.Mode)&0o777)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(out, layer); err != nil {
					t.Fatal(err)
				}
				if err := out.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return files
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}
