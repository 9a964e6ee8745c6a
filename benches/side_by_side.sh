#!/usr/bin/env bash
# Side-by-side load benchmark: delayd against Debian's redis-server, measured
# with redis-benchmark in the same run, on 127.0.0.1 only.
#
# For every configuration (appendfsync x io-threads) a fresh redis-server
# (AOF on, RDB off) and a fresh delayd are started on free loopback ports;
# every test then runs against Redis and delayd in alternation (A B A B ...)
# for --rounds rounds, and the medians go into ONE markdown table on stdout
# (progress goes to stderr). Tests:
#
#   add     DELAYADD q <rand> m:<rand>   vs  ZADD q <rand> m:<rand>
#           (delays up to --keyspace ms, ~28 h by default: within delayd's
#           default horizon of 48 h, so in memory until hot-max-members is
#           reached, on disk beyond; --delayd-flags "--horizon-ms 120000"
#           measures the cold path: a point lookup + time index)
#   addhot  DELAYADD q 30000 m:<rand>    vs  ZADD q <now+30000> m:<rand>
#           (due in 30 s: delayd's in-memory path)
#   pop     DELAYPOP q                   vs  EVALSHA of the usual pop-due script
#           (ZRANGEBYSCORE q -inf now LIMIT 0 1, then ZREM) on a queue
#           pre-filled with more due members than the run pops (refilled
#           before each run)
#   ping    PING against each (the loopback ceiling; run once per
#           io-threads value, fsync is moot)
#
# each at pipeline 1 and 16 with 50 clients. <rand> is redis-benchmark's
# __rand_int__ (12 digits, uniform below --keyspace, default 1e8: the add
# test's delays are up to about 28 hours).
#
# Usage: benches/side_by_side.sh [options]
#   --rounds N          rounds per test, medians are reported (default 3)
#   --requests N        requests per redis-benchmark run (default 200000)
#   --clients N         redis-benchmark connections (default 50)
#   --fsync "LIST"      appendfsync policies (default "everysec always")
#   --io-threads "LIST" delayd --io-threads values (default "1")
#   --tests "LIST"      among add addhot pop ping (default: all four)
#   --pipelines "LIST"  redis-benchmark -P values (default "1 16")
#   --keyspace N        redis-benchmark -r (default 100000000)
#   --quick             smoke test: 1 round, 20000 requests, everysec only
#   --no-build          do not run `cargo build --release` first
#   --raw FILE          also write every single run as CSV to FILE
#   --delayd-flags "F"  extra flags for delayd (e.g. "--horizon-ms 120000")
#   --max-seconds N     stop starting new runs after N s (default 2400)
# Environment: DELAYD_BIN (default target/release/delayd), REDIS_SERVER,
# REDIS_BENCHMARK, REDIS_CLI.

set -euo pipefail

ROUNDS=3
REQUESTS=200000
CLIENTS=50
FSYNCS="everysec always"
IO_THREADS="1"
TESTS="add addhot pop ping"
PIPELINES="1 16"
KEYSPACE=100000000
BUILD=1
RAW=""
MAX_SECONDS=2400
DELAYD_FLAGS=""
RUN_TIMEOUT=300

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --fsync) FSYNCS=$2; shift 2 ;;
    --io-threads) IO_THREADS=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --pipelines) PIPELINES=$2; shift 2 ;;
    --keyspace) KEYSPACE=$2; shift 2 ;;
    --quick) ROUNDS=1; REQUESTS=20000; FSYNCS="everysec"; shift ;;
    --no-build) BUILD=0; shift ;;
    --raw) RAW=$2; shift 2 ;;
    --delayd-flags) DELAYD_FLAGS=$2; shift 2 ;;
    --max-seconds) MAX_SECONDS=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DELAYD_BIN=${DELAYD_BIN:-$ROOT/target/release/delayd}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_BENCHMARK=${REDIS_BENCHMARK:-redis-benchmark}
REDIS_CLI=${REDIS_CLI:-redis-cli}
HOST=127.0.0.1

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in "$REDIS_SERVER" "$REDIS_BENCHMARK" "$REDIS_CLI" python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if [ "$BUILD" = 1 ]; then
    log "building delayd (cargo build --release)"
    (cd "$ROOT" && cargo build --release --bin delayd >&2) || die "build failed"
fi
[ -x "$DELAYD_BIN" ] || die "$DELAYD_BIN missing: run cargo build --release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/delayd-side-by-side.XXXXXX")
declare -A PIDS=()

cleanup() {
    local pid
    for pid in "${!PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${!PIDS[@]}"; do
        # Bounded: a server that ignores SIGTERM for 10 s is killed.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cli() { # port args...
    local port=$1; shift
    timeout 60 "$REDIS_CLI" -h "$HOST" -p "$port" "$@"
}

wait_ready() { # port pid logfile
    local i
    for i in $(seq 100); do
        if [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; then return 0; fi
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "server on port $1 died at startup"; }
        sleep 0.1
    done
    cat "$3" >&2
    die "server on port $1 not ready after 10 s"
}

# Starts a server; sets SERVER_PORT and SERVER_PID.
start_redis() { # fsync
    local dir=$WORK/redis-$1-$RANDOM
    mkdir -p "$dir"
    SERVER_PORT=$(free_port)
    "$REDIS_SERVER" --port "$SERVER_PORT" --bind "$HOST" --save '' --appendonly yes \
        --appendfsync "$1" --dir "$dir" --daemonize no --logfile "$dir/redis.log" &
    SERVER_PID=$!
    PIDS[$SERVER_PID]=1
    wait_ready "$SERVER_PORT" "$SERVER_PID" "$dir/redis.log"
}

start_delayd() { # fsync io-threads
    local dir=$WORK/delayd-$1-$2-$RANDOM
    mkdir -p "$dir"
    SERVER_PORT=$(free_port)
    "$DELAYD_BIN" --port "$SERVER_PORT" --bind "$HOST" --dir "$dir/data" \
        --appendfsync "$1" --io-threads "$2" $DELAYD_FLAGS 2>"$dir/delayd.log" &
    SERVER_PID=$!
    PIDS[$SERVER_PID]=1
    wait_ready "$SERVER_PORT" "$SERVER_PID" "$dir/delayd.log"
}

stop_server() { # pid
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    unset "PIDS[$1]"
}

# Results: RES[key] holds "rps p50 p99" lines, one per round.
declare -A RES=()
declare -a ROWS=()
declare -A SEEN_ROW=()
WARNINGS=()
TRUNCATED=0

# Runs redis-benchmark; sets RESULT to "rps p50 p99". Extra arguments are the
# command. (Not run in a subshell, so that its warnings are kept.)
bench() { # port pipeline requests cmd...
    local port=$1 pipeline=$2 n=$3; shift 3
    local out=$WORK/bench.out err=$WORK/bench.err rc=0
    timeout "$RUN_TIMEOUT" "$REDIS_BENCHMARK" -h "$HOST" -p "$port" -c "$CLIENTS" -n "$n" \
        -P "$pipeline" -r "$KEYSPACE" --csv "$@" >"$out" 2>"$err" || rc=$?
    if [ "$rc" != 0 ]; then
        WARNINGS+=("redis-benchmark exited with $rc (124: timed out after ${RUN_TIMEOUT}s) on port $port: $*")
    fi
    if [ -s "$err" ]; then
        WARNINGS+=("redis-benchmark stderr on port $port ($*): $(sort "$err" | uniq -c | head -5 | tr '\n' ' ')")
    fi
    # Data line: "test","rps","avg","min","p50","p95","p99","max"
    RESULT=$(awk -F'","' 'NR > 1 && /^"/ { gsub(/"/, "", $NF); print $2, $5, $7; found = 1 }
                 END { if (!found) print "nan nan nan" }' "$out" | tail -1)
}

record() { # row-key server result
    local key="$1|$2"
    RES[$key]+="$3"$'\n'
    if [ -z "${SEEN_ROW[$1]:-}" ]; then
        SEEN_ROW[$1]=1
        ROWS+=("$1")
    fi
    [ -z "$RAW" ] || echo "$1|$2|$3" | tr '| ' ',,' >>"$RAW"
}

out_of_time() {
    if [ "$SECONDS" -ge "$MAX_SECONDS" ]; then
        [ "$TRUNCATED" = 1 ] || WARNINGS+=("stopped after --max-seconds $MAX_SECONDS: table incomplete")
        TRUNCATED=1
        return 0
    fi
    return 1
}

card_of() { # port kind
    if [ "$2" = redis ]; then cli "$1" ZCARD q; else cli "$1" DELAYCARD q; fi
}

# Fills queue q with due members (scores / AT times in 1970: all in the past)
# so that a pop run of `need` requests never runs dry.
prefill() { # port kind need
    local port=$1 kind=$2 need=$3 fill
    fill=$((need + need / 10 + 1000))
    cli "$port" FLUSHALL >/dev/null
    if [ "$kind" = redis ]; then
        bench "$port" 64 "$fill" ZADD q __rand_int__ m:__rand_int__
    else
        bench "$port" 64 "$fill" DELAYADD q AT __rand_int__ m:__rand_int__
    fi
    local have
    have=$(card_of "$port" "$kind")
    [ "$have" -gt "$need" ] || WARNINGS+=("$kind pre-fill gave only $have members for $need pops")
}

SCRIPT="local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #m > 0 then redis.call('ZREM', KEYS[1], m[1]) end
return m"

# One measurement of one server; records it under row key $row.
measure() { # row test pipeline kind port
    local row=$1 test=$2 p=$3 kind=$4 port=$5
    case "$test:$kind" in
    add:redis) cli "$port" FLUSHALL >/dev/null
        bench "$port" "$p" "$REQUESTS" ZADD q __rand_int__ m:__rand_int__ ;;
    add:delayd) cli "$port" FLUSHALL >/dev/null
        bench "$port" "$p" "$REQUESTS" DELAYADD q __rand_int__ m:__rand_int__ ;;
    addhot:redis) cli "$port" FLUSHALL >/dev/null
        bench "$port" "$p" "$REQUESTS" ZADD q "$(($(date +%s%3N) + 30000))" m:__rand_int__ ;;
    addhot:delayd) cli "$port" FLUSHALL >/dev/null
        bench "$port" "$p" "$REQUESTS" DELAYADD q 30000 m:__rand_int__ ;;
    pop:redis) prefill "$port" redis "$REQUESTS"
        bench "$port" "$p" "$REQUESTS" EVALSHA "$SHA" 1 q "$(date +%s%3N)" ;;
    pop:delayd) prefill "$port" delayd "$REQUESTS"
        bench "$port" "$p" "$REQUESTS" DELAYPOP q ;;
    ping:*) bench "$port" "$p" "$REQUESTS" PING ;;
    esac
    local result=$RESULT
    if [ "$test" = pop ]; then
        local left
        left=$(card_of "$port" "$kind")
        [ "$left" -gt 0 ] || WARNINGS+=("$kind queue ran dry during pop P$p")
    fi
    record "$row" "$kind" "$result"
    log "  $row $kind: $result (rps p50 p99)"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
log "work dir $WORK; rounds $ROUNDS, $REQUESTS requests/run, $CLIENTS clients; load average $LOAD_BEFORE"
for io in $IO_THREADS; do
    first_config=1
    for fsync in $FSYNCS; do
        out_of_time && break 2
        log "config: appendfsync $fsync, delayd --io-threads $io"
        start_redis "$fsync"; RPID=$SERVER_PID; RPORT=$SERVER_PORT
        start_delayd "$fsync" "$io"; DPID=$SERVER_PID; DPORT=$SERVER_PORT
        SHA=$(cli "$RPORT" SCRIPT LOAD "$SCRIPT")
        for test in $TESTS; do
            # PING does not depend on fsync: measured once per io-threads value.
            if [ "$test" = ping ] && [ "$first_config" = 0 ]; then continue; fi
            for p in $PIPELINES; do
                if [ "$test" = ping ]; then row="ping|-|$io|$p"; else row="$test|$fsync|$io|$p"; fi
                for round in $(seq "$ROUNDS"); do
                    out_of_time && break 4
                    log "$test fsync=$fsync io=$io P$p round $round/$ROUNDS"
                    measure "$row" "$test" "$p" redis "$RPORT"
                    measure "$row" "$test" "$p" delayd "$DPORT"
                done
            done
        done
        if ! kill -0 "$DPID" 2>/dev/null; then WARNINGS+=("delayd ($fsync, io $io) died during the run"); fi
        stop_server "$RPID"
        stop_server "$DPID"
        first_config=0
    done
done

median() { # column (1 rps, 2 p50, 3 p99) from stdin lines
    awk -v c="$1" '$c != "nan" { print $c }' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f×\n", a / b }'; }
fmt_rps() { awk -v a="$1" 'BEGIN { if (a == "nan") print "n/a"; else printf "%.0f\n", a }'; }

declare -A DELAYD_RPS=()
echo
echo "Medians of $ROUNDS round(s), $REQUESTS requests, $CLIENTS clients; latencies in ms (redis-benchmark --csv)."
echo "$(nproc) CPUs; load average (1/5/15 min) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"); ${SECONDS}s."
echo
echo "| test | fsync | io-threads | P | Redis rps | delayd rps | delayd/Redis | Redis p50 | delayd p50 | Redis p99 | delayd p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do
    IFS='|' read -r test fsync io p <<<"$row"
    r=${RES["$row|redis"]:-}; d=${RES["$row|delayd"]:-}
    r_rps=$(printf '%s' "$r" | median 1); d_rps=$(printf '%s' "$d" | median 1)
    r50=$(printf '%s' "$r" | median 2); d50=$(printf '%s' "$d" | median 2)
    r99=$(printf '%s' "$r" | median 3); d99=$(printf '%s' "$d" | median 3)
    DELAYD_RPS[$row]=$d_rps
    case "$test" in
    add) name="add (DELAYADD vs ZADD)" ;;
    addhot) name="add, due in 30 s" ;;
    pop) name="pop due (DELAYPOP vs Lua)" ;;
    ping) name="PING" ;;
    esac
    echo "| $name | $fsync | $io | $p | $(fmt_rps "$r_rps") | $(fmt_rps "$d_rps") | $(ratio "$d_rps" "$r_rps") | $r50 | $d50 | $r99 | $d99 |"
done
echo
for row in "${ROWS[@]}"; do
    IFS='|' read -r test fsync io p <<<"$row"
    [ "$test" = add ] || [ "$test" = addhot ] || continue
    ping=${DELAYD_RPS["ping|-|$io|$p"]:-}
    [ -n "$ping" ] || continue
    echo "delayd $test ($fsync, io-threads $io, P$p) / delayd PING P$p: $(awk -v a="${DELAYD_RPS[$row]}" -v b="$ping" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.0f%%\n", 100 * a / b }')"
done
if [ ${#WARNINGS[@]} -gt 0 ]; then
    echo
    echo "Warnings:"
    for w in "${WARNINGS[@]}"; do echo "- $w"; done
fi
log "done in ${SECONDS}s"
