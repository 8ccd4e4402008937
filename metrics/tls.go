package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterCertificateExpiry exports when each of a replica's certificates
// expires, as committer_tls_certificate_expiry_timestamp_seconds{cert}, read
// at every scrape so that a rotated certificate shows at once. notAfter maps
// the cert label ("client", "peer") to a function that returns the current
// certificate's NotAfter.
func RegisterCertificateExpiry(reg prometheus.Registerer, notAfter map[string]func() time.Time) {
	for name, fn := range notAfter {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   clusterNamespace,
			Name:        "tls_certificate_expiry_timestamp_seconds",
			Help:        "When the certificate in use expires, as a Unix time; client is the gRPC and HTTP ports' certificate, peer the one replicas show each other. It follows rotations on disk.",
			ConstLabels: prometheus.Labels{"cert": name},
		}, func() float64 { return float64(fn().Unix()) }))
	}
}
