package systemd_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/hacommit/committer/deploy/deploytest"
)

// Where the unit expects its pieces on a VM.
const (
	binaryPath     = "/usr/local/bin/committer"
	installEnvFile = "/etc/committer/committer.env"
	credentialsDir = "/run/credentials/committer.service"
	tlsSourceDir   = "/etc/committer/tls"
)

func systemdDir() string { return filepath.Join(deploytest.DeployDir(), "systemd") }

// unitFile is a parsed unit: section -> key -> every assignment, in order.
type unitFile map[string]map[string][]string

func readUnit(t testing.TB, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s does not parse as a unit: %v", path, err)
	}
	u := unitFile{}
	for _, o := range opts {
		if u[o.Section] == nil {
			u[o.Section] = map[string][]string{}
		}
		u[o.Section][o.Name] = append(u[o.Section][o.Name], o.Value)
	}
	return u
}

// one is the single assignment of section.key; anything else fails t.
func (u unitFile) one(t testing.TB, section, key string) string {
	t.Helper()
	vs, ok := u[section][key]
	if !ok || len(vs) != 1 {
		t.Fatalf("[%s] %s is assigned %d times (%q), want once", section, key, len(vs), vs)
	}
	return vs[0]
}

// words is every space-separated word of every assignment of section.key
// (for list settings such as After=).
func (u unitFile) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func readEnvFile(t testing.TB, text string) map[string]string {
	t.Helper()
	vars, err := parseEnvFile(text)
	if err != nil {
		t.Fatalf("committer.env: %v", err)
	}
	return envMap(vars)
}

func envFileText(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(systemdDir(), "committer.env"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// commentedSetting is a commented-out assignment (no space after the #):
// a setting the file offers to switch on, as opposed to prose.
var commentedSetting = regexp.MustCompile(`(?m)^#(COMMITTER_[A-Z0-9_]+=.*)$`)

// uncommented is the env file with its commented-out settings switched on,
// as an operator enabling TLS does.
func uncommented(text string) string { return commentedSetting.ReplaceAllString(text, "$1") }

func TestUnitHardeningAndStop(t *testing.T) {
	u := readUnit(t, filepath.Join(systemdDir(), "committer.service"))
	for key, want := range map[string]string{
		"Type":                    "exec",
		"ExecStart":               binaryPath + " serve",
		"EnvironmentFile":         installEnvFile,
		"DynamicUser":             "yes",
		"StateDirectory":          "committer",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"NoNewPrivileges":         "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"SystemCallFilter":        "@system-service",
		"SystemCallErrorNumber":   "EPERM",
		"SystemCallArchitectures": "native",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
		"LimitNOFILE":             "65536",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if got := slices.Sorted(slices.Values(u.words("Service", "RestrictAddressFamilies"))); !slices.Equal(got, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
		t.Errorf("RestrictAddressFamilies %q, want exactly AF_INET AF_INET6 AF_UNIX", got)
	}
	// A fixed user, or a path made writable, would undo DynamicUser and
	// ProtectSystem=strict.
	for _, key := range []string{"User", "Group", "ReadWritePaths", "SupplementaryGroups", "PermissionsStartOnly"} {
		if vs, ok := u["Service"][key]; ok {
			t.Errorf("[Service] %s=%q is set; the replica needs its state directory only", key, vs)
		}
	}
	for _, key := range []string{"Wants", "After"} {
		if !slices.Contains(u.words("Unit", key), "network-online.target") {
			t.Errorf("[Unit] %s=%q lacks network-online.target", key, u["Unit"][key])
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q, want multi-user.target", got)
	}

	// The environment file is the one beside the unit; its data dir is the
	// state directory, and the stop timeout outlasts its drain.
	if filepath.Base(installEnvFile) != "committer.env" {
		t.Errorf("EnvironmentFile %s is not this directory's committer.env", installEnvFile)
	}
	e := readEnvFile(t, envFileText(t))
	if got, want := e["COMMITTER_DATA_DIR"], "/var/lib/"+u.one(t, "Service", "StateDirectory"); got != want {
		t.Errorf("COMMITTER_DATA_DIR %q, want %q (StateDirectory)", got, want)
	}
	drain, err := time.ParseDuration(e["COMMITTER_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("COMMITTER_SHUTDOWN_TIMEOUT: %v", err)
	}
	stop, err := parseTimespan(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if stop <= drain {
		t.Errorf("TimeoutStopSec %v, want above COMMITTER_SHUTDOWN_TIMEOUT %v", stop, drain)
	}
	cmd, err := parseExec(u.one(t, "Service", "ExecStart"), e)
	if err != nil || cmd.Path != binaryPath || !slices.Equal(cmd.Argv, []string{binaryPath, "serve"}) || cmd.IgnoreFailure {
		t.Errorf("ExecStart runs %+v (%v), want %s serve", cmd, err, binaryPath)
	}
}

// tlsCredentials are the drop-in's LoadCredential= lines: id -> source path.
func tlsCredentials(t testing.TB) map[string]string {
	t.Helper()
	u := readUnit(t, filepath.Join(systemdDir(), "committer.service.d", "tls.conf"))
	creds := map[string]string{}
	for section, keys := range u {
		for key, vs := range keys {
			if section != "Service" || key != "LoadCredential" {
				t.Errorf("tls.conf sets [%s] %s=%q; it should only load credentials", section, key, vs)
			}
		}
	}
	for _, v := range u["Service"]["LoadCredential"] {
		id, path, ok := strings.Cut(v, ":")
		if !ok {
			t.Fatalf("LoadCredential=%q has no path", v)
		}
		if _, dup := creds[id]; dup {
			t.Fatalf("credential %s is loaded twice", id)
		}
		creds[id] = path
	}
	return creds
}

// The TLS drop-in and the env file's TLS lines name the same files: every
// variable switched on names a credential that the drop-in loads from
// /etc/committer/tls, and every credential loaded is used. Without the
// uncommenting, TLS stays off.
func TestTLSDropInLoadsWhatTheEnvFileNames(t *testing.T) {
	creds := tlsCredentials(t)
	wantIDs := []string{"client-ca.crt", "peer-ca.crt", "peer.crt", "peer.key", "server.crt", "server.key"}
	if got := slices.Sorted(maps.Keys(creds)); !slices.Equal(got, wantIDs) {
		t.Fatalf("credentials %q, want the files scripts/gen-certs.sh writes: %q", got, wantIDs)
	}
	for id, path := range creds {
		if path != tlsSourceDir+"/"+id {
			t.Errorf("credential %s comes from %s, want %s/%s", id, path, tlsSourceDir, id)
		}
	}

	plain := readEnvFile(t, envFileText(t))
	on := readEnvFile(t, uncommented(envFileText(t)))
	used := map[string]bool{}
	for _, key := range []string{
		"COMMITTER_TLS_CERT_FILE", "COMMITTER_TLS_KEY_FILE", "COMMITTER_TLS_CLIENT_CA_FILE",
		"COMMITTER_PEER_TLS_CERT_FILE", "COMMITTER_PEER_TLS_KEY_FILE", "COMMITTER_PEER_TLS_CA_FILE",
	} {
		if v, ok := plain[key]; ok {
			t.Errorf("%s=%q is on in the plaintext file", key, v)
		}
		id, ok := strings.CutPrefix(on[key], credentialsDir+"/")
		if _, loaded := creds[id]; !ok || !loaded {
			t.Errorf("%s=%q, want a credential of the drop-in under %s", key, on[key], credentialsDir)
		}
		used[id] = true
	}
	if len(used) != len(creds) {
		t.Errorf("the env file uses credentials %v of %v", used, creds)
	}
}
