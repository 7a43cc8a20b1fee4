#!/usr/bin/env bash
# scripts/tests/edge_test.sh - tests NGINX, the edge (nginx/nginx.conf.template, service `nginx`
# of cargo xtask stack), on a second, throw-away stack (own folder, own free ports) so the
# developer's stack is never touched. It seeds a small data set (20,000 students), starts three
# API replicas and NGINX, and checks through NGINX's public port: results, the JSON error
# envelope (400/404), admin routes hidden (404), the micro-cache header, gzip, stub_status only
# on the status port, the rate limit (429 + JSON + Retry-After), the load spread over every
# replica, and two chaos runs under a bounded wrk load: a replica SIGKILLed, then all three
# restarted one after another (SIGTERM, drain, start) - with zero failed requests each time.
#
# Needs: target/debug/api (or EDGE_API_BIN), target/release/seeder or target/debug/seeder,
# nginx, wrk, curl (cargo xtask stack installs the Debian packages it knows; wrk: apt-get install wrk).
# Prints "edge_test: N passed, M failed" last; exit status 1 if anything failed.
# EDGE_KEEP_LOGS=DIR keeps the stack's logs and wrk's output there.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
STUDENTS=20000
FIRST_ID=1000000
LAST_ID=$((FIRST_ID + STUDENTS - 1))
passed=0
failed=0

TEST_NAME=edge_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

test_binaries "${EDGE_API_BIN:-}"
command -v wrk >/dev/null || fatal "wrk is missing (apt-get install wrk)"
command -v curl >/dev/null || fatal "curl is missing (apt-get install curl)"

STACK_API_BIN=$API_BIN
throwaway_stack edge-test 27100
WRK_PID=''
keep_logs() {
  if [[ -n ${EDGE_KEEP_LOGS:-} && -d $STACK_DIR/log ]]; then
    mkdir -p "$EDGE_KEEP_LOGS" && { cp -f "$STACK_DIR"/log/* "$STACK_DIR"/*.txt "$EDGE_KEEP_LOGS"/ 2>/dev/null || true; }
  fi
}
cleanup() {
  [[ -z $WRK_PID ]] || kill "$WRK_PID" 2>/dev/null || true
  keep_logs
  if ((failed)) && [[ -s $STACK_DIR/log/nginx.log ]]; then
    say "last lines of nginx's error log:"
    tail -n 20 "$STACK_DIR/log/nginx.log" | sed 's/^/    /' >&2
  fi
  "$XTASK" stack down --purge >/dev/null 2>&1 || true
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT

say "stack in $STACK_DIR: pg $STACK_PG_PORT, redis $STACK_REDIS_PORT, api $STACK_API_PORT.., admin $STACK_API_ADMIN_PORT.., nginx $STACK_NGINX_PORT, status $STACK_NGINX_STATUS_PORT"
seed_throwaway_stack "$STUDENTS"

STACK_SERVICES="pg redis api nginx"
check "up starts the replicas and nginx" "$XTASK" stack up
PUBLIC=http://127.0.0.1:$STACK_NGINX_PORT
STATUS=http://127.0.0.1:$STACK_NGINX_STATUS_PORT

# --- xtask stack integration ----------------------------------------------------------------
nginx_pid() { cat "$STACK_DIR/nginx/nginx.pid" 2>/dev/null; }
pid1=$(nginx_pid)
check "up again leaves nginx running (same pid, already running)" bash -c \
  "'$XTASK' stack up 2>&1 | grep -q 'nginx: already running' && [[ \$(cat '$STACK_DIR/nginx/nginx.pid') == '$pid1' ]]"
check "status shows nginx running" bash -c "'$XTASK' stack status | grep -q '^nginx .* running '"
check "env prints PUBLIC_URL" bash -c "'$XTASK' stack env | grep -qxF \"export PUBLIC_URL='$PUBLIC'\""
check "the rendered configuration names the three replicas" bash -c \
  "grep -c 'server 127.0.0.1:[0-9]* max_fails=3 fail_timeout=2s;' '$STACK_DIR/nginx/nginx.conf' | grep -qx 3"

# --- routes through the public port ----------------------------------------------------------
body() { curl -s --max-time 5 "$@"; }
code() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@"; }
json_error() { # URL STATUS CODE: that status, JSON content type, the error envelope
  local h b
  h=$(curl -s -D - -o "$STACK_DIR/body" --max-time 5 "$1") || return 1
  b=$(<"$STACK_DIR/body")
  [[ $h == "HTTP/1.1 $2 "* && ${h,,} == *"content-type: application/json"* &&
    $b == *"{\"error\":{\"status\":$2,\"code\":\"$3\""* ]]
}
id=$((FIRST_ID + 12345))
check "a valid ID: 200" test "$(code "$PUBLIC/v1/results/$id")" = 200
check "a valid ID: JSON with its student_id" bash -c "curl -s '$PUBLIC/v1/results/$id' | grep -q '\"student_id\":${id}[,}]'"
check "/student/{id}: 200 with its student_id" bash -c "curl -s '$PUBLIC/student/$id' | grep -q '\"student_id\":${id}[,}]'"
check "unknown ID 9999999: 404 JSON envelope unknown_id" json_error "$PUBLIC/v1/results/9999999" 404 unknown_id
check "an ID beyond the data set: 404 JSON envelope" json_error "$PUBLIC/v1/results/$((LAST_ID + 1))" 404 unknown_id
check "malformed ID abc: 400 JSON envelope invalid_id" json_error "$PUBLIC/v1/results/abc" 400 invalid_id
# Registration numbers are whatever the data holds (1-9 digits): a short one is well-formed.
check "a well-formed five-digit ID outside the data set: 404 unknown_id" json_error "$PUBLIC/v1/results/12345" 404 unknown_id
check "a five-digit ID goes through the micro-cache location (X-Cache-Status)" bash -c \
  "curl -s -o /dev/null -D - '$PUBLIC/student/12345' | grep -qi '^x-cache-status'"
for path in /metrics /debug/pprof/profile /admin /stub_status /index.html /web/ /nope; do
  check "$path on the public port: 404 JSON envelope" json_error "$PUBLIC$path" 404 not_found
done
check "/healthz: 200" test "$(code "$PUBLIC/healthz")" = 200
check "/readyz: 200, proxied" bash -c "curl -fs '$PUBLIC/readyz' | grep -q '\"ready\":true'"
cache_status() { curl -s -o /dev/null -D - --max-time 5 "$1" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache-[Ss]tatus: //p'; }
cid=$((FIRST_ID + 777))
check "X-Cache-Status: MISS first" test "$(cache_status "$PUBLIC/v1/results/$cid")" = MISS
# proxy_cache_min_uses 2: the second request is stored, the third is answered from the cache.
check "X-Cache-Status: MISS again (stored now)" test "$(cache_status "$PUBLIC/v1/results/$cid")" = MISS
check "X-Cache-Status: HIT right after" test "$(cache_status "$PUBLIC/v1/results/$cid")" = HIT
# Malformed IDs skip the micro-cache (400s are not stored; repeats would queue on its lock).
for path in /v1/results/12ab /v1/results/0999999 /student/1234567890; do
  check "$path: 400 from the API, not through the micro-cache (no X-Cache-Status), even repeated" bash -c \
    "for i in 1 2 3; do [[ \$(curl -s -o /dev/null -w '%{http_code}' '$PUBLIC$path') == 400 ]] || exit 1; done
     ! curl -s -o /dev/null -D - '$PUBLIC$path' | grep -qi '^x-cache-status'"
done
check "gzip for JSON when asked" bash -c \
  "curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' '$PUBLIC/v1/results/$id' | grep -qi '^content-encoding: gzip'"
check "ETag revalidation through NGINX: 304" bash -c \
  "etag=\$(curl -s -D - -o /dev/null '$PUBLIC/v1/results/$id' | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p'); [[ -n \$etag ]] && [[ \$(curl -s -o /dev/null -w '%{http_code}' -H \"If-None-Match: \$etag\" '$PUBLIC/v1/results/$id') == 304 ]]"
check "a request body over 1 KiB: 413" bash -c \
  "[[ \$(head -c 4096 /dev/zero | curl -s -o /dev/null -w '%{http_code}' --data-binary @- '$PUBLIC/v1/results/$id') == 413 ]]"
check "stub_status answers on the status port" bash -c "curl -fs '$STATUS/stub_status' | grep -q '^Active connections:'"
check "the status port serves nothing else" test "$(code "$STATUS/v1/results/$id")" = 404

# --- rate limit ------------------------------------------------------------------------------
check "reload with the rate limit on (5 r/s)" env STACK_SERVICES=nginx STACK_NGINX_RATE_LIMIT=on STACK_NGINX_RATE=5 "$XTASK" stack up
codes_of() { # one curl, keep-alive, requests for IDs $1..$2: their status codes, one a line
  local args=() i
  for ((i = $1; i <= $2; i++)); do args+=(-o /dev/null "$PUBLIC/v1/results/$i"); done
  curl -s --max-time 20 -w '%{http_code}\n' "${args[@]}"
}
codes=$(codes_of "$FIRST_ID" $((FIRST_ID + 39)) | sort | uniq -c | tr -s ' \n' ' ')
say "40 requests at once with 5 r/s, burst 10: $codes"
check "a burst gets some 200s" grep -q ' 200' <<<"$codes"
check "a burst gets some 429s" grep -q ' 429' <<<"$codes"
limited() {
  local h b i args=()
  # One curl, one keep-alive connection: 30 requests, then a 31st whose head and body we keep.
  for ((i = 0; i < 30; i++)); do args+=(-o /dev/null "$PUBLIC/v1/results/$FIRST_ID"); done
  curl -s --max-time 10 "${args[@]}" -D "$STACK_DIR/head" -o "$STACK_DIR/body" "$PUBLIC/v1/results/$FIRST_ID"
  # curl writes every response head to the file: keep the last one.
  h=$(awk '/^HTTP\// { blk = "" } { blk = blk $0 "\n" } END { printf "%s", blk }' "$STACK_DIR/head")
  b=$(<"$STACK_DIR/body")
  [[ $h == "HTTP/1.1 429 "* && ${h,,} == *"retry-after: 1"* && ${h,,} == *"content-type: application/json"* &&
    $b == *'{"error":{"status":429,"code":"rate_limited","message":'* ]]
}
check "a 429 has the JSON envelope rate_limited and Retry-After: 1" limited
check "status shows the rate limit on" bash -c "'$XTASK' stack status | grep -q '^nginx .*rate_limit=on'"

# --- load spread (micro-cache off) -----------------------------------------------------------
check "reload with the micro-cache off, rate limit off" env STACK_SERVICES=nginx STACK_NGINX_MICROCACHE=off "$XTASK" stack up
STACK_NGINX_MICROCACHE=off
results_count() { # replica N's http_requests_total for the results route, all statuses
  curl -fs --max-time 5 "http://127.0.0.1:$((STACK_API_ADMIN_PORT + $1 - 1))/metrics" |
    awk '/^http_requests_total\{/ && /route="\/v1\/results\/\{id\}"/ { s += $NF } END { print s + 0 }'
}
declare -A before
for n in 1 2 3; do before[$n]=$(results_count "$n"); done
codes=$(codes_of $((FIRST_ID + 1000)) $((FIRST_ID + 1089)) | sort | uniq -c | tr -s ' \n' ' ')
check "90 distinct requests through NGINX: all 200 ($codes)" test "$codes" = " 90 200 "
check "X-Cache-Status: BYPASS with the micro-cache off" test "$(cache_status "$PUBLIC/v1/results/$cid")" = BYPASS
spread=''
for n in 1 2 3; do
  after=$(results_count "$n")
  spread+=" api$n:+$((after - before[$n]))"
  check "api$n served some of them (http_requests_total for /v1/results/{id} grew)" test "$after" -gt "${before[$n]}"
done
say "load spread over the replicas:$spread"

# --- chaos under load ------------------------------------------------------------------------
LUA=$STACK_DIR/results.lua
sed -e "s/^local first_id, last_id = .*/local first_id, last_id = $FIRST_ID, $LAST_ID/" \
  "$REPO_DIR/scripts/bench/results.lua" >"$LUA"
grep -q "first_id, last_id = $FIRST_ID, $LAST_ID" "$LUA" || fatal "could not set the ID range in $LUA"
bench_field() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" "$2"; }
wrk_clean() { # the BENCH line of wrk output $1: requests > 0, no non-2xx, no socket errors
  local f=$1 v
  [[ $(bench_field requests "$f") -gt 0 ]] || return 1
  for v in non2xx connect read write timeout; do
    [[ $(bench_field "$v" "$f") == 0 ]] || return 1
  done
}
api_pid() { cat "$STACK_DIR/run/api$1.pid" 2>/dev/null; }

# 1. SIGKILL one replica mid-load.
out=$STACK_DIR/wrk-kill.txt
wrk -t1 -c16 -d8s --timeout 3s -s "$LUA" "$PUBLIC" >"$out" 2>&1 &
WRK_PID=$!
sleep 3
victim=$(api_pid 2)
say "chaos: SIGKILL api2 (pid $victim) during an 8 s load"
kill -KILL "$victim"
wait "$WRK_PID" || true
WRK_PID=''
say "$(grep '^BENCH' "$out" || tail -3 "$out")"
check "SIGKILL of a replica under load: zero non-2xx, zero socket errors" wrk_clean "$out"
check "the killed replica starts again (xtask stack up of api2)" env STACK_SERVICES=api2 "$XTASK" stack up
sleep 2.5 # past fail_timeout, so NGINX uses api2 again

# 2. Rolling restart of all three replicas mid-load.
out=$STACK_DIR/wrk-rolling.txt
wrk -t1 -c16 -d20s --timeout 3s -s "$LUA" "$PUBLIC" >"$out" 2>&1 &
WRK_PID=$!
sleep 2
rolled=0
for n in 1 2 3; do
  pid=$(api_pid "$n")
  say "chaos: restarting api$n (pid $pid): SIGTERM, drain, start"
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do gone "$pid" && break; sleep 0.1; done
  STACK_SERVICES=api$n "$XTASK" stack up >>"$STACK_DIR/rolling.log" 2>&1 && rolled=$((rolled + 1))
  sleep 2.5 # past fail_timeout before the next one goes down
done
wait "$WRK_PID" || true
WRK_PID=''
say "$(grep '^BENCH' "$out" || tail -3 "$out")"
check "all three replicas restarted during the load" test "$rolled" = 3
check "rolling restart under load: zero non-2xx, zero socket errors" wrk_clean "$out"
check "every replica is ready afterwards" bash -c "'$XTASK' stack status | grep -c '^api[123] .* running .* ready\$' | grep -qx 3"

# --- down ---------------------------------------------------------------------------------
pid1=$(nginx_pid)
check "down stops nginx" "$XTASK" stack down
check "the nginx master is gone" gone "$pid1"
check "nothing answers on the public port any more" bash -c "! curl -s --max-time 2 -o /dev/null '$PUBLIC/healthz'"
keep_logs
check "down --purge removes the folder" bash -c "'$XTASK' stack down --purge && [[ ! -e '$STACK_DIR' ]]"

printf 'edge_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
