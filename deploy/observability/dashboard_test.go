package observability_test

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/hacommit/committer/deploy/observability"
)

// grafanaValues are plausible values for the variables Grafana expands
// before a query reaches Prometheus: its built-in intervals, and one value
// of each of the dashboard's variables (a regex matcher takes any string).
var grafanaValues = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "30s",
	"__range":         "1h",
	"job":             "committer",
	"instance":        "committer-0.committer.default.svc:6884",
}

func loadDashboard(t *testing.T) *observability.Dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := observability.ParseDashboard(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want 39 or later", d.SchemaVersion)
	}
	if d.UID != "committer" || d.Title != "committer" {
		t.Errorf("uid %q title %q, want committer and committer", d.UID, d.Title)
	}
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	if want := []string{"datasource", "job", "instance"}; !slices.Equal(names, want) {
		t.Fatalf("variables %q, want %q", names, want)
	}
	ds := d.Templating.List[0]
	if q, err := ds.QueryText(); err != nil || ds.Type != "datasource" || q != "prometheus" {
		t.Errorf("datasource variable: type %q query %q (%v), want a datasource variable of plugin prometheus", ds.Type, q, err)
	}
	for _, v := range d.Templating.List[1:] {
		// Multi-value with All as .* keeps every job=~"$job" matcher
		// valid, whatever is selected.
		if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}" || !v.IncludeAll || !v.Multi || v.AllValue != ".*" {
			t.Errorf("variable %s: %+v; want a multi-value query variable on ${datasource} with All as .*", v.Name, v)
		}
	}
}

// TestDashboardLayout keeps the hand-written JSON consistent: unique panel
// ids, every panel on the 24-column grid without overlapping another, and
// every query on the datasource variable.
func TestDashboardLayout(t *testing.T) {
	d := loadDashboard(t)
	panels := d.AllPanels()
	if len(panels) < 30 {
		t.Fatalf("%d panels; the dashboard lost its panels", len(panels))
	}
	ids := map[int]string{}
	for i, p := range panels {
		if p.ID <= 0 {
			t.Errorf("panel %q has id %d", p.Title, p.ID)
		}
		if other, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d (%s) at %+v is off the 24-column grid", p.ID, p.Title, g)
		}
		for _, q := range panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panel %d (%s) at %+v overlaps panel %d (%s) at %+v", p.ID, p.Title, g, q.ID, q.Title, h)
			}
		}
		if p.Type == "row" {
			if g.W != 24 || g.H != 1 || len(p.Targets) > 0 {
				t.Errorf("row %d (%s) at %+v with %d targets; want a full-width row without queries", p.ID, p.Title, g, len(p.Targets))
			}
			continue
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d (%q): datasource %+v; want a title and prometheus ${datasource}", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d (%s) has no query", p.ID, p.Title)
		}
		var refs []string
		for _, tg := range p.Targets {
			if slices.Contains(refs, tg.RefID) || tg.RefID == "" {
				t.Errorf("panel %d (%s): refId %q empty or repeated", p.ID, p.Title, tg.RefID)
			}
			refs = append(refs, tg.RefID)
			if tg.Expr == "" || tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d (%s) target %s: expr %q datasource %+v", p.ID, p.Title, tg.RefID, tg.Expr, tg.Datasource)
			}
		}
	}
}

// TestDashboardQueriesParse parses every query, panels' and variables',
// with Prometheus' parser after expanding Grafana's variables, and checks
// that each variable a query uses is Grafana's or the dashboard's own.
func TestDashboardQueriesParse(t *testing.T) {
	d := loadDashboard(t)
	qs, err := d.Queries()
	if err != nil {
		t.Fatal(err)
	}
	defined := []string{"__rate_interval", "__interval", "__range"}
	for _, v := range d.Templating.List {
		defined = append(defined, v.Name)
	}
	p := observability.NewParser()
	for _, q := range qs {
		for _, v := range observability.Variables(q.Expr) {
			if !slices.Contains(defined, v) {
				t.Errorf("%s uses $%s, which neither Grafana nor the dashboard defines", q.Where, v)
			}
		}
		expr, err := observability.Expand(q.Expr, grafanaValues)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		if _, err := p.ParseExpr(expr); err != nil {
			t.Errorf("%s: %q does not parse: %v", q.Where, expr, err)
		}
	}
	if len(qs) < 40 {
		t.Errorf("%d queries; the dashboard lost its queries", len(qs))
	}
}

// dashboardMetrics are the metrics the dashboard's queries name, recording
// rules replaced by the metrics their expressions read.
func dashboardMetrics(t *testing.T, d *observability.Dashboard, recording map[string]string) (names, recorded []string) {
	t.Helper()
	qs, err := d.Queries()
	if err != nil {
		t.Fatal(err)
	}
	p := observability.NewParser()
	for _, q := range qs {
		expr, err := observability.Expand(q.Expr, grafanaValues)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		ns, err := observability.MetricNames(p, expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, n := range ns {
			names = append(names, n)
			if src, ok := recording[n]; ok {
				recorded = append(recorded, n)
				rs, err := observability.MetricNames(p, src)
				if err != nil {
					t.Fatalf("recording rule %s: %v", n, err)
				}
				names = append(names, rs...)
			}
		}
	}
	slices.Sort(names)
	slices.Sort(recorded)
	return slices.Compact(names), slices.Compact(recorded)
}

// TestDashboardShowsEverySubject: each subject an operator looks for has a
// panel reading its series (directly or through a recording rule).
func TestDashboardShowsEverySubject(t *testing.T) {
	names, _ := dashboardMetrics(t, loadDashboard(t), recordingRules(t))
	subjects := map[string][]string{
		"throughput and results":    {"mz_persist_committer_rpc_total"},
		"latency by op":             {"mz_persist_committer_rpc_duration_seconds_bucket"},
		"cache hit ratio":           {"mz_persist_committer_cache_hits_total", "mz_persist_committer_cache_misses_total"},
		"cached shards and bytes":   {"mz_persist_committer_cached_shards", "mz_persist_committer_cached_bytes"},
		"batches":                   {"committer_batch_size_bucket", "committer_batch_wait_seconds_bucket"},
		"raft state, term, changes": {"committer_raft_state", "committer_raft_term", "committer_leader_changes_total"},
		"forwarding":                {"committer_forwarded_requests_total", "committer_forwarded_request_duration_seconds_bucket"},
		"fencing":                   {"committer_fence_events_total", "committer_fenced_writes_total"},
		"readiness":                 {"committer_ready"},
		"database time and calls":   {"mz_persist_committer_backing_total", "mz_persist_committer_backing_duration_seconds_sum", "mz_persist_committer_backing_duration_seconds_bucket"},
		"refused calls":             {"committer_refused_calls_total"},
		"handler panics":            {"committer_handler_panics_total"},
		"autopilot":                 {"committer_autopilot_healthy", "committer_autopilot_failure_tolerance", "committer_autopilot_member_healthy"},
		"certificate expiry":        {"committer_tls_certificate_expiry_timestamp_seconds"},
	}
	for subject, want := range subjects {
		for _, n := range want {
			if !slices.Contains(names, n) {
				t.Errorf("%s: no panel reads %s", subject, n)
			}
		}
	}
}

func ExampleExpand() {
	expr, err := observability.Expand(`rate(mz_persist_committer_rpc_total{instance=~"$instance"}[$__rate_interval])`,
		map[string]string{"instance": "10.0.0.1:6884", "__rate_interval": "1m"})
	fmt.Println(expr, err)
	// Output: rate(mz_persist_committer_rpc_total{instance=~"10.0.0.1:6884"}[1m]) <nil>
}
