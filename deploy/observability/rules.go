package observability

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Paths relative to the deploy module's directory, where `go run
// ./observability/genrule` runs.
const (
	RulesPath          = "observability/alerts.yaml"
	PrometheusRulePath = "kubernetes/base/prometheusrule.yaml"
)

// NewParser is the PromQL parser the rules and the dashboard are checked
// with: Prometheus' defaults, which is what a stock server evaluates.
func NewParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// ParseRules parses a rule file as Prometheus loads one: unknown fields are
// errors, and every expression and annotation template must parse.
func ParseRules(content []byte) (*rulefmt.RuleGroups, error) {
	logger := slog.New(slog.DiscardHandler)
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, NewParser(), logger)
	if len(errs) > 0 {
		return nil, fmt.Errorf("rule file: %w", errors.Join(errs...))
	}
	return groups, nil
}

// prometheusRuleHeader is everything of the PrometheusRule but its spec.
// It has no namespace: the overlays choose it.
const prometheusRuleHeader = `# Generated from deploy/observability/alerts.yaml by
# ` + "`go run ./observability/genrule`" + ` in deploy/; do not edit.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: committer
  labels:
    app.kubernetes.io/name: committer
spec:
`

// PrometheusRule returns the PrometheusRule that carries the groups of the
// rule file content. The file's text is indented under spec: as it is, so
// its comments, which say why each threshold is what it is, reach the
// Kubernetes manifest too. The result is then decoded strictly as a
// monitoring.coreos.com/v1 PrometheusRule and compared with what Prometheus
// parses from content, so a field the operator's schema lacks, or YAML that
// reads differently once indented, fails here rather than in a cluster.
func PrometheusRule(content []byte) ([]byte, error) {
	groups, err := ParseRules(content)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for line := range strings.Lines(string(content)) {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	var pr monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(b.Bytes(), &pr); err != nil {
		return nil, fmt.Errorf("generated PrometheusRule does not decode: %w", err)
	}
	if err := SameGroups(groups.Groups, pr.Spec.Groups); err != nil {
		return nil, fmt.Errorf("generated PrometheusRule differs from the rule file: %w", err)
	}
	return b.Bytes(), nil
}

// SameGroups reports the first difference between rule groups as
// Prometheus reads them and as the operator's PrometheusRule holds them, or
// nil.
func SameGroups(want []rulefmt.RuleGroup, got []monitoringv1.RuleGroup) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d groups, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.Name {
			return fmt.Errorf("group %d is %q, want %q", i, g.Name, w.Name)
		}
		if d := duration(g.Interval); d != w.Interval {
			return fmt.Errorf("group %s: interval %v, want %v", w.Name, d, w.Interval)
		}
		if w.QueryOffset != nil && duration(g.QueryOffset) != *w.QueryOffset {
			return fmt.Errorf("group %s: query_offset %v, want %v", w.Name, duration(g.QueryOffset), *w.QueryOffset)
		}
		limit := 0
		if g.Limit != nil {
			limit = *g.Limit
		}
		if limit != w.Limit {
			return fmt.Errorf("group %s: limit %d, want %d", w.Name, limit, w.Limit)
		}
		if !maps.Equal(g.Labels, w.Labels) {
			return fmt.Errorf("group %s: labels %v, want %v", w.Name, g.Labels, w.Labels)
		}
		if len(g.Rules) != len(w.Rules) {
			return fmt.Errorf("group %s: %d rules, want %d", w.Name, len(g.Rules), len(w.Rules))
		}
		for j, wr := range w.Rules {
			if err := sameRule(wr, g.Rules[j]); err != nil {
				return fmt.Errorf("group %s, rule %d (%s%s): %w", w.Name, j, wr.Alert, wr.Record, err)
			}
		}
	}
	return nil
}

func sameRule(w rulefmt.Rule, g monitoringv1.Rule) error {
	switch {
	case g.Alert != w.Alert || g.Record != w.Record:
		return fmt.Errorf("named alert %q record %q", g.Alert, g.Record)
	case g.Expr.String() != w.Expr:
		return fmt.Errorf("expr %q, want %q", g.Expr.String(), w.Expr)
	case duration(g.For) != w.For:
		return fmt.Errorf("for %v, want %v", duration(g.For), w.For)
	case !maps.Equal(g.Labels, w.Labels):
		return fmt.Errorf("labels %v, want %v", g.Labels, w.Labels)
	case !maps.Equal(g.Annotations, w.Annotations):
		return fmt.Errorf("annotations %v, want %v", g.Annotations, w.Annotations)
	}
	var keep model.Duration
	if g.KeepFiringFor != nil {
		keep, _ = model.ParseDuration(string(*g.KeepFiringFor))
	}
	if keep != w.KeepFiringFor {
		return fmt.Errorf("keep_firing_for %v, want %v", keep, w.KeepFiringFor)
	}
	return nil
}

// duration reads an operator Duration; the schema's pattern makes an
// unparsable one impossible, so it reads as 0 and shows as a difference.
func duration(d *monitoringv1.Duration) model.Duration {
	if d == nil {
		return 0
	}
	v, err := model.ParseDuration(string(*d))
	if err != nil {
		return 0
	}
	return v
}
