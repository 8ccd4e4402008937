package observability_test

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"sigs.k8s.io/yaml"

	"github.com/hacommit/committer/deploy/deploytest"
	"github.com/hacommit/committer/deploy/observability"
)

const (
	rulesFile          = "alerts.yaml"
	prometheusRuleFile = "../kubernetes/base/prometheusrule.yaml"
	runbookBase        = "https://github.com/hacommit/committer/blob/main/docs/operations.md#"
)

// wantAlert is what docs/operations.md §9 fixes for an alert: how long its
// condition must hold, how urgent it is, the runbook section, the metrics
// it reads and the threshold it compares with (in the parser's canonical
// spelling of the expression).
type wantAlert struct {
	hold      time.Duration
	severity  string
	section   string
	metrics   []string
	threshold string
}

var wantAlerts = map[string]wantAlert{
	"CommitterNoLeader": {30 * time.Second, "critical", "9-alerts",
		[]string{"committer_raft_state"}, `max by (namespace, job) (committer_raft_state{state="leader"}) < 1 or absent(committer_raft_state{state="leader"})`},
	"CommitterLeaderNotReady": {time.Minute, "critical", "9-alerts",
		[]string{"committer_raft_state", "committer_ready"}, `(committer_ready == 0) and on (namespace, job, instance) (committer_raft_state{state="leader"} == 1)`},
	"CommitterReplicaNotReady": {time.Minute, "warning", "8-health-metrics-and-logs",
		[]string{"committer_ready"}, `committer_ready == 0`},
	"CommitterFrequentLeaderChanges": {time.Minute, "warning", "9-alerts",
		[]string{"committer_leader_changes_total"}, `increase(committer_leader_changes_total[10m])) > 3`},
	"CommitterFencedWrites": {5 * time.Minute, "warning", "9-alerts",
		[]string{"committer_fenced_writes_total", "committer_leader_changes_total"}, `increase(committer_fenced_writes_total[5m]) > 0 unless on (namespace, job)`},
	"CommitterDatabaseLatencyHigh": {5 * time.Minute, "warning", "9-alerts",
		[]string{"mz_persist_committer_backing_duration_seconds_bucket"}, `histogram_quantile(0.99, sum by (namespace, job, instance, op, le) (rate(mz_persist_committer_backing_duration_seconds_bucket[5m]))) > 0.1`},
	"CommitterHandlerPanics": {time.Minute, "warning", "9-alerts",
		[]string{"committer_handler_panics_total"}, `increase(committer_handler_panics_total[1h]) > 0`},
	"CommitterRefusedCalls": {time.Minute, "warning", "3-tls-and-authorization",
		[]string{"committer_refused_calls_total"}, `increase(committer_refused_calls_total[5m]) > 0`},
	"CommitterAutopilotUnhealthy": {5 * time.Minute, "warning", "5-replace-a-dead-replica",
		[]string{"committer_autopilot_healthy"}, `committer_autopilot_healthy == 0`},
	"CommitterNoFailureTolerance": {5 * time.Minute, "critical", "5-replace-a-dead-replica",
		[]string{"committer_autopilot_failure_tolerance"}, `committer_autopilot_failure_tolerance < 1`},
	"CommitterCertificateExpiresSoon": {10 * time.Minute, "warning", "3-tls-and-authorization",
		[]string{"committer_tls_certificate_expiry_timestamp_seconds"}, `committer_tls_certificate_expiry_timestamp_seconds - time() < 14 * 24 * 3600`},
}

// TestRuleFileParses loads alerts.yaml as Prometheus does (rulefmt, which
// parses every expression with PromQL and every annotation template).
func TestRuleFileParses(t *testing.T) {
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, observability.NewParser(), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rulefmt.ParseFile(%s): %v", rulesFile, errs)
	}
	var names []string
	for _, g := range groups.Groups {
		names = append(names, g.Name)
	}
	if want := []string{"committer.recording", "committer.alerts"}; !slices.Equal(names, want) {
		t.Fatalf("groups %q, want %q", names, want)
	}
}

func parseRuleFile(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := observability.ParseRules(b)
	if err != nil {
		t.Fatal(err)
	}
	return groups
}

// recordingRules maps each recording rule's name to its expression.
func recordingRules(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range parseRuleFile(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = r.Expr
			}
		}
	}
	return out
}

// alertingRules returns the alerts by name.
func alertingRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	out := map[string]rulefmt.Rule{}
	for _, g := range parseRuleFile(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				if _, dup := out[r.Alert]; dup {
					t.Errorf("alert %s is defined twice", r.Alert)
				}
				out[r.Alert] = r
			}
		}
	}
	return out
}

// TestAlertsFollowTheRunbook checks each alert of docs/operations.md §9:
// present, no other, with its hold time, severity, metrics, threshold,
// summary, description and a runbook link to a section that exists.
func TestAlertsFollowTheRunbook(t *testing.T) {
	alerts := alertingRules(t)
	if got, want := slices.Sorted(maps.Keys(alerts)), slices.Sorted(maps.Keys(wantAlerts)); !slices.Equal(got, want) {
		t.Fatalf("alerts %q, want %q", got, want)
	}
	anchors := headingAnchors(t)
	p := observability.NewParser()
	for name, w := range wantAlerts {
		r := alerts[name]
		if time.Duration(r.For) != w.hold {
			t.Errorf("%s: for %v, want %v", name, time.Duration(r.For), w.hold)
		}
		if want := map[string]string{"severity": w.severity}; !maps.Equal(r.Labels, want) {
			t.Errorf("%s: labels %v, want %v", name, r.Labels, want)
		}
		if keys := slices.Sorted(maps.Keys(r.Annotations)); !slices.Equal(keys, []string{"description", "runbook_url", "summary"}) {
			t.Errorf("%s: annotations %q, want description, runbook_url and summary", name, keys)
		}
		if len(r.Annotations["summary"]) < 20 || len(r.Annotations["description"]) < 60 {
			t.Errorf("%s: summary %q and description %q say too little", name, r.Annotations["summary"], r.Annotations["description"])
		}
		if got := r.Annotations["runbook_url"]; got != runbookBase+w.section {
			t.Errorf("%s: runbook_url %q, want %q", name, got, runbookBase+w.section)
		}
		if !slices.Contains(anchors, w.section) {
			t.Errorf("%s: docs/operations.md has no section #%s; its sections are %q", name, w.section, anchors)
		}
		got, err := observability.MetricNames(p, r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(got, w.metrics) {
			t.Errorf("%s: reads %q, want %q", name, got, w.metrics)
		}
		expr, _ := p.ParseExpr(r.Expr)
		if canonical := expr.String(); !strings.Contains(canonical, w.threshold) {
			t.Errorf("%s: expression %q does not contain %q", name, canonical, w.threshold)
		}
	}
}

// headingAnchors are the link fragments GitHub gives docs/operations.md's
// headings: lower case, punctuation other than - and _ dropped, spaces as -.
func headingAnchors(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(deploytest.RepositoryRoot() + "/docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var anchors []string
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`).FindAllStringSubmatch(string(b), -1) {
		var s strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				s.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				s.WriteRune(r)
			}
		}
		anchors = append(anchors, s.String())
	}
	return anchors
}

// TestRecordingRulesAreUsed: every recording rule feeds the dashboard (a
// rule nothing reads costs Prometheus for nothing), and follows the
// level:metric:operations naming of Prometheus' convention.
func TestRecordingRulesAreUsed(t *testing.T) {
	rec := recordingRules(t)
	if len(rec) == 0 {
		t.Fatal("no recording rules")
	}
	_, used := dashboardMetrics(t, loadDashboard(t), rec)
	if got := slices.Sorted(maps.Keys(rec)); !slices.Equal(used, got) {
		t.Errorf("the dashboard reads recording rules %q, the rule file defines %q", used, got)
	}
	for name := range rec {
		if parts := strings.Split(name, ":"); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			t.Errorf("recording rule %s is not named level:metric:operations", name)
		}
	}
}

// TestPrometheusRuleIsCurrent keeps the Kubernetes manifest what genrule
// makes of alerts.yaml, as TestFlagReferenceIsCurrent keeps docs/flags.md.
func TestPrometheusRuleIsCurrent(t *testing.T) {
	content, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := observability.PrometheusRule(content)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatalf("%v (run make rules)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what genrule makes of %s: run make rules", prometheusRuleFile, rulesFile)
	}
}

// TestPrometheusRuleManifest decodes the manifest strictly as the operator's
// type and compares its groups with Prometheus' reading of alerts.yaml.
func TestPrometheusRuleManifest(t *testing.T) {
	b, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	var pr monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("apiVersion %q kind %q", pr.APIVersion, pr.Kind)
	}
	if pr.Name != "committer" || pr.Namespace != "" {
		t.Errorf("name %q namespace %q; want committer and no namespace (the overlays set it)", pr.Name, pr.Namespace)
	}
	if want := map[string]string{"app.kubernetes.io/name": "committer"}; !maps.Equal(pr.Labels, want) {
		t.Errorf("labels %v, want %v", pr.Labels, want)
	}
	if err := observability.SameGroups(parseRuleFile(t).Groups, pr.Spec.Groups); err != nil {
		t.Fatal(err)
	}
	// The comparison sees a changed threshold.
	pr.Spec.Groups[1].Rules[0].Expr.StrVal += " > 2"
	if err := observability.SameGroups(parseRuleFile(t).Groups, pr.Spec.Groups); err == nil || !strings.Contains(err.Error(), "CommitterNoLeader") {
		t.Errorf("SameGroups after changing CommitterNoLeader's expression = %v; want a difference naming it", err)
	}
}

// TestPrometheusRuleRefusesWhatPrometheusRefuses: generation fails on a
// rule file Prometheus would not load, so a broken one never reaches the
// manifest.
func TestPrometheusRuleRefusesWhatPrometheusRefuses(t *testing.T) {
	for name, content := range map[string]string{
		"bad expression": "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n",
		"unknown field":  "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        severity: page\n",
		"bad template":   "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        annotations:\n          summary: \"{{ $labels.job \"\n",
	} {
		if out, err := observability.PrometheusRule([]byte(content)); err == nil {
			t.Errorf("%s: PrometheusRule = %q, nil; want an error", name, out)
		}
	}
}
