package observability_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/deploy/deploytest"
	"github.com/hacommit/committer/deploy/observability"
	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/internal/tlsconfig/certgen"
	"github.com/hacommit/committer/metrics"
	"github.com/hacommit/committer/rpc/client"
)

// loopbackBlock is this package's block of loopback addresses.
const loopbackBlock = 40

// seriesTimeout bounds the wait for series that appear on their own
// schedule (the leader's autopilot assessment, a failed heartbeat).
const seriesTimeout = 90 * time.Second

// eventOnly are metrics whose series only an event creates that a healthy
// server cannot be made to produce from outside, with the event that
// creates them. They are checked against the server's metrics package
// instead, by causing the event on a private registry.
var eventOnly = map[string]func(*metrics.Metrics){
	// A handler panic: the server has no way to provoke one, which is the
	// point of it.
	"committer_handler_panics_total": func(m *metrics.Metrics) {
		m.PanicRecovered("/materialize.persist.ProtoPersistConsensus/Head")
	},
}

// tlsCluster is the certificates of the three replicas and of three
// clients: admin, whom --client-identities allows; intruder, whom it does
// not; and prometheus, the scraper, also not in it, since /metrics only
// asks for a certificate the client CA signed.
type tlsCluster struct {
	clientCA   string
	server     tlsconfig.Files
	peers      []tlsconfig.Files
	admin      tlsconfig.Files
	intruder   tlsconfig.Files
	prometheus tlsconfig.Files
}

func issue(t *testing.T, hosts []string) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	cc, pc, err := certgen.NewCAPair("observability")
	if err != nil {
		t.Fatal(err)
	}
	c := &tlsCluster{clientCA: filepath.Join(dir, "client-ca.crt")}
	if err := cc.WriteCA(c.clientCA); err != nil {
		t.Fatal(err)
	}
	var ips []net.IP
	for _, h := range hosts {
		ips = append(ips, net.ParseIP(h))
	}
	if c.server, err = cc.WriteLeaf(dir, "server", certgen.Leaf{CommonName: "committer", IPs: ips, Server: true}); err != nil {
		t.Fatal(err)
	}
	for i, h := range hosts {
		f, err := pc.WriteLeaf(dir, fmt.Sprintf("peer-%d", i), certgen.Leaf{CommonName: fmt.Sprintf("committer-%d", i), IPs: []net.IP{net.ParseIP(h)}, Server: true, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		c.peers = append(c.peers, f)
	}
	if c.admin, err = cc.WriteLeaf(dir, "admin", certgen.Leaf{CommonName: "admin", Client: true}); err != nil {
		t.Fatal(err)
	}
	if c.intruder, err = cc.WriteLeaf(dir, "intruder", certgen.Leaf{CommonName: "intruder", Client: true}); err != nil {
		t.Fatal(err)
	}
	if c.prometheus, err = cc.WriteLeaf(dir, "prometheus", certgen.Leaf{CommonName: "prometheus", Client: true}); err != nil {
		t.Fatal(err)
	}
	return c
}

// nodes are the three replicas as a manifest runs them: the bootstrap
// flags, advertised and listen addresses on the fixed ports, mutual TLS
// with only "admin" allowed, the database from the environment.
func nodes(t *testing.T, hosts []string, certs *tlsCluster, url string) []deploytest.Node {
	t.Helper()
	var peers []string
	for i, h := range hosts {
		peers = append(peers, fmt.Sprintf("committer-%d=%s", i, net.JoinHostPort(h, "6883")))
	}
	var out []deploytest.Node
	for i, h := range hosts {
		id := fmt.Sprintf("committer-%d", i)
		out = append(out, deploytest.Node{
			Name: id,
			Args: []string{"serve", "--id=" + id, "--bootstrap-expect=3", "--peers=" + strings.Join(peers, ","),
				"--grpc-addr=" + h + ":6882", "--raft-addr=" + h + ":6883", "--http-addr=" + h + ":6884",
				"--grpc-advertise=" + h + ":6882", "--raft-advertise=" + h + ":6883",
				"--data-dir=" + t.TempDir(),
				"--tls-cert-file=" + certs.server.Cert, "--tls-key-file=" + certs.server.Key, "--tls-client-ca-file=" + certs.clientCA,
				"--peer-tls-cert-file=" + certs.peers[i].Cert, "--peer-tls-key-file=" + certs.peers[i].Key, "--peer-tls-ca-file=" + certs.peers[i].CA,
				"--admin-identities=admin", "--client-identities=admin"},
			Env:      []string{"COMMITTER_BACKEND=" + url, "COMMITTER_LOG_FORMAT=text"},
			GRPCAddr: h + ":6882", HTTPAddr: h + ":6884",
		})
	}
	return out
}

func newClient(t *testing.T, cfg tlsconfig.Files, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	tc, err := tlsconfig.Client(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New([]string{addr}, append([]client.Option{client.WithTLS(tc)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// drive makes every operation's series move through cl: two versions of a
// fresh shard, a lost CaS, a multi-CaS, Head, Scan, Truncate and ListKeys,
// each result asserted.
func drive(ctx context.Context, t *testing.T, cl *client.Client, via string) {
	t.Helper()
	shard := fmt.Sprintf("observability/%s/%d", via, time.Now().UnixNano())
	for seq := uint64(0); seq < 2; seq++ {
		ok, err := cl.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: seq, Data: []byte(fmt.Sprintf("v%d", seq))})
		if err != nil || !ok {
			t.Fatalf("CaS %s at %d via %s: committed %v, %v; want committed", shard, seq, via, ok, err)
		}
	}
	if ok, err := cl.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: 1, Data: []byte("late")}); err != nil || ok {
		t.Fatalf("CaS %s at 1 again via %s: committed %v, %v; want a mismatch", shard, via, ok, err)
	}
	multi, err := cl.CompareAndSetMulti(ctx, []backend.CASOp{
		{Shard: shard + "/a", New: backend.VersionedData{SeqNo: 0, Data: []byte("a")}},
		{Shard: shard + "/b", New: backend.VersionedData{SeqNo: 0, Data: []byte("b")}},
	})
	if err != nil || !slices.Equal(multi, []bool{true, true}) {
		t.Fatalf("multi-CaS via %s: %v, %v; want both committed", via, multi, err)
	}
	head, err := cl.Head(ctx, shard)
	if err != nil || head == nil || head.SeqNo != 1 || string(head.Data) != "v1" {
		t.Fatalf("Head %s via %s: %+v, %v; want seqno 1 v1", shard, via, head, err)
	}
	scan, err := cl.Scan(ctx, shard, 0, 10)
	if err != nil || len(scan) != 2 || scan[0].SeqNo != 0 || scan[1].SeqNo != 1 {
		t.Fatalf("Scan %s via %s: %+v, %v; want seqnos 0 and 1", shard, via, scan, err)
	}
	if deleted, err := cl.Truncate(ctx, shard, 1); err != nil || deleted != 1 {
		t.Fatalf("Truncate %s below 1 via %s: %d, %v; want 1 deleted", shard, via, deleted, err)
	}
	keys, err := cl.ListKeys(ctx)
	if err != nil || !slices.Contains(keys, shard) || !slices.Contains(keys, shard+"/b") {
		t.Fatalf("ListKeys via %s: %d keys, %v; want %s and %s/b among them", via, len(keys), err, shard, shard)
	}
}

// awaitFamilies scrapes node i until it exposes every name, and returns
// that scrape.
func awaitFamilies(t *testing.T, c *deploytest.Cluster, i int, names ...string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(seriesTimeout)
	for {
		fams := c.MetricFamilies(t, i)
		missing := observability.Missing(names, fams, nil)
		if len(missing) == 0 {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never exported %q within %v", c.Nodes()[i].Name, missing, seriesTimeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// namedMetrics are the metrics the rule file's alerts and recording rules
// and the dashboard's queries name, and the recording rules' own names.
func namedMetrics(t *testing.T) (names, recorded []string) {
	t.Helper()
	p := observability.NewParser()
	for _, g := range parseRuleFile(t).Groups {
		for _, r := range g.Rules {
			ns, err := observability.MetricNames(p, r.Expr)
			if err != nil {
				t.Fatalf("%s%s: %v", r.Alert, r.Record, err)
			}
			names = append(names, ns...)
			if r.Record != "" {
				recorded = append(recorded, r.Record)
			}
		}
	}
	dash, usedRecorded := dashboardMetrics(t, loadDashboard(t), recordingRules(t))
	names = append(names, dash...)
	for _, n := range dash {
		// A name shaped like a recording rule that the rule file does not
		// define would be exempt from nothing: it is looked for in the
		// scrape and reported missing there, but say why.
		if strings.Contains(n, ":") && !slices.Contains(usedRecorded, n) {
			t.Errorf("the dashboard reads %s, which no recording rule of %s defines", n, rulesFile)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), recorded
}

// TestEveryNamedMetricIsExported runs three replicas with mutual TLS,
// scraped with a certificate outside --client-identities, drives every
// operation through the leader and through a follower, has a
// client refused, waits for the leader's autopilot, kills a follower so the
// leader's heartbeats fail, and checks that every metric an alert, a
// recording rule or a dashboard panel names is in the union of the live
// scrapes.
func TestEveryNamedMetricIsExported(t *testing.T) {
	names, recorded := namedMetrics(t)
	url := env.Database(t)
	hosts := deploytest.Loopback(t, loopbackBlock, 3)
	certs := issue(t, hosts)
	// The harness probes, asks for status (open to every client) and
	// scrapes as the scraper would.
	scraperTLS, err := tlsconfig.Client(certs.prometheus, "")
	if err != nil {
		t.Fatal(err)
	}
	c := deploytest.Start(t, env, nodes(t, hosts, certs, url), scraperTLS)
	leaderID := c.AwaitLeader(t)
	leader := slices.IndexFunc(c.Nodes(), func(n deploytest.Node) bool { return n.Name == leaderID })
	if leader < 0 {
		t.Fatalf("leader %q is none of the nodes", leaderID)
	}
	follower := (leader + 1) % 3

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	drive(ctx, t, newClient(t, certs.admin, c.Nodes()[leader].GRPCAddr), "leader")
	drive(ctx, t, newClient(t, certs.admin, c.Nodes()[follower].GRPCAddr, client.WithoutLeaderRouting()), "follower")

	// A client whose identity is not in --client-identities is refused
	// before its call runs, which creates committer_refused_calls_total.
	intruder := newClient(t, certs.intruder, c.Nodes()[follower].GRPCAddr, client.WithoutLeaderRouting(), client.WithMaxAttempts(1))
	if _, err := intruder.Head(ctx, "observability/intruder"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Head as intruder = %v; want PermissionDenied", err)
	}

	scraped := map[string]*dto.MetricFamily{}
	for i := range c.Nodes() {
		fams := c.MetricFamilies(t, i)
		if i == leader {
			// The leader's autopilot publishes its first assessment on its
			// own schedule; the commit time is Raft's own summary.
			fams = awaitFamilies(t, c, i, "committer_autopilot_healthy", "committer_autopilot_failure_tolerance",
				"committer_autopilot_member_healthy", "committer_raft_commitTime")
		}
		if i == follower {
			if got := fams["committer_refused_calls_total"]; got == nil || len(got.GetMetric()) != 1 ||
				labelValue(got.GetMetric()[0], "reason") != "permission_denied" || got.GetMetric()[0].GetCounter().GetValue() != 1 {
				t.Errorf("%s: committer_refused_calls_total = %v; want one permission_denied refusal", c.Nodes()[i].Name, got)
			}
		}
		maps.Copy(scraped, fams)
	}
	// A lost follower: the leader's heartbeats to it fail, counted per peer.
	c.Kill(t, follower)
	maps.Copy(scraped, awaitFamilies(t, c, leader, "committer_raft_heartbeat_failures_total"))

	for name := range eventOnly {
		if _, ok := scraped[name]; ok {
			t.Errorf("%s is in the live scrape now: drop it from eventOnly", name)
		}
	}
	exempt := append(slices.Clone(recorded), slices.Collect(maps.Keys(eventOnly))...)
	for _, name := range observability.Missing(names, scraped, exempt) {
		t.Errorf("%s is named by the rules or the dashboard but no replica exports it", name)
	}
	if t.Failed() {
		t.Logf("the replicas export: %q", slices.Sorted(maps.Keys(scraped)))
	}
}

// TestEventOnlyMetricsAreTheServers checks the metrics a live server cannot
// be made to export against the server's own metrics package: causing
// their event on a private registry must make them appear.
func TestEventOnlyMetricsAreTheServers(t *testing.T) {
	names, _ := namedMetrics(t)
	for name, event := range eventOnly {
		if !slices.Contains(names, name) {
			t.Errorf("%s is exempt from the live check but nothing names it: drop it from eventOnly", name)
		}
		reg := prometheus.NewRegistry()
		m := metrics.New(reg)
		before := gather(t, reg)
		if observability.Exposed(name, before) {
			t.Errorf("%s is exported before its event: it needs no exemption", name)
		}
		event(m)
		if after := gather(t, reg); !observability.Exposed(name, after) {
			t.Errorf("%s is not exported after its event; the metrics package exports %q", name, slices.Sorted(maps.Keys(after)))
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
