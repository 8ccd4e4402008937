package kubernetes

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hacommit/committer/deploy/deploytest"
)

// productPorts are the ports the product documents (docs/operations.md §1).
func productPorts() map[string]int32 {
	return map[string]int32{"grpc": 6882, "raft": 6883, "http": 6884}
}

func TestContainerPortsAreTheProductsPorts(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		if !maps.Equal(o.ports, productPorts()) {
			t.Errorf("container ports %v; want %v", o.ports, productPorts())
		}
		for _, p := range o.container.Ports {
			if p.Protocol != corev1.ProtocolTCP {
				t.Errorf("container port %s has protocol %q; want TCP", p.Name, p.Protocol)
			}
		}
	})
}

// Every Service port, probe port, listen and advertised address, --peers and
// --join entry, NetworkPolicy port and ServiceMonitor port is one of the
// container's ports, under the same name and number.
func TestPortsAgreeAcrossObjects(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, svc := range o.set.Services {
			for _, sp := range svc.Spec.Ports {
				target := sp.TargetPort
				if target == (intstr.IntOrString{}) {
					target = intstr.FromInt32(sp.Port)
				}
				name, num, ok := o.containerPort(target)
				if !ok || name != sp.Name || num != sp.Port {
					t.Errorf("Service %s port %s (%d -> %s) reaches container port %q %d; want its own name and number", svc.Name, sp.Name, sp.Port, target.String(), name, num)
				}
				if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
					t.Errorf("Service %s port %s has protocol %q; want TCP", svc.Name, sp.Name, sp.Protocol)
				}
			}
		}
		if got := servicePortNames(o.set.Services[o.sts.Spec.ServiceName]); !slices.Equal(got, []string{"grpc", "http", "raft"}) {
			t.Errorf("headless Service ports %q; want grpc, http, raft", got)
		}
		// Clients get the API and the metrics; Raft is for replicas only.
		if got := servicePortNames(o.set.Services["committer-client"]); !slices.Equal(got, []string{"grpc", "http"}) {
			t.Errorf("client Service ports %q; want grpc and http", got)
		}

		for name, p := range probes(o.container) {
			if p.HTTPGet == nil {
				t.Errorf("%s probe is not an HTTP GET", name)
				continue
			}
			if n, num, ok := o.containerPort(p.HTTPGet.Port); !ok || n != "http" {
				t.Errorf("%s probe port %s is container port %q %d; want http", name, p.HTTPGet.Port.String(), n, num)
			}
		}

		grpc, raft, http := o.portOfName(t, "grpc"), o.portOfName(t, "raft"), o.portOfName(t, "http")
		for i := range o.replicas() + 1 { // and the first pod a scale-up adds
			f := o.serve(t, i).Flags
			wantFlag(t, f, "grpc-addr", fmt.Sprintf(":%d", grpc))
			wantFlag(t, f, "raft-addr", fmt.Sprintf(":%d", raft))
			wantFlag(t, f, "http-addr", fmt.Sprintf(":%d", http))
			wantFlag(t, f, "grpc-advertise", net.JoinHostPort(o.podDNS(i), strconv.Itoa(int(grpc))))
			wantFlag(t, f, "raft-advertise", net.JoinHostPort(o.podDNS(i), strconv.Itoa(int(raft))))
			for _, p := range parsePeers(t, f["peers"]) {
				if port := portOf(t, p.addr); port != raft {
					t.Errorf("--peers entry %s=%s is on port %d; want raft %d", p.id, p.addr, port, raft)
				}
			}
			for _, a := range splitList(f["join"]) {
				if port := portOf(t, a); port != grpc {
					t.Errorf("--join entry %s is on port %d; want grpc %d", a, port, grpc)
				}
			}
		}

		var npPorts []int32
		for _, np := range o.set.NetworkPolicies {
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port == nil {
						t.Errorf("NetworkPolicy %s has a rule for every port", np.Name)
						continue
					}
					if _, num, ok := o.containerPort(*p.Port); !ok {
						t.Errorf("NetworkPolicy %s admits port %s, which is no container port", np.Name, p.Port.String())
					} else {
						npPorts = append(npPorts, num)
					}
					if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
						t.Errorf("NetworkPolicy %s port %s has protocol %q; want TCP", np.Name, p.Port.String(), *p.Protocol)
					}
				}
			}
		}
		slices.Sort(npPorts)
		if got := slices.Compact(npPorts); !slices.Equal(got, []int32{grpc, raft, http}) {
			t.Errorf("NetworkPolicy ports %v; want exactly the container ports %v", got, []int32{grpc, raft, http})
		}

		for _, sm := range o.set.ServiceMonitors {
			for _, ep := range sm.Spec.Endpoints {
				sp, ok := servicePort(o.set.Services["committer-client"], ep.Port)
				if !ok {
					t.Errorf("ServiceMonitor %s scrapes port %q, which the client Service lacks", sm.Name, ep.Port)
					continue
				}
				if n, _, _ := o.containerPort(sp.TargetPort); n != "http" {
					t.Errorf("ServiceMonitor %s scrapes port %q, which reaches container port %q; want http", sm.Name, ep.Port, n)
				}
				if ep.Path != "/metrics" {
					t.Errorf("ServiceMonitor %s scrapes path %q; want /metrics", sm.Name, ep.Path)
				}
			}
		}
	})
}

// A majority survives what the manifests allow: an odd number of
// replicas, all of them bootstrapped, and a disruption budget that never
// takes a quorum away, at three replicas or after a scale-up to five.
func TestQuorumSurvivesDisruptions(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		n := o.replicas()
		if n < 3 || n%2 == 0 {
			t.Fatalf("replicas %d; want an odd number of at least 3", n)
		}
		if got := o.serve(t, 0).Flags["bootstrap-expect"]; got != strconv.Itoa(n) {
			t.Errorf("--bootstrap-expect=%s; want the replicas, %d", got, n)
		}
		if len(o.set.PDBs) != 1 {
			t.Fatalf("%d PodDisruptionBudgets; want one", len(o.set.PDBs))
		}
		for _, pdb := range o.set.PDBs {
			if !selects(t, pdb.Spec.Selector, o.sts.Spec.Template.Labels) {
				t.Errorf("PodDisruptionBudget %s selector %v does not select the pods %v", pdb.Name, pdb.Spec.Selector, o.sts.Spec.Template.Labels)
			}
			for _, size := range []int{n, 5} {
				majority := size/2 + 1
				switch {
				case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil:
					mu, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, size, true)
					if err != nil || mu < 1 || mu > (size-1)/2 {
						t.Errorf("with %d replicas, maxUnavailable %s allows %d down (%v); want 1 to %d, keeping %d", size, pdb.Spec.MaxUnavailable.String(), mu, err, (size-1)/2, majority)
					}
				case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable == nil:
					ma, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, size, true)
					if err != nil || ma < majority || ma >= size {
						t.Errorf("with %d replicas, minAvailable %s keeps %d (%v); want %d to %d", size, pdb.Spec.MinAvailable.String(), ma, err, majority, size-1)
					}
				default:
					t.Errorf("PodDisruptionBudget %s sets both or neither of minAvailable and maxUnavailable", pdb.Name)
				}
			}
		}
	})
}

// Every selector selects the StatefulSet's pods: its own, the Services',
// the anti-affinity's; the ServiceMonitor selects the client Service alone.
func TestSelectorsMatchThePods(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		podLabels := o.sts.Spec.Template.Labels
		if !selects(t, o.sts.Spec.Selector, podLabels) {
			t.Errorf("the StatefulSet's selector %v does not select its pods %v", o.sts.Spec.Selector, podLabels)
		}
		for _, svc := range o.set.Services {
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
				t.Errorf("Service %s selector %v does not select the pods %v", svc.Name, svc.Spec.Selector, podLabels)
			}
		}
		aff := o.sts.Spec.Template.Spec.Affinity
		if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Fatalf("affinity %+v; want one required pod anti-affinity term", aff)
		}
		term := aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
		if term.TopologyKey != "kubernetes.io/hostname" || !selects(t, term.LabelSelector, podLabels) {
			t.Errorf("anti-affinity on %q selecting %v; want kubernetes.io/hostname selecting the pods %v", term.TopologyKey, term.LabelSelector, podLabels)
		}
		if len(o.set.ServiceMonitors) != 1 {
			t.Fatalf("%d ServiceMonitors; want one", len(o.set.ServiceMonitors))
		}
		for _, sm := range o.set.ServiceMonitors {
			var selected []string
			for _, svc := range o.set.Services {
				if selects(t, &sm.Spec.Selector, svc.Labels) {
					selected = append(selected, svc.Name)
				}
			}
			if !slices.Equal(selected, []string{"committer-client"}) {
				t.Errorf("ServiceMonitor %s selects Services %q; want committer-client alone (each replica scraped once)", sm.Name, selected)
			}
		}
	})
}

// The StatefulSet's governing Service is headless and names pods that are
// not ready yet, and the pods start together: a quorum forms only when
// every initial replica runs and resolves the others.
func TestHeadlessServiceAndParallelStart(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		h, ok := o.set.Services[o.sts.Spec.ServiceName]
		if !ok {
			t.Fatalf("the StatefulSet's serviceName %q is no Service", o.sts.Spec.ServiceName)
		}
		if h.Spec.ClusterIP != corev1.ClusterIPNone || !h.Spec.PublishNotReadyAddresses {
			t.Errorf("headless Service clusterIP %q publishNotReadyAddresses %v; want None and true", h.Spec.ClusterIP, h.Spec.PublishNotReadyAddresses)
		}
		c := o.set.Services["committer-client"]
		if c == nil || c.Spec.ClusterIP == corev1.ClusterIPNone || c.Spec.PublishNotReadyAddresses {
			t.Errorf("client Service %+v; want a cluster IP that sends calls to ready replicas only", c)
		}
		if o.sts.Spec.PodManagementPolicy != "Parallel" {
			t.Errorf("podManagementPolicy %q; want Parallel (OrderedReady waits for a readiness that needs a quorum)", o.sts.Spec.PodManagementPolicy)
		}
		if p := o.sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenScaled != "Delete" {
			t.Errorf("PVC retention %+v; want whenScaled Delete, so a scaled-down replica never returns on its old data dir", p)
		}
	})
}

// --peers names exactly the initial pods, with the ids their --id gives
// them and the Raft addresses they advertise; --join names their gRPC
// addresses; every pod gets the same lists, and a pod a scale-up adds is
// in neither, so it joins.
func TestPeersNameTheInitialPods(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		n := o.replicas()
		var ids, raftAddrs, grpcAddrs []string
		for i := range n {
			f := o.serve(t, i).Flags
			ids = append(ids, f["id"])
			raftAddrs = append(raftAddrs, f["raft-advertise"])
			grpcAddrs = append(grpcAddrs, f["grpc-advertise"])
		}
		for i, id := range ids {
			if id != o.podName(i) {
				t.Errorf("pod %s runs with --id=%s; want its name", o.podName(i), id)
			}
		}
		for i := range n + 2 {
			f := o.serve(t, i).Flags
			peers := parsePeers(t, f["peers"])
			if len(peers) != n {
				t.Fatalf("pod %d: --peers has %d entries; want %d", i, len(peers), n)
			}
			for j, p := range peers {
				if p.id != ids[j] || p.addr != raftAddrs[j] {
					t.Errorf("pod %d: --peers entry %d is %s=%s; want %s=%s (what that pod advertises)", i, j, p.id, p.addr, ids[j], raftAddrs[j])
				}
			}
			if join := splitList(f["join"]); !slices.Equal(join, grpcAddrs) {
				t.Errorf("pod %d: --join %q; want the initial pods' gRPC addresses %q", i, join, grpcAddrs)
			}
			inPeers := slices.ContainsFunc(peers, func(p peer) bool { return p.id == f["id"] })
			if inPeers != (i < n) {
				t.Errorf("pod %d (--id=%s) in --peers: %v; want %v", i, f["id"], inPeers, i < n)
			}
		}
	})
}

// A stopping replica drains for --shutdown-timeout after handing over
// leadership; Kubernetes must wait longer before it kills the process.
func TestGracePeriodOutlastsTheDrain(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		s := o.serve(t, 0)
		v, ok := s.Flags["shutdown-timeout"]
		if !ok {
			t.Fatal("--shutdown-timeout is not given; the grace period depends on it, so it must be explicit")
		}
		drain, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--shutdown-timeout=%s: %v", v, err)
		}
		g := o.sts.Spec.Template.Spec.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second <= drain {
			t.Errorf("terminationGracePeriodSeconds %v; want above the %v drain", g, drain)
		}
	})
}

// Readiness asks /readyz and liveness /healthz, on the HTTP port, in the
// overlay's scheme; liveness tolerates a minute of silence, and never asks
// readiness (a replica without a quorum must not be restarted).
func TestProbesAskTheRightEndpoints(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		wantScheme := corev1.URISchemeHTTP
		if o.name == "mtls" {
			wantScheme = corev1.URISchemeHTTPS
		}
		r, l := o.container.ReadinessProbe, o.container.LivenessProbe
		if r == nil || l == nil || r.HTTPGet == nil || l.HTTPGet == nil {
			t.Fatalf("readiness %+v liveness %+v; want both HTTP GETs", r, l)
		}
		if r.HTTPGet.Path != "/readyz" || l.HTTPGet.Path != "/healthz" {
			t.Errorf("readiness asks %q and liveness %q; want /readyz and /healthz", r.HTTPGet.Path, l.HTTPGet.Path)
		}
		for name, p := range probes(o.container) {
			if scheme := cmp.Or(p.HTTPGet.Scheme, corev1.URISchemeHTTP); scheme != wantScheme {
				t.Errorf("%s probe scheme %s; want %s", name, scheme, wantScheme)
			}
		}
		if tolerated := time.Duration(l.PeriodSeconds*l.FailureThreshold) * time.Second; tolerated < time.Minute {
			t.Errorf("liveness restarts after %v without an answer; want at least a minute", tolerated)
		}
	})
}

// The data dir is a volume claimed per pod, so Raft's state survives a
// restart and a rescheduling.
func TestDataDirIsAPersistentVolume(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		dir := o.serve(t, 0).Flags["data-dir"]
		if dir == "" {
			t.Fatal("--data-dir is not given")
		}
		m, ok := o.mountOf(dir)
		if !ok || !o.claimTemplate(m.Name) || m.ReadOnly || m.SubPath != "" {
			t.Errorf("--data-dir=%s is under mount %+v; want a writable mount of a volumeClaimTemplate", dir, m)
		}
	})
}

// The pod runs as the image's non-root user with nothing it does not need:
// no privilege escalation, no capabilities, a read-only root, the runtime's
// seccomp profile, no API token, no service-link variables.
func TestPodRunsLockedDown(t *testing.T) {
	entrypoint, user := dockerfile(t)
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		spec := o.sts.Spec.Template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil {
			t.Fatalf("pod securityContext %+v; want runAsNonRoot with a runAsUser", psc)
		}
		if uid, _, _ := strings.Cut(user, ":"); strconv.FormatInt(*psc.RunAsUser, 10) != uid {
			t.Errorf("runAsUser %d; the image runs as %s", *psc.RunAsUser, user)
		}
		if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccomp %+v; want RuntimeDefault", psc.SeccompProfile)
		}
		csc := o.container.SecurityContext
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
			csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
			csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) != 0 ||
			(csc.Privileged != nil && *csc.Privileged) {
			t.Errorf("container securityContext %+v; want no escalation, a read-only root, every capability dropped", csc)
		}
		sa, ok := o.set.ServiceAccounts[spec.ServiceAccountName]
		if !ok || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken ||
			spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("service account %q (%+v), pod automount %v; want a shipped account and no token mounted", spec.ServiceAccountName, sa, spec.AutomountServiceAccountToken)
		}
		if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
			t.Errorf("enableServiceLinks %v; want false: the client Service's variables would be COMMITTER_CLIENT_*, the flags' prefix", spec.EnableServiceLinks)
		}
		if !slices.Equal(o.container.Command, entrypoint) {
			t.Errorf("command %q; want the image's entrypoint %q", o.container.Command, entrypoint)
		}
		if o.container.Image != "committer:latest" {
			t.Errorf("image %q; want committer:latest (retag with kustomize images:)", o.container.Image)
		}
		res := o.container.Resources
		if res.Requests.Cpu().IsZero() || res.Requests.Memory().IsZero() || res.Limits.Memory().IsZero() || res.Limits.Memory().Cmp(*res.Requests.Memory()) < 0 {
			t.Errorf("resources %+v; want CPU and memory requests and a memory limit at least the request", res)
		}
	})
}

// The NetworkPolicy admits Raft from replicas only, gRPC from replicas and
// clients, HTTP from monitoring only; no rule opens a port to everyone.
func TestNetworkPolicyAdmitsByPort(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		if len(o.set.NetworkPolicies) != 1 {
			t.Fatalf("%d NetworkPolicies; want one", len(o.set.NetworkPolicies))
		}
		podLabels := o.sts.Spec.Template.Labels
		from := map[string][]networkingv1.NetworkPolicyPeer{}
		for _, np := range o.set.NetworkPolicies {
			if !selects(t, &np.Spec.PodSelector, podLabels) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				t.Fatalf("NetworkPolicy %s selects %v for %q; want the pods, for Ingress", np.Name, np.Spec.PodSelector, np.Spec.PolicyTypes)
			}
			for i, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 || len(rule.Ports) == 0 {
					t.Errorf("NetworkPolicy %s rule %d admits every source or every port", np.Name, i)
				}
				for _, p := range rule.Ports {
					if p.Port == nil {
						continue
					}
					name, _, _ := o.containerPort(*p.Port)
					from[name] = append(from[name], rule.From...)
				}
			}
		}
		isReplicas := func(p networkingv1.NetworkPolicyPeer) bool {
			return p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil && selects(t, p.PodSelector, podLabels)
		}
		for name, peers := range from {
			for _, p := range peers {
				if p.IPBlock != nil || (p.PodSelector == nil && p.NamespaceSelector == nil) ||
					(p.NamespaceSelector != nil && len(p.NamespaceSelector.MatchLabels)+len(p.NamespaceSelector.MatchExpressions) == 0) {
					t.Errorf("port %s admits %+v, which is no narrow source", name, p)
				}
			}
		}
		if r := from["raft"]; len(r) != 1 || !isReplicas(r[0]) {
			t.Errorf("raft admits %+v; want the replicas alone", r)
		}
		g := from["grpc"]
		if !slices.ContainsFunc(g, isReplicas) || !slices.ContainsFunc(g, func(p networkingv1.NetworkPolicyPeer) bool { return !isReplicas(p) }) {
			t.Errorf("grpc admits %+v; want the replicas and the clients", g)
		}
		h := from["http"]
		if len(h) != 1 || h[0].NamespaceSelector == nil || h[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
			t.Errorf("http admits %+v; want the monitoring namespace alone", h)
		}
	})
}

// tlsFiles are the TLS flags and the cert-manager Secret key each must read.
func tlsFiles() map[string][2]string {
	return map[string][2]string{
		"tls-cert-file":      {"committer-tls", "tls.crt"},
		"tls-key-file":       {"committer-tls", "tls.key"},
		"tls-client-ca-file": {"committer-tls", "ca.crt"},
		"peer-tls-cert-file": {"committer-peer-tls", "tls.crt"},
		"peer-tls-key-file":  {"committer-peer-tls", "tls.key"},
		"peer-tls-ca-file":   {"committer-peer-tls", "ca.crt"},
	}
}

// mtls: every file a TLS flag names is, in the pod, the right key of the
// Secret that holds it, mounted whole and read-only (so renewals reach the
// replica); each such Secret is a Certificate's. plaintext has none.
func TestTLSFilesAreTheirSecretsKeys(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		f := o.serve(t, 0).Flags
		if o.name != "mtls" {
			for flag := range tlsFiles() {
				if v, ok := f[flag]; ok {
					t.Errorf("--%s=%s in the plaintext overlay", flag, v)
				}
			}
			return
		}
		for flag, want := range tlsFiles() {
			path, ok := f[flag]
			if !ok {
				t.Errorf("--%s is not given", flag)
				continue
			}
			secret, key, err := o.secretFile(path)
			if err != nil {
				t.Errorf("--%s=%s: %v", flag, path, err)
				continue
			}
			if secret != want[0] || key != want[1] {
				t.Errorf("--%s=%s is key %s of Secret %s; want key %s of Secret %s", flag, path, key, secret, want[1], want[0])
			}
		}
		for _, v := range o.sts.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if _, ok := o.certificateOfSecret(v.Secret.SecretName); !ok {
				t.Errorf("volume %s mounts Secret %s, which no Certificate writes", v.Name, v.Secret.SecretName)
			}
		}
	})
}

// secretFile names the Secret and key the file at path is in the pod.
func (o *overlay) secretFile(path string) (secret, key string, err error) {
	m, ok := o.mountOf(path)
	if !ok {
		return "", "", fmt.Errorf("no volume is mounted there")
	}
	v, ok := o.volume(m.Name)
	if !ok || v.Secret == nil {
		return "", "", fmt.Errorf("mount %s is not of a Secret", m.Name)
	}
	if !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
		return "", "", fmt.Errorf("mount %s is writable or a subPath (renewed files would never arrive)", m.Name)
	}
	rel := strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
	key = rel
	if len(v.Secret.Items) > 0 {
		key = ""
		for _, it := range v.Secret.Items {
			if it.Path == rel {
				key = it.Key
			}
		}
		if key == "" {
			return "", "", fmt.Errorf("Secret volume %s projects nothing to %s", m.Name, rel)
		}
	}
	return v.Secret.SecretName, key, nil
}

func (o *overlay) certificateOfSecret(secret string) (*cmv1.Certificate, bool) {
	for _, c := range o.set.Certificates {
		if c.Spec.SecretName == secret {
			return c, true
		}
	}
	return nil, false
}

// caIssuer is the CA Issuer a Certificate is signed by, with the CA
// Certificate behind it.
func (o *overlay) caIssuer(t *testing.T, c *cmv1.Certificate) (*cmv1.Issuer, *cmv1.Certificate) {
	t.Helper()
	ref := c.Spec.IssuerRef
	iss, ok := o.set.Issuers[ref.Name]
	if !ok || (ref.Kind != "" && ref.Kind != "Issuer") || (ref.Group != "" && ref.Group != "cert-manager.io") {
		t.Fatalf("Certificate %s is issued by %+v, which is no Issuer shipped here", c.Name, ref)
	}
	if iss.Spec.CA == nil {
		t.Fatalf("Certificate %s is issued by %s, which is no CA Issuer", c.Name, iss.Name)
	}
	ca, ok := o.certificateOfSecret(iss.Spec.CA.SecretName)
	if !ok || !ca.Spec.IsCA {
		t.Fatalf("Issuer %s signs with Secret %s, which no CA Certificate writes", iss.Name, iss.Spec.CA.SecretName)
	}
	root, ok := o.set.Issuers[ca.Spec.IssuerRef.Name]
	if !ok || root.Spec.SelfSigned == nil {
		t.Fatalf("CA Certificate %s is issued by %q; want a self-signed Issuer shipped here", ca.Name, ca.Spec.IssuerRef.Name)
	}
	return iss, ca
}

// mtls: the Certificates fit their use. The client-facing one serves the
// client Service's and every pod's names; the peer one serves and dials
// every pod's name, from a CA of its own; the identities the replicas admit
// are client certificates of the client CA; Prometheus presents one.
func TestCertificatesFitTheirUse(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		if o.name != "mtls" {
			if len(o.set.Certificates)+len(o.set.Issuers) != 0 {
				t.Errorf("plaintext ships Certificates %v and Issuers %v", keys(o.set.Certificates), keys(o.set.Issuers))
			}
			for _, sm := range o.set.ServiceMonitors {
				for _, ep := range sm.Spec.Endpoints {
					if ep.Scheme != nil && strings.ToLower(string(*ep.Scheme)) != "http" || ep.TLSConfig != nil {
						t.Errorf("plaintext ServiceMonitor scrapes with scheme %v and TLS %+v", ep.Scheme, ep.TLSConfig)
					}
				}
			}
			return
		}
		var pods []string
		for i := range o.replicas() + 2 {
			pods = append(pods, o.podDNS(i))
		}
		clientNames := []string{"committer-client." + o.namespace + ".svc", "committer-client." + o.namespace + ".svc." + clusterDomain}

		server, ok := o.certificateOfSecret("committer-tls")
		if !ok {
			t.Fatal("no Certificate writes committer-tls")
		}
		serverIssuer, serverCA := o.caIssuer(t, server)
		wantUsages(t, server, []cmv1.KeyUsage{cmv1.UsageServerAuth}, nil)
		for _, n := range append(slices.Clone(clientNames), pods...) {
			if !covers(server.Spec.DNSNames, n) {
				t.Errorf("Certificate %s does not cover %s; it names %q", server.Name, n, server.Spec.DNSNames)
			}
		}

		peerCert, ok := o.certificateOfSecret("committer-peer-tls")
		if !ok {
			t.Fatal("no Certificate writes committer-peer-tls")
		}
		_, peerCA := o.caIssuer(t, peerCert)
		wantUsages(t, peerCert, []cmv1.KeyUsage{cmv1.UsageServerAuth, cmv1.UsageClientAuth}, nil)
		for _, n := range pods {
			if !covers(peerCert.Spec.DNSNames, n) {
				t.Errorf("Certificate %s does not cover %s; it names %q", peerCert.Name, n, peerCert.Spec.DNSNames)
			}
		}
		if peerCA.Spec.SecretName == serverCA.Spec.SecretName {
			t.Errorf("the peer and client-facing certificates share CA %s: every client certificate would pass for a replica", peerCA.Spec.SecretName)
		}

		f := o.serve(t, 0).Flags
		for _, flag := range []string{"client-identities", "admin-identities"} {
			ids := splitList(f[flag])
			if len(ids) == 0 {
				t.Errorf("--%s is empty: every client with a certificate would be admitted", flag)
			}
			for _, id := range ids {
				c := o.clientCertificate(id)
				if c == nil {
					t.Errorf("--%s names %q, which no Certificate's common name is", flag, id)
					continue
				}
				if iss, _ := o.caIssuer(t, c); iss.Name != serverIssuer.Name {
					t.Errorf("Certificate %s (%s) is issued by %s; the replicas verify clients with %s's CA", c.Name, id, iss.Name, serverIssuer.Name)
				}
				wantUsages(t, c, []cmv1.KeyUsage{cmv1.UsageClientAuth}, []cmv1.KeyUsage{cmv1.UsageServerAuth})
			}
		}

		for _, sm := range o.set.ServiceMonitors {
			for _, ep := range sm.Spec.Endpoints {
				tc := ep.TLSConfig
				if ep.Scheme == nil || strings.ToLower(string(*ep.Scheme)) != "https" || tc == nil ||
					tc.CA.Secret == nil || tc.Cert.Secret == nil || tc.KeySecret == nil || tc.ServerName == nil {
					t.Errorf("ServiceMonitor %s endpoint %+v; want HTTPS with a CA, a client certificate and a server name", sm.Name, ep)
					continue
				}
				secret := tc.Cert.Secret.Name
				if tc.CA.Secret.Name != secret || tc.KeySecret.Name != secret ||
					tc.CA.Secret.Key != "ca.crt" || tc.Cert.Secret.Key != "tls.crt" || tc.KeySecret.Key != "tls.key" {
					t.Errorf("ServiceMonitor %s TLS reads %s/%s, %s/%s, %s/%s; want ca.crt, tls.crt, tls.key of one Secret", sm.Name,
						tc.CA.Secret.Name, tc.CA.Secret.Key, tc.Cert.Secret.Name, tc.Cert.Secret.Key, tc.KeySecret.Name, tc.KeySecret.Key)
				}
				c, ok := o.certificateOfSecret(secret)
				if !ok {
					t.Errorf("ServiceMonitor %s presents Secret %s, which no Certificate writes", sm.Name, secret)
					continue
				}
				if iss, _ := o.caIssuer(t, c); iss.Name != serverIssuer.Name {
					t.Errorf("Prometheus' Certificate %s is issued by %s; /metrics verifies with %s's CA", c.Name, iss.Name, serverIssuer.Name)
				}
				wantUsages(t, c, []cmv1.KeyUsage{cmv1.UsageClientAuth}, nil)
				if !covers(server.Spec.DNSNames, *tc.ServerName) {
					t.Errorf("ServiceMonitor %s verifies the name %s, which %s does not hold", sm.Name, *tc.ServerName, server.Name)
				}
			}
		}
	})
}

// clientCertificate is the Certificate whose common name is id.
func (o *overlay) clientCertificate(id string) *cmv1.Certificate {
	for _, c := range o.set.Certificates {
		if c.Spec.CommonName == id && !c.Spec.IsCA {
			return c
		}
	}
	return nil
}

func wantUsages(t *testing.T, c *cmv1.Certificate, must, mustNot []cmv1.KeyUsage) {
	t.Helper()
	for _, u := range must {
		if !slices.Contains(c.Spec.Usages, u) {
			t.Errorf("Certificate %s usages %q lack %q", c.Name, c.Spec.Usages, u)
		}
	}
	for _, u := range mustNot {
		if slices.Contains(c.Spec.Usages, u) {
			t.Errorf("Certificate %s usages %q include %q", c.Name, c.Spec.Usages, u)
		}
	}
}

// covers reports whether a certificate naming dnsNames is valid for host,
// as crypto/x509 matches names: exactly, or by a wildcard standing for the
// first label alone.
func covers(dnsNames []string, host string) bool {
	for _, n := range dnsNames {
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if label, tail, ok := strings.Cut(host, "."); ok && label != "" && tail == rest {
				return true
			}
		}
	}
	return false
}

func TestCoversMatchesAsX509Does(t *testing.T) {
	names := []string{"a.example", "*.s.ns.svc"}
	for host, want := range map[string]bool{
		"a.example": true, "b.example": false, "p-0.s.ns.svc": true, "x.p-0.s.ns.svc": false, "s.ns.svc": false,
	} {
		if got := covers(names, host); got != want {
			t.Errorf("covers(%q, %q) = %v; want %v", names, host, got, want)
		}
	}
}

type peer struct{ id, addr string }

func parsePeers(t *testing.T, v string) []peer {
	t.Helper()
	var ps []peer
	for _, e := range splitList(v) {
		id, addr, ok := strings.Cut(e, "=")
		if !ok || id == "" || addr == "" {
			t.Fatalf("--peers entry %q is not id=host:port", e)
		}
		ps = append(ps, peer{id, addr})
	}
	return ps
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return int32(n)
}

func wantFlag(t *testing.T, flags map[string]string, name, want string) {
	t.Helper()
	if got, ok := flags[name]; !ok || got != want {
		t.Errorf("--%s=%s (given: %v); want %s", name, got, ok, want)
	}
}

func servicePortNames(svc *corev1.Service) []string {
	if svc == nil {
		return nil
	}
	var names []string
	for _, p := range svc.Spec.Ports {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func servicePort(svc *corev1.Service, name string) (corev1.ServicePort, bool) {
	if svc == nil {
		return corev1.ServicePort{}, false
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

func probes(c corev1.Container) map[string]*corev1.Probe {
	ps := map[string]*corev1.Probe{}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p != nil {
			ps[name] = p
		}
	}
	return ps
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false // an empty selector selects everything: never what is meant here
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}

// dockerfile reads the runtime stage's ENTRYPOINT and USER from the image's
// Dockerfile, which the StatefulSet's command and runAsUser must match.
func dockerfile(t *testing.T) (entrypoint []string, user string) {
	t.Helper()
	img, err := deploytest.ReadDockerfile(deploytest.ImageDockerfile())
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Entrypoint) == 0 || img.User == "" {
		t.Fatalf("the Dockerfile's ENTRYPOINT %q or USER %q is missing", img.Entrypoint, img.User)
	}
	return img.Entrypoint, img.User
}
