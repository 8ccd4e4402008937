#!/usr/bin/env bash
# Generates a small PKI for a committer cluster with openssl: the worked
# example of docs/operations.md ("TLS setup").
#
#   scripts/gen-certs.sh DIR SAN... [-- CLIENT_NAME...]
#
# SANs are the names replicas are dialled by, in openssl's form
# (DNS:committer-0.committer.default.svc, IP:10.0.0.5). It writes:
#   client-ca.crt/.key   the CA of the client-facing side (--tls-client-ca-file, --cacert)
#   server.crt/.key      the gRPC and HTTP ports' certificate (--tls-cert-file/--tls-key-file)
#   peer-ca.crt/.key     the CA of the replicas' peer certificates (--peer-tls-ca-file)
#   peer.crt/.key        a peer certificate, server and client usage (--peer-tls-cert-file/--peer-tls-key-file)
#   <name>.crt/.key      a client certificate with common name <name> for each
#                        CLIENT_NAME (default: admin), for --cert/--key
# One server and one peer certificate naming every replica keep the example
# short; per-replica certificates work the same way.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
dir=$1; shift
sans=(); clients=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; clients=("$@"); break; fi
  sans+=("$1"); shift
done
[ ${#sans[@]} -gt 0 ] || { echo "gen-certs.sh: give at least one SAN" >&2; exit 2; }
[ ${#clients[@]} -gt 0 ] || clients=(admin)
san=$(IFS=,; echo "${sans[*]}")
mkdir -p "$dir"; cd "$dir"
days=365

ca() { # name, subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -keyout "$1.key" -out "$1.crt" -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # name, common name, CA, extendedKeyUsage, [SAN]
  local ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$4"
  [ -n "${5:-}" ] && ext="$ext
subjectAltName=$5"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days "$days" \
    -out "$1.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$1.csr"
}

ca client-ca "committer client CA"
ca peer-ca "committer peer CA"
leaf server committer client-ca serverAuth "$san"
leaf peer committer-peer peer-ca serverAuth,clientAuth "$san"
for c in "${clients[@]}"; do leaf "$c" "$c" client-ca clientAuth; done
chmod 600 ./*.key
echo "gen-certs.sh: wrote $(ls | tr '\n' ' ')in $PWD"
