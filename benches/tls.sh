#!/usr/bin/env bash
# What TLS costs: redis-benchmark against one delayd's plain port and its
# TLS port (--tls), in alternation in the same run, on 127.0.0.1 only.
#
# Tests, each at pipeline 1 and 16 with 50 clients:
#   ping    PING
#   addhot  DELAYADD q 30000 m:<rand>  (due in 30 s: the in-memory path)
# The server runs with --appendfsync everysec and --tls-auth-clients no
# (client certificates cost a little more at connect time only; the
# clients connect once per run). Certificates are made with openssl(1).
#
# With --base BIN the plain tests also run against BIN (another build, e.g.
# the previous main) in the same alternation: the plain path must not get
# slower for TLS's sake.
#
# Usage: benches/tls.sh [--rounds N] [--requests N] [--base BIN] [--no-build]
# Environment: DELAYD_BIN (default target/release/delayd), REDIS_BENCHMARK.

set -euo pipefail

ROUNDS=3
REQUESTS=100000
BASE=""
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --base) BASE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
BIN="${DELAYD_BIN:-target/release/delayd}"
RB="${REDIS_BENCHMARK:-redis-benchmark}"
[ "$BUILD" = 1 ] && cargo build --release >&2

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  # Stop the servers and wait for them before deleting their data: a server
  # whose store vanished under it does not finish shutting down.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# A CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench-ca -keyout "$TMP/ca.key" -out "$TMP/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$TMP/s.key" -out "$TMP/s.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/s.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" \
  -CAcreateserial -days 2 -extfile "$TMP/ext" -out "$TMP/s.crt" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # bin dir port [tls-port]
  local args=(--port "$3" --dir "$2" --appendfsync everysec)
  [ -n "${4:-}" ] && args+=(--tls-port "$4" --tls-cert-file "$TMP/s.crt"
    --tls-key-file "$TMP/s.key" --tls-auth-clients no)
  "$1" "${args[@]}" 2>"$2.log" &
  PIDS+=($!)
  for _ in $(seq 200); do
    redis-cli -p "$3" PING >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server did not start: $(cat "$2.log")" >&2
  exit 1
}

PORT=$(free_port); TLS_PORT=$(free_port)
start "$BIN" "$TMP/new" "$PORT" "$TLS_PORT"
if [ -n "$BASE" ]; then
  BASE_PORT=$(free_port)
  start "$BASE" "$TMP/base" "$BASE_PORT"
fi

run() { # port P tls? test -> rps
  local tls=() cmd
  [ "$3" = tls ] && tls=(--tls --cacert "$TMP/ca.crt")
  case "$4" in
    ping) cmd=(PING) ;;
    addhot) cmd=(DELAYADD q 30000 m:__rand_int__) ;;
  esac
  "$RB" -p "$1" "${tls[@]}" -c 50 -P "$2" -n "$REQUESTS" -r 100000000 --csv "${cmd[@]}" \
    | awk -F'","' 'NR==2 {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "Medians of $ROUNDS round(s), $REQUESTS requests, 50 clients, requests per second."
echo "2 CPUs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
if [ -n "$BASE" ]; then
  echo "| test | P | plain (base) | plain | TLS | TLS / plain |"
  echo "|---|---|---|---|---|---|"
else
  echo "| test | P | plain | TLS | TLS / plain |"
  echo "|---|---|---|---|---|"
fi
for t in ping addhot; do
  for p in 1 16; do
    : > "$TMP/r.plain"; : > "$TMP/r.tls"; : > "$TMP/r.base"
    for _ in $(seq "$ROUNDS"); do
      [ -n "$BASE" ] && run "$BASE_PORT" "$p" plain "$t" >> "$TMP/r.base"
      run "$PORT" "$p" plain "$t" >> "$TMP/r.plain"
      run "$TLS_PORT" "$p" tls "$t" >> "$TMP/r.tls"
      echo "$t P$p round done" >&2
    done
    plain=$(median < "$TMP/r.plain"); tls=$(median < "$TMP/r.tls")
    ratio=$(awk -v a="$tls" -v b="$plain" 'BEGIN {printf "%.2f", a / b}')
    if [ -n "$BASE" ]; then
      echo "| $t | $p | $(median < "$TMP/r.base") | $plain | $tls | ${ratio}× |"
    else
      echo "| $t | $p | $plain | $tls | ${ratio}× |"
    fi
  done
done
echo
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
