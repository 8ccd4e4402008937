package kubernetes

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/deploy/deploytest"
	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
)

// callTimeout bounds one call to a running replica.
const callTimeout = 30 * time.Second

// The StatefulSet's own command line forms a cluster that serves, in each
// overlay: three pods as the kubelet would start them, then a fourth, as a
// scale-up adds it, which joins through --join and serves too.
func TestStatefulSetFormsAClusterAndScalesUp(t *testing.T) {
	blocks := map[string]int{"plaintext": 10, "mtls": 11}
	for _, name := range Overlays() {
		t.Run(name, func(t *testing.T) {
			o := loadOverlay(t, name)
			runCluster(t, o, blocks[name])
		})
	}
}

// pods stands in for a StatefulSet's pods on loopback addresses.
type pods struct {
	o     *overlay
	hosts []string
	url   string
	// secretDirs maps a Secret volume's mount path to the directory its
	// files are written to; the same Secret is mounted in every pod.
	secretDirs map[string]string
	tls        *pki
}

func runCluster(t *testing.T, o *overlay, block int) {
	n := o.replicas()
	ps := &pods{o: o, hosts: deploytest.Loopback(t, block, n+1), url: env.Database(t), secretDirs: map[string]string{}}
	var clientTLS *tls.Config
	if o.name == "mtls" {
		ps.tls = newPKI(t, o, ps.hosts)
		for _, m := range o.container.VolumeMounts {
			if v, ok := o.volume(m.Name); ok && v.Secret != nil {
				ps.secretDirs[m.MountPath] = ps.tls.writeSecret(t, v)
			}
		}
		clientTLS = ps.tls.clientConfig(t, ps.identity(t, "client-identities"))
	}

	var nodes []deploytest.Node
	for i := range n {
		nodes = append(nodes, ps.node(t, i))
	}
	c := deploytest.Start(t, env, nodes, clientTLS)
	leader := c.AwaitLeader(t)
	if !slices.ContainsFunc(nodes, func(nd deploytest.Node) bool { return nd.Name == leader }) {
		t.Fatalf("leader %q is none of the pods", leader)
	}
	c.ProveCaS(t)
	for i := range n {
		ps.probe(t, i)
	}
	if ps.tls != nil {
		ps.tls.checkLoaded(t, c)
		ps.refusesOtherIdentities(t, c)
	}

	// Scale-up: the next ordinal, on the same template. It is not in
	// --peers, so it joins; AwaitLeader then waits for every node,
	// the new one included, to be ready under the same leader, which it
	// can only be once it has joined and caught up; and the leader's
	// autopilot must then promote it to a voter.
	added := c.Add(t, ps.node(t, n))
	leader = c.AwaitLeader(t)
	ps.probe(t, added)
	st := awaitVoter(t, c, leader, o.podName(n))
	var ids []string
	for _, m := range st.GetMembers() {
		t.Logf("member %s raft %s grpc %s %v leader %v", m.GetId(), m.GetRaftAddr(), m.GetGrpcAddr(), m.GetSuffrage(), m.GetLeader())
		ids = append(ids, m.GetId())
		if m.GetId() == o.podName(n) {
			wantRaft, wantGRPC := net.JoinHostPort(ps.hosts[n], strconv.Itoa(int(o.ports["raft"]))), net.JoinHostPort(ps.hosts[n], strconv.Itoa(int(o.ports["grpc"])))
			if m.GetRaftAddr() != wantRaft || m.GetGrpcAddr() != wantGRPC {
				t.Errorf("member %s advertises raft %s grpc %s; want %s and %s (its pod name's address)", m.GetId(), m.GetRaftAddr(), m.GetGrpcAddr(), wantRaft, wantGRPC)
			}
		}
	}
	slices.Sort(ids)
	var want []string
	for i := range n + 1 {
		want = append(want, o.podName(i))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("members after the scale-up %q; want %q", ids, want)
	}
	c.ProveCaS(t)
}

// promotionTimeout bounds the wait for a joined replica to become a voter:
// the leader promotes it after --autopilot-server-stabilization-time (10s)
// of health.
const promotionTimeout = 90 * time.Second

// awaitVoter waits until the leader lists id as a voter, and returns the
// leader's status then.
func awaitVoter(t *testing.T, c *deploytest.Cluster, leader, id string) *adminpb.StatusResponse {
	t.Helper()
	leaderIdx := slices.IndexFunc(c.Nodes(), func(nd deploytest.Node) bool { return nd.Name == leader })
	ctx, cancel := context.WithTimeout(context.Background(), promotionTimeout)
	defer cancel()
	var last string
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(cctx, t, leaderIdx)
		ccancel()
		if err == nil {
			for _, m := range st.GetMembers() {
				if m.GetId() == id && m.GetSuffrage() == adminpb.Suffrage_SUFFRAGE_VOTER {
					return st
				}
			}
			last = fmt.Sprint(st.GetMembers())
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s is not a voter by the leader %s within %v; last seen: %s", id, leader, promotionTimeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// node is pod i: the kubelet's command line and environment for it, with
// the pods' names resolved to their addresses, its listen addresses on its
// own, and its volumes in directories.
func (ps *pods) node(t *testing.T, i int) deploytest.Node {
	t.Helper()
	o := ps.o
	secrets := func(name, key string) (string, error) {
		if name == "committer-backend" && key == "url" {
			return ps.url, nil
		}
		return "", fmt.Errorf("no Secret %s with key %s in the test's namespace", name, key)
	}
	p := o.process(t, i, secrets)
	entrypoint, _ := dockerfile(t)
	if !slices.Equal(p.Command, entrypoint) {
		t.Fatalf("command %q is not the image's binary %q", p.Command, entrypoint)
	}
	addrs := map[string]string{}
	for j := range ps.hosts {
		addrs[o.podDNS(j)] = ps.hosts[j]
	}
	dirs := map[string]string{}
	for _, m := range o.container.VolumeMounts {
		if dir, ok := ps.secretDirs[m.MountPath]; ok {
			dirs[m.MountPath] = dir
		} else if o.claimTemplate(m.Name) {
			dirs[m.MountPath] = t.TempDir() // this pod's claim
		} else {
			t.Fatalf("mount %s of volume %s is neither a Secret nor a claim", m.MountPath, m.Name)
		}
	}
	placed := Placement{Addrs: addrs, Host: ps.hosts[i], Dirs: dirs}.Apply(p)
	for _, kv := range append(slices.Clone(placed.Args), placed.Env...) {
		if strings.Contains(kv, ".svc."+clusterDomain) {
			t.Fatalf("pod %d: %q names a cluster address no pod stands for", i, kv)
		}
	}
	return deploytest.Node{
		Name:     o.podName(i),
		Args:     placed.Args,
		Env:      placed.Env,
		GRPCAddr: net.JoinHostPort(ps.hosts[i], strconv.Itoa(int(o.ports["grpc"]))),
		HTTPAddr: net.JoinHostPort(ps.hosts[i], strconv.Itoa(int(o.ports["http"]))),
	}
}

// probe asks pod i's probe endpoints as the kubelet does: the probe's
// scheme, port and path, no client certificate, no verification of the
// server's, within the probe's timeout. Both must answer 200 on a ready
// replica.
func (ps *pods) probe(t *testing.T, i int) {
	t.Helper()
	for name, p := range probes(ps.o.container) {
		g := p.HTTPGet
		_, port, ok := ps.o.containerPort(g.Port)
		if !ok {
			t.Fatalf("%s probe port %s is no container port", name, g.Port.String())
		}
		scheme := strings.ToLower(string(cmp.Or(g.Scheme, corev1.URISchemeHTTP)))
		timeout := time.Duration(cmp.Or(p.TimeoutSeconds, 1)) * time.Second
		hc := &http.Client{Timeout: timeout, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the kubelet's HTTPS probe verifies nothing
		}}
		url := scheme + "://" + net.JoinHostPort(ps.hosts[i], strconv.Itoa(int(port))) + g.Path
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("pod %d %s probe %s: %v", i, name, url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("pod %d %s probe %s answered %d: %s", i, name, url, resp.StatusCode, body)
		}
	}
}

// identity is the first identity the pods' flag admits.
func (ps *pods) identity(t *testing.T, flag string) string {
	t.Helper()
	s, err := ParseServe(ps.o.process(t, 0, fakeSecrets))
	if err != nil {
		t.Fatal(err)
	}
	ids := splitList(s.Flags[flag])
	if len(ids) == 0 {
		t.Fatalf("--%s is empty", flag)
	}
	return ids[0]
}

// refusesOtherIdentities shows the identities the manifest sets are in
// force: a certificate of the client CA whose name is an admin identity but
// not a client identity may not call the consensus API.
func (ps *pods) refusesOtherIdentities(t *testing.T, c *deploytest.Cluster) {
	t.Helper()
	admin := ps.identity(t, "admin-identities")
	s, _ := ParseServe(ps.o.process(t, 0, fakeSecrets))
	if slices.Contains(splitList(s.Flags["client-identities"]), admin) {
		t.Fatalf("admin identity %s is also a client identity; the refusal cannot be shown with it", admin)
	}
	cl, err := client.New([]string{c.Nodes()[0].GRPCAddr}, client.WithoutLeaderRouting(), client.WithTLS(ps.tls.clientConfig(t, admin)), client.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	committed, err := cl.CompareAndSet(ctx, "kubernetes/not-a-client", backend.VersionedData{SeqNo: 0, Data: []byte("x")})
	if status.Code(err) != codes.PermissionDenied || committed {
		t.Fatalf("CaS as %s = committed %v, %v; want PermissionDenied", admin, committed, err)
	}
}

// pki plays cert-manager: one CA per CA Issuer, and for every Certificate
// the Secret it would write (tls.crt, tls.key, ca.crt), with the
// Certificate's names plus the loopback addresses that stand in for the
// pods (dialers verify the name dialled, here an address).
type pki struct {
	o     *overlay
	ips   []net.IP
	cas   map[string]*certgen.CA // by Issuer
	dir   string
	files map[string]tlsconfig.Files // by Secret
	// notAfter is when each Secret's certificate expires; each is distinct
	// so the replicas' expiry gauges show which file they loaded.
	notAfter map[string]time.Time
}

func newPKI(t *testing.T, o *overlay, hosts []string) *pki {
	p := &pki{o: o, cas: map[string]*certgen.CA{}, dir: t.TempDir(), files: map[string]tlsconfig.Files{}, notAfter: map[string]time.Time{}}
	for _, h := range hosts {
		p.ips = append(p.ips, net.ParseIP(h))
	}
	return p
}

func (p *pki) ca(t *testing.T, c *cmv1.Certificate) *certgen.CA {
	t.Helper()
	iss, caCert := p.o.caIssuer(t, c)
	if ca, ok := p.cas[iss.Name]; ok {
		return ca
	}
	ca, err := certgen.NewCA(caCert.Spec.CommonName)
	if err != nil {
		t.Fatal(err)
	}
	p.cas[iss.Name] = ca
	return ca
}

// secret writes, once, the Secret a Certificate declares, and returns its
// files.
func (p *pki) secret(t *testing.T, c *cmv1.Certificate) tlsconfig.Files {
	t.Helper()
	if f, ok := p.files[c.Spec.SecretName]; ok {
		return f
	}
	ca := p.ca(t, c)
	// Whole seconds, as a certificate records them; a day apart per Secret.
	notAfter := time.Now().Add(time.Duration(48+24*len(p.files)) * time.Hour).Truncate(time.Second)
	certPEM, keyPEM, err := ca.Issue(certgen.Leaf{
		CommonName: c.Spec.CommonName,
		DNSNames:   c.Spec.DNSNames,
		IPs:        p.ips,
		Server:     slices.Contains(c.Spec.Usages, cmv1.UsageServerAuth),
		Client:     slices.Contains(c.Spec.Usages, cmv1.UsageClientAuth),
		NotAfter:   notAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(p.dir, c.Spec.SecretName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := tlsconfig.Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), CA: filepath.Join(dir, "ca.crt")}
	for path, b := range map[string][]byte{f.Cert: certPEM, f.Key: keyPEM, f.CA: ca.PEM()} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.files[c.Spec.SecretName] = f
	p.notAfter[c.Spec.SecretName] = notAfter
	return f
}

// writeSecret writes the Secret volume v mounts, projected as the kubelet
// would (its items, or every key), and returns the directory.
func (p *pki) writeSecret(t *testing.T, v corev1.Volume) string {
	t.Helper()
	c, ok := p.o.certificateOfSecret(v.Secret.SecretName)
	if !ok {
		t.Fatalf("volume %s mounts Secret %s, which no Certificate writes", v.Name, v.Secret.SecretName)
	}
	f := p.secret(t, c)
	if len(v.Secret.Items) == 0 {
		return filepath.Dir(f.Cert)
	}
	dir := filepath.Join(p.dir, "volume-"+v.Name)
	byKey := map[string]string{"tls.crt": f.Cert, "tls.key": f.Key, "ca.crt": f.CA}
	for _, it := range v.Secret.Items {
		b, err := os.ReadFile(byKey[it.Key])
		if err != nil {
			t.Fatalf("volume %s item %s: %v", v.Name, it.Key, err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, it.Path)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, it.Path), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// clientConfig is a client holding the Certificate whose common name is
// id, verifying the replicas with the CA of the client-facing certificate.
func (p *pki) clientConfig(t *testing.T, id string) *tls.Config {
	t.Helper()
	c := p.o.clientCertificate(id)
	if c == nil {
		t.Fatalf("no Certificate has the common name %s", id)
	}
	server, ok := p.o.certificateOfSecret("committer-tls")
	if !ok {
		t.Fatal("no Certificate writes committer-tls")
	}
	f := p.secret(t, c)
	f.CA = p.secret(t, server).CA
	cfg, err := tlsconfig.Client(f, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkLoaded shows every replica serves the certificates from the
// mounted Secrets: its expiry gauges are exactly those files' NotAfter.
func (p *pki) checkLoaded(t *testing.T, c *deploytest.Cluster) {
	t.Helper()
	want := map[string]int64{
		"client": p.notAfter["committer-tls"].Unix(),
		"peer":   p.notAfter["committer-peer-tls"].Unix(),
	}
	for i, nd := range c.Nodes() {
		fam, ok := c.MetricFamilies(t, i)["committer_tls_certificate_expiry_timestamp_seconds"]
		if !ok {
			t.Fatalf("%s has no certificate expiry gauge", nd.Name)
		}
		got := map[string]int64{}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cert" {
					got[l.GetValue()] = int64(m.GetGauge().GetValue())
				}
			}
		}
		if len(got) != len(want) || got["client"] != want["client"] || got["peer"] != want["peer"] {
			t.Errorf("%s certificate expiry %v; want %v (the mounted Secrets' certificates)", nd.Name, got, want)
		}
	}
}
