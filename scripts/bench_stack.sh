#!/usr/bin/env bash
# scripts/bench_stack.sh - the whole read path (NGINX edge -> three API replicas -> Redis)
# against the ceiling of the same shape, with the edge's micro-cache off and on.
#
# What it measures, on this machine, in one invocation (all processes are this script's own,
# on free 127.0.0.1 ports; the stack's default replicas/NGINX, if running, are not touched):
#   stack-nocache  an NGINX edge rendered from the repo's nginx/nginx.conf.template with
#                  nginx/render.sh (NGINX_MICROCACHE=off, NGINX_RATE_LIMIT=off, so
#                  worker_processes auto, keepalive 64 to the upstreams, gzip on, ...), proxying
#                  to three API replicas (target/release/api, started by this script, default
#                  settings) that read the stack's Redis and PostgreSQL under key prefix
#                  $BENCH_KEY_PREFIX.
#   stack-cache    the same, with a second edge rendered with NGINX_MICROCACHE=on (1 s), in
#                  front of the same three replicas.
#   ceiling        the SAME edge configuration as stack-nocache (micro-cache off) proxying to
#                  a static upstream that costs almost nothing: ONE private NGINX master with
#                  worker_processes 3 ("one worker per replica") listening on three ports (the
#                  three upstream servers of the edge), answering every /v1/results/<id> with one
#                  static file, a real API response body (so the bytes match the API's),
#                  access_log off, open_file_cache (scripts/bench/static-upstream.conf.template).
#                  So ceiling = the proxy hop + an upstream that does no work: the best this
#                  shape can do on this machine.
# Load: wrk, one thread, $BENCH_CONNECTIONS keep-alive connections, $BENCH_DURATION s per run,
# GET /v1/results/<id> with ids uniformly random over the default data set (1000000..1674822,
# math.randomseed(42): scripts/bench/results.lua, shared with scripts/bench_api.sh), wrk
# --timeout 10s. Each target is warmed up for $BENCH_WARMUP s first (not measured), then the
# targets run interleaved RUNS times (ceiling, stack-nocache, stack-cache, ceiling, ...).
# Reported, as medians over the rounds: req/s; p50, p90, p99 and max latency (wrk's: wrk does
# NOT correct for coordinated omission); the ratios stack-nocache/ceiling and
# stack-cache/ceiling (medians of the per-round ratios); bytes per response; CPU used by the
# edge's workers and cache manager and by the upstream processes (cores), and how busy the whole machine was;
# the requests each replica answered during each run (from the replicas' /metrics,
# http_requests_total of the results route) to show the balancing spread, and for stack-cache
# the share of client requests that reached a replica (the rest the micro-cache answered);
# CPU per request (microseconds of CPU time / requests) of the edge's workers, the upstream
# processes and Redis (its INFO cpu: used_cpu_user + used_cpu_sys), which docs/capacity-model.md
# is computed from; the X-Cache-Status sanity checks (BYPASS with the cache off, MISS then HIT with it on:
# enforced); the totals of non-2xx responses and socket errors (both must be 0: enforced).
#
# The machine's cores (2 here) are shared by wrk, the edge NGINX, the three replicas (or the
# static upstream), Redis and PostgreSQL: absolute numbers are this box's, the ratios are the
# point, and "ceiling" is a ceiling of this shape on this box, not of the hardware. All traffic
# goes to 127.0.0.1 and every load run is bounded in time (timeout).
#
# Goals: stack-nocache/ceiling >= 0.7 (reported); 0 non-2xx responses and 0 socket errors, and
#        an X-Cache-Status HIT with the micro-cache on (enforced: the script fails otherwise).
#
# Usage: scripts/bench_stack.sh [RUNS]      (default 3 rounds; about 1 min + 50 s per round)
# Needs: the native stack's PostgreSQL and Redis up (cargo xtask stack up) holding the default
#        data set, wrk, nginx, envsubst (gettext-base) and curl (missing Debian packages are
#        installed with apt-get when run as root), cargo unless BENCH_BUILD=0.
# Environment (defaults in brackets):
#   BENCH_KEY_PREFIX      [full]   Redis key prefix of the data set; the script runs
#                                  `seeder --key-prefix $BENCH_KEY_PREFIX` first (a no-op when
#                                  loaded; loads Redis from PostgreSQL when only Redis lacks it).
#   BENCH_DURATION        [15]     seconds of each measured run.
#   BENCH_WARMUP          [5]      seconds of warm-up per target before the first round.
#   BENCH_CONNECTIONS     [64]     wrk keep-alive connections.
#   BENCH_THREADS         [1]      wrk threads (keep 1: wrk shares the cores with the servers).
#   BENCH_BUILD           [1]      0: use the existing target/release/{api,seeder}, no cargo build.
#   BENCH_START_TIMEOUT   [60]     seconds to wait for a server to become ready.
#   BENCH_API_THREADS     [1]      API_WORKER_THREADS of each replica, as cargo xtask stack and
#                                  compose run them (empty: the API's default, one per core).
#   DATABASE_URL, REDIS_URL        default: from `cargo xtask stack env`; loopback only.
#   TMPDIR                [/tmp]   where the NGINX directories (temp paths, the micro-cache) are
#                                  made. It matters for stack-cache: every miss writes a cache
#                                  file, so a disk file system costs far more than tmpfs
#                                  (TMPDIR=/dev/shm); the summary names the file system.
# Any API_* (SEEDER_*, NGINX_*) variables of the caller's environment are NOT passed to the API
# processes (the seeder, render.sh): they run with the defaults plus what this script sets.
#   BENCH_RESULT_FILE     [docs/bench/stack.json]  the machine-readable result (medians per target,
#                                  scripts/bench/result_json.py) read by cargo xtask capacity-model;
#                                  empty: not written (it is always in the run folder as stack.json).
# Output: the summary on stdout (progress on stderr), also written to
#         runs/bench-stack/<UTC timestamp>/summary.txt, with per-run figures in runs.csv, the
#         rendered NGINX configurations, the raw wrk outputs (wrk/) and the server logs next to
#         it. Our NGINX masters, API replicas and wrk are stopped on exit, whatever happens.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
SELF=scripts/bench_stack.sh
LOG_PREFIX=bench-stack
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
cd "$REPO_DIR"

# --- configuration -----------------------------------------------------------
RUNS=${1:-3}
KEY_PREFIX=${BENCH_KEY_PREFIX:-full}
DURATION=${BENCH_DURATION:-15}
WARMUP=${BENCH_WARMUP:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
BUILD=${BENCH_BUILD:-1}
START_TIMEOUT=${BENCH_START_TIMEOUT:-60}
API_THREADS=${BENCH_API_THREADS-1}
RESULT_FILE=${BENCH_RESULT_FILE-docs/bench/stack.json}

FIRST_ID=1000000
LAST_ID=1674822
HOST=127.0.0.1
REPLICAS=3
WRK_TIMEOUT=10s # above the API's 5 s request timeout, so a slow answer is measured, not dropped
LUA=$SCRIPT_DIR/bench/results.lua
STATIC_TEMPLATE=$SCRIPT_DIR/bench/static-upstream.conf.template
EDGE_TEMPLATE=$REPO_DIR/nginx/nginx.conf.template
EDGE_RENDER=$REPO_DIR/nginx/render.sh
API_BIN=$REPO_DIR/target/release/api
SEEDER_BIN=$REPO_DIR/target/release/seeder
TARGETS=(ceiling stack-nocache stack-cache)

[[ $# -le 1 && $RUNS =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: $SELF [RUNS]   (see the header of $SELF for the BENCH_* variables)" >&2
    exit 2
}
for var in DURATION WARMUP CONNECTIONS THREADS START_TIMEOUT; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$var must be a positive integer (got '${!var}')"
done
[[ $KEY_PREFIX =~ ^[A-Za-z0-9_-]+$ ]] || die "BENCH_KEY_PREFIX may hold letters, digits, '_' and '-' only"
[[ $BUILD == 0 || $BUILD == 1 ]] || die "BENCH_BUILD must be 0 or 1"
[[ -z $API_THREADS || $API_THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_API_THREADS must be empty or a positive integer"

# --- helpers -----------------------------------------------------------------
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$SCRIPT_DIR/bench/lib.sh"

unset_args() { # unset_args ARRAY PREFIX: `env -u` arguments for every exported PREFIX* variable
    local -n into=$1
    local var
    into=()
    while IFS= read -r var; do
        into+=(-u "$var")
    done < <(compgen -e | grep "^$2" || true)
}
unset_args CLEAN_API_ENV API_
unset_args CLEAN_SEEDER_ENV SEEDER_
unset_args CLEAN_NGINX_ENV NGINX_

start_api() { # start_api NAME PORT ADMIN_PORT: sets STARTED_PID
    local name=$1 port=$2 admin=$3
    env "${CLEAN_API_ENV[@]}" API_LISTEN="$HOST:$port" API_ADMIN_LISTEN="$HOST:$admin" \
        API_KEY_PREFIX="$KEY_PREFIX" DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" \
        ${API_THREADS:+API_WORKER_THREADS=$API_THREADS} "$API_BIN" >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    OUR_PIDS+=("$STARTED_PID")
    local base="http://$HOST:$port" deadline=$((SECONDS + START_TIMEOUT))
    until api_ready "$base"; do
        if ! kill -0 "$STARTED_PID" 2>/dev/null; then
            tail -n 20 "$OUT/$name.log" >&2 || true
            die "$name (API on $base) exited during startup; its log: $OUT/$name.log"
        fi
        ((SECONDS < deadline)) ||
            die "$name (API on $base) not ready with the complete data set within ${START_TIMEOUT}s; log: $OUT/$name.log"
        sleep 0.2
    done
    log "$name: API pid $STARTED_PID on $base (admin $HOST:$admin) is ready"
}

# start_nginx NAME DIR: an NGINX master in the foreground (daemon off) on DIR/nginx.conf, its
# error log DIR/error.log (copied to $OUT at exit by new_nginx_dir's cleanup); sets STARTED_PID.
start_nginx() {
    local name=$1 dir=$2
    cp -f -- "$dir/nginx.conf" "$OUT/$name.nginx.conf"
    nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" 2>"$OUT/$name.nginx-test.log" ||
        die "nginx rejects the configuration of $name: see $OUT/$name.nginx-test.log and $OUT/$name.nginx.conf"
    nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >"$OUT/$name.nginx.log" 2>&1 &
    STARTED_PID=$!
    OUR_PIDS+=("$STARTED_PID")
}
nginx_workers() { # nginx_workers MASTER_PID: its worker processes and cache manager (not the
    # cache loader, which exits a minute after the start)
    pgrep -P "$1" -f '^nginx: (worker process|cache manager)' | tr '\n' ' ' || true
}
new_nginx_dir() { # new_nginx_dir NAME: sets NEW_DIR, a private world-readable directory with tmp/;
    # at exit (after stop_all) its error.log is copied to $OUT/NAME.error.log and it is removed.
    NEW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-stack-$1.XXXXXX")
    add_cleanup "cp -f -- '$NEW_DIR/error.log' '$OUT/$1.error.log' 2>/dev/null; rm -rf -- '$NEW_DIR'"
    chmod 0755 "$NEW_DIR"
    mkdir -p "$NEW_DIR/tmp" "$NEW_DIR/www"
}

# start_edge NAME MICROCACHE UPSTREAMS...: the repo's edge configuration (nginx/render.sh),
# rate limit off, on free ports; sets BASE_URL[NAME] and EDGE_WORKERS[NAME].
start_edge() {
    local name=$1 cache=$2 port status dir
    shift 2
    new_nginx_dir "$name" && dir=$NEW_DIR
    free_port && port=$FREE_PORT
    free_port && status=$FREE_PORT
    env "${CLEAN_NGINX_ENV[@]}" NGINX_UPSTREAMS="$*" NGINX_DIR="$dir" NGINX_ERROR_LOG="$dir/error.log" \
        NGINX_LISTEN="$HOST:$port" NGINX_STATUS_LISTEN="$HOST:$status" NGINX_MICROCACHE="$cache" \
        NGINX_RATE_LIMIT=off sh "$EDGE_RENDER" "$EDGE_TEMPLATE" >"$dir/nginx.conf" ||
        die "nginx/render.sh failed for $name"
    start_nginx "$name" "$dir"
    BASE_URL[$name]="http://$HOST:$port"
    wait_for "$START_TIMEOUT" http_ok "${BASE_URL[$name]}/v1/results/$LAST_ID" ||
        die "$name (our edge nginx on ${BASE_URL[$name]}) does not answer; see $dir/error.log"
    EDGE_WORKERS[$name]=$(nginx_workers "$STARTED_PID")
    [[ -n ${EDGE_WORKERS[$name]} ]] || die "$name: nginx master $STARTED_PID has no worker"
    log "$name: edge nginx master $STARTED_PID (workers ${EDGE_WORKERS[$name]% }) on ${BASE_URL[$name]}, micro-cache $cache, upstreams $*"
}

# replica_requests: "N1 N2 N3", the results requests each replica has answered so far
# (http_requests_total summed over the /v1/results and /student routes, all methods/statuses).
replica_requests() {
    local admin counts=()
    for admin in "${API_ADMINS[@]}"; do
        counts+=("$(curl -fsS --max-time 5 "$admin/metrics" | awk '
            /^http_requests_total\{/ && /route="\/(v1\/results|student)\// { n += $NF }
            END { printf "%d", n }')") || die "reading $admin/metrics failed"
    done
    echo "${counts[*]}"
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID...: user + system CPU time of the processes, in clock ticks
    local pid total=0 t
    for pid in "$@"; do
        t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# redis_cpu_seconds: the CPU time Redis has used since its start (INFO cpu), in seconds.
redis_cpu_seconds() {
    redis-cli -h "$redis_host" -p "$redis_port" info cpu | tr -d '\r' |
        awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { s += $2 } END { printf "%.6f", s }'
}
# x_cache URL: the X-Cache-Status header of a GET of URL (empty when missing).
x_cache() { curl -fsS --max-time 5 -o /dev/null -D - "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache-status" { print $2 }'; }

# --- preconditions -----------------------------------------------------------
bench_prepare bench-stack gettext-base:envsubst redis-tools:redis-cli python3:python3

# --- start the replicas --------------------------------------------------------
declare -A BASE_URL EDGE_WORKERS UPSTREAM_PIDS
API_ADDRS=() API_ADMINS=() API_PIDS=()
for ((n = 1; n <= REPLICAS; n++)); do
    free_port && port=$FREE_PORT
    free_port && admin=$FREE_PORT
    start_api "api$n" "$port" "$admin"
    API_ADDRS+=("$HOST:$port")
    API_ADMINS+=("http://$HOST:$admin")
    API_PIDS+=("$STARTED_PID")
done
API1="http://${API_ADDRS[0]}"
for id in "$FIRST_ID" "$LAST_ID"; do
    http_ok "$API1/v1/results/$id" || die "the API does not serve /v1/results/$id: is the data set the default one?"
done
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$API1/v1/results/$((LAST_ID + 1))")
[[ $status == 404 ]] || warn "/v1/results/$((LAST_ID + 1)) answered $status, not 404: the data set is not the default one"

# --- the static upstream (three stand-in replicas) -----------------------------
new_nginx_dir static-upstream && STATIC_DIR=$NEW_DIR
curl -fsS --max-time 5 "$API1/v1/results/$FIRST_ID" -o "$STATIC_DIR/www/result.json"
chmod 0644 "$STATIC_DIR/www/result.json"
cp "$STATIC_DIR/www/result.json" "$OUT/result.json"
BODY_BYTES=$(wc -c <"$STATIC_DIR/www/result.json")
STATIC_ADDRS=()
listens=""
for ((n = 1; n <= REPLICAS; n++)); do
    free_port
    STATIC_ADDRS+=("$HOST:$FREE_PORT")
    listens+="listen $HOST:$FREE_PORT; "
done
sed -e "s|@DIR@|$STATIC_DIR|g" -e "s|@LISTENS@|$listens|" -e "s|@WORKERS@|$REPLICAS|" \
    "$STATIC_TEMPLATE" >"$STATIC_DIR/nginx.conf"
start_nginx static-upstream "$STATIC_DIR"
STATIC_MASTER=$STARTED_PID
for addr in "${STATIC_ADDRS[@]}"; do
    wait_for "$START_TIMEOUT" http_ok "http://$addr/v1/results/$LAST_ID" ||
        die "the static upstream does not answer on $addr; see $STATIC_DIR/error.log"
done
STATIC_WORKERS=$(nginx_workers "$STATIC_MASTER")
log "static upstream: nginx master $STATIC_MASTER (workers ${STATIC_WORKERS% }) on ${STATIC_ADDRS[*]}, body $BODY_BYTES bytes"

# --- the edges -----------------------------------------------------------------
start_edge ceiling off "${STATIC_ADDRS[@]}"
start_edge stack-nocache off "${API_ADDRS[@]}"
start_edge stack-cache on "${API_ADDRS[@]}"
UPSTREAM_PIDS[ceiling]=$STATIC_WORKERS
UPSTREAM_PIDS[stack-nocache]=${API_PIDS[*]}
UPSTREAM_PIDS[stack-cache]=${API_PIDS[*]}
# The edges' rendered configurations must differ only in ports, directories, upstreams and
# the micro-cache switch: the ceiling is the same shape.
for t in "${TARGETS[@]}"; do
    sed -E -e 's/127\.0\.0\.1:[0-9]+/ADDR/g' -e 's|/[^ ;]*bench-stack-[a-z-]+\.[A-Za-z0-9]+|DIR|g' \
        -e '/^ *server ADDR max_fails/d' "$OUT/$t.nginx.conf" >"$OUT/$t.nginx.conf.normalized"
done
cmp -s "$OUT/ceiling.nginx.conf.normalized" "$OUT/stack-nocache.nginx.conf.normalized" ||
    die "the ceiling and stack-nocache edge configurations differ beyond ports/dirs/upstreams: diff $OUT/ceiling.nginx.conf $OUT/stack-nocache.nginx.conf"
rm -f -- "$OUT"/*.normalized

# --- sanity: bodies and X-Cache-Status -----------------------------------------
cmp -s <(curl -fsS --max-time 2 "${BASE_URL[ceiling]}/v1/results/1234567") "$OUT/result.json" ||
    die "the ceiling edge does not serve result.json for /v1/results/<id>"
cmp -s <(curl -fsS --max-time 2 "${BASE_URL[stack-nocache]}/v1/results/$FIRST_ID") "$OUT/result.json" ||
    die "stack-nocache does not serve the API's body for /v1/results/$FIRST_ID"
declare -A XCACHE
probe_id=$((FIRST_ID + 4242))
XCACHE[ceiling]=$(x_cache "${BASE_URL[ceiling]}/v1/results/$probe_id")
XCACHE[stack-nocache]=$(x_cache "${BASE_URL[stack-nocache]}/v1/results/$probe_id")
first=$(x_cache "${BASE_URL[stack-cache]}/v1/results/$probe_id")
x_cache "${BASE_URL[stack-cache]}/v1/results/$probe_id" >/dev/null # stored now (proxy_cache_min_uses 2)
second=$(x_cache "${BASE_URL[stack-cache]}/v1/results/$probe_id")
XCACHE[stack-cache]="$first then $second"
[[ ${XCACHE[ceiling]} == BYPASS && ${XCACHE[stack-nocache]} == BYPASS ]] ||
    die "X-Cache-Status with the micro-cache off: ceiling '${XCACHE[ceiling]}', stack-nocache '${XCACHE[stack-nocache]}' (want BYPASS)"
[[ $second == HIT ]] ||
    die "X-Cache-Status with the micro-cache on: '$first' then '$second' for one id within 1 s (want a HIT)"
log "X-Cache-Status: ceiling ${XCACHE[ceiling]}, stack-nocache ${XCACHE[stack-nocache]}, stack-cache ${XCACHE[stack-cache]}"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- warm-up -------------------------------------------------------------------
for t in "${TARGETS[@]}"; do
    log "warm-up: $t, ${WARMUP}s (not measured)"
    run_wrk "$t" "$WARMUP" "$OUT/wrk/warmup-$t.txt"
done

# --- measured rounds -----------------------------------------------------------
CSV=$OUT/runs.csv
echo "round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,edge_cpu_cores,upstream_cpu_cores,machine_busy_pct,replica_requests,upstream_share,replica1_requests,replica2_requests,replica3_requests,edge_cpu_us_per_request,upstream_cpu_us_per_request,redis_cpu_us_per_request" >"$CSV"
declare -A RPS
for round in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        log "round $round/$RUNS: $t, ${DURATION}s"
        out=$OUT/wrk/run$round-$t.txt
        # shellcheck disable=SC2086 # the pid lists are space-separated on purpose
        {
            read -r -a req0 < <(replica_requests)
            read -r m_total0 m_idle0 < <(machine_ticks)
            redis0=$(redis_cpu_seconds)
            edge0=$(cpu_ticks ${EDGE_WORKERS[$t]}) up0=$(cpu_ticks ${UPSTREAM_PIDS[$t]}) t0=$(now)
            run_wrk "$t" "$DURATION" "$out"
            edge1=$(cpu_ticks ${EDGE_WORKERS[$t]}) up1=$(cpu_ticks ${UPSTREAM_PIDS[$t]}) t1=$(now)
            redis1=$(redis_cpu_seconds)
            read -r m_total1 m_idle1 < <(machine_ticks)
            read -r -a req1 < <(replica_requests)
            for pid in ${EDGE_WORKERS[$t]} ${UPSTREAM_PIDS[$t]}; do
                kill -0 "$pid" 2>/dev/null || die "a $t server process (pid $pid) died during the run"
            done
        }
        d1=$((req1[0] - req0[0])) d2=$((req1[1] - req0[1])) d3=$((req1[2] - req0[2]))
        rps=$(field "$out" rps) requests=$(field "$out" requests) bytes=$(field "$out" bytes)
        non2xx=$(field "$out" non2xx)
        errors=$(($(field "$out" connect) + $(field "$out" read) + $(field "$out" write) + $(field "$out" timeout)))
        RPS[$t]=$rps
        line=$(awk -v r="$round" -v t="$t" -v rps="$rps" -v p50="$(field "$out" p50_us)" \
            -v p90="$(field "$out" p90_us)" -v p99="$(field "$out" p99_us)" -v max="$(field "$out" max_us)" \
            -v n="$non2xx" -v e="$errors" -v b="$bytes" -v q="$requests" -v c="${RPS[ceiling]}" \
            -v ecpu=$((edge1 - edge0)) -v ucpu=$((up1 - up0)) -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
            -v mt=$((m_total1 - m_total0)) -v mi=$((m_idle1 - m_idle0)) -v d1="$d1" -v d2="$d2" -v d3="$d3" \
            -v r0="$redis0" -v r1="$redis1" \
            'BEGIN { up = d1 + d2 + d3; stack = (t != "ceiling")
                     printf "%d,%s,%.0f,%.3f,%.3f,%.3f,%.3f,%d,%d,%.0f,%.3f,%.2f,%.2f,%.0f,%s,%s,%s,%s,%s,%.2f,%.2f,%.2f\n",
                     r, t, rps, p50 / 1000, p90 / 1000, p99 / 1000, max / 1000, n, e, q ? b / q : 0, rps / c,
                     ecpu / hz / (t1 - t0), ucpu / hz / (t1 - t0), mt ? 100 * (mt - mi) / mt : 0,
                     stack ? up : "", stack && q ? sprintf("%.3f", up / q) : "",
                     stack ? d1 : "", stack ? d2 : "", stack ? d3 : "",
                     q ? ecpu / hz * 1e6 / q : 0, q ? ucpu / hz * 1e6 / q : 0, q ? (r1 - r0) * 1e6 / q : 0 }')
        echo "$line" >>"$CSV"
        log "  $line"
        ((non2xx == 0)) || die "$t answered $non2xx non-2xx responses in round $round (must be 0): see $out"
        ((errors == 0)) || die "$t had $errors socket errors/timeouts in round $round (must be 0): see $out"
        if [[ $t != ceiling ]] && ((d1 + d2 + d3 == 0)); then
            die "no replica counted a request during the $t run: the edge does not reach our replicas?"
        fi
    done
done

# --- summary -------------------------------------------------------------------
col() { awk -F, -v t="$1" -v c="$2" 'NR > 1 && $2 == t { print $c }' "$CSV" | median; }
row1() {
    awk -v t="$1" -v rps="$(col "$1" 3)" -v ratio="$(col "$1" 11)" -v p50="$(col "$1" 4)" -v p90="$(col "$1" 5)" \
        -v p99="$(col "$1" 6)" -v max="$(col "$1" 7)" -v worst="$(max_col "$1" 7)" -v n="$(sum_col "$1" 8)" \
        -v e="$(sum_col "$1" 9)" \
        'BEGIN { printf "%-14s %8.0f %9.2f %7.2f %7.2f %7.2f %8.2f %9.2f %8d %7d\n", t, rps, ratio, p50, p90, p99, max, worst, n, e }'
}
row2() {
    local share
    share=$(col "$1" 16)
    awk -v t="$1" -v b="$(col "$1" 10)" -v ec="$(col "$1" 12)" -v uc="$(col "$1" 13)" -v busy="$(col "$1" 14)" \
        -v share="${share:--}" \
        'BEGIN { printf "%-14s %7.0f %11.2f %15.2f %8.0f %16s\n", t, b, ec, uc, busy, share }'
}
spread() { # spread TARGET: replicas' requests summed over the rounds, and max/min
    awk -F, -v t="$1" 'NR > 1 && $2 == t { a += $17; b += $18; c += $19 }
        END { mn = a; if (b < mn) mn = b; if (c < mn) mn = c
              mx = a; if (b > mx) mx = b; if (c > mx) mx = c
              printf "%d / %d / %d (max/min %.3f)", a, b, c, mn ? mx / mn : 0 }' "$CSV"
}
verdict() { awk -v v="$1" -v g="$2" 'BEGIN { print (v >= g) ? "met" : "NOT MET" }'; }
nocache_ratio=$(col stack-nocache 11)
cache_ratio=$(col stack-cache 11)

{
    echo "stack benchmark ($SELF), $STAMP: $RUNS interleaved round(s), medians over the rounds"
    echo "machine: $(nproc) cores, SHARED by wrk, the edge NGINX, the upstreams (3 API replicas or the static NGINX),"
    echo "         Redis and PostgreSQL (nothing pinned): absolute figures are this box's, the ratios are the point."
    echo "         Load average before: $LOAD_BEFORE"
    echo "load:    $WRK_VERSION, $THREADS thread, $CONNECTIONS keep-alive connections, ${DURATION}s per run after ${WARMUP}s of"
    echo "         warm-up per target (not measured); GET /v1/results/<id>, id uniform in $FIRST_ID..$LAST_ID (seed 42);"
    echo "         body $BODY_BYTES bytes. Latencies are wrk's, which does NOT correct for coordinated omission."
    echo "targets: every edge = $(nginx -v 2>&1 | sed 's/^nginx version: //'), nginx/nginx.conf.template rendered by nginx/render.sh"
    echo "                      (worker_processes auto = $(nproc), rate limit off), our own master on a free port"
    echo "         ceiling       = edge, micro-cache OFF -> static upstream: ONE nginx master, worker_processes $REPLICAS,"
    echo "                         listening on $REPLICAS ports (the edge's $REPLICAS upstream servers), every id -> result.json"
    echo "                         (a real API body), access_log off, open_file_cache: the proxy hop + a no-cost upstream"
    echo "         stack-nocache = edge, micro-cache OFF -> $REPLICAS target/release/api replicas (default settings, worker threads ${API_THREADS:-one per core},"
    echo "                         Redis key prefix '$KEY_PREFIX')"
    echo "         stack-cache   = edge, micro-cache ON (1 s) -> the same $REPLICAS replicas"
    echo "         NGINX dirs (micro-cache files) in ${TMPDIR:-/tmp}: file system $(stat -f -c %T "${TMPDIR:-/tmp}")"
    echo "data:    seeder --key-prefix $KEY_PREFIX: ${SEEDER_SAID:-?}"
    echo "X-Cache-Status (one id, fetched twice on stack-cache): ceiling ${XCACHE[ceiling]}, stack-nocache ${XCACHE[stack-nocache]},"
    echo "         stack-cache ${XCACHE[stack-cache]} (a HIT seen: met)"
    echo
    printf '%-14s %8s %9s %7s %7s %7s %8s %9s %8s %7s\n' target "req/s" "/ceiling" "p50 ms" "p90 ms" "p99 ms" \
        "max ms" "worst ms" non-2xx errors
    for t in "${TARGETS[@]}"; do row1 "$t"; done
    echo
    printf '%-14s %7s %11s %15s %8s %16s\n' target "B/resp" "edge cores" "upstream cores" "busy %" "to replicas"
    for t in "${TARGETS[@]}"; do row2 "$t"; done
    echo
    printf '%-14s %12s %16s %13s\n' target "edge us/req" "upstream us/req" "Redis us/req"
    for t in "${TARGETS[@]}"; do
        printf '%-14s %12.1f %16.1f %13.1f\n' "$t" "$(col "$t" 20)" "$(col "$t" 21)" "$(col "$t" 22)"
    done
    echo "(/ceiling: median of the per-round ratios of req/s; max ms: median of the runs' maximum latency;"
    echo " worst ms: the largest of all runs; non-2xx, errors (socket errors + timeouts > $WRK_TIMEOUT): totals over"
    echo " all rounds; B/resp: bytes per response, headers included; edge cores: CPU time of the edge's"
    echo " workers and cache manager / wall time; upstream cores: the same for the 3 replicas (ceiling: the static nginx's workers);"
    echo " busy %: all cores, everything on the machine; to replicas: replicas' requests / client requests;"
    echo " us/req: CPU microseconds per client request of the edge's workers, the upstream processes, Redis)"
    echo
    echo "replicas' results requests during the measured runs (api1 / api2 / api3, from their /metrics):"
    echo "         stack-nocache: $(spread stack-nocache)"
    echo "         stack-cache:   $(spread stack-cache)"
    echo
    echo "goals:   stack-nocache/ceiling >= 0.7: $nocache_ratio ($(verdict "$nocache_ratio" 0.7)); non-2xx = 0 and socket"
    echo "         errors = 0: met (enforced); micro-cache HIT seen: met (enforced)"
    echo "         stack-cache/ceiling: $cache_ratio (ids uniform over 674,823: the 1 s micro-cache rarely hits)"
    echo
    echo "files:   ${OUT#"$REPO_DIR"/}/: summary.txt runs.csv stack.json result.json *.nginx.conf wrk/ *.log"
} | tee "$OUT/summary.txt"

# The machine-readable result (medians per target), for cargo xtask capacity-model.
python3 scripts/bench/result_json.py --bench stack --csv "$CSV" --out "$OUT/stack.json" \
    --command "$SELF $RUNS" --meta replicas="$REPLICAS" --meta api_worker_threads="${API_THREADS:-auto}" \
    --meta wrk_connections="$CONNECTIONS" --meta duration_s="$DURATION" --meta body_bytes="$BODY_BYTES" \
    --meta nginx_version="$(nginx -v 2>&1 | sed 's/^nginx version: //')" --meta load_before="$LOAD_BEFORE" ||
    die "writing $OUT/stack.json failed"
if [[ -n $RESULT_FILE ]]; then
    mkdir -p "$(dirname -- "$RESULT_FILE")"
    cp -f -- "$OUT/stack.json" "$RESULT_FILE"
    log "wrote $RESULT_FILE (then: cargo xtask capacity-model --write)"
fi
