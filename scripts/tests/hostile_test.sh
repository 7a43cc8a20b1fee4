#!/usr/bin/env bash
# scripts/tests/hostile_test.sh - hostile HTTP at the edge: a table of malicious or malformed
# requests sent with raw sockets (cargo xtask raw-http; curl normalises too much) to
# NGINX's public port on a throw-away stack (2,000 students, three replicas, NGINX). Per row: the
# expected answer (a fast 4xx, or the connection dropped), the time it took against its bound, and
# where it was allowed to get:
#   edge     NGINX answers itself: every replica's http_requests_total unchanged, and no store
#            touched (the replicas' result_lookups_total unchanged, Redis' HGET/EXISTS calls from
#            INFO commandstats unchanged);
#   replica  it reaches a replica, which refuses it (e.g. a malformed ID: 400 invalid_id) without
#            touching a store (lookups and Redis calls unchanged; a head over the API's 64 headers
#            is refused by hyper before the replica's request counter);
#   store    a valid request in an odd form (an absolute-form target, or a header line without a
#            colon, which NGINX drops: ignore_invalid_headers): served like any other.
# At the end PostgreSQL's scans of the students table must be unchanged across every row (no row
# reaches PostgreSQL: with the completeness marker a Redis miss is a 404 on its own).
# Prints the table, then `hostile_test: N passed, M failed`; exit status 1 when a check failed.
#
# Needs: target/debug/api (or HOSTILE_API_BIN), a seeder binary, nginx, curl.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
STUDENTS=2000
passed=0
failed=0
TEST_NAME=hostile_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

test_binaries "${HOSTILE_API_BIN:-}"
command -v curl >/dev/null || fatal "curl is missing (apt-get install curl)"
STACK_API_BIN=$API_BIN
throwaway_stack hostile-test 27700
cleanup() {
  "$XTASK" stack down --purge >/dev/null 2>&1 || true
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT

say "stack in $STACK_DIR: nginx $STACK_NGINX_PORT, replicas $STACK_API_PORT.., admin $STACK_API_ADMIN_PORT.."
seed_throwaway_stack "$STUDENTS"
STACK_SERVICES="api nginx" "$XTASK" stack up >"$STACK_DIR/up.log" 2>&1 || fatal "xtask stack up (api nginx): $(tail -5 "$STACK_DIR/up.log")"
PORT=$STACK_NGINX_PORT
PUBLIC=http://127.0.0.1:$PORT

# --- what a request reached ------------------------------------------------------------------
replica_metric() { # the sum of metric $1 over the three replicas' admin /metrics
  local n
  for n in 1 2 3; do
    curl -fs --max-time 5 "http://127.0.0.1:$((STACK_API_ADMIN_PORT + n - 1))/metrics" || echo "__unreachable 1"
  done | awk -v m="$1" 'index($0, m "{") == 1 || $1 == m { s += $NF } /^__unreachable/ { s = "x" } END { print s + 0 }'
}
redis_lookups() { # Redis calls of the read path: HGET (a result) and EXISTS (the completeness marker)
  redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" info commandstats | tr -d '\r' |
    awk -F'[:=,]' '$1 == "cmdstat_hget" || $1 == "cmdstat_exists" { s += $3 } END { print s + 0 }'
}
pg_scans() { # scans of the students table (a lookup by ID is one index scan)
  psql "$DATABASE_URL" -Atq -c "SELECT coalesce(sum(coalesce(idx_scan, 0) + coalesce(seq_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname = 'students'"
}
snapshot() { printf '%s %s %s' "$(replica_metric http_requests_total)" "$(replica_metric result_lookups_total)" "$(redis_lookups)"; }

# --- the rows --------------------------------------------------------------------------------
# ROW name | request bytes (Python bytes escapes, decoded by `xtask raw-http send`) | expected
# answers (|-separated: a status, closed, noline) | time bound s | reach (edge, replica, store)
ID=1000042
LONG_URI=$(printf '1%.0s' $(seq 1 9000))
BIG_HEADER=$(printf 'a%.0s' $(seq 1 9000))
MANY_HEADERS=$(for i in $(seq 1 500); do printf 'X-Filler-%03d: %s\\r\\n' "$i" "$(printf 'b%.0s' $(seq 1 60))"; done)
SOME_HEADERS=$(for i in $(seq 1 80); do printf 'X-H%02d: 1\\r\\n' "$i"; done)
LONG_DIGITS=$(printf '9%.0s' $(seq 1 4000))
ROWS=(
  "CL and TE together (smuggling)|POST /v1/results/$ID HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n|400|1|edge"
  "two Content-Lengths|POST /v1/results/$ID HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab|400|1|edge"
  "TE xchunked (unknown coding)|POST /v1/results/$ID HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n|501|400|1|edge"
  "GET with a chunked body|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n|400|1|edge"
  "GET with a small body|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello|400|1|edge"
  "POST with a small body|POST /v1/results/$ID HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello|405|1|edge"
  "oversized URI (9 KB)|GET /v1/results/$LONG_URI HTTP/1.1\r\nHost: x\r\n\r\n|414|1|edge"
  "oversized header (9 KB)|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nX-Big: $BIG_HEADER\r\n\r\n|400|1|edge"
  "too many headers (500, 40 KB)|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\n$MANY_HEADERS\r\n|400|1|edge"
  "80 small headers (API limit 64)|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\n$SOME_HEADERS\r\n|431|1|replica"
  "invalid method token|G\x01T /v1/results/$ID HTTP/1.1\r\nHost: x\r\n\r\n|400|1|edge"
  "unknown method BREW|BREW /v1/results/$ID HTTP/1.1\r\nHost: x\r\n\r\n|405|1|edge"
  "DELETE|DELETE /v1/results/$ID HTTP/1.1\r\nHost: x\r\n\r\n|405|1|edge"
  "CONNECT to an admin port|CONNECT 127.0.0.1:$STACK_API_ADMIN_PORT HTTP/1.1\r\nHost: 127.0.0.1:$STACK_API_ADMIN_PORT\r\n\r\n|400|405|1|edge"
  "path traversal /../|GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n|400|1|edge"
  "traversal via /v1/results/../..|GET /v1/results/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n|404|400|1|edge"
  "traversal encoded %2e%2e|GET /v1/results/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n|404|400|1|edge"
  "traversal encoded ..%2f|GET /v1/results/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n|404|400|1|edge"
  "SQL injection-looking ID|GET /v1/results/1000000'%20OR%201=1-- HTTP/1.1\r\nHost: x\r\n\r\n|400|1|replica"
  "SQL injection, raw quote|GET /v1/results/1000000'OR'1'='1 HTTP/1.1\r\nHost: x\r\n\r\n|400|1|replica"
  "NUL byte %00 in the ID|GET /v1/results/100%0000 HTTP/1.1\r\nHost: x\r\n\r\n|400|1|edge"
  "raw NUL byte in the line|GET /v1/results/100\x0000 HTTP/1.1\r\nHost: x\r\n\r\n|400|1|edge"
  "Arabic-Indic digits (UTF-8)|GET /v1/results/\xd9\xa1\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0 HTTP/1.1\r\nHost: x\r\n\r\n|400|1|replica"
  "fullwidth digits, %-encoded|GET /v1/results/%EF%BC%91000000 HTTP/1.1\r\nHost: x\r\n\r\n|400|1|replica"
  "4,000-digit ID|GET /v1/results/$LONG_DIGITS HTTP/1.1\r\nHost: x\r\n\r\n|400|1|replica"
  "absolute-form to the admin port|GET http://127.0.0.1:$STACK_API_ADMIN_PORT/metrics HTTP/1.1\r\nHost: x\r\n\r\n|404|1|edge"
  "absolute-form, valid result|GET http://evil.example/v1/results/$ID HTTP/1.1\r\nHost: x\r\n\r\n|200|1|store"
  "Host: an admin port, /metrics|GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:$STACK_API_ADMIN_PORT\r\n\r\n|404|1|edge"
  "/metrics|GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n|404|1|edge"
  "/debug/pprof/profile|GET /debug/pprof/profile?seconds=1 HTTP/1.1\r\nHost: x\r\n\r\n|404|1|edge"
  "/stub_status|GET /stub_status HTTP/1.1\r\nHost: x\r\n\r\n|404|1|edge"
  "HTTP/0.9 request|GET /v1/results/$ID\r\n|closed|1|edge"
  "HTTP/2.0 in plain text|GET /v1/results/$ID HTTP/2.0\r\nHost: x\r\n\r\n|505|1|edge"
  "HTTP/1.x version|GET /v1/results/$ID HTTP/1.x\r\nHost: x\r\n\r\n|400|1|edge"
  "HTTP/1.1 without Host|GET /v1/results/$ID HTTP/1.1\r\n\r\n|400|1|edge"
  "header line without a colon|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n|200|1|store"
  "bare CR inside a header|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n|400|1|edge"
  "obsolete line folding|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n|400|1|edge"
  "half a request, then silence|GET /v1/results/$ID HTTP/1.1\r\nHost: x\r\n|408|closed|7|edge"
)

TABLE=$STACK_DIR/table.txt
printf '%-34s %-14s %-8s %7s %8s  %-20s %s\n' "row" "expected" "got" "time s" "bound s" "reached" "verdict" >"$TABLE"
pg_before=$(pg_scans)
for row in "${ROWS[@]}"; do
  IFS='|' read -r -a f <<<"$row"
  name=${f[0]} request=${f[1]} reach=${f[-1]} bound=${f[-2]}
  expected=("${f[@]:2:${#f[@]}-4}")
  before=$(snapshot)
  answer=$(printf '%s' "$request" | "$XTASK" raw-http send "$PORT" $((bound + 3))) || answer="error	0"
  got=${answer%%$'\t'*} secs=${answer#*$'\t'}
  sleep 0.2 # the replicas record a request after answering it
  after=$(snapshot)
  read -r r0 l0 s0 <<<"$before"
  read -r r1 l1 s1 <<<"$after"
  dr=$((r1 - r0)) dl=$((l1 - l0)) ds=$((s1 - s0))
  ok=1
  [[ " ${expected[*]} " == *" $got "* ]] || ok=0
  awk -v t="$secs" -v b="$bound" 'BEGIN { exit !(t < b) }' || ok=0
  case $reach in
  edge) ((dr == 0 && dl == 0 && ds == 0)) || ok=0 ;;
  replica) ((dl == 0 && ds == 0)) || ok=0 ;; # hyper's own 431 comes before the replica's counter
  store) ((dr >= 1)) || ok=0 ;;
  esac
  verdict=ok
  ((ok)) || verdict=FAILED
  check "$name: ${expected[*]} within ${bound} s, reaching only: $reach (got $got in $secs s; replica +$dr, lookups +$dl, redis +$ds)" test "$ok" = 1
  printf '%-34s %-14s %-8s %7s %8s  %-20s %s\n' "$name" "$(
    IFS=/
    echo "${expected[*]}"
  )" "$got" "$secs" "< $bound" "$reach (+$dr/+$dl/+$ds)" "$verdict" >>"$TABLE"
done

# Many idle connections (bounded): NGINX closes each within its 5 s header timeout, and a normal
# request is still answered at once meanwhile.
before=$(snapshot)
"$XTASK" raw-http idle "$PORT" 200 9 >"$STACK_DIR/idle.txt" &
idle_pid=$!
sleep 1
normal=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "$PUBLIC/v1/results/$ID")
wait "$idle_pid" || true
read -r closed last <"$STACK_DIR/idle.txt" || closed=0 last=0
check "200 idle connections: every one closed by NGINX within 7 s (closed $closed, last after $last s)" \
  bash -c "[[ $closed == 200 ]] && awk -v t='$last' 'BEGIN { exit !(t < 7) }'"
check "a normal request during the idle connections: 200 in under 1 s (got $normal)" \
  bash -c "[[ '$normal' == '200 '* ]] && awk -v t='${normal#* }' 'BEGIN { exit !(t < 1) }'"
printf '%-34s %-14s %-8s %7s %8s  %-20s %s\n' "200 idle connections" "all closed" "$closed" "$last" "< 7" "edge" \
  "$([[ $closed == 200 ]] && echo ok || echo FAILED)" >>"$TABLE"

# PostgreSQL: not one row reached it (its statistics reach pg_stat_user_tables within ~1 s).
sleep 1.5
pg_after=$(pg_scans)
check "no row reached PostgreSQL (students scans $pg_before -> $pg_after)" test "$pg_before" = "$pg_after"
check "the stack still serves a valid result" test "$(curl -s -o /dev/null -w '%{http_code}' "$PUBLIC/v1/results/$ID")" = 200
echo "(reached: replica requests / store lookups / Redis HGET+EXISTS calls, each a change across the row)" >>"$TABLE"
cat "$TABLE"
printf 'hostile_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
