package systemd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// systemd-analyze verify loads the unit as systemd would and reports what
// it would ignore or refuse (an unknown key, a bad value, a missing
// executable). It exits 0 after mere warnings, so passing means exit 0 and
// nothing said. The unit is verified alone and with the TLS drop-in, which
// verify reads from the .d directory beside the unit; the binary's path is
// replaced by the committer binary, since verify checks that it is
// executable.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("SKIPPED: no systemd-analyze on this machine (install Debian's systemd package to verify the unit)")
	}
	unitText, err := os.ReadFile(filepath.Join(systemdDir(), "committer.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unitText), "ExecStart="+binaryPath+" ") {
		t.Fatalf("committer.service has no ExecStart=%s ...", binaryPath)
	}
	dropIn, err := os.ReadFile(filepath.Join(systemdDir(), "committer.service.d", "tls.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			unitPath := filepath.Join(dir, "committer.service")
			text := strings.ReplaceAll(string(unitText), "ExecStart="+binaryPath+" ", "ExecStart="+env.Binary+" ")
			if err := os.WriteFile(unitPath, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.tls {
				if err := os.Mkdir(filepath.Join(dir, "committer.service.d"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "committer.service.d", "tls.conf"), dropIn, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", unitPath).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) != 0 {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
			}
		})
	}
}
