// Package observability holds committer's monitoring artifacts and the code
// that keeps them honest: the Prometheus rule file (alerts.yaml: the alerts
// of docs/operations.md §9 and the recording rules the dashboard reads), the
// Grafana dashboard (grafana-dashboard.json), and the generator of the
// Kubernetes PrometheusRule (deploy/kubernetes/base/prometheusrule.yaml),
// which is alerts.yaml under a PrometheusRule's spec so that the two cannot
// drift (genrule writes it; a test fails when it is stale).
//
// The tests parse every rule and every dashboard query with Prometheus' own
// parsers, and check every metric they name against a live scrape of a
// running three-replica cluster with mutual TLS: a rule or panel that names
// a series the replicas do not export would otherwise fail silently, showing
// nothing and never firing.
package observability
