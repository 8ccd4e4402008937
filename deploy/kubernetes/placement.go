package kubernetes

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// EnvPrefix starts the environment variable of every committer flag.
const EnvPrefix = "COMMITTER_"

// IsListenFlag reports whether flag is a listen address, whose empty host
// means every interface of the pod; on one machine standing in for many
// pods, that is the pod's own address instead.
func IsListenFlag(flag string) bool {
	switch flag {
	case "grpc-addr", "raft-addr", "http-addr":
		return true
	}
	return false
}

// FlagOfEnv is the flag an environment variable sets, "" when none.
func FlagOfEnv(name string) string {
	rest, ok := strings.CutPrefix(name, EnvPrefix)
	if !ok {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
}

// ParseFlags reads a command line of --name=value arguments. The manifests
// spell every flag that way, so that a flag and its value can never be torn
// apart by a patch that edits the list.
func ParseFlags(args []string) (map[string]string, error) {
	flags := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok || name == "" {
			return nil, fmt.Errorf("argument %q is not of the form --name=value", a)
		}
		if _, dup := flags[name]; dup {
			return nil, fmt.Errorf("flag --%s is given twice", name)
		}
		flags[name] = value
	}
	return flags, nil
}

// Serve is a resolved `committer serve` process: its flags as the binary
// sees them, from the command line and, for flags not on it, from their
// COMMITTER_* variables.
type Serve struct {
	Flags map[string]string
	// FromEnv names the flags that came from the environment.
	FromEnv map[string]bool
}

// ParseServe reads p as `committer serve`.
func ParseServe(p Process) (Serve, error) {
	if len(p.Args) == 0 || p.Args[0] != "serve" {
		return Serve{}, fmt.Errorf("args %q do not start with the serve command", p.Args)
	}
	flags, err := ParseFlags(p.Args[1:])
	if err != nil {
		return Serve{}, err
	}
	s := Serve{Flags: flags, FromEnv: map[string]bool{}}
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		if f := FlagOfEnv(k); f != "" {
			if _, onCommandLine := flags[f]; !onCommandLine {
				flags[f] = v
				s.FromEnv[f] = true
			}
		}
	}
	return s, nil
}

// Placement is what running a pod on a given machine changes in its
// command line, and nothing else: the DNS names of pods become the
// addresses standing in for them, listen addresses with an empty host bind
// the pod's own address, and mount paths become directories.
type Placement struct {
	// Addrs maps a DNS name to the address it resolves to.
	Addrs map[string]string
	// Host is the pod's own address.
	Host string
	// Dirs maps a volume's mount path to the directory standing in for it.
	Dirs map[string]string
}

// Apply rewrites the flag values of p, on its command line and in its
// COMMITTER_* variables.
func (pl Placement) Apply(p Process) Process {
	out := Process{Command: slices.Clone(p.Command), Args: slices.Clone(p.Args), Env: slices.Clone(p.Env)}
	for i, a := range out.Args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			continue // the subcommand
		}
		out.Args[i] = "--" + name + "=" + pl.value(name, value)
	}
	for i, kv := range out.Env {
		k, v, _ := strings.Cut(kv, "=")
		if f := FlagOfEnv(k); f != "" {
			out.Env[i] = k + "=" + pl.value(f, v)
		}
	}
	return out
}

func (pl Placement) value(flag, v string) string {
	names := make([]string, 0, len(pl.Addrs))
	for n := range pl.Addrs {
		names = append(names, n)
	}
	// Longest first, so that no name is replaced inside a longer one.
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, n := range names {
		v = strings.ReplaceAll(v, n, pl.Addrs[n])
	}
	if IsListenFlag(flag) && strings.HasPrefix(v, ":") {
		v = pl.Host + v
	}
	mounts := make([]string, 0, len(pl.Dirs))
	for m := range pl.Dirs {
		mounts = append(mounts, m)
	}
	slices.SortFunc(mounts, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, m := range mounts {
		if v == m || strings.HasPrefix(v, m+"/") {
			return pl.Dirs[m] + v[len(m):]
		}
	}
	return v
}
