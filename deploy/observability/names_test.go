package observability_test

import (
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/hacommit/committer/deploy/observability"
)

func family(name string, typ dto.MetricType) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &name, Type: &typ}
}

func TestMetricNamesWalksTheExpression(t *testing.T) {
	p := observability.NewParser()
	expr := `histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x"}[5m])))
		/ on () group_left b
		+ count({__name__="c"} offset 5m)
		and absent(d)
		or label_replace(e, "dst", "f_total", "src", "(.*)")
		or max_over_time(a_bucket[1h:1m])`
	got, err := observability.MetricNames(p, expr)
	if err != nil {
		t.Fatal(err)
	}
	// f_total is a string argument, not a selector; a_bucket is named twice.
	if want := []string{"a_bucket", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Fatalf("MetricNames = %q, want %q", got, want)
	}
}

func TestMetricNamesRefusesSelectorsWithoutAName(t *testing.T) {
	p := observability.NewParser()
	for _, expr := range []string{`{job="x"}`, `rate({__name__=~"committer_.*"}[5m])`} {
		if names, err := observability.MetricNames(p, expr); err == nil || !strings.Contains(err.Error(), "names no metric") {
			t.Errorf("MetricNames(%q) = %q, %v; want an error saying the selector names no metric", expr, names, err)
		}
	}
	if names, err := observability.MetricNames(p, `rate(x[5m]`); err == nil {
		t.Errorf("MetricNames of an unbalanced expression = %q, nil; want a parse error", names)
	}
}

// TestMissingReportsEachAbsentMetric shows the live check can fail: a name
// no family exposes is reported by name, a histogram's and a summary's
// series map to their family only where the family's type has them, and a
// recording rule's name is not looked for in the scrape.
func TestMissingReportsEachAbsentMetric(t *testing.T) {
	scraped := map[string]*dto.MetricFamily{
		"h":       family("h", dto.MetricType_HISTOGRAM),
		"s":       family("s", dto.MetricType_SUMMARY),
		"c_total": family("c_total", dto.MetricType_COUNTER),
		"g":       family("g", dto.MetricType_GAUGE),
	}
	names := []string{"h", "h_bucket", "h_sum", "h_count", "s", "s_sum", "s_count", "s_bucket",
		"c_total", "c", "g", "g_bucket", "job:rec:sum", "nonexistent_metric_total", "nonexistent_metric_total"}
	got := observability.Missing(names, scraped, []string{"job:rec:sum"})
	want := []string{"c", "g_bucket", "nonexistent_metric_total", "s_bucket"}
	if !slices.Equal(got, want) {
		t.Fatalf("Missing = %q, want %q", got, want)
	}
}

// A made-up query naming a metric the server does not have fails the check
// with that name, end to end from the expression.
func TestMadeUpQueryFailsTheCheck(t *testing.T) {
	names, err := observability.MetricNames(observability.NewParser(),
		`sum by (op) (rate(committer_no_such_calls_total[5m])) / sum by (op) (rate(mz_persist_committer_rpc_total[5m]))`)
	if err != nil {
		t.Fatal(err)
	}
	scraped := map[string]*dto.MetricFamily{
		"mz_persist_committer_rpc_total": family("mz_persist_committer_rpc_total", dto.MetricType_COUNTER),
	}
	if got := observability.Missing(names, scraped, nil); !slices.Equal(got, []string{"committer_no_such_calls_total"}) {
		t.Fatalf("Missing = %q, want [committer_no_such_calls_total]", got)
	}
}

func TestExpandSubstitutesEveryVariable(t *testing.T) {
	values := map[string]string{"__rate_interval": "1m", "instance": "10.0.0.1:6884", "job": "committer"}
	got, err := observability.Expand(`rate(x{job=~"${job}", instance=~"$instance"}[$__rate_interval])`, values)
	if err != nil {
		t.Fatal(err)
	}
	if want := `rate(x{job=~"committer", instance=~"10.0.0.1:6884"}[1m])`; got != want {
		t.Fatalf("Expand = %q, want %q", got, want)
	}
	if got, err := observability.Expand(`rate(x[$__interval]) + $foo`, values); err == nil || !strings.Contains(err.Error(), "__interval, foo") {
		t.Errorf("Expand with unknown variables = %q, %v; want an error naming __interval and foo", got, err)
	}
	if got, err := observability.Expand(`x{job=~"${job:regex}"}`, values); err == nil {
		t.Errorf("Expand of a formatted variable = %q, nil; want an error", got)
	}
	if got := observability.Variables(`a{b=~"$job"}[$__rate_interval] ${instance}`); !slices.Equal(got, []string{"job", "__rate_interval", "instance"}) {
		t.Errorf("Variables = %q", got)
	}
}
