package kubernetes

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Pod is what the downward API tells a container about its pod.
type Pod struct {
	Name, Namespace string
}

// Process is the command line and environment the kubelet starts a
// container with.
type Process struct {
	// Command is the container's command (the image's entrypoint when the
	// manifest gives none, which these manifests do not allow).
	Command []string
	Args    []string
	// Env is KEY=VALUE in the manifest's order.
	Env []string
}

// SecretLookup returns the value of key in the Secret name.
type SecretLookup func(name, key string) (string, error)

// Kubelet resolves container c of pod as the kubelet does: env values in
// order (a value may refer to the variables listed before it), the downward
// API's metadata.name and metadata.namespace, Secret keys through secrets,
// then $(VAR) in command and args against the whole environment. What the
// kubelet would leave unresolved (a reference to an undefined variable),
// and sources these manifests do not use (envFrom, ConfigMaps, resource
// fields, other fields), are errors.
func Kubelet(c corev1.Container, pod Pod, secrets SecretLookup) (Process, error) {
	if len(c.EnvFrom) > 0 {
		return Process{}, fmt.Errorf("container %s: envFrom is not emulated", c.Name)
	}
	if len(c.Command) == 0 {
		return Process{}, fmt.Errorf("container %s: no command; the manifests spell out the entrypoint", c.Name)
	}
	vars := map[string]string{}
	lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	var p Process
	var errs []error
	for _, e := range c.Env {
		v, err := envValue(e, pod, secrets, lookup)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s env %s: %w", c.Name, e.Name, err))
			continue
		}
		vars[e.Name] = v
		p.Env = append(p.Env, e.Name+"="+v)
	}
	expandAll := func(what string, in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			var missing []string
			out[i], missing = Expand(s, lookup)
			if len(missing) > 0 {
				errs = append(errs, fmt.Errorf("container %s %s %q refers to undefined %s", c.Name, what, s, strings.Join(missing, ", ")))
			}
		}
		return out
	}
	p.Command = expandAll("command", c.Command)
	p.Args = expandAll("args", c.Args)
	if len(errs) > 0 {
		return Process{}, errors.Join(errs...)
	}
	return p, nil
}

func envValue(e corev1.EnvVar, pod Pod, secrets SecretLookup, lookup func(string) (string, bool)) (string, error) {
	from := e.ValueFrom
	if from == nil {
		v, missing := Expand(e.Value, lookup)
		if len(missing) > 0 {
			return "", fmt.Errorf("value %q refers to %s, not defined before it", e.Value, strings.Join(missing, ", "))
		}
		return v, nil
	}
	switch {
	case from.FieldRef != nil:
		switch from.FieldRef.FieldPath {
		case "metadata.name":
			return pod.Name, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		}
		return "", fmt.Errorf("field %s is not emulated", from.FieldRef.FieldPath)
	case from.SecretKeyRef != nil:
		v, err := secrets(from.SecretKeyRef.Name, from.SecretKeyRef.Key)
		if err != nil {
			return "", fmt.Errorf("secret %s key %s: %w", from.SecretKeyRef.Name, from.SecretKeyRef.Key, err)
		}
		return v, nil
	}
	return "", errors.New("this source is not emulated")
}
