package proctest

import (
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricValue sums the samples of the named series in a Prometheus text
// exposition whose labels include every pair in labels, and returns the sum
// and how many samples matched. A label absent from a sample counts as
// empty, as in Prometheus selectors.
//
// name is a series name as the text format spells it:
//   - a counter, gauge or untyped metric: its name (a counter's name keeps
//     its _total suffix);
//   - a histogram: name_bucket (one sample per bucket, cumulative, with its
//     le label), name_sum and name_count; the bare name matches nothing;
//   - a summary: the bare name (one sample per quantile, with its quantile
//     label), name_sum and name_count.
//
// le and quantile compare as numbers, so le="1" matches a bucket printed
// le="1.0"; the last bucket is le="+Inf".
//
// An exposition the parser rejects yields (NaN, 0) rather than a sum of the
// lines before the error: a partial sum could let a check pass that should
// fail, and NaN fails every comparison.
func MetricValue(text, name string, labels map[string]string) (float64, int) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return math.NaN(), 0
	}
	var sum float64
	n := 0
	for _, mf := range families {
		for _, s := range samples(mf) {
			if s.name == name && s.matches(labels) {
				sum += s.value
				n++
			}
		}
	}
	return sum, n
}

// sample is one line of the text format: the parser folds the lines of a
// histogram or summary into one metric, and samples unfolds them again.
type sample struct {
	name   string
	metric *dto.Metric // its labels, other than bound
	// bound, if set, names the label le or quantile the parser took out of
	// the metric's labels, whose value is boundValue.
	bound      string
	boundValue float64
	value      float64
}

func samples(mf *dto.MetricFamily) []sample {
	name := mf.GetName()
	var out []sample
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			out = append(out, sample{name: name, metric: m, value: m.GetCounter().GetValue()})
		case dto.MetricType_GAUGE:
			out = append(out, sample{name: name, metric: m, value: m.GetGauge().GetValue()})
		case dto.MetricType_UNTYPED:
			out = append(out, sample{name: name, metric: m, value: m.GetUntyped().GetValue()})
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				count := float64(b.GetCumulativeCount())
				if b.CumulativeCountFloat != nil {
					count = b.GetCumulativeCountFloat()
				}
				out = append(out, sample{name: name + "_bucket", metric: m, bound: model.BucketLabel, boundValue: b.GetUpperBound(), value: count})
			}
			count := float64(h.GetSampleCount())
			if h.SampleCountFloat != nil {
				count = h.GetSampleCountFloat()
			}
			out = append(out,
				sample{name: name + "_sum", metric: m, value: h.GetSampleSum()},
				sample{name: name + "_count", metric: m, value: count})
		case dto.MetricType_SUMMARY:
			s := m.GetSummary()
			for _, q := range s.GetQuantile() {
				out = append(out, sample{name: name, metric: m, bound: model.QuantileLabel, boundValue: q.GetQuantile(), value: q.GetValue()})
			}
			out = append(out,
				sample{name: name + "_sum", metric: m, value: s.GetSampleSum()},
				sample{name: name + "_count", metric: m, value: float64(s.GetSampleCount())})
		}
	}
	return out
}

func (s sample) matches(labels map[string]string) bool {
	for k, want := range labels {
		if s.bound != "" && k == s.bound {
			if w, err := strconv.ParseFloat(want, 64); err != nil || w != s.boundValue {
				return false
			}
			continue
		}
		if s.label(k) != want {
			return false
		}
	}
	return true
}

func (s sample) label(name string) string {
	for _, l := range s.metric.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
