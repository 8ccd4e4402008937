package replicaproc

import (
	"strconv"
	"strings"
	"time"
)

// Peer is an initial voter of a bootstrapping cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// ServeArgs is the command line of `committer serve`. Zero fields are left
// out, so the binary's defaults apply.
type ServeArgs struct {
	Backend string
	// ID: empty means serve's default, the host name.
	ID       string
	DataDir  string
	GRPCAddr string
	RaftAddr string
	// HTTPAddr is passed as given, so "" is left out; set NoHTTP to turn
	// the endpoint off.
	HTTPAddr string
	NoHTTP   bool
	// BootstrapExpect and Peers form a new cluster; Join joins one.
	BootstrapExpect int
	Peers           []Peer
	Join            []string
	ReadConsistency string
	UnsafeSkipFence bool
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	// Extra flags are appended as they are, e.g. "--raft-heartbeat-timeout=300ms".
	Extra []string
}

// Argv returns the arguments after the binary's name, starting with "serve".
func (a ServeArgs) Argv() []string {
	args := []string{"serve"}
	flag := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	flag("backend", a.Backend)
	flag("id", a.ID)
	flag("data-dir", a.DataDir)
	flag("grpc-addr", a.GRPCAddr)
	flag("raft-addr", a.RaftAddr)
	if a.NoHTTP {
		args = append(args, "--http-addr=")
	} else {
		flag("http-addr", a.HTTPAddr)
	}
	if a.BootstrapExpect > 0 {
		flag("bootstrap-expect", strconv.Itoa(a.BootstrapExpect))
	}
	if len(a.Peers) > 0 {
		peers := make([]string, len(a.Peers))
		for i, p := range a.Peers {
			peers[i] = p.ID + "=" + p.RaftAddr
		}
		flag("peers", strings.Join(peers, ","))
	}
	flag("join", strings.Join(a.Join, ","))
	flag("read-consistency", a.ReadConsistency)
	if a.UnsafeSkipFence {
		args = append(args, "--unsafe-skip-fence")
	}
	flag("log-format", a.LogFormat)
	flag("log-level", a.LogLevel)
	if a.ShutdownTimeout > 0 {
		flag("shutdown-timeout", a.ShutdownTimeout.String())
	}
	return append(args, a.Extra...)
}
