package compose_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/hacommit/committer/deploy/deploytest"
	"github.com/hacommit/committer/internal/freeport"
)

// Loopback blocks of this package: one address per container.
const (
	plainBlock = 20
	tlsBlock   = 21
)

// probeTimeout bounds one run of a health check command; it is not an
// assertion, only a guard against a hung process.
const probeTimeout = 30 * time.Second

// hostPort matches a host:port item of an address or a list of them
// (COMMITTER_PEERS' id=host:port, COMMITTER_JOIN's host:port,...). An empty
// host is a listen address on every interface of the container.
var hostPort = regexp.MustCompile(`(^|[=,])([A-Za-z0-9.-]*):([0-9]+)`)

// container is how one service's container maps onto this machine: the
// platform's substitutions, and nothing else.
type container struct {
	// self is the loopback address standing for this container: its own
	// interfaces (an empty listen host, 127.0.0.1 inside it).
	self string
	// hosts maps other services' names to their loopback addresses, as the
	// project network's DNS would.
	hosts map[string]string
	// mounts maps a path in the container to the directory standing for
	// the volume mounted there.
	mounts map[string]string
}

func (c container) rewrite(v string) (string, error) {
	for target, dir := range c.mounts {
		if v == target || strings.HasPrefix(v, target+"/") {
			v = dir + strings.TrimPrefix(v, target)
		}
	}
	var bad error
	v = hostPort.ReplaceAllStringFunc(v, func(m string) string {
		sub := hostPort.FindStringSubmatch(m)
		host := sub[2]
		switch {
		case host == "" || host == "127.0.0.1" || host == "localhost":
			host = c.self
		case c.hosts[host] != "":
			host = c.hosts[host]
		default:
			bad = fmt.Errorf("%q names host %q, which is no service of the project", m, sub[2])
		}
		return sub[1] + net.JoinHostPort(host, sub[3])
	})
	return v, bad
}

// replica is one service made runnable: the node deploytest starts and its
// health check's command line.
type replica struct {
	node        deploytest.Node
	healthcheck []string
}

// replicas turns the project's replica services into processes: the
// image's entrypoint with the service's command, the image's environment
// under the service's, every address and path substituted, the database
// replaced by backend and the volumes by directories (certDir for the bind
// mount of certificates, a fresh directory for each named volume).
func replicas(t *testing.T, p *types.Project, block int, backend, certDir string) []replica {
	t.Helper()
	img, err := deploytest.ReadDockerfile(deploytest.ImageDockerfile())
	if err != nil {
		t.Fatal(err)
	}
	names := replicaNames()
	ips := deploytest.Loopback(t, block, len(names))
	hosts := map[string]string{}
	for i, n := range names {
		hosts[n] = ips[i]
	}
	var out []replica
	for i, name := range names {
		s := p.Services[name]
		c := container{self: ips[i], hosts: hosts, mounts: map[string]string{}}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeVolume:
				c.mounts[v.Target] = t.TempDir()
			case types.VolumeTypeBind:
				if certDir == "" {
					t.Fatalf("%s: bind mount %s without certificates to put there", name, v.Target)
				}
				c.mounts[v.Target] = certDir
			default:
				t.Fatalf("%s: volume %+v of a type this test does not map", name, v)
			}
		}

		entrypoint := []string(s.Entrypoint)
		if len(entrypoint) == 0 {
			entrypoint = img.Entrypoint
		}
		command := []string(s.Command)
		if len(command) == 0 {
			command = img.Cmd
		}
		argv := append(slices.Clone(entrypoint), command...)
		if len(argv) == 0 || argv[0] != binaryPath {
			t.Fatalf("%s runs %q, want %s", name, argv, binaryPath)
		}
		var args []string
		for _, a := range argv[1:] {
			r, err := c.rewrite(a)
			if err != nil {
				t.Fatalf("%s: command: %v", name, err)
			}
			args = append(args, r)
		}

		environ := maps.Clone(img.Env)
		maps.Copy(environ, serviceEnv(t, s))
		var envList []string
		for _, k := range slices.Sorted(maps.Keys(environ)) {
			v := environ[k]
			if k == "COMMITTER_BACKEND" {
				v = backend
			} else if v, err = c.rewrite(v); err != nil {
				t.Fatalf("%s: %s: %v", name, k, err)
			}
			envList = append(envList, k+"="+v)
		}

		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" || s.HealthCheck.Test[1] != binaryPath {
			t.Fatalf("%s: healthcheck %+v, want [CMD %s ...]", name, s.HealthCheck, binaryPath)
		}
		hc := []string{env.Binary}
		for _, a := range s.HealthCheck.Test[2:] {
			r, err := c.rewrite(a)
			if err != nil {
				t.Fatalf("%s: healthcheck: %v", name, err)
			}
			hc = append(hc, r)
		}

		out = append(out, replica{
			node: deploytest.Node{
				Name: name, Args: args, Env: envList,
				GRPCAddr: net.JoinHostPort(ips[i], "6882"), HTTPAddr: net.JoinHostPort(ips[i], "6884"),
			},
			healthcheck: hc,
		})
	}
	return out
}

// probeResult is one run of a health check command.
type probeResult struct {
	code           int
	stdout, stderr string
}

// runHealthcheck runs argv as docker runs a CMD health check: in the
// container's environment (so COMMITTER_* variables reach it as they would).
func runHealthcheck(t *testing.T, r replica, argv []string) probeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = r.node.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := probeResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("%s: running the health check %q: %v", r.node.Name, argv, err)
	}
	return res
}

// withAddr is argv with its --addr value replaced.
func withAddr(t *testing.T, argv []string, addr string) []string {
	t.Helper()
	i := slices.Index(argv, "--addr")
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("health check %q has no --addr", argv)
	}
	out := slices.Clone(argv)
	out[i+1] = addr
	return out
}

// serveAndProbe starts the replicas as compose would bring them up, one by
// one, and shows that each health check tells an unready replica from a
// ready one: the first replica alone can never elect (it needs two of the
// three voters), so its probe must fail with the 503 of /readyz; once all
// three run, the cluster elects, serves through every replica, and every
// probe passes. A probe of a port nothing serves must fail too.
func serveAndProbe(t *testing.T, reps []replica, tlsCfg *tls.Config) {
	c := deploytest.Start(t, env, []deploytest.Node{reps[0].node}, tlsCfg)
	res := runHealthcheck(t, reps[0], reps[0].healthcheck)
	if res.code == 0 || !strings.Contains(res.stderr, "answered 503") {
		t.Fatalf("%s alone (no quorum): health check exited %d, stderr %q; want a failure quoting /readyz's 503", reps[0].node.Name, res.code, res.stderr)
	}
	for _, r := range reps[1:] {
		c.Add(t, r.node)
	}
	leader := c.AwaitLeader(t)
	if !slices.Contains(replicaNames(), leader) {
		t.Fatalf("leader %q is none of the services %v", leader, replicaNames())
	}
	c.ProveCaS(t)

	for _, r := range reps {
		res := runHealthcheck(t, r, r.healthcheck)
		if want := r.node.HTTPAddr + "/readyz: "; res.code != 0 || !strings.HasPrefix(res.stdout, want) {
			t.Errorf("%s: health check %q exited %d, stdout %q, stderr %q; want 0 with %q...", r.node.Name, r.healthcheck, res.code, res.stdout, res.stderr, want)
		}
		host, _, _ := net.SplitHostPort(r.node.HTTPAddr)
		port, err := freeport.Port(host)
		if err != nil {
			t.Fatal(err)
		}
		nowhere := net.JoinHostPort(host, strconv.Itoa(port))
		res = runHealthcheck(t, r, withAddr(t, r.healthcheck, nowhere))
		if res.code == 0 || !strings.Contains(res.stderr, "probe failed") {
			t.Errorf("%s: health check against %s (nothing listens) exited %d, stderr %q; want a failure", r.node.Name, nowhere, res.code, res.stderr)
		}
	}
}

func TestComposeClusterServes(t *testing.T) {
	p := loadProject(t, nil, "compose.yaml")
	reps := replicas(t, p, plainBlock, env.Database(t), "")
	serveAndProbe(t, reps, nil)
}

func TestComposeTLSClusterServes(t *testing.T) {
	p := loadProject(t, nil, "compose.yaml", "compose.tls.yaml")
	certDir := t.TempDir()
	backend := env.Database(t)
	reps := replicas(t, p, tlsBlock, backend, certDir)
	var hosts []string
	for _, r := range reps {
		host, _, _ := net.SplitHostPort(r.node.GRPCAddr)
		hosts = append(hosts, host)
	}
	tlsCfg := deploytest.WriteGenCerts(t, certDir, hosts)
	serveAndProbe(t, reps, tlsCfg)
}
