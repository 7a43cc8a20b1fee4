#!/usr/bin/env bash
# scripts/bench_api.sh - the API's read throughput against a static-file ceiling, side by side.
#
# What it measures, on this machine, in one invocation:
#   ceiling      our own NGINX (Debian's nginx; a private master started by this script from
#                scripts/bench/nginx.conf.template, on a free 127.0.0.1 port, never the system
#                one): worker_processes 1 (to compare with one API process), access_log off,
#                open_file_cache, answering every GET /v1/results/<id> with one static file, a
#                real API response body fetched first, so the body has exactly the API's size.
#   api          one API replica (target/release/api, started by this script on free loopback
#                ports) with default settings, reading the stack's Redis and PostgreSQL under
#                the key prefix $BENCH_KEY_PREFIX.
#   api-nocache  the same with API_CACHE_CAPACITY=0. The in-process cache only guards
#                PostgreSQL (api/src/lookup.rs), so the two should match: a gap means the cache
#                is on the hot path again. (With the cache in front of Redis, this comparison
#                measured the cache costing ~14% throughput and 80 MB: why the order changed.)
# Load: wrk, one thread, $BENCH_CONNECTIONS keep-alive connections, $BENCH_DURATION s per run,
# GET /v1/results/<id> with ids uniformly random over the default data set (1000000..1674822,
# math.randomseed(42): scripts/bench/results.lua), wrk --timeout 10s. Each target is warmed up
# for $BENCH_WARMUP s first (not measured), then the targets run interleaved RUNS times
# (ceiling, api, api-nocache, ceiling, ...).
# Reported, as medians over the rounds: req/s; p50, p90, p99 and max latency (wrk's: wrk does
# NOT correct for coordinated omission); the ratios api/ceiling and api-nocache/ceiling (medians
# of the per-round ratios); bytes per response; the CPU the server process used (cores, and
# microseconds per request, from /proc/<pid>/stat) and how busy the whole machine was; the peak
# RSS of each server process (VmRSS sampled every 0.5 s during its runs; nginx: its worker);
# the totals of non-2xx responses and socket errors (both must be 0: the script fails
# otherwise); and the API's lookup tiers from its /metrics (read once, after the rounds).
# Then one extra api run of $BENCH_PROFILE_SECONDS + 2 s, during which the admin port's
# /debug/pprof/profile?seconds=$BENCH_PROFILE_SECONDS is fetched: the flamegraph SVG is saved
# and its top 15 frames by inclusive sample share, and top 10 by self samples, are printed
# (scripts/bench/flamegraph_top.awk).
#
# The machine's cores (2 here) are shared by wrk, the server being measured, Redis and
# PostgreSQL: absolute numbers are this box's, the ratios are the point. All traffic goes to
# 127.0.0.1 and every load run is bounded in time (timeout).
#
# Goals: api/ceiling >= 0.5; api peak RSS < 100 MB; 0 non-2xx responses (enforced).
#
# Usage: scripts/bench_api.sh [RUNS]        (default 3 rounds; about 2 min + 50 s per round)
# Needs: the native stack up (cargo xtask stack up), wrk, nginx and curl (missing Debian packages
#        are installed with apt-get when run as root), cargo unless BENCH_BUILD=0.
# Environment (defaults in brackets):
#   BENCH_KEY_PREFIX      [bench]  Redis key prefix of the data set; the script runs
#                                  `seeder --key-prefix $BENCH_KEY_PREFIX` first (a no-op when
#                                  loaded; loads Redis from PostgreSQL when only Redis lacks it).
#   BENCH_DURATION        [15]     seconds of each measured run.
#   BENCH_WARMUP          [5]      seconds of warm-up per target before the first round.
#   BENCH_CONNECTIONS     [64]     wrk keep-alive connections.
#   BENCH_THREADS         [1]      wrk threads (keep 1: wrk shares the cores with the servers).
#   BENCH_PROFILE_SECONDS [8]      length of the CPU profile, 1..60 (0 skips the profile run).
#   BENCH_BUILD           [1]      0: use the existing target/release/{api,seeder}, no cargo build.
#   BENCH_START_TIMEOUT   [60]     seconds to wait for a server to become ready.
#   BENCH_RESULT_FILE     [docs/bench/api.json]  the machine-readable result (medians per target,
#                                  scripts/bench/result_json.py) read by cargo xtask capacity-model;
#                                  empty: not written (it is always in the run folder as api.json).
#   DATABASE_URL, REDIS_URL        default: from `cargo xtask stack env`; loopback only.
# Any API_* (SEEDER_*) variables of the caller's environment are NOT passed to the API processes
# (the seeder): they run with the defaults, plus API_CACHE_CAPACITY=0 for api-nocache.
# Output: the summary on stdout (progress on stderr), also written to
#         runs/bench-api/<UTC timestamp>/summary.txt, with per-run figures in runs.csv, the
#         flamegraph (flamegraph-api.svg), the raw wrk outputs (wrk/) and the server logs next to
#         it. Our NGINX, API, wrk and sampler processes are stopped on exit, whatever happens.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
SELF=scripts/bench_api.sh
LOG_PREFIX=bench-api
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
cd "$REPO_DIR"

# --- configuration -----------------------------------------------------------
RUNS=${1:-3}
KEY_PREFIX=${BENCH_KEY_PREFIX:-bench}
DURATION=${BENCH_DURATION:-15}
WARMUP=${BENCH_WARMUP:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-8}
BUILD=${BENCH_BUILD:-1}
START_TIMEOUT=${BENCH_START_TIMEOUT:-60}
RESULT_FILE=${BENCH_RESULT_FILE-docs/bench/api.json}

# The data set the wrk script draws from (the seeder's defaults).
FIRST_ID=1000000
LAST_ID=1674822
HOST=127.0.0.1
WRK_TIMEOUT=10s # above the API's 5 s request timeout, so a slow answer is measured, not dropped
LUA=$SCRIPT_DIR/bench/results.lua
NGINX_TEMPLATE=$SCRIPT_DIR/bench/nginx.conf.template
FLAMEGRAPH_AWK=$SCRIPT_DIR/bench/flamegraph_top.awk
API_BIN=$REPO_DIR/target/release/api
SEEDER_BIN=$REPO_DIR/target/release/seeder
TARGETS=(ceiling api api-nocache)

[[ $# -le 1 && $RUNS =~ ^[1-9][0-9]*$ ]] || {
    echo "usage: $SELF [RUNS]   (see the header of $SELF for the BENCH_* variables)" >&2
    exit 2
}
for var in DURATION WARMUP CONNECTIONS THREADS START_TIMEOUT; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$var must be a positive integer (got '${!var}')"
done
if ! [[ $PROFILE_SECONDS =~ ^[0-9]+$ ]] || ((PROFILE_SECONDS > 60)); then
    die "BENCH_PROFILE_SECONDS must be 0..60 (got '$PROFILE_SECONDS')"
fi
[[ $KEY_PREFIX =~ ^[A-Za-z0-9_-]+$ ]] || die "BENCH_KEY_PREFIX may hold letters, digits, '_' and '-' only"
[[ $BUILD == 0 || $BUILD == 1 ]] || die "BENCH_BUILD must be 0 or 1"

# --- helpers -----------------------------------------------------------------
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$SCRIPT_DIR/bench/lib.sh"

# `env` arguments that drop every exported variable starting with PREFIX from a child's
# environment: the API processes get no API_* variable of ours (defaults, plus what we pass),
# the seeder no SEEDER_* one (the default data set).
unset_args() { # unset_args ARRAY PREFIX
    local -n into=$1
    local var
    into=()
    while IFS= read -r var; do
        into+=(-u "$var")
    done < <(compgen -e | grep "^$2" || true)
}
unset_args CLEAN_API_ENV API_
unset_args CLEAN_SEEDER_ENV SEEDER_

start_api() { # start_api NAME PORT ADMIN_PORT [VAR=VALUE...]: sets STARTED_PID
    local name=$1 port=$2 admin=$3
    shift 3
    env "${CLEAN_API_ENV[@]}" API_LISTEN="$HOST:$port" API_ADMIN_LISTEN="$HOST:$admin" \
        API_KEY_PREFIX="$KEY_PREFIX" DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" "$@" \
        "$API_BIN" >"$OUT/$name.log" 2>&1 &
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

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
sample_rss() { # sample_rss PID FILE: VmRSS in kB every 0.5 s, appended to FILE, until killed
    while kill -0 "$1" 2>/dev/null; do
        rss_kb "$1" >>"$2" || true
        sleep 0.5
    done
}

# --- preconditions -----------------------------------------------------------
bench_prepare bench-api python3:python3

# --- start the targets -------------------------------------------------------
declare -A BASE_URL PID

free_port && api_port=$FREE_PORT
free_port && api_admin=$FREE_PORT
start_api api "$api_port" "$api_admin"
PID[api]=$STARTED_PID
BASE_URL[api]="http://$HOST:$api_port"
API_ADMIN="http://$HOST:$api_admin"

free_port && nc_port=$FREE_PORT
free_port && nc_admin=$FREE_PORT
start_api api-nocache "$nc_port" "$nc_admin" API_CACHE_CAPACITY=0
PID[api-nocache]=$STARTED_PID
BASE_URL[api-nocache]="http://$HOST:$nc_port"
NOCACHE_ADMIN="http://$HOST:$nc_admin"

# Sanity: the wrk script's range is the served data set (first and last known, next unknown).
for id in "$FIRST_ID" "$LAST_ID"; do
    http_ok "${BASE_URL[api]}/v1/results/$id" || die "the API does not serve /v1/results/$id: is the data set the default one?"
done
status=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "${BASE_URL[api]}/v1/results/$((LAST_ID + 1))")
[[ $status == 404 ]] || warn "/v1/results/$((LAST_ID + 1)) answered $status, not 404: the data set is not the default one"

# NGINX: everything of ours in a private directory; workers (user nobody when run as root) read
# the document root, so it is world-readable.
NGINX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-api-nginx.XXXXXX")
add_cleanup "cp -f -- '$NGINX_DIR/error.log' '$OUT/nginx-error.log' 2>/dev/null; rm -rf -- '$NGINX_DIR'"
chmod 0755 "$NGINX_DIR"
mkdir -p "$NGINX_DIR/www" "$NGINX_DIR/tmp"
curl -fsS --max-time 5 "${BASE_URL[api]}/v1/results/$FIRST_ID" -o "$NGINX_DIR/www/result.json"
chmod 0644 "$NGINX_DIR/www/result.json"
cp "$NGINX_DIR/www/result.json" "$OUT/result.json"
BODY_BYTES=$(wc -c <"$NGINX_DIR/www/result.json")
free_port && nginx_port=$FREE_PORT
sed -e "s|@DIR@|$NGINX_DIR|g" -e "s|@LISTEN@|$HOST:$nginx_port|g" "$NGINX_TEMPLATE" >"$NGINX_DIR/nginx.conf"
nginx -t -q -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" 2>"$OUT/nginx-test.log" ||
    die "nginx rejects the generated configuration: see $OUT/nginx-test.log"
nginx -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' \
    >"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!
OUR_PIDS+=("$NGINX_PID")
BASE_URL[ceiling]="http://$HOST:$nginx_port"
wait_for "$START_TIMEOUT" http_ok "${BASE_URL[ceiling]}/v1/results/$LAST_ID" ||
    die "our nginx did not answer on ${BASE_URL[ceiling]}; see $NGINX_DIR/error.log"
cmp -s <(curl -fsS --max-time 2 "${BASE_URL[ceiling]}/v1/results/1234567") "$NGINX_DIR/www/result.json" ||
    die "our nginx does not serve result.json for /v1/results/<id>"
# The measured nginx process is its single worker.
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | awk 'NR == 1' || true)
[[ -n $NGINX_WORKER ]] || die "our nginx master $NGINX_PID has no worker process"
PID[ceiling]=$NGINX_WORKER
log "ceiling: nginx master $NGINX_PID (worker $NGINX_WORKER) on ${BASE_URL[ceiling]}, body $BODY_BYTES bytes"

# --- CPU accounting ----------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID: user + system CPU time of the process (all its threads), in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

declare -A RSS_START
for t in "${TARGETS[@]}"; do RSS_START[$t]=$(rss_kb "${PID[$t]}"); done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- warm-up -----------------------------------------------------------------
for t in "${TARGETS[@]}"; do
    log "warm-up: $t, ${WARMUP}s (not measured)"
    run_wrk "$t" "$WARMUP" "$OUT/wrk/warmup-$t.txt"
done

# --- measured rounds ---------------------------------------------------------
CSV=$OUT/runs.csv
echo "round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,server_cpu_cores,server_cpu_us_per_request,machine_busy_pct,rss_peak_mb" >"$CSV"
declare -A RPS
for round in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        log "round $round/$RUNS: $t, ${DURATION}s"
        out=$OUT/wrk/run$round-$t.txt
        rss_file=$OUT/wrk/rss$round-$t.txt
        : >"$rss_file"
        sample_rss "${PID[$t]}" "$rss_file" &
        sampler=$!
        OUR_PIDS+=("$sampler")
        read -r m_total0 m_idle0 < <(machine_ticks)
        cpu0=$(cpu_ticks "${PID[$t]}") t0=$(now)
        run_wrk "$t" "$DURATION" "$out"
        cpu1=$(cpu_ticks "${PID[$t]}") t1=$(now)
        read -r m_total1 m_idle1 < <(machine_ticks)
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        unset 'OUR_PIDS[-1]'
        kill -0 "${PID[$t]}" 2>/dev/null || die "the $t server process (pid ${PID[$t]}) died during the run"

        rps=$(field "$out" rps) requests=$(field "$out" requests) bytes=$(field "$out" bytes)
        non2xx=$(field "$out" non2xx)
        errors=$(($(field "$out" connect) + $(field "$out" read) + $(field "$out" write) + $(field "$out" timeout)))
        RPS[$t]=$rps
        peak=$(sort -n "$rss_file" | tail -n 1)
        line=$(awk -v r="$round" -v t="$t" -v rps="$rps" -v p50="$(field "$out" p50_us)" \
            -v p90="$(field "$out" p90_us)" -v p99="$(field "$out" p99_us)" -v max="$(field "$out" max_us)" \
            -v n="$non2xx" -v e="$errors" -v b="$bytes" -v q="$requests" -v c="${RPS[ceiling]}" \
            -v cpu=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" \
            -v mt=$((m_total1 - m_total0)) -v mi=$((m_idle1 - m_idle0)) -v rss="${peak:-0}" \
            'BEGIN { printf "%d,%s,%.0f,%.3f,%.3f,%.3f,%.3f,%d,%d,%.0f,%.3f,%.2f,%.1f,%.0f,%.1f\n",
                     r, t, rps, p50 / 1000, p90 / 1000, p99 / 1000, max / 1000, n, e, q ? b / q : 0, rps / c,
                     cpu / hz / (t1 - t0), q ? cpu / hz * 1e6 / q : 0, mt ? 100 * (mt - mi) / mt : 0, rss / 1024 }')
        echo "$line" >>"$CSV"
        log "  $line"
        ((non2xx == 0)) || die "$t answered $non2xx non-2xx responses in round $round (must be 0): see $out and $OUT/$t.log"
        ((errors == 0)) || die "$t had $errors socket errors/timeouts in round $round (must be 0): see $out"
    done
done

declare -A RSS_END
for t in "${TARGETS[@]}"; do RSS_END[$t]=$(rss_kb "${PID[$t]}"); done

# The API's own view of where its answers came from (cumulative since its start, warm-up included).
lookups() { # lookups ADMIN_URL: one line from result_lookups_total
    curl -fsS --max-time 5 "$1/metrics" | awk '
        /^result_lookups_total\{/ {
            tier = $0; sub(/.*tier="/, "", tier); sub(/".*/, "", tier)
            outcome = $0; sub(/.*outcome="/, "", outcome); sub(/".*/, "", outcome)
            n[tier "/" outcome] += $NF; total += $NF
        }
        END {
            printf "in-process cache hits %.1f%% of %d lookups;", total ? 100 * n["memory/hit"] / total : 0, total
            for (k in n) if (k != "memory/hit") printf " %s=%d", k, n[k]
            printf "\n"
        }'
}
API_LOOKUPS=$(lookups "$API_ADMIN" || echo "(metrics unavailable)")
NOCACHE_LOOKUPS=$(lookups "$NOCACHE_ADMIN" || echo "(metrics unavailable)")

# --- profile -----------------------------------------------------------------
PROFILE_LINE="profile: skipped (BENCH_PROFILE_SECONDS=0)"
TOP_FRAMES=""
if ((PROFILE_SECONDS > 0)); then
    log "profile: api under load for $((PROFILE_SECONDS + 2))s, CPU profile of ${PROFILE_SECONDS}s"
    out=$OUT/wrk/profile-api.txt
    svg=$OUT/flamegraph-api.svg
    run_wrk api $((PROFILE_SECONDS + 2)) "$out" &
    wrk_job=$!
    OUR_PIDS+=("$wrk_job")
    sleep 1
    cpu0=$(cpu_ticks "${PID[api]}")
    curl -fsS --max-time $((PROFILE_SECONDS + 20)) \
        "$API_ADMIN/debug/pprof/profile?seconds=$PROFILE_SECONDS" -o "$svg" ||
        die "fetching the profile from $API_ADMIN failed"
    cpu1=$(cpu_ticks "${PID[api]}")
    wait "$wrk_job" || die "the profile load run failed: see $out"
    unset 'OUR_PIDS[-1]'
    [[ $(field "$out" non2xx) == 0 ]] || die "api answered non-2xx responses during the profile run: see $out"
    samples=$(grep -o '<title>all ([0-9,]* samples' "$svg" | tr -dc '0-9' || true)
    PROFILE_LINE=$(awk -v rps="$(field "$out" rps)" -v p99="$(field "$out" p99_us)" -v s="$PROFILE_SECONDS" \
        -v n="${samples:-0}" -v cpu=$((cpu1 - cpu0)) -v hz="$CLK_TCK" \
        'BEGIN { printf "profile run: %.0f req/s, p99 %.2f ms while sampled at 99 Hz for %d s; the %d samples cover\n" \
                        "~%.0f%% of the API'\''s %.1f CPU-seconds (pprof-rs drops samples in libc, libgcc, pthread and\n" \
                        "the vDSO: system calls, malloc/free and memcpy are missing from the flamegraph)",
                 rps, p99 / 1000, s, n, cpu ? 100 * n / (99 * cpu / hz) : 0, cpu / hz }')
    TOP_FRAMES=$(awk -v top=15 -v self_top=10 -f "$FLAMEGRAPH_AWK" "$svg")
fi

# --- summary -----------------------------------------------------------------
col() { # col TARGET COLUMN: median of COLUMN over the rounds of TARGET
    awk -F, -v t="$1" -v c="$2" 'NR > 1 && $2 == t { print $c }' "$CSV" | median
}
row1() { # throughput and latency of TARGET
    awk -v t="$1" -v rps="$(col "$1" 3)" -v ratio="$(col "$1" 11)" -v p50="$(col "$1" 4)" -v p90="$(col "$1" 5)" \
        -v p99="$(col "$1" 6)" -v max="$(col "$1" 7)" -v worst="$(max_col "$1" 7)" -v n="$(sum_col "$1" 8)" \
        -v e="$(sum_col "$1" 9)" \
        'BEGIN { printf "%-12s %8.0f %9.2f %7.2f %7.2f %7.2f %8.2f %9.2f %8d %7d\n", t, rps, ratio, p50, p90, p99, max, worst, n, e }'
}
row2() { # resources of TARGET
    awk -v t="$1" -v b="$(col "$1" 10)" -v cores="$(col "$1" 12)" -v us="$(col "$1" 13)" -v busy="$(col "$1" 14)" \
        -v rss="$(max_col "$1" 15)" \
        'BEGIN { printf "%-12s %7.0f %12.2f %12.1f %10.0f %13.1f\n", t, b, cores, us, busy, rss }'
}
api_ratio=$(col api 11)
nocache_ratio=$(col api-nocache 11)
api_rss=$(max_col api 15)
verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : v < g; print ok ? "met" : "NOT MET" }'; }
kb_mb() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }

{
    echo "API benchmark ($SELF), $STAMP: $RUNS interleaved round(s), medians over the rounds"
    echo "machine: $(nproc) cores, SHARED by wrk, the measured server, Redis and PostgreSQL (nothing pinned): the"
    echo "         absolute figures are this box's, the ratios are the point. Load average before: $LOAD_BEFORE"
    echo "load:    $WRK_VERSION, $THREADS thread, $CONNECTIONS keep-alive connections, ${DURATION}s per run after ${WARMUP}s of"
    echo "         warm-up per target (not measured); GET /v1/results/<id>, id uniform in $FIRST_ID..$LAST_ID (seed 42);"
    echo "         body $BODY_BYTES bytes. Latencies are wrk's, which does NOT correct for coordinated omission."
    echo "targets: ceiling     = $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1 (vs one API process), static result.json"
    echo "                       (a real API body), access_log off, open_file_cache"
    echo "         api         = target/release/api, default settings, Redis key prefix '$KEY_PREFIX'"
    echo "         api-nocache = the same with API_CACHE_CAPACITY=0 (should match api: the cache only guards PostgreSQL)"
    echo "data:    seeder --key-prefix $KEY_PREFIX: ${SEEDER_SAID:-?}"
    echo
    printf '%-12s %8s %9s %7s %7s %7s %8s %9s %8s %7s\n' target "req/s" "/ceiling" "p50 ms" "p90 ms" "p99 ms" \
        "max ms" "worst ms" non-2xx errors
    for t in "${TARGETS[@]}"; do row1 "$t"; done
    echo
    printf '%-12s %7s %12s %12s %10s %13s\n' target "B/resp" "server cores" "CPU us/req" "busy %" "peak RSS MB"
    for t in "${TARGETS[@]}"; do row2 "$t"; done
    echo "(/ceiling: median of the per-round ratios of req/s; max ms: median of the runs' maximum latency;"
    echo " worst ms: the largest of all runs; non-2xx, errors (socket errors + timeouts > $WRK_TIMEOUT): totals over"
    echo " all rounds; B/resp: bytes per response, headers included; server cores: CPU time of the server"
    echo " process (nginx: its worker) / wall time; busy %: all cores, everything on the machine; peak RSS:"
    echo " VmRSS of the server process sampled every 0.5 s during its runs)"
    echo
    echo "goals:   api/ceiling >= 0.5: $api_ratio ($(verdict "$api_ratio" 0.5 ">="));" \
        "api peak RSS < 100 MB: $api_rss MB ($(verdict "$api_rss" 100 "<")); non-2xx = 0: met"
    echo "         api-nocache/ceiling: $nocache_ratio (expected to match api/ceiling)"
    echo "RSS:     api $(kb_mb "${RSS_START[api]}") MB when ready -> $(kb_mb "${RSS_END[api]}") MB after the rounds;" \
        "api-nocache $(kb_mb "${RSS_START[api-nocache]}") -> $(kb_mb "${RSS_END[api-nocache]}") MB"
    echo "lookups: api:         $API_LOOKUPS"
    echo "         api-nocache: $NOCACHE_LOOKUPS"
    echo
    echo "$PROFILE_LINE"
    if [[ -n $TOP_FRAMES ]]; then
        echo "top frames of flamegraph-api.svg: top 15 by INCLUSIVE share (a frame's samples include its callees';"
        echo "all-inclusive frames >= 95% - root, thread, thread start-up, runtime worker loop - left out; a chain of"
        echo "wrappers keeping >= 95% of its first frame is shown once, [+N] = frames folded into it), then top 10 by self:"
        echo "$TOP_FRAMES"
    fi
    echo
    echo "files:   ${OUT#"$REPO_DIR"/}/: summary.txt runs.csv api.json flamegraph-api.svg wrk/ *.log"
} | tee "$OUT/summary.txt"

# The machine-readable result (medians per target), for cargo xtask capacity-model.
python3 scripts/bench/result_json.py --bench api --csv "$CSV" --out "$OUT/api.json" --command "$SELF $RUNS" \
    --meta wrk_connections="$CONNECTIONS" --meta duration_s="$DURATION" --meta body_bytes="$BODY_BYTES" \
    --meta load_before="$LOAD_BEFORE" || die "writing $OUT/api.json failed"
if [[ -n $RESULT_FILE ]]; then
    mkdir -p "$(dirname -- "$RESULT_FILE")"
    cp -f -- "$OUT/api.json" "$RESULT_FILE"
    log "wrote $RESULT_FILE (then: cargo xtask capacity-model --write)"
fi
