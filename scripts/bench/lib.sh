#!/usr/bin/env bash
# scripts/bench/lib.sh - helpers shared by scripts/bench_api.sh and scripts/bench_stack.sh:
# process bookkeeping and cleanup, free ports, readiness probes, running wrk and reading its
# BENCH line, and column statistics of runs.csv. Sourced after scripts/lib/common.sh (log, warn,
# die, add_cleanup, port_in_use) and after the caller has set HOST and its wrk settings.
# shellcheck shell=bash disable=SC2034

# Processes we started, stopped at exit (NGINX masters, APIs, samplers, wrk, curl).
OUR_PIDS=()
USED_PORTS=" "

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

stop_pid() { # stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL. Only our own children.
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "pid $pid did not stop on SIGTERM within 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local i
    for ((i = ${#OUR_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${OUR_PIDS[i]}"
    done
    OUR_PIDS=()
}

free_port() { # sets FREE_PORT: a 127.0.0.1 port nothing listens on (below the ephemeral range)
    local p tries
    for ((tries = 0; tries < 500; tries++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        port_in_use "$HOST" "$p" && continue
        USED_PORTS+="$p "
        FREE_PORT=$p
        return 0
    done
    die "found no free port on $HOST"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

api_ready() { curl -fsS --max-time 2 "$1/readyz" | grep -q '"complete_data_set":true'; }

# run_wrk TARGET SECONDS OUTFILE: one wrk run against TARGET's base URL, bounded in time. In the
# background and waited for, so that a signal to this script stops it at once (cleanup).
run_wrk() {
    local url=${BASE_URL[$1]} seconds=$2 out=$3 pid rc=0
    timeout --kill-after=5 $((seconds + 30)) \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --timeout "$WRK_TIMEOUT" --latency \
        -s "$LUA" "$url/" >"$out" 2>&1 &
    pid=$!
    OUR_PIDS+=("$pid")
    wait "$pid" || rc=$?
    unset 'OUR_PIDS[-1]'
    ((rc == 0)) || die "wrk failed (exit $rc) against $1 ($url): see $out"
    grep -q '^BENCH ' "$out" || die "wrk printed no summary against $1: see $out"
}

# field FILE NAME: a NAME=value field of the BENCH line of a wrk output.
field() { sed -n 's/^BENCH / /p' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }

now() { date +%s.%N; }

# machine_ticks: "TOTAL IDLE" clock ticks of all cores since boot (idle includes iowait).
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat; }

sum_col() { awk -F, -v t="$1" -v c="$2" 'NR > 1 && $2 == t { s += $c } END { print s + 0 }' "$CSV"; }

max_col() { awk -F, -v t="$1" -v c="$2" 'NR > 1 && $2 == t && $c > m { m = $c } END { print m + 0 }' "$CSV"; }

# bench_prepare NAME [PACKAGE:COMMAND...]: installs what is missing (wrk, nginx, curl and the
# extras), finds the stack's stores (loopback only, reachable), builds unless BENCH_BUILD=0,
# creates the output folder runs/NAME/<timestamp> ($OUT, $STAMP), notes wrk's version
# ($WRK_VERSION; `wrk --version` prints its banner and exits 1) and makes sure the data set is
# loaded ($SEEDER_SAID). Expects API_BIN, SEEDER_BIN, BUILD, KEY_PREFIX, CLEAN_SEEDER_ENV.
bench_prepare() {
    local name=$1 extra
    shift
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    for extra in "$@"; do # PACKAGE:COMMAND
            command -v "${extra#*:}" >/dev/null || missing+=("${extra%%:*}")
        done
        apt_install "${missing[@]}"

    if [[ -z ${DATABASE_URL:-} || -z ${REDIS_URL:-} ]]; then
        eval "$(cargo xtask stack env)"
    fi
    [[ $REDIS_URL =~ ^redis://([^:/@]+):([0-9]+)/?$ ]] || die "REDIS_URL must be redis://host:port here (got $REDIS_URL)"
    redis_host=${BASH_REMATCH[1]} redis_port=${BASH_REMATCH[2]}
    [[ $DATABASE_URL =~ @([^:/@]+):([0-9]+)/ ]] || die "DATABASE_URL must name host:port"
    pg_host=${BASH_REMATCH[1]} pg_port=${BASH_REMATCH[2]}
    is_loopback_ip "$redis_host" || die "REDIS_URL must point at a loopback address (got $redis_host)"
    is_loopback_ip "$pg_host" || die "DATABASE_URL must point at a loopback address (got $pg_host)"
    port_in_use "$redis_host" "$redis_port" ||
        die "Redis is not reachable at $redis_host:$redis_port: start the stack with 'cargo xtask stack up'"
    port_in_use "$pg_host" "$pg_port" ||
        die "PostgreSQL is not reachable at $pg_host:$pg_port: start the stack with 'cargo xtask stack up'"

    if ((BUILD)); then
        log "building the release api and seeder"
        cargo build --release --locked -p api -p seeder >&2
    fi
    [[ -x $API_BIN && -x $SEEDER_BIN ]] || die "missing $API_BIN or $SEEDER_BIN (run with BENCH_BUILD=1)"

    WRK_VERSION=$({ wrk --version 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')
    STAMP=$(date -u +%Y%m%dT%H%M%SZ)
    OUT=$REPO_DIR/runs/$name/$STAMP
    mkdir -p "$OUT/wrk"
    log "output in ${OUT#"$REPO_DIR"/}"

    log "making sure the data set is loaded under Redis prefix '$KEY_PREFIX' (seeder; a no-op when it is)"
    env "${CLEAN_SEEDER_ENV[@]}" "$SEEDER_BIN" --key-prefix "$KEY_PREFIX" --progress quiet >"$OUT/seeder.txt" 2>"$OUT/seeder.log" ||
        die "the seeder failed: see $OUT/seeder.log"
    SEEDER_SAID=$(sed -n '1{s/, fingerprint [0-9a-f]*//;s/ (--force reloads)//;p}' "$OUT/seeder.txt")
}

add_cleanup stop_all
