#!/usr/bin/env bash
# scripts/drill.sh - the result-day drill: a sustained, result-day-paced load through NGINX on a
# throw-away full stack while a schedule of faults plays out, each in its own phase, with the
# expected outcome of every phase checked. See usage() below (or --help) for what it does.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
# The staleness bound of a corrected result through NGINX (docs/ARCHITECTURE.md, "Staleness
# bound"): Redis serves it at once, a replica's in-process cache may keep the old one
# API_CACHE_TTL_MS (2 s) while Redis is down, and a client or NGINX may keep a response for
# max-age (5 s).
STALENESS_BOUND_S=7
# NGINX's client_header_timeout (nginx/nginx.conf.template): a slow client's whole head must
# arrive within it.
HEADER_TIMEOUT_S=5
# What "flat" means for the flood: PostgreSQL lookups/s at most baseline + this, and PostgreSQL
# transactions/s at most 1.25 x baseline + this (its exporter and the replicas' marker refresh
# commit a few a second whatever the load).
FLOOD_DB_SLACK=2

usage() {
  cat <<'EOF'
Usage: scripts/drill.sh [OPTIONS]

The result-day drill. Brings up a throw-away full stack (cargo xtask stack in its own /tmp
folder on free ports from --base: PostgreSQL, Redis, 3 API replicas, NGINX, the exporters and
Prometheus scraping every 1 s), seeds it, and runs a sustained load through NGINX (loadgen,
result-day pacing) while these phases play out, one after another, each followed by a quiet
recovery gap inside its own window:

  ramp-up          the users start (not a fault; its requests count too)
  baseline         nothing happens
  kill-replica     SIGKILL api2, bring it back (xtask stack up)
  rolling-restart  api1..api3 one at a time: SIGTERM, wait until gone, start, wait ready
  restart-redis    Redis stopped (SHUTDOWN saves its snapshot) and started again
  restart-postgres PostgreSQL stopped (fast) and started again
  correction       `seeder correct --file FILE.csv` changes one student's score; the time until
                   NGINX serves the new value is measured (skipped when the seeder has no
                   `correct` subcommand)
  harvest          a second loadgen walks the IDs in order from one address, 8 connections, no
                   think time; reports results harvested per minute (docs/edge.md: limits)
  flood            a second loadgen sends only unknown and malformed IDs, as fast as allowed,
                   from one address (NGINX's per-client limit and the API's failed-lookup
                   limit answer much of it with 429)
  slowloris        slow clients hold connections, sending a header line every few seconds

Per phase it reports, from Prometheus range queries over the phase's window: the users'
requests and failed requests (loadgen_requests_total: a failure is any unexpected status -
expected 404s/400s of the wrong-ID scenario are successes - a wrong body or a transport error),
p50/p99 (histogram_quantile over loadgen_request_duration_seconds: bucket resolution, the API's
buckets), PostgreSQL lookups/s (the replicas' result_lookups_total{tier="db"}: one per query
the read path sends) and PostgreSQL transactions/s (pg_stat_database_xact_commit of the
results database, from the postgres exporter), and checks the phase's expected outcome:

  every phase      zero failed client requests (the flood's own requests are not counted:
                   they come from a second loadgen that Prometheus does not scrape)
  kill/rolling     every replica running and ready afterwards
  restart-*        the store running again afterwards
  correction       the command exits 0 and NGINX serves the new score within 7 s of its exit
                   (docs/ARCHITECTURE.md "Staleness bound": max-age 5 s + cache TTL 2 s)
  flood            PostgreSQL lookups/s <= baseline + 2, transactions/s <= 1.25 x baseline + 2,
                   and every flood request answered as expected (400, 404 or 429 envelope)
  slowloris        every slow connection cut by NGINX within its 5 s header timeout (+2 s)

Counts are the counters' values at the window's bounds (1 s scrapes: a request is attributed to
the phase in which it was scraped). The users' loadgen's own summary (exact) is in
loadgen-users/summary.txt.

Writes runs/drill/<UTC time>/ (or --out): table.txt (also printed), phases.csv, series.csv,
timeline.png (req/s, p99, failures over time with the phases shaded and labelled), drill.log,
the loadgens' run folders and the stack's logs. Exit status 0 when every phase met its expected
outcome, 1 when one missed it, 2 when the drill could not run.

Options (environment variable in brackets; default after the colon):
  --users N            [DRILL_USERS]: 2000       users of the load
  --students N         [DRILL_STUDENTS]: 674823  data set size (seeded from scratch)
  --phase-secs S       [DRILL_PHASE_SECS]: 30    each phase's window (a fault's action, then
                                                 quiet until the window ends; at least 3 s of
                                                 quiet after a slow action)
  --think-min-ms MS    [DRILL_THINK_MIN_MS]: 1500  pause between a user's requests (result-day
  --think-max-ms MS    [DRILL_THINK_MAX_MS]: 2500  pacing: one request every ~2 s per user)
  --ramp-rate N        [DRILL_RAMP_RATE]: 200    users started per second
  --flood-users N      [DRILL_FLOOD_USERS]: 50   users of the flood (no think time)
  --flood-rps N        [DRILL_FLOOD_RPS]: 1000   the flood's request rate cap (goose throttle)
  --slow-connections N [DRILL_SLOW_CONNECTIONS]: 300  slowloris connections (at most 2000)
  --base PORT          [DRILL_BASE]: 27650       first port of the throw-away stack
  --out DIR            [DRILL_OUT]: runs/drill/<UTC time>
  --short              a few seconds per phase on 20,000 students and 200 users, flood 300/s,
                       50 slow connections (the script test's variant); explicit options win
  --no-build           do not run `cargo build --release` first (use the binaries as they are)
  -h, --help           this text
Binaries: DRILL_API_BIN, DRILL_SEEDER_BIN, DRILL_LOADGEN_BIN [target/release/api, seeder,
loadgen; built with `cargo build --release --locked -p api -p seeder -p loadgen` unless
--no-build]. DRILL_NGINX_MICROCACHE [off], DRILL_NGINX_RATE_LIMIT [on]: as the stack's defaults.
DRILL_PINS [off]: on seeds a data set that requires PINs (seeder --pins, FACTOR_KEY); the users
and the flood send theirs, the harvester none; the correction phase is skipped (it reads without).
Needs: curl, jq (and what cargo xtask stack installs).
EOF
}

say() { printf '%s drill: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fatal() {
  say "error: $*"
  exit 2
}

# --- options ---------------------------------------------------------------------------------
short=0 build=1
declare -A opt=()
while (($#)); do
  case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  --short) short=1 ;;
  --no-build) build=0 ;;
  --users | --students | --phase-secs | --think-min-ms | --think-max-ms | --ramp-rate | --flood-users | \
    --flood-rps | --slow-connections | --base | --out)
    (($# >= 2)) || fatal "$1 needs a value (see --help)"
    opt[${1#--}]=$2
    shift
    ;;
  *) fatal "unknown option '$1' (see --help)" ;;
  esac
  shift
done
setting() { # setting NAME ENV FULL SHORT: the option, else the variable, else the default
  local v=${opt[$1]:-${!2:-}}
  if [[ -z $v ]]; then if ((short)); then v=$4; else v=$3; fi; fi
  printf '%s' "$v"
}
USERS=$(setting users DRILL_USERS 2000 200)
STUDENTS=$(setting students DRILL_STUDENTS 674823 20000)
PHASE_SECS=$(setting phase-secs DRILL_PHASE_SECS 30 6)
THINK_MIN=$(setting think-min-ms DRILL_THINK_MIN_MS 1500 1500)
THINK_MAX=$(setting think-max-ms DRILL_THINK_MAX_MS 2500 2500)
RAMP_RATE=$(setting ramp-rate DRILL_RAMP_RATE 200 200)
FLOOD_USERS=$(setting flood-users DRILL_FLOOD_USERS 50 20)
FLOOD_RPS=$(setting flood-rps DRILL_FLOOD_RPS 1000 300)
SLOW_CONNECTIONS=$(setting slow-connections DRILL_SLOW_CONNECTIONS 300 50)
BASE=$(setting base DRILL_BASE 27650 27650)
OUT=$(setting out DRILL_OUT "$REPO_DIR/runs/drill/$(date -u +%Y%m%dT%H%M%SZ)" "$REPO_DIR/runs/drill/$(date -u +%Y%m%dT%H%M%SZ)")
for var in USERS STUDENTS PHASE_SECS THINK_MIN THINK_MAX RAMP_RATE FLOOD_USERS FLOOD_RPS SLOW_CONNECTIONS BASE; do
  [[ ${!var} =~ ^[0-9]+$ ]] || fatal "$var='${!var}' must be a whole number (see --help)"
done
((USERS >= 1)) || fatal "--users (DRILL_USERS) must be at least 1"
((STUDENTS >= 1000 && STUDENTS <= 9000000)) || fatal "--students (DRILL_STUDENTS) must be 1000..9000000"
((PHASE_SECS >= 3)) || fatal "--phase-secs (DRILL_PHASE_SECS) must be at least 3"
((THINK_MIN <= THINK_MAX)) || fatal "--think-min-ms must not exceed --think-max-ms"
((FLOOD_USERS >= 1 && FLOOD_RPS >= 1)) || fatal "--flood-users and --flood-rps must be at least 1"
((SLOW_CONNECTIONS >= 1 && SLOW_CONNECTIONS <= 2000)) || fatal "--slow-connections must be 1..2000"
((BASE >= 1024 && BASE <= 32000)) || fatal "--base must be 1024..32000 (below Linux's ephemeral ports)"
for tool in curl jq; do command -v "$tool" >/dev/null || fatal "$tool is missing (apt-get install $tool)"; done

API_BIN=${DRILL_API_BIN:-$REPO_DIR/target/release/api}
SEEDER_BIN=${DRILL_SEEDER_BIN:-$REPO_DIR/target/release/seeder}
LOADGEN_BIN=${DRILL_LOADGEN_BIN:-$REPO_DIR/target/release/loadgen}
if ((build)); then
  say "building the release binaries (cargo build --release --locked -p api -p seeder -p loadgen)"
  (cd "$REPO_DIR" && cargo build --release --locked -p api -p seeder -p loadgen) >&2 || fatal "the release build failed"
fi
for bin in "$API_BIN" "$SEEDER_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || fatal "no binary $bin (cargo build --release -p api -p seeder -p loadgen, or DRILL_*_BIN)"
done
"$LOADGEN_BIN" timeline --help >/dev/null 2>&1 || fatal "$LOADGEN_BIN has no 'timeline' subcommand: rebuild it"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
say "output in $OUT"

# --- the throw-away stack ----------------------------------------------------------------------
TEST_NAME=drill passed=0 failed=0
# shellcheck source-path=SCRIPTDIR source=tests/lib.sh
source "$SCRIPT_DIR/tests/lib.sh" # throwaway_stack, free_port
STACK_API_BIN=$API_BIN
throwaway_stack drill "$BASE"
STACK_NGINX_MICROCACHE=${DRILL_NGINX_MICROCACHE:-off} STACK_PROMETHEUS_INTERVAL=1s STACK_NGINX_RATE_LIMIT=${DRILL_NGINX_RATE_LIMIT:-on}
export STACK_NGINX_MICROCACHE STACK_PROMETHEUS_INTERVAL STACK_NGINX_RATE_LIMIT
PUBLIC=http://127.0.0.1:$STACK_NGINX_PORT
PROM=http://127.0.0.1:$STACK_PROMETHEUS_PORT
FIRST_ID=1000000
USERS_PID='' FLOOD_PID=''

cleanup() {
  local pid
  for pid in $USERS_PID $FLOOD_PID; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in $USERS_PID $FLOOD_PID; do wait "$pid" 2>/dev/null || true; done
  mkdir -p "$OUT/stack-logs" && cp -f "$STACK_DIR"/log/*.log "$OUT/stack-logs/" 2>/dev/null || true
  "$XTASK" stack down --purge >/dev/null 2>&1 || true
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

stack() { "$XTASK" stack "$@" >>"$OUT/drill.log" 2>&1; }
say "stack in $STACK_DIR: nginx $STACK_NGINX_PORT, prometheus $STACK_PROMETHEUS_PORT, replicas $STACK_API_PORT.., admin $STACK_API_ADMIN_PORT.."
stack up || fatal "xtask stack up (pg redis) failed; read $OUT/drill.log"
eval "$("$XTASK" stack env)"
export DATABASE_URL REDIS_URL
pins=() # DRILL_PINS=on: loadgen's flag for the users and the flood
if [[ ${DRILL_PINS:-off} == on ]]; then
  export FACTOR_KEY=${FACTOR_KEY:-drill-local-only-factor-key-0123456789} SEEDER_PINS=true
  pins=(--pins)
fi
say "seeding $STUDENTS students${pins:+ (PINs required)}"
SEEDER_PROGRESS=quiet SEEDER_KEY_PREFIX=$STACK_KEY_PREFIX "$SEEDER_BIN" --students "$STUDENTS" >>"$OUT/drill.log" 2>&1 ||
  fatal "seeding failed; read $OUT/drill.log"
STACK_SERVICES="api nginx exporters prometheus" stack up || fatal "xtask stack up (api nginx exporters prometheus) failed; read $OUT/drill.log"

query() { # query EXPR TIME: the first value of an instant query at TIME (epoch s), or 0
  curl -s --max-time 10 --data-urlencode "query=$1" --data-urlencode "time=$2" "$PROM/api/v1/query" |
    jq -r '(.data.result[0].value[1] // "0") | if . == "NaN" then "NaN" else . end' 2>/dev/null || echo 0
}
targets_up() { # every api/postgres/redis/nginx target up
  curl -s --max-time 5 "$PROM/api/v1/targets?state=active" |
    jq -e '[.data.activeTargets[] | select(.labels.job | IN("api","postgres","redis","nginx")) | .health] |
           length == 6 and all(. == "up")' >/dev/null 2>&1
}
for _ in $(seq 1 60); do targets_up && break; sleep 0.5; done
targets_up || fatal "Prometheus does not scrape every replica and exporter; read $OUT/drill.log"

now() { date +%s.%N | cut -c1-14; } # epoch seconds with centiseconds
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
api_pid() { cat "$STACK_DIR/run/api$1.pid" 2>/dev/null; }
# (xtask stack status exits 3 while a service is down: its output is read whole, never piped)
stack_status() { "$XTASK" stack status 2>/dev/null || true; }
ready_count() { grep -cE '^api[1-9] +running .* ready$' <<<"$(stack_status)" || true; }
running() { grep -qE "^$1 +running " <<<"$(stack_status)"; }

# --- the users' load ---------------------------------------------------------------------------
# Long enough for every phase even when actions are slow; stopped with SIGINT (goose ends the
# run and writes its reports) once the last phase is over.
RUN_TIME=$((PHASE_SECS * 10 + 600))
say "load: $USERS users through NGINX, $THINK_MIN-$THINK_MAX ms think time, ramp $RAMP_RATE/s"
T0=$(now)
"$LOADGEN_BIN" --host "$PUBLIC" --students "$STUDENTS" --users "$USERS" --increase-rate "$RAMP_RATE" \
  --run-time "${RUN_TIME}s" --think-min-ms "$THINK_MIN" --think-max-ms "$THINK_MAX" "${pins[@]}" \
  --metrics-listen "127.0.0.1:$STACK_LOADGEN_METRICS_PORT" --progress-secs 10 --no-slo-exit \
  --slo-error-ratio 0 --output-dir "$OUT/loadgen-users" >"$OUT/loadgen-users.log" 2>&1 &
USERS_PID=$!
users_running() {
  curl -s --max-time 2 "http://127.0.0.1:$STACK_LOADGEN_METRICS_PORT/metrics" | awk '$1 == "loadgen_users" { print $2 + 0 }'
}
for _ in $(seq 1 $((USERS / RAMP_RATE * 4 + 60))); do
  [[ $(users_running) == "$USERS" ]] && break
  kill -0 "$USERS_PID" 2>/dev/null || fatal "the users' loadgen exited; read $OUT/loadgen-users.log"
  sleep 0.5
done
[[ $(users_running) == "$USERS" ]] || fatal "the users' loadgen did not reach $USERS users; read $OUT/loadgen-users.log"
sleep 2

# --- phases ------------------------------------------------------------------------------------
# Each phase: its window [start, end), the action at its start, quiet until PHASE_SECS have
# passed (or 3 s after a slow action). Expected-outcome notes and checks go into NOTE / OK.
PHASES=() P_START=() P_END=() P_NOTE=() P_OK=() P_SKIP=()
add_phase() { # NAME START END OK NOTE [SKIP]
  PHASES+=("$1") P_START+=("$2") P_END+=("$3") P_OK+=("$4") P_NOTE+=("$5") P_SKIP+=("${6:-}")
}
quiet_until() { # wait until START + PHASE_SECS, and at least 3 s from now when the action ran long
  local until
  until=$(awk -v s="$1" -v w="$PHASE_SECS" -v n="$(now)" 'BEGIN { e = s + w; if (n + 3 > e) e = n + 3; printf "%.2f", e - n }')
  sleep "$until"
}
add_phase ramp-up "$T0" "$(now)" 1 "users started"

say "phase baseline"
start=$(now)
sleep "$PHASE_SECS"
add_phase baseline "$start" "$(now)" 1 "nothing happens"

say "phase kill-replica: SIGKILL api2, then start it again"
start=$(now) ok=1
victim=$(api_pid 2)
kill -KILL "$victim" || ok=0
sleep 2
STACK_SERVICES=api2 stack up || ok=0
quiet_until "$start"
[[ $(ready_count) == 3 ]] || ok=0
add_phase kill-replica "$start" "$(now)" "$ok" "api2 (pid $victim) SIGKILLed, back after 2 s; 3 ready after: $([[ $ok == 1 ]] && echo yes || echo NO)"

say "phase rolling-restart: api1..api3, SIGTERM, wait gone, start, wait ready"
start=$(now) ok=1
for n in 1 2 3; do
  stack stop "api$n" || ok=0
  STACK_SERVICES=api$n stack up || ok=0
  sleep 2.5 # past NGINX's fail_timeout before the next one goes
done
quiet_until "$start"
[[ $(ready_count) == 3 ]] || ok=0
add_phase rolling-restart "$start" "$(now)" "$ok" "3 replicas restarted one by one; 3 ready after: $([[ $ok == 1 ]] && echo yes || echo NO)"

say "phase restart-redis"
start=$(now) ok=1
stack stop redis || ok=0
STACK_SERVICES=redis stack up || ok=0
quiet_until "$start"
running redis || ok=0
add_phase restart-redis "$start" "$(now)" "$ok" "Redis stopped (snapshot saved) and started; running after: $([[ $ok == 1 ]] && echo yes || echo NO)"

say "phase restart-postgres"
start=$(now) ok=1
stack stop pg || ok=0
STACK_SERVICES=pg stack up || ok=0
quiet_until "$start"
running postgres || ok=0
add_phase restart-postgres "$start" "$(now)" "$ok" "PostgreSQL stopped (fast) and started; running after: $([[ $ok == 1 ]] && echo yes || echo NO)"

say "phase correction"
start=$(now) ok=1 skip='' note=''
if ((${#pins[@]})) || ! "$SEEDER_BIN" correct --help >/dev/null 2>&1; then
  skip="skipped: seeder has no correct subcommand"
  ((${#pins[@]})) && skip="skipped: DRILL_PINS=on (the check reads the result without its PIN)"
  note=$skip
  say "correction: $skip"
  quiet_until "$start"
else
  id=$((FIRST_ID + STUDENTS / 2))
  json=$(curl -s --max-time 5 "$PUBLIC/v1/results/$id")
  subject=$(jq -r '.subjects[0].subject' <<<"$json" 2>/dev/null || true)
  old=$(jq -r '.subjects[0].score' <<<"$json" 2>/dev/null || true)
  if [[ -z $subject || $subject == null || ! $old =~ ^[0-9]+$ ]]; then
    ok=0 note="could not read student $id's first subject through NGINX"
  else
    new=$(((old + 37) % 101))
    printf 'student_id,subject,score\n%s,%s,%s\n' "$id" "$subject" "$new" >"$OUT/correction.csv"
    t_cmd=$(now)
    if SEEDER_KEY_PREFIX=$STACK_KEY_PREFIX "$SEEDER_BIN" correct --file "$OUT/correction.csv" >>"$OUT/drill.log" 2>&1; then
      t_exit=$(now) visible=''
      for _ in $(seq 1 300); do
        if [[ $(curl -s --max-time 2 "$PUBLIC/v1/results/$id" | jq -r --arg s "$subject" '.subjects[] | select(.subject == $s) | .score' 2>/dev/null) == "$new" ]]; then
          visible=$(seconds_since "$t_exit")
          break
        fi
        sleep 0.1
      done
      cmd_s=$(awk -v a="$t_cmd" -v b="$t_exit" 'BEGIN { printf "%.1f", b - a }')
      if [[ -z $visible ]]; then
        ok=0 note="student $id $subject $old -> $new: the command took ${cmd_s} s, NGINX still serves the old score 30 s later"
      else
        awk -v v="$visible" -v b="$STALENESS_BOUND_S" 'BEGIN { exit !(v <= b) }' || ok=0
        note="student $id $subject $old -> $new: command ${cmd_s} s, served by NGINX ${visible} s after it exited (bound ${STALENESS_BOUND_S} s)"
      fi
    else
      ok=0 note="seeder correct failed (exit status $?); read $OUT/drill.log"
    fi
  fi
  say "correction: $note"
  quiet_until "$start"
fi
add_phase correction "$start" "$(now)" "$ok" "$note" "$skip"

say "phase harvest: a second loadgen walks the IDs as fast as it can, from one address"
start=$(now)
# Before the flood, from the same address: the flood's unknown numbers pass the API's failed-lookup
# limit and it refuses that address for the rest of its minute, which would hide NGINX's limit.
attack_secs=$((PHASE_SECS > 4 ? PHASE_SECS - 2 : 2)) # the harvester's and the flood's run time
"$LOADGEN_BIN" --host "$PUBLIC" --students "$STUDENTS" --users 8 --increase-rate 8 --run-time "${attack_secs}s" \
  --think-min-ms 0 --think-max-ms 0 --weight-student 0 --weight-hot-spot 0 --weight-alias 0 --weight-wrong-id 0 \
  --weight-harvest 1 --source-addresses 0 --metrics-listen off --progress-secs 0 --no-slo-exit \
  --output-dir "$OUT/loadgen-harvest" >"$OUT/loadgen-harvest.log" 2>&1 || true
quiet_until "$start"
harvest=$(jq -r '.stats | "\((.requests - .failures) * 60 / ([.seconds, 1] | max) | floor) results/min harvested (\(.requests) requests, \(.failures) refused)"' "$OUT/loadgen-harvest/summary.json" 2>/dev/null || true)
ok=1 # with PINs required, a harvester without them must get no result at all
((${#pins[@]})) && [[ ${harvest%% *} != 0 ]] && ok=0
add_phase harvest "$start" "$(now)" "$ok" "harvest from one address${pins:+ without PINs}: ${harvest:-no summary}"

say "phase flood: $FLOOD_USERS users of unknown and malformed IDs, up to $FLOOD_RPS req/s"
start=$(now)
"$LOADGEN_BIN" --host "$PUBLIC" --students "$STUDENTS" --users "$FLOOD_USERS" --increase-rate "$FLOOD_USERS" \
  --run-time "${attack_secs}s" --throttle-requests "$FLOOD_RPS" --think-min-ms 0 --think-max-ms 0 \
  --weight-student 0 --weight-hot-spot 0 --weight-alias 0 --weight-wrong-id 1 --source-addresses 0 --rate-limited-ok "${pins[@]}" \
  --metrics-listen off --progress-secs 0 --no-slo-exit --slo-error-ratio 0 \
  --output-dir "$OUT/loadgen-flood" >"$OUT/loadgen-flood.log" 2>&1 &
FLOOD_PID=$!
wait "$FLOOD_PID" || true
FLOOD_PID=''
quiet_until "$start"
flood_requests=$(jq -r '.stats.requests // empty' "$OUT/loadgen-flood/summary.json" 2>/dev/null || true)
flood_failures=$(jq -r '.stats.failures // empty' "$OUT/loadgen-flood/summary.json" 2>/dev/null || true)
flood_rps=$(jq -r '.stats.rps // empty | floor' "$OUT/loadgen-flood/summary.json" 2>/dev/null || true)
add_phase flood "$start" "$(now)" 1 "flood: ${flood_requests:-?} requests (${flood_rps:-?}/s), ${flood_failures:-?} not answered as expected"

say "phase slowloris: $SLOW_CONNECTIONS slow connections"
start=$(now)
# Longer than NGINX's header timeout, so the connections it cuts are seen being cut.
slow_secs=$((PHASE_SECS - 2 > HEADER_TIMEOUT_S + 3 ? PHASE_SECS - 2 : HEADER_TIMEOUT_S + 3))
slow=$("$XTASK" slowloris --port "$STACK_NGINX_PORT" --connections "$SLOW_CONNECTIONS" \
  --interval 2 --duration "$slow_secs" --path "/v1/results/$FIRST_ID" 2>>"$OUT/drill.log") || slow='{}'
printf '%s\n' "$slow" >"$OUT/slowloris.json"
quiet_until "$start"
add_phase slowloris "$start" "$(now)" 1 "slowloris: $slow"
sleep 3 # two more scrapes of the last phase's counters

kill -INT "$USERS_PID" 2>/dev/null || true
wait "$USERS_PID" || true
USERS_PID=''
T_END=$(now)

# --- per-phase figures from Prometheus ---------------------------------------------------------
say "per-phase figures from Prometheus"
round() { awk -v v="$1" -v f="%.${2:-0}f" 'BEGIN { if (v == "NaN" || v == "") print "-"; else printf f, v }'; }
TABLE=$OUT/table.txt
printf 'name,start_s,end_s,passed\n' >"$OUT/phases.csv"
{
  printf '%-17s %6s %9s %7s %8s %8s %9s %8s  %-7s %s\n' phase secs requests failed "p50 ms" "p99 ms" "PG look/s" "PG xact/s" verdict "expected outcome / observed"
} >"$TABLE"
overall=0
baseline_db=0 baseline_xact=0
for i in "${!PHASES[@]}"; do
  name=${PHASES[i]} s=${P_START[i]} e=${P_END[i]}
  dur=$(awk -v s="$s" -v e="$e" 'BEGIN { d = e - s; printf "%d", (d < 1 ? 1 : d + 0.5) }')
  req=$(awk -v a="$(query 'sum(loadgen_requests_total)' "$s")" -v b="$(query 'sum(loadgen_requests_total)' "$e")" 'BEGIN { printf "%d", b - a }')
  err=$(awk -v a="$(query 'sum(loadgen_requests_total{outcome="error"})' "$s")" -v b="$(query 'sum(loadgen_requests_total{outcome="error"})' "$e")" 'BEGIN { printf "%d", b - a }')
  p50=$(query "histogram_quantile(0.5, sum by (le) (increase(loadgen_request_duration_seconds_bucket[${dur}s]))) * 1000" "$e")
  p99=$(query "histogram_quantile(0.99, sum by (le) (increase(loadgen_request_duration_seconds_bucket[${dur}s]))) * 1000" "$e")
  db=$(query "sum(increase(result_lookups_total{tier=\"db\"}[${dur}s])) / $dur" "$e")
  xact=$(query "sum(rate(pg_stat_database_xact_commit{datname=\"${STACK_PG_DB:-results}\"}[${dur}s]))" "$e")
  ok=${P_OK[i]} note=${P_NOTE[i]}
  ((err == 0)) || { ok=0 note="$err failed client requests; $note"; }
  ((req > 0)) || { ok=0 note="no client request counted; $note"; }
  case $name in
  baseline) baseline_db=$db baseline_xact=$xact ;;
  flood)
    if ! awk -v f="$db" -v b="$baseline_db" -v x="$xact" -v bx="$baseline_xact" -v k="$FLOOD_DB_SLACK" \
      'BEGIN { exit !(f <= b + k && x <= 1.25 * bx + k) }'; then
      ok=0 note="PostgreSQL rate rose: lookups $(round "$db" 1)/s vs baseline $(round "$baseline_db" 1)/s, xact $(round "$xact" 1)/s vs $(round "$baseline_xact" 1)/s; $note"
    else
      note="PostgreSQL flat (lookups $(round "$db" 1)/s vs baseline $(round "$baseline_db" 1)/s, xact $(round "$xact" 1)/s vs $(round "$baseline_xact" 1)/s); $note"
    fi
    [[ -n $flood_requests && $flood_requests -gt 0 && $flood_failures == 0 ]] || { ok=0 note="the flood's answers were not all the expected 400/404; $note"; }
    ;;
  slowloris)
    if ! jq -e --argjson t "$((HEADER_TIMEOUT_S + 2))" '.opened > 0 and .cut_by_server > 0 and .longest_s <= $t and .oldest_held_s <= $t' \
      <<<"$slow" >/dev/null 2>&1; then
      ok=0 note="slow connections not cut within ${HEADER_TIMEOUT_S}+2 s; $note"
    fi
    ;;
  esac
  verdict=PASS passed=true
  if [[ -n ${P_SKIP[i]} ]]; then
    verdict=SKIPPED passed=skipped
    ((err == 0)) || { verdict=FAIL passed=false overall=1; }
  elif [[ $ok != 1 ]]; then
    verdict=FAIL passed=false overall=1
  fi
  printf '%s,%s,%s,%s\n' "$name" "$(awk -v a="$T0" -v b="$s" 'BEGIN { printf "%.1f", b - a }')" \
    "$(awk -v a="$T0" -v b="$e" 'BEGIN { printf "%.1f", b - a }')" "$passed" >>"$OUT/phases.csv"
  printf '%-17s %6s %9s %7s %8s %8s %9s %8s  %-7s %s\n' "$name" "$dur" "$req" "$err" "$(round "$p50" 2)" "$(round "$p99" 2)" \
    "$(round "$db" 1)" "$(round "$xact" 1)" "$verdict" "$note" >>"$TABLE"
done
{
  echo
  echo "users $USERS, students $STUDENTS, think $THINK_MIN-$THINK_MAX ms, phase window ${PHASE_SECS} s, flood $FLOOD_USERS users <= $FLOOD_RPS req/s, slowloris $SLOW_CONNECTIONS connections"
  echo "requests/failed: loadgen_requests_total at the window's bounds (1 s scrapes); p50/p99: histogram_quantile over the loadgen's buckets (bucket resolution);"
  echo "PG look/s: replicas' result_lookups_total{tier=\"db\"} (queries of the read path); PG xact/s: pg_stat_database_xact_commit of the results database (postgres exporter)."
  if [[ -f $OUT/loadgen-users/summary.json ]]; then
    jq -r '"users loadgen, its own summary (exact; goose counts from the end of the ramp-up): \(.stats.requests) requests, \(.stats.failures) failed, \(.stats.rps | floor) req/s"' "$OUT/loadgen-users/summary.json" 2>/dev/null || true
  fi
  echo "verdict: $([[ $overall == 0 ]] && echo "PASS: every phase met its expected outcome" || echo "FAIL: a phase missed its expected outcome")"
} >>"$TABLE"

# --- the timeline ------------------------------------------------------------------------------
range() { # range EXPR: "epoch value" lines of a range query over the drill, 1 s step
  curl -s --max-time 20 --data-urlencode "query=$1" --data-urlencode "start=$T0" --data-urlencode "end=$T_END" \
    --data-urlencode "step=1" "$PROM/api/v1/query_range" | jq -r '.data.result[0].values[]? | "\(.[0]) \(.[1])"'
}
range 'sum(rate(loadgen_requests_total[3s]))' >"$OUT/.rps"
range 'histogram_quantile(0.99, sum by (le) (rate(loadgen_request_duration_seconds_bucket[3s]))) * 1000' >"$OUT/.p99"
range 'sum(rate(loadgen_requests_total{outcome="error"}[3s]))' >"$OUT/.failed"
range 'sum(rate(result_lookups_total{tier="db"}[3s]))' >"$OUT/.db"
{
  echo "seconds,rps,p99_ms,failed_per_s,db_per_s"
  awk -v t0="$T0" '
    FILENAME ~ /[.]rps$/ { rps[$1] = $2; t[$1] = 1 } FILENAME ~ /[.]p99$/ { p99[$1] = $2 }
    FILENAME ~ /[.]failed$/ { f[$1] = $2 } FILENAME ~ /[.]db$/ { db[$1] = $2; t[$1] = 1 }
    END { for (k in t) printf "%.0f,%s,%s,%s,%s\n", k - t0, rps[k], p99[k], (k in f ? f[k] : 0), (k in db ? db[k] : 0) }
  ' "$OUT/.rps" "$OUT/.p99" "$OUT/.failed" "$OUT/.db" | sort -t, -k1,1n
} >"$OUT/series.csv"
rm -f "$OUT/.rps" "$OUT/.p99" "$OUT/.failed" "$OUT/.db"
if "$LOADGEN_BIN" timeline --series "$OUT/series.csv" --phases "$OUT/phases.csv" --out "$OUT/timeline.png" >>"$OUT/drill.log" 2>&1; then
  echo "timeline: $OUT/timeline.png" >>"$TABLE"
else
  echo "timeline: not drawn (read $OUT/drill.log)" >>"$TABLE"
  overall=1
fi

cat "$TABLE"
exit "$overall"
