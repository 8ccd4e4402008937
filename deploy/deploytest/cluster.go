package deploytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/cluster/replicaproc"
	"github.com/hacommit/committer/rpc/adminpb"
	"github.com/hacommit/committer/rpc/client"
	"github.com/hacommit/committer/rpc/wire"
)

// Waits. A cluster of real processes on a shared 2-core machine elects in
// seconds; the bounds are generous so that only a cluster that does not
// form fails.
const (
	startTimeout  = time.Minute
	leaderTimeout = 90 * time.Second
	callTimeout   = 30 * time.Second
	logTailBytes  = 8 << 10
)

// Node is one replica as a manifest describes it, after the platform's
// substitutions.
type Node struct {
	// Name labels the node's log and failure messages.
	Name string
	// Args is the command line after the program's name, e.g.
	// ["serve", "--id=committer-0", ...].
	Args []string
	// Env is the process's environment, KEY=VALUE; besides it the process
	// gets only PATH, HOME and TMPDIR, so nothing configures it that the
	// manifest does not.
	Env []string
	// GRPCAddr is where clients dial; HTTPAddr where /healthz, /readyz and
	// /metrics answer.
	GRPCAddr string
	HTTPAddr string
}

// Cluster is a set of running nodes, killed when the test ends.
type Cluster struct {
	env    *Env
	tls    *tls.Config
	logDir string

	mu       sync.Mutex
	nodes    []Node
	replicas []*replicaproc.Replica
	crashes  []string
}

// Start starts every node as a process and waits until each answers
// /healthz. tlsCfg is nil for plaintext; otherwise it carries the client
// certificate and roots for gRPC and the HTTPS probes.
func Start(t testing.TB, env *Env, nodes []Node, tlsCfg *tls.Config) *Cluster {
	t.Helper()
	c := &Cluster{env: env, tls: tlsCfg, logDir: t.TempDir()}
	t.Cleanup(func() { c.stop(t) })
	for _, n := range nodes {
		c.spawn(t, n)
	}
	for i := range nodes {
		c.awaitHealthz(t, i)
	}
	return c
}

// Add starts one more node (a scale-up) and waits for its /healthz; it
// returns the node's index.
func (c *Cluster) Add(t testing.TB, n Node) int {
	t.Helper()
	i := c.spawn(t, n)
	c.awaitHealthz(t, i)
	return i
}

// Nodes returns the nodes in start order.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

func (c *Cluster) spawn(t testing.TB, n Node) int {
	t.Helper()
	if n.Name == "" || n.GRPCAddr == "" || n.HTTPAddr == "" {
		t.Fatalf("deploytest: node %+v needs a name, a gRPC and an HTTP address", n)
	}
	httpClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: c.tls}}
	r := replicaproc.New(replicaproc.Options{
		Binary:    c.env.Binary,
		Argv:      n.Args,
		ProbeAddr: n.HTTPAddr,
		LogPath:   filepath.Join(c.logDir, n.Name+".log"),
		Env:       processEnv(n.Env),
		HTTP:      httpClient,
		HTTPS:     c.tls != nil,
		OnCrash: func(err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.crashes = append(c.crashes, fmt.Sprintf("%s exited: %v", n.Name, err))
		},
	})
	if err := r.Spawn(); err != nil {
		t.Fatalf("deploytest: starting %s: %v", n.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, n)
	c.replicas = append(c.replicas, r)
	return len(c.nodes) - 1
}

// processEnv is env plus what any process needs to run at all.
func processEnv(env []string) []string {
	out := slices.Clone(env)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func (c *Cluster) replica(i int) (*replicaproc.Replica, Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[i], c.nodes[i]
}

func (c *Cluster) awaitHealthz(t testing.TB, i int) {
	t.Helper()
	r, n := c.replica(i)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if err := r.Healthz(ctx); err == nil {
			return
		}
		if !r.Running() {
			t.Fatalf("deploytest: %s exited before serving /healthz (%v):\n%s", n.Name, r.ExitErr(), r.LogTail(logTailBytes))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("deploytest: %s never answered /healthz on %s:\n%s", n.Name, n.HTTPAddr, r.LogTail(logTailBytes))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop kills every node, printing their logs first when the test failed.
func (c *Cluster) stop(t testing.TB) {
	c.mu.Lock()
	replicas, nodes, crashes := slices.Clone(c.replicas), slices.Clone(c.nodes), slices.Clone(c.crashes)
	c.mu.Unlock()
	if t.Failed() {
		for _, cr := range crashes {
			t.Logf("deploytest: %s", cr)
		}
		for i, r := range replicas {
			t.Logf("deploytest: log of %s (%s):\n%s", nodes[i].Name, r.LogPath(), r.LogTail(logTailBytes))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for i, r := range replicas {
		if !r.Running() {
			continue
		}
		if err := r.Kill(ctx); err != nil {
			t.Errorf("deploytest: killing %s: %v", nodes[i].Name, err)
		}
	}
}

// Kill SIGKILLs node i (a lost pod or VM).
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	r, n := c.replica(i)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := r.Kill(ctx); err != nil {
		t.Fatalf("deploytest: killing %s: %v", n.Name, err)
	}
}

// dial opens a gRPC connection to node i with the cluster's credentials.
func (c *Cluster) dial(t testing.TB, i int) *grpc.ClientConn {
	t.Helper()
	_, n := c.replica(i)
	creds := insecure.NewCredentials()
	if c.tls != nil {
		creds = credentials.NewTLS(c.tls)
	}
	cc, err := grpc.NewClient(n.GRPCAddr, append(wire.DialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		t.Fatalf("deploytest: dialling %s at %s: %v", n.Name, n.GRPCAddr, err)
	}
	return cc
}

// Status asks node i for its admin status.
func (c *Cluster) Status(ctx context.Context, t testing.TB, i int) (*adminpb.StatusResponse, error) {
	t.Helper()
	cc := c.dial(t, i)
	defer cc.Close()
	return adminpb.NewAdminClient(cc).Status(ctx, &adminpb.StatusRequest{})
}

// AwaitLeader waits until every running node is ready and names the same
// leader, and returns that leader's id.
func (c *Cluster) AwaitLeader(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), leaderTimeout)
	defer cancel()
	var last []string
	for {
		leader, state := c.agreedLeader(ctx, t)
		if leader != "" {
			return leader
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("deploytest: no leader every node agrees on within %v; last seen:\n%s", leaderTimeout, strings.Join(last, "\n"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agreedLeader returns the leader every node names, ready, or "" with what
// each node said.
func (c *Cluster) agreedLeader(ctx context.Context, t testing.TB) (string, []string) {
	t.Helper()
	var leaders []string
	var state []string
	for i, n := range c.Nodes() {
		if r, _ := c.replica(i); !r.Running() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(cctx, t, i)
		cancel()
		if err != nil {
			state = append(state, fmt.Sprintf("%s: %v", n.Name, err))
			leaders = append(leaders, "")
			continue
		}
		// /readyz is the readiness the probes see (Status.ready is the
		// leader's own serving state).
		code, body := c.Get(t, i, "/readyz")
		state = append(state, fmt.Sprintf("%s: state %v leader %q term %d, /readyz %d %s", n.Name, st.GetState(), st.GetLeader().GetId(), st.GetTerm(), code, bytes.TrimSpace(body)))
		if code != http.StatusOK {
			leaders = append(leaders, "")
			continue
		}
		leaders = append(leaders, st.GetLeader().GetId())
	}
	if len(leaders) == 0 || leaders[0] == "" {
		return "", state
	}
	for _, l := range leaders {
		if l != leaders[0] {
			return "", state
		}
	}
	return leaders[0], state
}

// ProveCaS shows that the cluster serves writes and reads through every
// node: through node i a CaS creates a fresh shard at seqno 0, which must
// commit, a second CaS at seqno 0 must be refused (the version exists), and
// a Head through another node must return exactly what was written.
func (c *Cluster) ProveCaS(t testing.TB) {
	t.Helper()
	nodes := c.Nodes()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	stamp := time.Now().UnixNano()
	for i, n := range nodes {
		if r, _ := c.replica(i); !r.Running() {
			continue
		}
		shard := fmt.Sprintf("deploytest/%s/%d", n.Name, stamp)
		data := []byte("written through " + n.Name)
		writer := c.client(t, n.GRPCAddr)
		committed, err := writer.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: 0, Data: data})
		if err != nil || !committed {
			t.Fatalf("deploytest: CaS of %s through %s: committed %v, err %v; want committed", shard, n.Name, committed, err)
		}
		committed, err = writer.CompareAndSet(ctx, shard, backend.VersionedData{SeqNo: 0, Data: []byte("again")})
		if err != nil || committed {
			t.Fatalf("deploytest: second CaS of %s at seqno 0 through %s: committed %v, err %v; want refused", shard, n.Name, committed, err)
		}
		other := nodes[(i+1)%len(nodes)]
		head, err := c.client(t, other.GRPCAddr).Head(ctx, shard)
		if err != nil {
			t.Fatalf("deploytest: Head of %s through %s: %v", shard, other.Name, err)
		}
		if head == nil || head.SeqNo != 0 || !bytes.Equal(head.Data, data) {
			t.Fatalf("deploytest: Head of %s through %s = %+v; want seqno 0 with %q", shard, other.Name, head, data)
		}
	}
}

// client returns a consensus client bound to addr alone, closed with t.
func (c *Cluster) client(t testing.TB, addr string) *client.Client {
	t.Helper()
	opts := []client.Option{client.WithoutLeaderRouting()}
	if c.tls != nil {
		opts = append(opts, client.WithTLS(c.tls))
	}
	cl, err := client.New([]string{addr}, opts...)
	if err != nil {
		t.Fatalf("deploytest: client for %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Get fetches path from node i's HTTP port, with the cluster's scheme and
// credentials.
func (c *Cluster) Get(t testing.TB, i int, path string) (int, []byte) {
	t.Helper()
	r, n := c.replica(i)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	code, body, err := r.Get(ctx, path)
	if err != nil {
		t.Fatalf("deploytest: GET %s from %s: %v", path, n.Name, err)
	}
	return code, body
}

// MetricFamilies scrapes node i's /metrics.
func (c *Cluster) MetricFamilies(t testing.TB, i int) map[string]*dto.MetricFamily {
	t.Helper()
	_, n := c.replica(i)
	code, body := c.Get(t, i, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("deploytest: /metrics of %s answered %d: %s", n.Name, code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.NopCloser(bytes.NewReader(body)))
	if err != nil {
		t.Fatalf("deploytest: parsing /metrics of %s: %v", n.Name, err)
	}
	return fams
}
