#!/usr/bin/env bash
# Runs `committer bench` against a local 3-replica cluster on PostgreSQL,
# side by side with the same PostgreSQL driven directly and the bare gRPC
# transport (docs/benchmarks.md). PostgreSQL runs with its durable defaults
# (fsync on). Extra arguments go to `committer bench`, e.g.
#
#   scripts/bench.sh --scenarios cas --workers 1 --rounds 5
#
# Environment: BENCH_DIR (default: a fresh temp dir), BENCH_PG_PORT (55432),
# BENCH_SERVE_ARGS (further flags for every `committer serve`),
# BENCH_BACKEND_DELAY (e.g. 1ms: the replicas and the direct target reach
# PostgreSQL through one `committer bench delay-proxy`, which adds that
# round-trip time), BENCH_VIA=1 (add the
# `via` target: every call sent to a follower, which forwards it),
# BENCH_BIN (a committer binary to run instead of building one, to compare
# builds), BENCH_TLS=1 (mutual TLS on every port, certificates from
# scripts/gen-certs.sh; the bench client presents an admin certificate),
# BENCH_HOLD=1 (run no benchmark: keep the cluster up until interrupted, to
# drive and profile it by hand; the replicas serve pprof on 17201-17203).
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "bench.sh: PostgreSQL binaries not found under /usr/lib/postgresql" >&2; exit 1; }
dir=${BENCH_DIR:-$(mktemp -d /tmp/committer-bench.XXXXXX)}
mkdir -p "$dir"
chmod 755 "$dir"
port=${BENCH_PG_PORT:-55432}
if [ -n "${BENCH_BIN:-}" ]; then cp "$BENCH_BIN" "$dir/committer"; else go build -o "$dir/committer" ./cmd/committer; fi

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir/pg"
[ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust >"$dir/initdb.log"
as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=on" start >/dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres bench
url="postgres://postgres@127.0.0.1:$port/bench"

bench_args=()
replica_url=$url
if [ -n "${BENCH_BACKEND_DELAY:-}" ]; then
  "$dir/committer" bench delay-proxy --listen "127.0.0.1:$((port + 1))" --upstream "127.0.0.1:$port" \
    --delay "$BENCH_BACKEND_DELAY" 2>"$dir/delay-proxy.log" &
  pids+=($!)
  # The direct target goes through the same proxy process as the replicas,
  # so both see the same added latency and the same proxy overhead.
  replica_url="postgres://postgres@127.0.0.1:$((port + 1))/bench"
  url=$replica_url
  echo "bench.sh: PostgreSQL is $BENCH_BACKEND_DELAY further away for the replicas and the postgres target" >&2
  for _ in $(seq 50); do grep -q 'delay-proxy:' "$dir/delay-proxy.log" && break; sleep 0.1; done
fi

tls_serve=(); curl_tls=(); scheme=http
if [ "${BENCH_TLS:-}" = 1 ]; then
  scripts/gen-certs.sh "$dir/tls" IP:127.0.0.1 -- bench >/dev/null
  t=$dir/tls
  tls_serve=(--tls-cert-file "$t/server.crt" --tls-key-file "$t/server.key" --tls-client-ca-file "$t/client-ca.crt"
    --peer-tls-cert-file "$t/peer.crt" --peer-tls-key-file "$t/peer.key" --peer-tls-ca-file "$t/peer-ca.crt")
  bench_args+=(--cacert "$t/client-ca.crt" --cert "$t/bench.crt" --key "$t/bench.key")
  curl_tls=(--cacert "$t/client-ca.crt" --cert "$t/bench.crt" --key "$t/bench.key")
  scheme=https
  echo "bench.sh: mutual TLS on every port" >&2
fi
peers="r1=127.0.0.1:17101,r2=127.0.0.1:17102,r3=127.0.0.1:17103"
for i in 1 2 3; do
  # shellcheck disable=SC2086
  "$dir/committer" serve --id "r$i" --backend "$replica_url" --data-dir "$dir/r$i" \
    --grpc-addr "127.0.0.1:1700$i" --raft-addr "127.0.0.1:1710$i" --http-addr "127.0.0.1:1720$i" \
    --bootstrap-expect 3 --peers "$peers" --log-level warn --enable-pprof "${tls_serve[@]}" ${BENCH_SERVE_ARGS:-} 2>"$dir/r$i.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  for i in 1 2 3; do
    if curl -fs "${curl_tls[@]}" "$scheme://127.0.0.1:1720$i/readyz" >/dev/null 2>&1; then ready=$i; break 2; fi
  done
  sleep 0.1
done
[ -n "${ready:-}" ] || { echo "bench.sh: the cluster never became ready; logs in $dir" >&2; exit 1; }
echo "bench.sh: cluster ready; PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on port $port with fsync on; output in $dir" >&2
if [ "${BENCH_HOLD:-}" = 1 ]; then
  echo "bench.sh: holding; gRPC 127.0.0.1:17001-17003, HTTP 127.0.0.1:17201-17203, PostgreSQL $url" >&2
  sleep infinity & pids+=($!); wait "$!" || true
  exit 0
fi
if [ "${BENCH_VIA:-}" = 1 ]; then
  # A follower that knows its leader; the state gauges settle within moments
  # of the election.
  for _ in $(seq 50); do
    for i in 1 2 3; do
      if curl -fs "${curl_tls[@]}" "$scheme://127.0.0.1:1720$i/metrics" | grep -q '^committer_raft_state{state="follower"} 1'; then
        via=$i; break 2
      fi
    done
    sleep 0.1
  done
  [ -n "${via:-}" ] || { echo "bench.sh: no follower found for the via target; logs in $dir" >&2; exit 1; }
  bench_args+=(--via "127.0.0.1:1700$via"); echo "bench.sh: via target: follower r$via" >&2
fi
"$dir/committer" bench --cluster 127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003 --postgres "$url" "${bench_args[@]}" "$@"
