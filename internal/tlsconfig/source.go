package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// Files names the PEM files of one TLS identity: a certificate (chain) and
// its key, and the CA bundle that verifies the other side. Any may be
// empty where the role does not need it.
type Files struct {
	Cert string
	Key  string
	CA   string
}

// Empty reports whether no file is named.
func (f Files) Empty() bool { return f.Cert == "" && f.Key == "" && f.CA == "" }

// Source hands out the certificate and CA pool read from Files, and reads
// them again when a file changes (a new modification time, size or inode:
// an in-place write, or the rename or symlink swap that Kubernetes uses for
// mounted Secrets). A change that does not parse, such as a certificate
// written before its new key, is logged and the last good material is kept,
// so a rotation in progress never breaks new handshakes. Its methods are
// safe for concurrent use: they run inside TLS handshakes.
type Source struct {
	files Files
	log   *slog.Logger

	mu       sync.Mutex
	certSeen [2]fileStamp // cert, key
	caSeen   fileStamp
	cert     *tls.Certificate
	pool     *x509.CertPool
	// leaf is cert's parsed leaf, for expiry reporting.
	leaf *x509.Certificate
}

// fileStamp identifies one version of a file on disk.
type fileStamp struct {
	mod   time.Time
	size  int64
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = st.Ino
	}
	return s, nil
}

// NewSource reads files once and fails if what they hold is not usable: a
// certificate without its key (or the reverse), a key that does not match,
// a CA bundle without a certificate. log (nil: slog.Default()) receives
// reloads and rejected changes.
func NewSource(files Files, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	if (files.Cert == "") != (files.Key == "") {
		return nil, errors.New("tls: a certificate file needs its key file and a key file its certificate")
	}
	s := &Source{files: files, log: log}
	if files.Cert != "" {
		if err := s.loadCert(); err != nil {
			return nil, err
		}
	}
	if files.CA != "" {
		if err := s.loadCA(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Files returns the files the source reads.
func (s *Source) Files() Files { return s.files }

// HasCA reports whether the source has a CA bundle.
func (s *Source) HasCA() bool { return s.files.CA != "" }

// Certificate returns the current certificate, reloading it first if its
// files changed. It fails only if the source has no certificate.
func (s *Source) Certificate() (*tls.Certificate, error) {
	if s.files.Cert == "" {
		return nil, errors.New("tls: no certificate configured")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed(s.files.Cert, s.certSeen[0]) || s.changed(s.files.Key, s.certSeen[1]) {
		if err := s.loadCertLocked(); err != nil {
			s.log.Warn("tls: keeping the previous certificate; the changed files do not hold a usable one", "cert", s.files.Cert, "key", s.files.Key, "err", err)
		}
	}
	return s.cert, nil
}

// Pool returns the current CA pool, reloading it first if its file
// changed; nil if the source has no CA.
func (s *Source) Pool() *x509.CertPool {
	if s.files.CA == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed(s.files.CA, s.caSeen) {
		if err := s.loadCALocked(); err != nil {
			s.log.Warn("tls: keeping the previous CA bundle; the changed file does not hold a usable one", "ca", s.files.CA, "err", err)
		}
	}
	return s.pool
}

// NotAfter is when the current certificate expires (zero without one).
func (s *Source) NotAfter() time.Time {
	if _, err := s.Certificate(); err != nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leaf == nil {
		return time.Time{}
	}
	return s.leaf.NotAfter
}

// changed reports whether path differs from seen. A file that cannot be
// read counts as unchanged: the last good material stays in use.
func (s *Source) changed(path string, seen fileStamp) bool {
	now, err := stampOf(path)
	return err == nil && now != seen
}

func (s *Source) loadCert() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadCertLocked()
}

func (s *Source) loadCertLocked() error {
	// Stamp before reading: a write racing the read shows up as a change
	// at the next handshake instead of being missed.
	cs, err := stampOf(s.files.Cert)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	ks, err := stampOf(s.files.Key)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tls: loading %s and %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("tls: parsing %s: %w", s.files.Cert, err)
	}
	cert.Leaf = leaf
	if s.cert != nil {
		s.log.Info("tls: certificate reloaded", "cert", s.files.Cert, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	}
	s.cert, s.leaf, s.certSeen = &cert, leaf, [2]fileStamp{cs, ks}
	return nil
}

func (s *Source) loadCA() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadCALocked()
}

func (s *Source) loadCALocked() error {
	st, err := stampOf(s.files.CA)
	if err != nil {
		return fmt.Errorf("tls CA: %w", err)
	}
	pemBytes, err := os.ReadFile(s.files.CA)
	if err != nil {
		return fmt.Errorf("tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return fmt.Errorf("tls: %s holds no PEM certificate", s.files.CA)
	}
	if s.pool != nil {
		s.log.Info("tls: CA bundle reloaded", "ca", s.files.CA)
	}
	s.pool, s.caSeen = pool, st
	return nil
}
