package compose_test

import (
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/hacommit/committer/deploy/deploytest"
)

var env *deploytest.Env

func TestMain(m *testing.M) { os.Exit(deploytest.RunMain(m, &env)) }

// binaryPath is where the image puts the binary (its entrypoint); the tests
// run env.Binary in its place.
const binaryPath = "/usr/local/bin/committer"

// The services the files must define: one database and three replicas.
const (
	postgresService = "postgres"
	replicaCount    = 3
)

func replicaNames() []string { return []string{"committer-1", "committer-2", "committer-3"} }

// tlsFiles are the files scripts/gen-certs.sh writes that a replica reads,
// by the variable that names each.
func tlsFiles() map[string]string {
	return map[string]string{
		"COMMITTER_TLS_CERT_FILE":      "server.crt",
		"COMMITTER_TLS_KEY_FILE":       "server.key",
		"COMMITTER_TLS_CLIENT_CA_FILE": "client-ca.crt",
		"COMMITTER_PEER_TLS_CERT_FILE": "peer.crt",
		"COMMITTER_PEER_TLS_KEY_FILE":  "peer.key",
		"COMMITTER_PEER_TLS_CA_FILE":   "peer-ca.crt",
	}
}

func composeDir() string { return filepath.Join(deploytest.DeployDir(), "compose") }

// loadProject loads files (relative to deploy/compose) as
// `docker compose -f ... -f ...` would, with environ as the only
// environment for interpolation: nothing leaks in from the test process.
func loadProject(t testing.TB, environ []string, files ...string) *types.Project {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(composeDir(), f))
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithWorkingDirectory(composeDir()), cli.WithEnv(environ))
	if err != nil {
		t.Fatalf("project options for %v: %v", files, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("the compose loader refuses %v: %v", files, err)
	}
	return p
}

// serviceEnv is a service's environment as a plain map; a variable without a
// value (taken from the shell running compose) fails t, since nothing here
// may depend on the operator's shell.
func serviceEnv(t testing.TB, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		if v == nil {
			t.Fatalf("service %s: %s has no value in the file", s.Name, k)
		}
		out[k] = *v
	}
	return out
}

// splitList splits a comma-separated flag value.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func wantHealthcheck(tlsOn bool) []string {
	hc := []string{"CMD", binaryPath, "probe", "--addr", "127.0.0.1:6884", "--path", "/readyz", "--timeout", "3s"}
	if tlsOn {
		hc = append(hc, "--cacert", "/certs/client-ca.crt")
	}
	return hc
}

func TestComposeFilesLoadAndHoldTheInvariants(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		tls   bool
	}{
		{"plain", []string{"compose.yaml"}, false},
		{"tls", []string{"compose.yaml", "compose.tls.yaml"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkInvariants(t, loadProject(t, nil, tc.files...), tc.tls)
		})
	}
}

func checkInvariants(t *testing.T, p *types.Project, tlsOn bool) {
	names := replicaNames()
	if got, want := p.ServiceNames(), append([]string{postgresService}, names...); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("services %v, want %v", got, want)
	}

	pg := p.Services[postgresService]
	pgEnv := serviceEnv(t, pg)
	if pg.Image != "postgres:15" {
		t.Errorf("postgres image %q, want postgres:15", pg.Image)
	}
	if want := []string{"CMD", "pg_isready", "-U", pgEnv["POSTGRES_USER"], "-d", pgEnv["POSTGRES_DB"]}; pg.HealthCheck == nil || !slices.Equal(pg.HealthCheck.Test, want) {
		t.Errorf("postgres healthcheck %+v, want test %q", pg.HealthCheck, want)
	}
	if !hasNamedVolume(p, pg, "/var/lib/postgresql/data") {
		t.Errorf("postgres volumes %+v: want a named volume on /var/lib/postgresql/data", pg.Volumes)
	}

	img, err := deploytest.ReadDockerfile(deploytest.ImageDockerfile())
	if err != nil {
		t.Fatal(err)
	}
	dataVolumes := map[string]string{}
	published := map[string]string{}
	for _, name := range names {
		s := p.Services[name]
		e := serviceEnv(t, s)
		if s.Hostname != name {
			t.Errorf("%s: hostname %q, want the service's name", name, s.Hostname)
		}
		if got := e["COMMITTER_ID"]; got != name {
			t.Errorf("%s: COMMITTER_ID %q, want %q", name, got, name)
		}
		if got, want := e["COMMITTER_GRPC_ADVERTISE"], name+":6882"; got != want {
			t.Errorf("%s: COMMITTER_GRPC_ADVERTISE %q, want %q", name, got, want)
		}
		if got, want := e["COMMITTER_RAFT_ADVERTISE"], name+":6883"; got != want {
			t.Errorf("%s: COMMITTER_RAFT_ADVERTISE %q, want %q", name, got, want)
		}
		if got := e["COMMITTER_BOOTSTRAP_EXPECT"]; got != "3" {
			t.Errorf("%s: COMMITTER_BOOTSTRAP_EXPECT %q, want 3 (the replicas listed)", name, got)
		}
		peers := map[string]string{}
		for _, pr := range splitList(e["COMMITTER_PEERS"]) {
			id, addr, _ := strings.Cut(pr, "=")
			peers[id] = addr
		}
		wantPeers := map[string]string{}
		var wantJoin []string
		for _, n := range names {
			wantPeers[n] = n + ":6883"
			wantJoin = append(wantJoin, n+":6882")
		}
		if !maps.Equal(peers, wantPeers) {
			t.Errorf("%s: COMMITTER_PEERS %q, want every replica by its service name: %v", name, e["COMMITTER_PEERS"], wantPeers)
		}
		if got := slices.Sorted(slices.Values(splitList(e["COMMITTER_JOIN"]))); !slices.Equal(got, wantJoin) {
			t.Errorf("%s: COMMITTER_JOIN %q, want %v", name, e["COMMITTER_JOIN"], wantJoin)
		}
		for k, want := range map[string]string{"COMMITTER_GRPC_ADDR": ":6882", "COMMITTER_RAFT_ADDR": ":6883", "COMMITTER_HTTP_ADDR": ":6884"} {
			if e[k] != want {
				t.Errorf("%s: %s %q, want %q", name, k, e[k], want)
			}
		}
		checkBackend(t, name, e["COMMITTER_BACKEND"], pgEnv)
		if dep, ok := s.DependsOn[postgresService]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends_on %+v, want postgres with condition service_healthy", name, s.DependsOn)
		}

		// The data dir is a volume of the replica's own.
		if e["COMMITTER_DATA_DIR"] != "/var/lib/committer" || img.Env["COMMITTER_DATA_DIR"] != e["COMMITTER_DATA_DIR"] {
			t.Errorf("%s: COMMITTER_DATA_DIR %q, image's %q: want both /var/lib/committer", name, e["COMMITTER_DATA_DIR"], img.Env["COMMITTER_DATA_DIR"])
		}
		var data []types.ServiceVolumeConfig
		for _, v := range s.Volumes {
			if v.Target == e["COMMITTER_DATA_DIR"] {
				data = append(data, v)
			}
		}
		if len(data) != 1 || data[0].Type != types.VolumeTypeVolume || !hasNamedVolume(p, s, e["COMMITTER_DATA_DIR"]) {
			t.Errorf("%s: volumes on the data dir %+v, want exactly one declared named volume", name, data)
		} else if other, dup := dataVolumes[data[0].Source]; dup {
			t.Errorf("%s and %s share the data volume %s", name, other, data[0].Source)
		} else {
			dataVolumes[data[0].Source] = name
		}

		// The health check is the probe of /readyz, on the HTTP port.
		if s.HealthCheck == nil {
			t.Errorf("%s: no healthcheck, want test %q", name, wantHealthcheck(tlsOn))
		} else if !slices.Equal(s.HealthCheck.Test, wantHealthcheck(tlsOn)) {
			t.Errorf("%s: healthcheck test %q, want %q", name, s.HealthCheck.Test, wantHealthcheck(tlsOn))
		} else if s.HealthCheck.Timeout == nil || time.Duration(*s.HealthCheck.Timeout) <= 3*time.Second {
			t.Errorf("%s: healthcheck timeout %v, want above the probe's own 3s", name, s.HealthCheck.Timeout)
		}

		// Stopping waits out the drain.
		drain, err := time.ParseDuration(e["COMMITTER_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Errorf("%s: COMMITTER_SHUTDOWN_TIMEOUT: %v", name, err)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= drain {
			t.Errorf("%s: stop_grace_period %v, want above the %v drain", name, s.StopGracePeriod, drain)
		}
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}

		// The gRPC port, and only it, is reachable from the host.
		if len(s.Ports) != 1 || s.Ports[0].Target != 6882 || s.Ports[0].Published == "" {
			t.Errorf("%s: ports %+v, want the gRPC port 6882 published once", name, s.Ports)
		} else if other, dup := published[s.Ports[0].Published]; dup {
			t.Errorf("%s and %s both publish host port %s", name, other, s.Ports[0].Published)
		} else {
			published[s.Ports[0].Published] = name
		}

		// The image is this repository's, run as it was built.
		if s.Build == nil || s.Build.Context != deploytest.RepositoryRoot() || s.Build.Dockerfile != "deploy/image/Dockerfile" {
			t.Errorf("%s: build %+v, want context %s with deploy/image/Dockerfile", name, s.Build, deploytest.RepositoryRoot())
		}
		if len(s.Entrypoint) != 0 || !slices.Equal(img.Entrypoint, []string{binaryPath}) || !slices.Equal(s.Command, types.ShellCommand{"serve"}) {
			t.Errorf("%s: entrypoint %q (image %q), command %q: want the image's %s with serve", name, s.Entrypoint, img.Entrypoint, s.Command, binaryPath)
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: read_only %v, cap_drop %v, security_opt %v: want a read-only root, no capabilities, no-new-privileges", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}

		checkTLS(t, s, e, tlsOn)
	}
	if len(dataVolumes) != replicaCount || len(published) != replicaCount {
		t.Errorf("distinct data volumes %v and published ports %v, want %d of each", dataVolumes, published, replicaCount)
	}
}

// checkBackend asserts that the replicas' database is the postgres
// service's, with its user, password and database.
func checkBackend(t *testing.T, name, backend string, pgEnv map[string]string) {
	u, err := url.Parse(backend)
	if err != nil {
		t.Errorf("%s: COMMITTER_BACKEND %q: %v", name, backend, err)
		return
	}
	pass, _ := u.User.Password()
	if u.Scheme != "postgres" || u.Host != net.JoinHostPort(postgresService, "5432") || u.User.Username() != pgEnv["POSTGRES_USER"] ||
		pass != pgEnv["POSTGRES_PASSWORD"] || strings.TrimPrefix(u.Path, "/") != pgEnv["POSTGRES_DB"] {
		t.Errorf("%s: COMMITTER_BACKEND %q does not name the postgres service's database (%v)", name, backend, pgEnv)
	}
}

func checkTLS(t *testing.T, s types.ServiceConfig, e map[string]string, tlsOn bool) {
	var binds []types.ServiceVolumeConfig
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			binds = append(binds, v)
		}
	}
	if !tlsOn {
		for k := range tlsFiles() {
			if _, ok := e[k]; ok {
				t.Errorf("%s: %s set without the TLS override", s.Name, k)
			}
		}
		if len(binds) != 0 {
			t.Errorf("%s: bind mounts %+v without the TLS override", s.Name, binds)
		}
		return
	}
	if len(binds) != 1 || binds[0].Source != filepath.Join(composeDir(), "certs") || binds[0].Target != "/certs" || !binds[0].ReadOnly {
		t.Errorf("%s: bind mounts %+v, want ./certs read-only on /certs", s.Name, binds)
	}
	for k, file := range tlsFiles() {
		if got, want := e[k], "/certs/"+file; got != want {
			t.Errorf("%s: %s %q, want %q (what scripts/gen-certs.sh writes)", s.Name, k, got, want)
		}
	}
	if e["COMMITTER_ADMIN_IDENTITIES"] != "admin" || !slices.Equal(splitList(e["COMMITTER_CLIENT_IDENTITIES"]), []string{"persist", "admin"}) {
		t.Errorf("%s: identities admin %q, client %q: want the client certificates the documented gen-certs.sh command makes", s.Name, e["COMMITTER_ADMIN_IDENTITIES"], e["COMMITTER_CLIENT_IDENTITIES"])
	}
}

// hasNamedVolume reports whether s mounts, on target, a volume that the
// project declares.
func hasNamedVolume(p *types.Project, s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeVolume {
			_, ok := p.Volumes[v.Source]
			return ok
		}
	}
	return false
}

// The database password is written once: setting it moves both the
// database's and the replicas' side.
func TestPostgresPasswordIsOneSetting(t *testing.T) {
	p := loadProject(t, []string{"POSTGRES_PASSWORD=s3cret"}, "compose.yaml")
	if got := serviceEnv(t, p.Services[postgresService])["POSTGRES_PASSWORD"]; got != "s3cret" {
		t.Errorf("postgres POSTGRES_PASSWORD %q, want s3cret", got)
	}
	for _, name := range replicaNames() {
		backend := serviceEnv(t, p.Services[name])["COMMITTER_BACKEND"]
		u, err := url.Parse(backend)
		if err != nil {
			t.Fatalf("%s: COMMITTER_BACKEND %q: %v", name, backend, err)
		}
		if pass, _ := u.User.Password(); pass != "s3cret" {
			t.Errorf("%s: COMMITTER_BACKEND %q, want the password s3cret", name, backend)
		}
	}
}
