package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hacommit/committer/internal/tlsconfig"
	"github.com/hacommit/committer/rpc/admission"
	"github.com/hacommit/committer/rpc/client"
)

// clientTLSFlags are the TLS flags of every command that calls a replica,
// named as etcdctl names them.
type clientTLSFlags struct {
	CACert     string
	Cert       string
	Key        string
	ServerName string
	TLS        bool
}

func (f *clientTLSFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.CACert, "cacert", "", "verify the replicas' certificates with this CA bundle (PEM); turns TLS on")
	fs.StringVar(&f.Cert, "cert", "", "client certificate (PEM) to present, for replicas that verify clients; turns TLS on")
	fs.StringVar(&f.Key, "key", "", "key of --cert (PEM)")
	fs.StringVar(&f.ServerName, "tls-server-name", "", "name to verify in the replicas' certificates (default: the host dialled)")
	fs.BoolVar(&f.TLS, "tls", false, "use TLS, verifying the replicas with the system's roots when --cacert is not given")
}

func (f *clientTLSFlags) enabled() bool {
	return f.TLS || f.CACert != "" || f.Cert != "" || f.Key != ""
}

// config is the TLS configuration the flags ask for; nil for plaintext.
func (f *clientTLSFlags) config() (*tls.Config, error) {
	if !f.enabled() {
		return nil, nil
	}
	return tlsconfig.Client(tlsconfig.Files{CA: f.CACert, Cert: f.Cert, Key: f.Key}, f.ServerName)
}

// dialOption is the transport credentials the flags ask for.
func (f *clientTLSFlags) dialOption() (grpc.DialOption, error) {
	cfg, err := f.config()
	switch {
	case err != nil:
		return nil, err
	case cfg == nil:
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

// clientOptions are the Go client's options for the flags.
func (f *clientTLSFlags) clientOptions() ([]client.Option, error) {
	cfg, err := f.config()
	if err != nil || cfg == nil {
		return nil, err
	}
	return []client.Option{client.WithTLS(cfg)}, nil
}

// serverTLSFlags are serve's TLS and admission flags, named as etcd names
// its own.
type serverTLSFlags struct {
	Client           tlsconfig.Files
	Peer             tlsconfig.Files
	AdminIdentities  []string
	ClientIdentities []string
	MaxCallsPerConn  int
	EnablePprof      bool
}

// defaultMaxCallsPerConn bounds one client connection's calls in progress:
// far above what a persist process has on its connection (its calls are
// per shard and short), low enough that one runaway client cannot occupy
// every stream worker and most of the leader's memory.
const defaultMaxCallsPerConn = 1024

func (f *serverTLSFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Client.Cert, "tls-cert-file", "", "certificate (PEM) of the gRPC and HTTP ports; with the --peer-tls-* files, turns TLS on for every port (re-read when the file changes)")
	fs.StringVar(&f.Client.Key, "tls-key-file", "", "key of --tls-cert-file (PEM)")
	fs.StringVar(&f.Client.CA, "tls-client-ca-file", "", "CA bundle (PEM) that signs client certificates: set, clients must present one it signed (HTTP: for /metrics and /debug/pprof)")
	fs.StringVar(&f.Peer.Cert, "peer-tls-cert-file", "", "certificate (PEM) this replica shows other replicas, on the Raft and gRPC ports; needs both server and client key usage")
	fs.StringVar(&f.Peer.Key, "peer-tls-key-file", "", "key of --peer-tls-cert-file (PEM)")
	fs.StringVar(&f.Peer.CA, "peer-tls-ca-file", "", "CA bundle (PEM) that signs every replica's peer certificate; peers are always mutually authenticated")
	fs.StringSliceVar(&f.AdminIdentities, "admin-identities", nil, "client certificate identities (common name or any subject alternative name) allowed to add or remove replicas, transfer leadership and adopt the fence (empty: every client; needs --tls-client-ca-file)")
	fs.StringSliceVar(&f.ClientIdentities, "client-identities", nil, "client certificate identities allowed to call the consensus API (empty: every client; needs --tls-client-ca-file)")
	fs.IntVar(&f.MaxCallsPerConn, "max-calls-per-conn", defaultMaxCallsPerConn, "most calls one client connection may have in progress; more are refused at once with RESOURCE_EXHAUSTED (0: no limit; replicas' own connections are exempt)")
	fs.BoolVar(&f.EnablePprof, "enable-pprof", false, "serve /debug/pprof on the HTTP port")
}

// build checks the flags and loads the certificates.
func (f *serverTLSFlags) build(log *slog.Logger) (*tlsconfig.Server, admission.Config, error) {
	var errs []error
	if f.MaxCallsPerConn < 0 {
		errs = append(errs, fmt.Errorf("--max-calls-per-conn must not be negative, got %d", f.MaxCallsPerConn))
	}
	if (len(f.AdminIdentities) > 0 || len(f.ClientIdentities) > 0) && f.Client.CA == "" {
		errs = append(errs, errors.New("--admin-identities and --client-identities need --tls-client-ca-file: identities come from verified client certificates"))
	}
	if len(errs) > 0 {
		return nil, admission.Config{}, errors.Join(errs...)
	}
	t, err := tlsconfig.NewServer(f.Client, f.Peer, log)
	if err != nil {
		return nil, admission.Config{}, err
	}
	return t, admission.Config{
		AdminIdentities:  f.AdminIdentities,
		ClientIdentities: f.ClientIdentities,
		MaxCallsPerConn:  f.MaxCallsPerConn,
	}, nil
}
