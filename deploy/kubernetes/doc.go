// Package kubernetes holds the committer's Kubernetes manifests (a kustomize
// base and the plaintext and mtls overlays) and the tests that hold them to
// what the product needs.
//
// The tests build every overlay with kustomize's own Go API and decode each
// object strictly into its Kubernetes type, so a misspelled field fails here
// rather than at `kubectl apply`. They check the invariants that a cluster
// of replicas depends on (ports, quorum, peers, grace periods, certificate
// files) across the objects, and finally run the StatefulSet's own command
// line as real processes: the kubelet's part (the downward API, Secrets,
// $(VAR) expansion) is emulated here, and the only other rewriting is the
// one a cluster does, pod names to addresses and mounts to directories.
package kubernetes
