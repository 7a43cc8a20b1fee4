#!/usr/bin/env bash
# scripts/tests/openapi_test.sh - tests the API against its OpenAPI document (api/openapi.json,
# served at /openapi.json) with schemathesis, on a second, throw-away stack (own folder, own free
# ports; pg redis api nginx, 2,000 students seeded), so the developer's stack is never touched:
#   - with curl: NGINX serves the document byte for byte as in the repository, and so does every
#     replica; other paths stay the JSON 404, the admin endpoints unreachable; NGINX's own 405
#     and 413 are the replicas' JSON envelope (with Allow on the 405);
#   - schemathesis, bounded in examples per operation and in time, through NGINX and directly
#     against a replica: no 5xx, every status, header, content type and body as documented,
#     malformed IDs refused (400) and well-formed ones accepted (200/404), undocumented methods
#     a 405 with Allow. It must actually run: at least MIN_CASES cases each, with 200, 400 and
#     404 among the answers;
#   - the edge's own answers, with the rate limit on (1 r/s) and every replica stopped: NGINX's
#     429 and 503 checked against the document the same way (answers 429 and 503 both seen).
#
# Installs what is missing: curl and python3-venv (Debian, as root); schemathesis (pinned, from
# PyPI with pip) into a venv under ~/.cache/results-portal/ (OPENAPI_CACHE_DIR; XDG_CACHE_HOME is
# honoured), outside the repository: a one-off download of ~100 MB per machine.
# Needs target/debug/api (or OPENAPI_API_BIN) and a seeder binary. OPENAPI_MAX_EXAMPLES [25]
# cases per operation and phase; OPENAPI_SEED [random] makes a run repeatable (the seed is
# printed). OPENAPI_KEEP_LOGS=DIR keeps schemathesis' output and HAR files there.
# Prints "openapi_test: N passed, M failed" last; exit status 1 if anything failed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
DOCUMENT=$REPO_DIR/api/openapi.json
STUDENTS=2000
SCHEMATHESIS_VERSION=4.32.5
CACHE_DIR=${OPENAPI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/results-portal}
VENV=$CACHE_DIR/schemathesis-$SCHEMATHESIS_VERSION
MAX_EXAMPLES=${OPENAPI_MAX_EXAMPLES:-25}
SEED=${OPENAPI_SEED:-$((RANDOM * 32768 + RANDOM))}
# Fewer cases than this in a run means schemathesis did not really test (10 operations).
MIN_CASES=100
passed=0
failed=0

TEST_NAME=openapi_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

summary() { printf 'openapi_test: %d passed, %d failed\n' "$passed" "$failed"; }

test_binaries "${OPENAPI_API_BIN:-}"
[[ -f $DOCUMENT ]] || fatal "no $DOCUMENT"

# --- schemathesis, in a venv outside the repository ----------------------------------------
missing=()
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
xtask_bin
((${#missing[@]} == 0)) || "$XTASK" install "${missing[@]}" || fatal "installing ${missing[*]} failed"
ST=$VENV/bin/schemathesis
if [[ $("$ST" --version 2>/dev/null) != "schemathesis, version $SCHEMATHESIS_VERSION" ]]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (once per machine)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$VENV" || fatal "python3 -m venv $VENV failed"
  timeout 600 "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2 ||
    fatal "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
fi

# --- the throw-away stack ----------------------------------------------------------------------
STACK_API_BIN=$API_BIN
throwaway_stack openapi-test 27500
# The default edge (no micro-cache): with it, stale answers would stand in for the replicas'.
STACK_NGINX_MICROCACHE=off
keep_logs() {
  if [[ -n ${OPENAPI_KEEP_LOGS:-} ]]; then
    mkdir -p "$OPENAPI_KEEP_LOGS" && { cp -f "$STACK_DIR"/*.txt "$STACK_DIR"/*.har "$STACK_DIR"/log/* "$OPENAPI_KEEP_LOGS"/ 2>/dev/null || true; }
  fi
}
trap 'keep_logs; "$XTASK" stack down --purge >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"' EXIT

say "stack in $STACK_DIR: pg $STACK_PG_PORT, redis $STACK_REDIS_PORT, api $STACK_API_PORT.., nginx $STACK_NGINX_PORT"
seed_throwaway_stack "$STUDENTS"
STACK_SERVICES="pg redis api nginx"
"$XTASK" stack up >"$STACK_DIR/up.log" 2>&1 || fatal "xtask stack up (api nginx) failed: $(tail -5 "$STACK_DIR/up.log")"
PUBLIC=http://127.0.0.1:$STACK_NGINX_PORT
REPLICA=http://127.0.0.1:$STACK_API_PORT

# --- the document, served ------------------------------------------------------------------------
head_of() { curl -s -o /dev/null -D - --max-time 5 "$@" | tr -d '\r'; }
json_error() { # METHOD URL STATUS CODE: that status, JSON, the envelope with CODE
  local h
  h=$(curl -s -D - --max-time 5 -X "$1" "$2" | tr -d '\r')
  [[ $h == "HTTP/1.1 $3 "* && ${h,,} == *"content-type: application/json"* && $h == *"{\"error\":{\"status\":$3,\"code\":\"$4\""* ]]
}
served_json() { # URL: 200 with Content-Type application/json
  local h
  h=$(head_of "$1")
  [[ $h == "HTTP/1.1 200 "* && ${h,,} == *"content-type: application/json"* ]]
}
check "GET /openapi.json through NGINX: 200 application/json" served_json "$PUBLIC/openapi.json"
check "through NGINX it is api/openapi.json, byte for byte" bash -c "curl -fs --max-time 5 '$PUBLIC/openapi.json' | cmp -s - '$DOCUMENT'"
for n in 0 1 2; do
  check "replica $((n + 1)) serves the same document" bash -c \
    "curl -fs --max-time 5 'http://127.0.0.1:$((STACK_API_PORT + n))/openapi.json' | cmp -s - '$DOCUMENT'"
done
for path in /openapi.yaml /openapi.json/ /v1/openapi.json /metrics /debug/pprof/profile; do
  check "$path on the public port: still the JSON 404" json_error GET "$PUBLIC$path" 404 not_found
done
check "NGINX's own 405 (TRACE): the JSON envelope" json_error TRACE "$PUBLIC/healthz" 405 method_not_allowed
allows_get_head() { head_of -X "$1" "$2" | grep -qx 'Allow: GET,HEAD'; }
check "NGINX's own 405 (TRACE): Allow: GET,HEAD" allows_get_head TRACE "$PUBLIC/healthz"
check "POST /healthz on NGINX: 405 JSON, as on a replica" json_error POST "$PUBLIC/healthz" 405 method_not_allowed
check "POST /healthz on a replica: 405 JSON" json_error POST "$REPLICA/healthz" 405 method_not_allowed
too_large() { # URL: a 4 KiB body is the 413 `body_too_large`, whoever refuses it
  local h
  h=$(head -c 4096 /dev/zero | curl -s -D - --max-time 5 --data-binary @- "$1" | tr -d '\r')
  [[ $h == "HTTP/1.1 413 "* && $h == *'{"error":{"status":413,"code":"body_too_large"'* ]]
}
check "a 4 KiB body through NGINX: 413 body_too_large, the replicas' code" too_large "$PUBLIC/v1/results/1000000"
check "a 4 KiB body on a replica: 413 body_too_large" too_large "$REPLICA/v1/results/1000000"

# --- schemathesis --------------------------------------------------------------------------------
# schemathesis NAME LIMIT_S EXAMPLES CHECKS SCHEMA [ARGS...]: a run bounded in time and in cases
# per operation and phase; output in $STACK_DIR/NAME.txt,
# every exchange in $STACK_DIR/NAME.har. Sets CASES (test cases run) and STATUSES (the answers'
# distinct status codes, space-separated); returns schemathesis' exit status.
schemathesis() {
  local name=$1 limit=$2 examples=$3 checks=$4 schema=$5 rc=0
  shift 5
  # From the stack's folder: schemathesis and Hypothesis keep caches in the working directory
  # (never in the repository, never replayed from an earlier run). No proxy from the environment:
  # every request goes to 127.0.0.1 directly.
  (cd "$STACK_DIR" && env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
    timeout -k 5 "$limit" "$ST" run "$schema" --checks "$checks" --phases examples,coverage,fuzzing \
    --max-examples "$examples" --seed "$SEED" --workers 2 --request-timeout 5 --no-color \
    --report har --report-har-path "$STACK_DIR/$name.har" "$@") >"$STACK_DIR/$name.txt" 2>&1 || rc=$?
  CASES=$(grep -A1 '^Test cases:' "$STACK_DIR/$name.txt" | sed -n '2s/^ *\([0-9]*\) generated.*/\1/p')
  STATUSES=$("$VENV/bin/python" -c 'import json, sys
entries = json.load(open(sys.argv[1]))["log"]["entries"]
print(" ".join(sorted({str(e["response"]["status"]) for e in entries})))' "$STACK_DIR/$name.har" 2>/dev/null || true)
  say "$name: exit $rc, ${CASES:-no} test cases, answers: ${STATUSES:-none}"
  if ((rc != 0)); then
    say "$name failed (seed $SEED); its summary:"
    sed -n '/^=* FAILURES =*$/,$p' "$STACK_DIR/$name.txt" | grep -v '^\s*$' | tail -n 40 | sed 's/^/    /' >&2
  fi
  return "$rc"
}
has_statuses() { # "STATUSES" CODE...: every CODE is among STATUSES
  local code
  for code in "${@:2}"; do [[ " $1 " == *" $code "* ]] || return 1; done
}

# Everything a healthy stack answers: no 5xx, everything as documented, negative data (IDs that
# break the pattern) refused with a 4xx, positive data accepted, undocumented methods a 405.
ALL_CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
ALL_CHECKS+=,response_schema_conformance,negative_data_rejection,positive_data_acceptance,unsupported_method
say "schemathesis $SCHEMATHESIS_VERSION, seed $SEED, up to $MAX_EXAMPLES cases per operation and phase"
for target in "nginx:$PUBLIC" "replica:$REPLICA"; do
  name=${target%%:*} url=${target#*:}
  rc=0
  schemathesis "$name" 90 "$MAX_EXAMPLES" "$ALL_CHECKS" "$url/openapi.json" || rc=$?
  check "schemathesis through $name ($url): every check passed (exit 0)" test "$rc" = 0
  check "schemathesis through $name: at least $MIN_CASES test cases ran (${CASES:-none})" test "${CASES:-0}" -ge "$MIN_CASES"
  check "schemathesis through $name: answers include 200, 400, 404 and 405 ($STATUSES)" has_statuses "$STATUSES" 200 400 404 405
done

# The edge's own answers: the rate limit on at 1 r/s, then every replica stopped. The document
# comes from the file (NGINX has no replica to fetch it from); only conformance is checked,
# as 429 and 503 are what is asked for here.
check "reload NGINX with the rate limit on (1 r/s, burst 1)" \
  env STACK_SERVICES=nginx STACK_NGINX_RATE_LIMIT=on STACK_NGINX_RATE=1 STACK_NGINX_BURST=1 "$XTASK" stack up
# Our own replicas only: the pid from the stack's pid file, and that process runs API_BIN.
replica_pids=()
for n in 1 2 3; do
  pid=$(cat "$STACK_DIR/run/api$n.pid" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$API_BIN"; then
    replica_pids+=("$pid")
  fi
done
check "the three replicas' pids are known" test "${#replica_pids[@]}" = 3
all_gone() { local pid; for pid in "${replica_pids[@]}"; do gone "$pid" || return 1; done; }
for pid in "${replica_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for _ in {1..75}; do all_gone && break; sleep 0.2; done # up to 15 s
check "the three replicas stop on SIGTERM" all_gone
EDGE_CHECKS=status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
rc=0
schemathesis edge 60 5 "$EDGE_CHECKS" "$DOCUMENT" --url "$PUBLIC" || rc=$?
check "schemathesis against the edge alone: NGINX's answers as documented (exit 0)" test "$rc" = 0
check "schemathesis against the edge alone: test cases ran (${CASES:-none})" test "${CASES:-0}" -ge 20
check "schemathesis against the edge alone: answers include NGINX's 429 and 503 ($STATUSES)" has_statuses "$STATUSES" 429 503

summary
((failed == 0))
