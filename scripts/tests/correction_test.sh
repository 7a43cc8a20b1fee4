#!/usr/bin/env bash
# scripts/tests/correction_test.sh - tests `seeder correct` end to end on a throw-away stack
# (own folder, own free ports from 27400; 5,000 students, three API replicas, NGINX with its
# micro-cache on): a correction published while the API serves is seen by every replica at once
# (new body, new ETag; a conditional request with the old ETag gets 200 and the new body), and
# through NGINX within the stated bound (2 s after the command exits: no request sent later gets
# the old value, even one that comes after a pause). Then with Redis stopped: the correction is
# committed to PostgreSQL, the command says so and exits 5, the replicas keep answering (the new
# value, from PostgreSQL), and once Redis is back `seeder verify` reports the pending results,
# `seeder publish` publishes them and `seeder verify` agrees.
#
# Needs: target/debug/api, target/release/seeder or target/debug/seeder, nginx, redis-cli, psql,
# curl (cargo xtask stack installs the Debian packages it knows).
# Prints "correction_test: N passed, M failed" last; exit status 1 if anything failed.
set -euo pipefail

STUDENTS=5000
NGINX_BOUND_MS=2000 # proxy_cache_valid 1s, but NGINX stores expiry in whole seconds: an entry
                    # cached at t=10.0..10.999 is valid until 11.999 (seen: 1,005 ms in a CI run)
API_CACHE_TTL_MS=2000 # the replicas' cache of PostgreSQL answers while Redis is down
passed=0
failed=0

TEST_NAME=correction_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

test_binaries "${CORRECTION_API_BIN:-}"
command -v curl >/dev/null || fatal "curl is missing (apt-get install curl)"

STACK_API_BIN=$API_BIN
throwaway_stack correction-test 27400
POLL_PID=''
cleanup() {
  [[ -z $POLL_PID ]] || kill "$POLL_PID" 2>/dev/null || true
  if ((failed)) && [[ -d $STACK_DIR/log ]]; then
    say "last lines of the replicas' and nginx's logs:"
    tail -n 5 "$STACK_DIR"/log/api*.log "$STACK_DIR/log/nginx.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  fi
  "$XTASK" stack down --purge >/dev/null 2>&1 || true
  rm -rf "$STACK_DIR"
}
trap cleanup EXIT

say "stack in $STACK_DIR: pg $STACK_PG_PORT, redis $STACK_REDIS_PORT, api $STACK_API_PORT.., nginx $STACK_NGINX_PORT"
seed_throwaway_stack "$STUDENTS"
STACK_SERVICES="pg redis api nginx"
"$XTASK" stack up >"$STACK_DIR/up.log" 2>&1 || fatal "xtask stack up (api nginx) failed: $(tail -5 "$STACK_DIR/up.log")"
eval "$("$XTASK" stack env)"
export DATABASE_URL REDIS_URL SEEDER_KEY_PREFIX=$STACK_KEY_PREFIX
PUBLIC=$PUBLIC_URL
IFS=, read -r -a REPLICAS <<<"$API_URLS"
((${#REPLICAS[@]} == 3)) || fatal "expected 3 replicas in API_URLS=$API_URLS"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
sql() { psql "$DATABASE_URL" -AtXq -c "$1"; }
# Natural-science students with room to raise english, one per line: "id english".
students=$(sql "SELECT student_id || ' ' || english FROM natural_science_results WHERE english <= 90 ORDER BY student_id LIMIT 3")
read -r ID_A ENGLISH_A ID_B ENGLISH_B ID_C ENGLISH_C <<<"$(tr '\n' ' ' <<<"$students")"
[[ -n ${ID_C:-} ]] || fatal "no students to correct in PostgreSQL"
NEW_A=$((ENGLISH_A + 10)) NEW_B=$((ENGLISH_B + 10)) NEW_C=$((ENGLISH_C + 10))

# get URL [curl args...]: prints "status etag" and keeps the body in $STACK_DIR/body.
get() {
  local url=$1
  shift
  curl -s -o "$STACK_DIR/body" -D "$STACK_DIR/headers" --max-time 5 "$@" "$url" >/dev/null || true
  local status etag
  status=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$STACK_DIR/headers" | tr -d '\r')
  etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' "$STACK_DIR/headers" | tr -d '\r')
  echo "${status:-000} ${etag:--}"
}
has_score() { grep -qF "\"subject\":\"english\",\"score\":$2" "$STACK_DIR/body" && grep -qF "\"student_id\":$1," "$STACK_DIR/body"; }

# --- case 1: Redis up -------------------------------------------------------------------------
# Prime NGINX's micro-cache with A and B (stored on their second request) and note the ETag.
for id in "$ID_A" "$ID_B"; do
  get "$PUBLIC/v1/results/$id" >/dev/null
  get "$PUBLIC/v1/results/$id" >/dev/null
done
read -r status OLD_ETAG_A < <(get "$PUBLIC/v1/results/$ID_A")
check "before: NGINX serves A's old score from its micro-cache" \
  bash -c "[[ $status == 200 ]] && grep -qi '^x-cache-status: HIT' '$STACK_DIR/headers'"
has_score "$ID_A" "$ENGLISH_A" || fatal "A's body does not show english $ENGLISH_A"
for url in "${REPLICAS[@]}"; do
  read -r _ etag < <(get "$url/v1/results/$ID_A")
  [[ $etag == "$OLD_ETAG_A" ]] || fatal "replica $url has ETag $etag for A, NGINX $OLD_ETAG_A"
done

# NGINX is polled for A in the background from before the correction (so its micro-cache entry
# is fresh when the correction lands) until 3 bounds after the command's exit: one line per
# request, "<ms when it was sent> <new|old>".
poll_nginx() {
  local sent out=$STACK_DIR/poll.txt stop=$(($(now_ms) + 60000))
  : >"$out"
  while (($(now_ms) < stop)); do
    [[ ! -s $STACK_DIR/exit_ms ]] || stop=$(($(cat "$STACK_DIR/exit_ms") + 3 * NGINX_BOUND_MS))
    sent=$(now_ms)
    if curl -s --max-time 5 "$PUBLIC/v1/results/$ID_A" | grep -qF "\"subject\":\"english\",\"score\":$NEW_A"; then
      echo "$sent new" >>"$out"
    else
      echo "$sent old" >>"$out"
    fi
    sleep 0.05
  done
}
poll_nginx &
POLL_PID=$!

FILE=$STACK_DIR/fix.csv
printf 'student_id,subject,score\n%s,english,%s\n%s,english,%s\n' "$ID_A" "$NEW_A" "$ID_B" "$NEW_B" >"$FILE"
get "$PUBLIC/v1/results/$ID_B" >/dev/null # B's entry stays in the cache (it is dropped 10 s after its last use)
rc=0
"$SEEDER_BIN" correct --file "$FILE" >"$STACK_DIR/correct1.out" 2>"$STACK_DIR/correct1.err" || rc=$?
EXIT_MS=$(now_ms)
echo "$EXIT_MS" >"$STACK_DIR/exit_ms"
check "correct exits 0 with Redis up" test "$rc" -eq 0
check "correct reports the two changed scores" grep -q "changed 2 of 2 score(s)" "$STACK_DIR/correct1.out"
check "correct reports the publication" grep -q "Redis: published .* result(s)" "$STACK_DIR/correct1.out"

# Every replica at once: new body, new ETag, and the old ETag no longer matches.
for url in "${REPLICAS[@]}"; do
  read -r status etag < <(get "$url/v1/results/$ID_A")
  check "replica ${url##*:} serves A's new score at once" test "$status" = 200
  check "replica ${url##*:}: the body shows A's new score" has_score "$ID_A" "$NEW_A"
  check "replica ${url##*:} sends a new ETag" test "$etag" != "$OLD_ETAG_A" -a "$etag" != -
  read -r status _ < <(get "$url/v1/results/$ID_A" -H "If-None-Match: $OLD_ETAG_A")
  check "replica ${url##*:}: If-None-Match with the old ETag gets 200" test "$status" = 200
  check "replica ${url##*:}: ... and the new body" has_score "$ID_A" "$NEW_A"
done

# B was left alone since the correction: its first request after the bound is new too (an
# expired micro-cache entry must not be handed out while it is refreshed in the background).
wait_ms=$((EXIT_MS + NGINX_BOUND_MS + 300 - $(now_ms)))
((wait_ms <= 0)) || sleep "$(awk -v ms="$wait_ms" 'BEGIN { print ms / 1000 }')"
read -r status _ < <(get "$PUBLIC/v1/results/$ID_B")
cache_status=$(sed -n 's/^[Xx]-[Cc]ache-[Ss]tatus: *//p' "$STACK_DIR/headers" | tr -d '\r')
check "NGINX: B's first request after the bound gets 200" test "$status" = 200
check "NGINX: ... with B's new score (x-cache-status $cache_status)" has_score "$ID_B" "$NEW_B"
check "NGINX: ... B's old entry was still in the micro-cache, expired (x-cache-status $cache_status)" \
  test "$cache_status" = EXPIRED

wait "$POLL_PID"
POLL_PID=''
# Requests sent after the exit: the last that got the old score, the first that got the new one.
after_exit() { awk -v t="$EXIT_MS" -v want="$1" '$1 >= t && $2 == want { print $1 - t }' "$STACK_DIR/poll.txt"; }
last_old_ms=$(after_exit old | tail -1)
first_new_ms=$(after_exit new | head -1)
say "through NGINX: $(after_exit old | wc -l) request(s) sent after the command exited got the old score, the last ${last_old_ms:-(none)} ms after it; the first new score ${first_new_ms:-(none)} ms after it (bound ${NGINX_BOUND_MS} ms)"
check "NGINX: no request sent later than ${NGINX_BOUND_MS} ms after the command's exit gets A's old score" \
  test "${last_old_ms:--1}" -lt "$NGINX_BOUND_MS"
check "NGINX: A's new score is served" test -n "$first_new_ms"
read -r status etag < <(get "$PUBLIC/v1/results/$ID_A" -H "If-None-Match: $OLD_ETAG_A")
check "NGINX: If-None-Match with the old ETag gets 200" test "$status" = 200
check "NGINX: ... the new body" has_score "$ID_A" "$NEW_A"
check "NGINX: ... and a new ETag" test "$etag" != "$OLD_ETAG_A" -a "$etag" != -

check "verify agrees after the published correction" "$SEEDER_BIN" verify

# --- case 2: Redis stopped --------------------------------------------------------------------
redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" shutdown >/dev/null 2>&1 || true # saves its snapshot
for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" ping >/dev/null 2>&1 || break; sleep 0.1; done
redis-cli -h 127.0.0.1 -p "$STACK_REDIS_PORT" ping >/dev/null 2>&1 && fatal "Redis did not stop"
FILE2=$STACK_DIR/fix2.csv
printf 'student_id,subject,score\n%s,english,%s\n' "$ID_C" "$NEW_C" >"$FILE2"
rc=0
"$SEEDER_BIN" correct --file "$FILE2" >"$STACK_DIR/correct2.out" 2>"$STACK_DIR/correct2.err" || rc=$?
COMMIT_MS=$(now_ms)
check "with Redis down, correct exits 5" test "$rc" -eq 5
check "it says PostgreSQL holds the correction" grep -q "PostgreSQL holds the correction (committed)" "$STACK_DIR/correct2.err"
check "it says how much reached Redis" grep -q "only 0 of [0-9]* corrected result(s) were published" "$STACK_DIR/correct2.err"
check "it says how to retry" grep -qF 'seeder publish' "$STACK_DIR/correct2.err"
check "PostgreSQL has C's new score" test "$(sql "SELECT english FROM natural_science_results WHERE student_id = $ID_C")" = "$NEW_C"

# The replicas keep answering, from PostgreSQL: C's new value within API_CACHE_TTL_MS.
all_new=0
while (($(now_ms) < COMMIT_MS + API_CACHE_TTL_MS + 1000)); do
  all_new=1
  for url in "${REPLICAS[@]}"; do
    read -r status _ < <(get "$url/v1/results/$ID_C")
    if [[ $status != 200 ]] || ! has_score "$ID_C" "$NEW_C"; then all_new=0; fi
  done
  ((all_new)) && break
  sleep 0.2
done
check "with Redis down every replica serves C's new score (from PostgreSQL) within ${API_CACHE_TTL_MS} ms" test "$all_new" -eq 1
read -r status _ < <(get "$PUBLIC/v1/results/$ID_A")
check "with Redis down NGINX keeps answering (200)" test "$status" = 200

# Redis back (with its snapshot: the old values): verify names the pending results; publish fixes.
STACK_SERVICES=redis "$XTASK" stack up >"$STACK_DIR/up-redis.log" 2>&1 || fatal "restarting Redis failed: $(tail -3 "$STACK_DIR/up-redis.log")"
rc=0
"$SEEDER_BIN" verify >"$STACK_DIR/verify1.out" 2>&1 || rc=$?
check "after Redis restarts, verify exits 3" test "$rc" -eq 3
check "verify names the pending publication" grep -q "not yet published to Redis" "$STACK_DIR/verify1.out"
rc=0
"$SEEDER_BIN" publish >"$STACK_DIR/publish.out" 2>&1 || rc=$?
check "seeder publish exits 0" test "$rc" -eq 0
check "seeder publish reports what it published" grep -q "Redis: published [0-9]* result(s)" "$STACK_DIR/publish.out"
check "verify agrees after the retry" "$SEEDER_BIN" verify
for url in "${REPLICAS[@]}"; do
  read -r status _ < <(get "$url/v1/results/$ID_C")
  check "replica ${url##*:} serves C's new score once published" has_score "$ID_C" "$NEW_C"
done

printf 'correction_test: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
