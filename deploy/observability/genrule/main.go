// Command genrule writes deploy/kubernetes/base/prometheusrule.yaml from
// deploy/observability/alerts.yaml. Run it from the deploy module's
// directory: go run ./observability/genrule.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hacommit/committer/deploy/observability"
)

func main() {
	in := flag.String("rules", observability.RulesPath, "the Prometheus rule file to read")
	out := flag.String("out", observability.PrometheusRulePath, "the PrometheusRule manifest to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintf(os.Stderr, "genrule: %v\n", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	content, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("reading the rules: %w", err)
	}
	pr, err := observability.PrometheusRule(content)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if err := os.WriteFile(out, pr, 0o644); err != nil {
		return fmt.Errorf("writing the PrometheusRule: %w", err)
	}
	return nil
}
