package kubernetes

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Every overlay builds with kustomize, and every object it yields decodes
// strictly into its API type; the objects are exactly the ones the overlay
// is meant to ship, each in the overlay's namespace.
func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	base := []string{
		"NetworkPolicy/committer", "PodDisruptionBudget/committer", "PrometheusRule/committer",
		"Service/committer", "Service/committer-client", "ServiceAccount/committer",
		"ServiceMonitor/committer", "StatefulSet/committer",
	}
	mtls := append(slices.Clone(base),
		"Certificate/committer-admin", "Certificate/committer-client-ca", "Certificate/committer-peer-ca",
		"Certificate/committer-peer-tls", "Certificate/committer-prometheus", "Certificate/committer-tls",
		"Certificate/materialize",
		"Issuer/committer-client-ca", "Issuer/committer-peer-ca", "Issuer/committer-selfsigned",
	)
	want := map[string][]string{"plaintext": base, "mtls": mtls}
	for _, name := range Overlays() {
		t.Run(name, func(t *testing.T) {
			objs, err := Build(OverlayDir(name))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Kind+"/"+o.Name)
				if o.Namespace != "committer" {
					t.Errorf("%s %s is in namespace %q; want committer", o.Kind, o.Name, o.Namespace)
				}
			}
			slices.Sort(got)
			w := slices.Sorted(slices.Values(want[name]))
			if !slices.Equal(got, w) {
				t.Errorf("objects:\n got %q\nwant %q", got, w)
			}
			if _, err := NewSet(objs); err != nil {
				t.Error(err)
			}
		})
	}
}

// The strict decoder refuses what an API server with strict field
// validation refuses: a misspelled field, a field in the wrong case, a
// duplicated key; and a kind it has no type for.
func TestStrictDecoderRefusesWhatTheAPIServerWould(t *testing.T) {
	const good = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: s
spec:
  serviceName: s
  replicas: 3
  selector:
    matchLabels: {app: s}
  template:
    metadata:
      labels: {app: s}
    spec:
      containers:
        - name: c
          image: i
`
	obj, err := DecodeYAML([]byte(good))
	if err != nil {
		t.Fatalf("the well-formed StatefulSet: %v", err)
	}
	if obj.Kind != "StatefulSet" || obj.Name != "s" {
		t.Fatalf("decoded %s %q; want StatefulSet s", obj.Kind, obj.Name)
	}
	for _, tc := range []struct {
		name, from, to, wantErr string
	}{
		{"misspelled field", "  replicas: 3", "  replica: 3", `unknown field "spec.replica"`},
		{"misspelled nested field", "          image: i", "          imag: i", `unknown field "spec.template.spec.containers[0].imag"`},
		{"field in the wrong case", "  replicas: 3", "  Replicas: 3", `unknown field "spec.Replicas"`},
		{"duplicated key", "  replicas: 3", "  replicas: 3\n  replicas: 5", `already set in map`},
		{"unknown kind", "kind: StatefulSet", "kind: StatefulSett", `no API type is known for apiVersion "apps/v1" kind "StatefulSett"`},
		{"kind of another version", "apiVersion: apps/v1", "apiVersion: apps/v1beta2", `no API type is known for apiVersion "apps/v1beta2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.from, tc.to, 1)
			if bad == good {
				t.Fatalf("the edit %q -> %q changed nothing", tc.from, tc.to)
			}
			_, err := DecodeYAML([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeYAML = %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// The example backend Secret is not part of any build, decodes strictly,
// and holds the key the StatefulSet reads, under the name it reads it from.
func TestBackendSecretExampleIsWhatTheStatefulSetReads(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(Dir(), "base", "backend-secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := DecodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	secret, ok := obj.Value.(*corev1.Secret)
	if !ok {
		t.Fatalf("backend-secret.example.yaml holds a %s; want a Secret", obj.Kind)
	}
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		if len(o.set.Secrets) != 0 {
			t.Errorf("the build ships Secrets %v; the backend URL must come from outside the manifests", keys(o.set.Secrets))
		}
		var refs int
		for _, e := range o.container.Env {
			if e.Name != "COMMITTER_BACKEND" {
				continue
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Fatalf("COMMITTER_BACKEND is not read from a Secret: %+v", e)
			}
			ref := e.ValueFrom.SecretKeyRef
			refs++
			if ref.Name != secret.Name {
				t.Errorf("COMMITTER_BACKEND reads Secret %q; the example is %q", ref.Name, secret.Name)
			}
			url, ok := secret.StringData[ref.Key]
			if !ok {
				t.Errorf("the example Secret has no key %q; it has %v", ref.Key, keys(secret.StringData))
			}
			if !strings.HasPrefix(url, "postgres://") || !strings.Contains(url, "CHANGE-ME") {
				t.Errorf("the example URL %q is not an obvious postgres:// placeholder", url)
			}
		}
		if refs != 1 {
			t.Errorf("COMMITTER_BACKEND is set %d times; want once", refs)
		}
	})
}

func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
