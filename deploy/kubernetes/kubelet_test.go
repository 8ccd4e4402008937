package kubernetes

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Expand follows the kubelet's rules, case by case (the cases of
// Kubernetes' own expansion tests that these manifests can meet).
func TestExpandAsTheKubeletDoes(t *testing.T) {
	vars := map[string]string{"POD_NAME": "committer-1", "NS": "db", "EMPTY": ""}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for _, tc := range []struct {
		in, want string
		missing  []string
	}{
		{"--id=$(POD_NAME)", "--id=committer-1", nil},
		{"$(POD_NAME).committer.$(NS).svc:6883", "committer-1.committer.db.svc:6883", nil},
		{"$(POD_NAME)$(NS)", "committer-1db", nil},
		{"x$(EMPTY)y", "xy", nil},
		{"$$(POD_NAME)", "$(POD_NAME)", nil},
		{"$$$(POD_NAME)", "$committer-1", nil},
		{"$$$$(POD_NAME)", "$$(POD_NAME)", nil},
		{"a$$b", "a$b", nil},
		{"$(UNDEFINED)", "$(UNDEFINED)", []string{"UNDEFINED"}},
		{"$(POD_NAME)-$(NOPE)", "committer-1-$(NOPE)", []string{"NOPE"}},
		{"$(POD_NAME", "$(POD_NAME", nil},
		{"price: 5$", "price: 5$", nil},
		{"$x", "$x", nil},
		{"$", "$", nil},
		{"$()", "$()", []string{""}},
		{"no references", "no references", nil},
	} {
		got, missing := Expand(tc.in, lookup)
		if got != tc.want || !slices.Equal(missing, tc.missing) {
			t.Errorf("Expand(%q) = %q, missing %q; want %q, missing %q", tc.in, got, missing, tc.want, tc.missing)
		}
	}
}

// The kubelet's environment: values in order, each seeing only the
// variables before it; the downward API; Secrets; then command and args
// against everything. Undefined references and unknown sources are errors.
func TestKubeletResolvesEnvThenArgs(t *testing.T) {
	c := corev1.Container{
		Name:    "c",
		Command: []string{"/bin/x"},
		Args:    []string{"serve", "--id=$(POD_NAME)", "--late=$(LATE)", "--escaped=$$(POD_NAME)"},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "HOST", Value: "$(POD_NAME).$(POD_NAMESPACE)"},
			{Name: "URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "url"}}},
			{Name: "LATE", Value: "$(HOST)"},
		},
	}
	secrets := func(name, key string) (string, error) {
		if name == "db" && key == "url" {
			return "postgres://x", nil
		}
		return "", errors.New("no such secret")
	}
	p, err := Kubelet(c, Pod{Name: "p-0", Namespace: "ns"}, secrets)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"POD_NAME=p-0", "POD_NAMESPACE=ns", "HOST=p-0.ns", "URL=postgres://x", "LATE=p-0.ns"}
	if !slices.Equal(p.Env, wantEnv) {
		t.Errorf("env %q; want %q", p.Env, wantEnv)
	}
	wantArgs := []string{"serve", "--id=p-0", "--late=p-0.ns", "--escaped=$(POD_NAME)"}
	if !slices.Equal(p.Args, wantArgs) || !slices.Equal(p.Command, []string{"/bin/x"}) {
		t.Errorf("command %q args %q; want [/bin/x] %q", p.Command, p.Args, wantArgs)
	}

	// A value refers to a variable defined after it: the kubelet leaves it.
	early := c
	early.Env = []corev1.EnvVar{{Name: "A", Value: "$(B)"}, {Name: "B", Value: "b"}}
	early.Args = nil
	if _, err := Kubelet(early, Pod{Name: "p-0", Namespace: "ns"}, secrets); err == nil || !strings.Contains(err.Error(), "env A") {
		t.Errorf("a forward reference = %v; want an error naming env A", err)
	}
	undefined := c
	undefined.Args = []string{"--x=$(NOWHERE)"}
	if _, err := Kubelet(undefined, Pod{Name: "p-0", Namespace: "ns"}, secrets); err == nil || !strings.Contains(err.Error(), "NOWHERE") {
		t.Errorf("an undefined reference in args = %v; want an error naming it", err)
	}
	missingSecret := c
	missingSecret.Env = []corev1.EnvVar{{Name: "U", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "other"}, Key: "url"}}}}
	missingSecret.Args = nil
	if _, err := Kubelet(missingSecret, Pod{Name: "p-0", Namespace: "ns"}, secrets); err == nil || !strings.Contains(err.Error(), "secret other key url") {
		t.Errorf("a missing Secret = %v; want an error naming it", err)
	}
	otherField := c
	otherField.Env = []corev1.EnvVar{{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
	otherField.Args = nil
	if _, err := Kubelet(otherField, Pod{Name: "p-0", Namespace: "ns"}, secrets); err == nil || !strings.Contains(err.Error(), "status.podIP") {
		t.Errorf("an unemulated field = %v; want an error naming it", err)
	}
}

// A flag on the command line wins over its variable; only COMMITTER_*
// variables are flags.
func TestParseServeMergesEnvUnderTheCommandLine(t *testing.T) {
	s, err := ParseServe(Process{
		Args: []string{"serve", "--id=a", "--peers=a=h:1"},
		Env:  []string{"COMMITTER_ID=b", "COMMITTER_TLS_CERT_FILE=/c", "POD_NAME=p"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "a", "peers": "a=h:1", "tls-cert-file": "/c"}
	if len(s.Flags) != len(want) {
		t.Errorf("flags %v; want %v", s.Flags, want)
	}
	for k, v := range want {
		if s.Flags[k] != v {
			t.Errorf("flag %s = %q; want %q", k, s.Flags[k], v)
		}
	}
	if !s.FromEnv["tls-cert-file"] || s.FromEnv["id"] {
		t.Errorf("from env %v; want tls-cert-file only", s.FromEnv)
	}
	for _, bad := range [][]string{{"serve", "--id", "a"}, {"serve", "-id=a"}, {"serve", "--id=a", "--id=b"}, {"version"}} {
		if _, err := ParseServe(Process{Args: bad}); err == nil {
			t.Errorf("ParseServe(%q) accepted it", bad)
		}
	}
}

// Placement rewrites names, empty listen hosts and mount paths, in flags
// and their variables, and nothing else.
func TestPlacementRewritesOnlyWhatAClusterDoes(t *testing.T) {
	pl := Placement{
		Addrs: map[string]string{"c-1.s.ns.svc.cluster.local": "127.0.9.2", "c-11.s.ns.svc.cluster.local": "127.0.9.12"},
		Host:  "127.0.9.2",
		Dirs:  map[string]string{"/var/lib/c": "/tmp/d", "/etc/c/tls": "/tmp/t"},
	}
	got := pl.Apply(Process{
		Command: []string{"/usr/local/bin/c"},
		Args: []string{"serve", "--grpc-addr=:6882", "--raft-addr=10.0.0.1:6883", "--grpc-advertise=c-1.s.ns.svc.cluster.local:6882",
			"--peers=c-1=c-1.s.ns.svc.cluster.local:6883,c-11=c-11.s.ns.svc.cluster.local:6883",
			"--data-dir=/var/lib/c", "--other-dir=/var/lib/committed", "--join=:6882"},
		Env: []string{"COMMITTER_HTTP_ADDR=:6884", "COMMITTER_TLS_CERT_FILE=/etc/c/tls/tls.crt", "POD_NAME=c-1.s.ns.svc.cluster.local"},
	})
	wantArgs := []string{"serve", "--grpc-addr=127.0.9.2:6882", "--raft-addr=10.0.0.1:6883", "--grpc-advertise=127.0.9.2:6882",
		"--peers=c-1=127.0.9.2:6883,c-11=127.0.9.12:6883",
		"--data-dir=/tmp/d", "--other-dir=/var/lib/committed", "--join=:6882"}
	wantEnv := []string{"COMMITTER_HTTP_ADDR=127.0.9.2:6884", "COMMITTER_TLS_CERT_FILE=/tmp/t/tls.crt", "POD_NAME=c-1.s.ns.svc.cluster.local"}
	if !slices.Equal(got.Args, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", got.Args, wantArgs)
	}
	if !slices.Equal(got.Env, wantEnv) {
		t.Errorf("env\n got %q\nwant %q", got.Env, wantEnv)
	}
}
