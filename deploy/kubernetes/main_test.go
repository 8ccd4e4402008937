package kubernetes

import (
	"fmt"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hacommit/committer/deploy/deploytest"
)

var env *deploytest.Env

func TestMain(m *testing.M) { os.Exit(deploytest.RunMain(m, &env)) }

// clusterDomain is the DNS domain the manifests assume (the default of
// every distribution; the README says where to change it).
const clusterDomain = "cluster.local"

// overlay is one built overlay with the parts most checks start from.
type overlay struct {
	name      string
	set       *Set
	sts       *appsv1.StatefulSet
	container corev1.Container
	// namespace is the one the pods run in: the overlay's, or "default"
	// for objects without one.
	namespace string
	// ports are the container's ports by name.
	ports map[string]int32
}

func loadOverlay(t *testing.T, name string) *overlay {
	t.Helper()
	set, err := BuildSet(name)
	if err != nil {
		t.Fatalf("overlay %s: %v", name, err)
	}
	if len(set.StatefulSets) != 1 {
		t.Fatalf("overlay %s has %d StatefulSets; want exactly one", name, len(set.StatefulSets))
	}
	o := &overlay{name: name, set: set, ports: map[string]int32{}}
	for _, s := range set.StatefulSets {
		o.sts = s
	}
	cs := o.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(o.sts.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("overlay %s: StatefulSet has %d containers and %d init containers; want one and none", name, len(cs), len(o.sts.Spec.Template.Spec.InitContainers))
	}
	o.container = cs[0]
	o.namespace = o.sts.Namespace
	if o.namespace == "" {
		o.namespace = "default"
	}
	for _, p := range o.container.Ports {
		if _, dup := o.ports[p.Name]; dup || p.Name == "" {
			t.Fatalf("overlay %s: container port %d has the name %q, empty or taken", name, p.ContainerPort, p.Name)
		}
		o.ports[p.Name] = p.ContainerPort
	}
	return o
}

// forEachOverlay runs check on every overlay the package ships.
func forEachOverlay(t *testing.T, check func(t *testing.T, o *overlay)) {
	for _, name := range Overlays() {
		t.Run(name, func(t *testing.T) { check(t, loadOverlay(t, name)) })
	}
}

func (o *overlay) replicas() int {
	if o.sts.Spec.Replicas == nil {
		return 1 // the API's default
	}
	return int(*o.sts.Spec.Replicas)
}

// podName is the name the StatefulSet controller gives pod ordinal i.
func (o *overlay) podName(i int) string { return fmt.Sprintf("%s-%d", o.sts.Name, i) }

// podDNS is pod i's name under the StatefulSet's governing Service.
func (o *overlay) podDNS(i int) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s", o.podName(i), o.sts.Spec.ServiceName, o.namespace, clusterDomain)
}

// containerPort resolves a Service's targetPort or a probe's port, by name
// or number, to a container port.
func (o *overlay) containerPort(p intstr.IntOrString) (name string, number int32, ok bool) {
	for n, num := range o.ports {
		if (p.Type == intstr.String && p.StrVal == n) || (p.Type == intstr.Int && p.IntVal == num) {
			return n, num, true
		}
	}
	return "", 0, false
}

// portOfName is the container port called name, failing t when none is.
func (o *overlay) portOfName(t *testing.T, name string) int32 {
	t.Helper()
	p, ok := o.ports[name]
	if !ok {
		t.Fatalf("overlay %s: no container port is named %q; ports %v", o.name, name, o.ports)
	}
	return p
}

// fakeSecrets stands a marker in for every Secret value, for the checks
// that need the command line but no database.
func fakeSecrets(name, key string) (string, error) { return "secret:" + name + "/" + key, nil }

// process is what the kubelet runs for pod ordinal i.
func (o *overlay) process(t *testing.T, i int, secrets SecretLookup) Process {
	t.Helper()
	p, err := Kubelet(o.container, Pod{Name: o.podName(i), Namespace: o.namespace}, secrets)
	if err != nil {
		t.Fatalf("overlay %s pod %d: %v", o.name, i, err)
	}
	return p
}

// serve is pod i's serve flags, from its command line and environment.
func (o *overlay) serve(t *testing.T, i int) Serve {
	t.Helper()
	s, err := ParseServe(o.process(t, i, fakeSecrets))
	if err != nil {
		t.Fatalf("overlay %s pod %d: %v", o.name, i, err)
	}
	return s
}

// volume is the pod volume called name.
func (o *overlay) volume(name string) (corev1.Volume, bool) {
	for _, v := range o.sts.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// claimTemplate reports whether name is one of the StatefulSet's
// volumeClaimTemplates.
func (o *overlay) claimTemplate(name string) bool {
	for _, c := range o.sts.Spec.VolumeClaimTemplates {
		if c.Name == name {
			return true
		}
	}
	return false
}

// mountOf is the volume mount that holds path, the deepest one.
func (o *overlay) mountOf(path string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range o.container.VolumeMounts {
		if (path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
			best, found = m, true
		}
	}
	return best, found
}
