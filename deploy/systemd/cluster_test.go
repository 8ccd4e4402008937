package systemd_test

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/deploy/deploytest"
)

var env *deploytest.Env

func TestMain(m *testing.M) { os.Exit(deploytest.RunMain(m, &env)) }

// loopbackBlock is this package's: 127.0.30.N stands for VM N.
const loopbackBlock = 30

// The env file is VM 1's; these lines, and only these, differ on VM N,
// which writes committer-N where VM 1 writes committer-1.
const firstVM = "committer-1"

func perVMKeys() []string {
	return []string{"COMMITTER_ID", "COMMITTER_GRPC_ADVERTISE", "COMMITTER_RAFT_ADVERTISE"}
}

// listKeys name every VM and are the same on each.
func listKeys() []string { return []string{"COMMITTER_PEERS", "COMMITTER_JOIN"} }

func vmName(i int) string { return fmt.Sprintf("committer-%d", i+1) }

// vmHost is the name VM i is known by, in the env file's domain.
func vmHost(i int) string { return vmName(i) + ".example.internal" }

// deriveVMs returns the environment of VMs 1 to n: the file's for VM 1, and
// for the others the file's with the per-VM lines rewritten.
func deriveVMs(base map[string]string, n int) []map[string]string {
	vms := make([]map[string]string, n)
	for i := range vms {
		vms[i] = maps.Clone(base)
		for _, k := range perVMKeys() {
			vms[i][k] = strings.ReplaceAll(base[k], firstVM, vmName(i))
		}
	}
	return vms
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// The env file makes plain what differs per VM: VM 1's name appears in its
// per-VM lines and in the lists of all replicas, nowhere else, so writing
// committer-N in those three lines is the whole change for VM N; and the
// three VMs so derived are exactly the bootstrap's peers and join list.
func TestEnvFileDiffersPerVMOnlyInItsFirstBlock(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"plain", envFileText(t)},
		{"tls", uncommented(envFileText(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := readEnvFile(t, tc.text)
			for k, v := range base {
				switch {
				case slices.Contains(perVMKeys(), k):
					if !strings.Contains(v, firstVM) {
						t.Errorf("per-VM %s=%q does not name %s", k, v, firstVM)
					}
				case slices.Contains(listKeys(), k):
				case strings.Contains(v, firstVM):
					t.Errorf("%s=%q names %s but is not a per-VM line: VM 2 would copy it unchanged", k, v, firstVM)
				}
			}
			vms := deriveVMs(base, 3)
			wantPeers := map[string]string{}
			var wantJoin []string
			for i, e := range vms {
				if e["COMMITTER_ID"] != vmName(i) {
					t.Errorf("VM %d: COMMITTER_ID %q, want %q", i+1, e["COMMITTER_ID"], vmName(i))
				}
				for key, port := range map[string]string{"COMMITTER_GRPC_ADVERTISE": "6882", "COMMITTER_RAFT_ADVERTISE": "6883"} {
					if want := net.JoinHostPort(vmHost(i), port); e[key] != want {
						t.Errorf("VM %d: %s %q, want %q", i+1, key, e[key], want)
					}
				}
				wantPeers[e["COMMITTER_ID"]] = e["COMMITTER_RAFT_ADVERTISE"]
				wantJoin = append(wantJoin, e["COMMITTER_GRPC_ADVERTISE"])
			}
			peers := map[string]string{}
			for _, p := range splitList(base["COMMITTER_PEERS"]) {
				id, addr, _ := strings.Cut(p, "=")
				peers[id] = addr
			}
			if !maps.Equal(peers, wantPeers) {
				t.Errorf("COMMITTER_PEERS %q, want the three VMs' ids and Raft addresses %v", base["COMMITTER_PEERS"], wantPeers)
			}
			if got := slices.Sorted(slices.Values(splitList(base["COMMITTER_JOIN"]))); !slices.Equal(got, wantJoin) {
				t.Errorf("COMMITTER_JOIN %q, want the three VMs' gRPC addresses %v", base["COMMITTER_JOIN"], wantJoin)
			}
			if base["COMMITTER_BOOTSTRAP_EXPECT"] != "3" {
				t.Errorf("COMMITTER_BOOTSTRAP_EXPECT %q, want 3", base["COMMITTER_BOOTSTRAP_EXPECT"])
			}
			if !strings.HasPrefix(base["COMMITTER_BACKEND"], "postgres://") {
				t.Errorf("COMMITTER_BACKEND %q, want a postgres:// URL", base["COMMITTER_BACKEND"])
			}
		})
	}
}

// hostPort matches a host:port item of an address or a list of them; an
// empty host is a listen address on every interface of the VM.
var hostPort = regexp.MustCompile(`(^|[=,])([A-Za-z0-9.-]*):([0-9]+)`)

// vm maps one VM onto this machine: its own address, the other VMs' names,
// and directories for the paths systemd would provide.
type vm struct {
	self  string
	hosts map[string]string
	paths map[string]string
}

func (m vm) rewrite(v string) (string, error) {
	for from, to := range m.paths {
		if v == from || strings.HasPrefix(v, from+"/") {
			v = to + strings.TrimPrefix(v, from)
		}
	}
	var bad error
	v = hostPort.ReplaceAllStringFunc(v, func(s string) string {
		sub := hostPort.FindStringSubmatch(s)
		host := sub[2]
		switch {
		case host == "":
			host = m.self
		case m.hosts[host] != "":
			host = m.hosts[host]
		default:
			bad = fmt.Errorf("%q names host %q, which is none of the VMs", s, sub[2])
		}
		return sub[1] + net.JoinHostPort(host, sub[3])
	})
	return v, bad
}

// vmNodes makes the unit's ExecStart, with each VM's environment, into
// processes. extraPaths(i) gives VM i's mapping of further paths (the
// credentials directory).
func vmNodes(t *testing.T, envText string, backend string, extraPaths func(i int) map[string]string) []deploytest.Node {
	t.Helper()
	u := readUnit(t, filepath.Join(systemdDir(), "committer.service"))
	vms := deriveVMs(readEnvFile(t, envText), 3)
	ips := deploytest.Loopback(t, loopbackBlock, len(vms))
	hosts := map[string]string{}
	for i := range vms {
		hosts[vmHost(i)] = ips[i]
	}
	stateDir := "/var/lib/" + u.one(t, "Service", "StateDirectory")
	var nodes []deploytest.Node
	for i, environ := range vms {
		// What systemd provides: the state directory, created for the
		// service's user, and the credentials directory.
		m := vm{self: ips[i], hosts: hosts, paths: map[string]string{stateDir: t.TempDir()}}
		if extraPaths != nil {
			maps.Copy(m.paths, extraPaths(i))
		}
		cmd, err := parseExec(u.one(t, "Service", "ExecStart"), environ)
		if err != nil {
			t.Fatalf("ExecStart: %v", err)
		}
		if cmd.Path != binaryPath {
			t.Fatalf("ExecStart runs %s, want %s", cmd.Path, binaryPath)
		}
		var args []string
		for _, a := range cmd.Argv[1:] {
			r, err := m.rewrite(a)
			if err != nil {
				t.Fatalf("VM %d: ExecStart: %v", i+1, err)
			}
			args = append(args, r)
		}
		var list []string
		for _, k := range slices.Sorted(maps.Keys(environ)) {
			v := environ[k]
			if k == "COMMITTER_BACKEND" {
				v = backend
			} else if v, err = m.rewrite(v); err != nil {
				t.Fatalf("VM %d: %s: %v", i+1, k, err)
			}
			list = append(list, k+"="+v)
		}
		nodes = append(nodes, deploytest.Node{
			Name: vmName(i), Args: args, Env: list,
			GRPCAddr: net.JoinHostPort(ips[i], "6882"), HTTPAddr: net.JoinHostPort(ips[i], "6884"),
		})
	}
	return nodes
}

func serve(t *testing.T, nodes []deploytest.Node, tlsCfg *tls.Config) {
	t.Helper()
	c := deploytest.Start(t, env, nodes, tlsCfg)
	leader := c.AwaitLeader(t)
	if !slices.ContainsFunc(nodes, func(n deploytest.Node) bool { return n.Name == leader }) {
		t.Fatalf("leader %q is none of the VMs", leader)
	}
	c.ProveCaS(t)
}

func TestThreeVMsServe(t *testing.T) {
	serve(t, vmNodes(t, envFileText(t), env.Database(t), nil), nil)
}

// With the env file's TLS lines switched on and the drop-in's credentials
// in place (copied, as systemd copies them, from the directory standing for
// /etc/committer/tls into each VM's own credentials directory), the VMs
// form a TLS cluster.
func TestThreeVMsServeWithTLS(t *testing.T) {
	sourceDir := t.TempDir()
	ips := deploytest.Loopback(t, loopbackBlock, 3)
	clientCfg := deploytest.WriteGenCerts(t, sourceDir, ips)
	creds := tlsCredentials(t)
	credDirs := make([]string, len(ips))
	for i := range credDirs {
		credDirs[i] = t.TempDir()
		for id, src := range creds {
			rel, ok := strings.CutPrefix(src, tlsSourceDir+"/")
			if !ok {
				t.Fatalf("credential %s comes from %s, outside %s", id, src, tlsSourceDir)
			}
			b, err := os.ReadFile(filepath.Join(sourceDir, rel))
			if err != nil {
				t.Fatalf("credential %s: %v", id, err)
			}
			if err := os.WriteFile(filepath.Join(credDirs[i], id), b, 0o400); err != nil {
				t.Fatal(err)
			}
		}
	}
	nodes := vmNodes(t, uncommented(envFileText(t)), env.Database(t), func(i int) map[string]string {
		return map[string]string{credentialsDir: credDirs[i]}
	})
	for i, n := range nodes {
		if !slices.Contains(n.Env, "COMMITTER_TLS_CERT_FILE="+filepath.Join(credDirs[i], "server.crt")) {
			t.Fatalf("%s: environment %q does not switch TLS on", n.Name, n.Env)
		}
	}
	serve(t, nodes, clientCfg)
}
