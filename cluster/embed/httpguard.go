package embed

import (
	"net/http"
	"strings"
)

// guardOps restricts the operations port: /debug/pprof exists only when
// enabled (a profile costs CPU and shows internals), and when client
// certificates are verified, /metrics and /debug/pprof need one. /healthz
// and /readyz stay open, since a kubelet or a load balancer probing them
// cannot present a certificate. docs/architecture.md §12.
func guardOps(next http.Handler, pprof, needCert bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		profile := strings.HasPrefix(r.URL.Path, "/debug/pprof")
		if profile && !pprof {
			http.Error(w, "profiling is off: start the replica with --enable-pprof", http.StatusNotFound)
			return
		}
		if needCert && (profile || r.URL.Path == "/metrics") && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			http.Error(w, "this path needs a client certificate signed by the --tls-client-ca-file CA", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
