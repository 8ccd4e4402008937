package observability

import (
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// MetricNames returns the metric names an expression selects, sorted and
// without repeats. It walks the parsed expression, so names in strings,
// label values or function names are not mistaken for metrics. A selector
// without a fixed name ({job="x"}, {__name__=~"..."}) is an error: nothing
// could check what it selects.
func MetricNames(p parser.Parser, expr string) ([]string, error) {
	node, err := p.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var names []string
	var walkErr error
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" && walkErr == nil {
			walkErr = fmt.Errorf("%q: selector %s names no metric", expr, vs)
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	if walkErr != nil {
		return nil, walkErr
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// seriesSuffixes are the series a histogram or summary family exposes
// beside its name, and which family types expose each.
var seriesSuffixes = map[string][]dto.MetricType{
	"_bucket": {dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM},
	"_sum":    {dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM, dto.MetricType_SUMMARY},
	"_count":  {dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM, dto.MetricType_SUMMARY},
}

// Exposed reports whether a query for name finds series among the scraped
// families: a family of that name, or a histogram's _bucket, _sum or
// _count, or a summary's _sum or _count.
func Exposed(name string, scraped map[string]*dto.MetricFamily) bool {
	if _, ok := scraped[name]; ok {
		return true
	}
	for suffix, types := range seriesSuffixes {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := scraped[base]; ok && slices.Contains(types, f.GetType()) {
			return true
		}
	}
	return false
}

// Missing returns the names, sorted, that neither a scraped family exposes
// nor a recording rule in recorded produces.
func Missing(names []string, scraped map[string]*dto.MetricFamily, recorded []string) []string {
	var missing []string
	for _, n := range names {
		if slices.Contains(recorded, n) || Exposed(n, scraped) {
			continue
		}
		missing = append(missing, n)
	}
	slices.Sort(missing)
	return slices.Compact(missing)
}
