// Package tlsconfig builds the crypto/tls configurations of a replica's
// ports and of its clients from PEM files, and re-reads those files when
// they change, so that certificates rotate without a restart.
//
// A replica's gRPC port carries two kinds of connection: clients (persist,
// the CLI) and the other replicas (forwarded calls, membership, read
// confirmation). They are told apart in the TLS handshake itself: a replica
// offers the ALPN protocol PeerALPN, and the server then presents the peer
// certificate and requires a client certificate signed by the peer CA;
// anyone else gets the client certificate and, if a client CA is set, must
// present a certificate it signed. The Raft port is always peer-to-peer and
// always mutual. See docs/architecture.md §12 (Transport security and
// authorization).
package tlsconfig
