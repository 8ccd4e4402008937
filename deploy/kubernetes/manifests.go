package kubernetes

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Dir is this package's directory, where base/ and overlays/ are.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("kubernetes: no caller information to find the manifests")
	}
	return filepath.Dir(file)
}

// Overlays are the overlays the package ships, by directory name.
func Overlays() []string { return []string{"plaintext", "mtls"} }

// OverlayDir is the directory of overlay name.
func OverlayDir(name string) string { return filepath.Join(Dir(), "overlays", name) }

// Object is one decoded manifest object.
type Object struct {
	APIVersion, Kind, Namespace, Name string
	// Value is a pointer to the object's API type, e.g. *appsv1.StatefulSet.
	Value any
}

// newValue returns a new value of the API type that apiVersion and kind
// decode into. A kind missing here is an error: every object the manifests
// ship is checked against the schema it will be applied with.
func newValue(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "apps/v1 StatefulSet":
		return new(appsv1.StatefulSet), true
	case "v1 Service":
		return new(corev1.Service), true
	case "v1 ServiceAccount":
		return new(corev1.ServiceAccount), true
	case "v1 Secret":
		return new(corev1.Secret), true
	case "policy/v1 PodDisruptionBudget":
		return new(policyv1.PodDisruptionBudget), true
	case "networking.k8s.io/v1 NetworkPolicy":
		return new(networkingv1.NetworkPolicy), true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return new(monitoringv1.ServiceMonitor), true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return new(monitoringv1.PrometheusRule), true
	case "cert-manager.io/v1 Issuer":
		return new(cmv1.Issuer), true
	case "cert-manager.io/v1 Certificate":
		return new(cmv1.Certificate), true
	}
	return nil, false
}

// DecodeJSON decodes one object strictly into its API type: an unknown or
// duplicated field, or a field spelled with the wrong case, is an error, as
// it is to an API server with strict field validation. (encoding/json's
// DisallowUnknownFields alone would accept "Replicas" for "replicas".)
func DecodeJSON(data []byte) (Object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return Object{}, fmt.Errorf("reading the object's kind: %w", err)
	}
	obj := Object{APIVersion: meta.APIVersion, Kind: meta.Kind, Namespace: meta.Metadata.Namespace, Name: meta.Metadata.Name}
	v, ok := newValue(meta.APIVersion, meta.Kind)
	if !ok {
		return Object{}, fmt.Errorf("%s %q: no API type is known for apiVersion %q kind %q", meta.Kind, meta.Metadata.Name, meta.APIVersion, meta.Kind)
	}
	obj.Value = v
	strict, err := kjson.UnmarshalStrict(data, obj.Value)
	if err != nil {
		return Object{}, fmt.Errorf("%s %q: %w", meta.Kind, meta.Metadata.Name, err)
	}
	if len(strict) > 0 {
		return Object{}, fmt.Errorf("%s %q: %w", meta.Kind, meta.Metadata.Name, errors.Join(strict...))
	}
	return obj, nil
}

// DecodeYAML decodes one YAML document strictly (duplicate keys included).
func DecodeYAML(doc []byte) (Object, error) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return Object{}, fmt.Errorf("converting YAML: %w", err)
	}
	return DecodeJSON(data)
}

// Build runs kustomize on the kustomization in dir, as `kubectl apply -k`
// would, and decodes every object it produces.
func Build(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []Object
	var errs []error
	for _, r := range resources.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.CurId(), err))
			continue
		}
		obj, err := DecodeJSON(data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, errors.Join(errs...))
	}
	return objs, nil
}

// Set is an overlay's objects by kind and name, for the checks that relate
// them to each other.
type Set struct {
	Objects         []Object
	StatefulSets    map[string]*appsv1.StatefulSet
	Services        map[string]*corev1.Service
	ServiceAccounts map[string]*corev1.ServiceAccount
	Secrets         map[string]*corev1.Secret
	PDBs            map[string]*policyv1.PodDisruptionBudget
	NetworkPolicies map[string]*networkingv1.NetworkPolicy
	ServiceMonitors map[string]*monitoringv1.ServiceMonitor
	PrometheusRules map[string]*monitoringv1.PrometheusRule
	Issuers         map[string]*cmv1.Issuer
	Certificates    map[string]*cmv1.Certificate
}

// NewSet indexes objs; two objects of one kind and name are an error.
func NewSet(objs []Object) (*Set, error) {
	s := &Set{
		Objects:         objs,
		StatefulSets:    map[string]*appsv1.StatefulSet{},
		Services:        map[string]*corev1.Service{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		Secrets:         map[string]*corev1.Secret{},
		PDBs:            map[string]*policyv1.PodDisruptionBudget{},
		NetworkPolicies: map[string]*networkingv1.NetworkPolicy{},
		ServiceMonitors: map[string]*monitoringv1.ServiceMonitor{},
		PrometheusRules: map[string]*monitoringv1.PrometheusRule{},
		Issuers:         map[string]*cmv1.Issuer{},
		Certificates:    map[string]*cmv1.Certificate{},
	}
	var errs []error
	for _, o := range objs {
		var dup bool
		switch v := o.Value.(type) {
		case *appsv1.StatefulSet:
			dup = put(s.StatefulSets, o.Name, v)
		case *corev1.Service:
			dup = put(s.Services, o.Name, v)
		case *corev1.ServiceAccount:
			dup = put(s.ServiceAccounts, o.Name, v)
		case *corev1.Secret:
			dup = put(s.Secrets, o.Name, v)
		case *policyv1.PodDisruptionBudget:
			dup = put(s.PDBs, o.Name, v)
		case *networkingv1.NetworkPolicy:
			dup = put(s.NetworkPolicies, o.Name, v)
		case *monitoringv1.ServiceMonitor:
			dup = put(s.ServiceMonitors, o.Name, v)
		case *monitoringv1.PrometheusRule:
			dup = put(s.PrometheusRules, o.Name, v)
		case *cmv1.Issuer:
			dup = put(s.Issuers, o.Name, v)
		case *cmv1.Certificate:
			dup = put(s.Certificates, o.Name, v)
		default:
			errs = append(errs, fmt.Errorf("%s %q: not indexed", o.Kind, o.Name))
		}
		if dup {
			errs = append(errs, fmt.Errorf("%s %q appears twice", o.Kind, o.Name))
		}
	}
	return s, errors.Join(errs...)
}

func put[T any](m map[string]*T, name string, v *T) (dup bool) {
	_, dup = m[name]
	m[name] = v
	return dup
}

// BuildSet builds and indexes one overlay.
func BuildSet(overlay string) (*Set, error) {
	objs, err := Build(OverlayDir(overlay))
	if err != nil {
		return nil, err
	}
	return NewSet(objs)
}
