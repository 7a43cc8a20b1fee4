#!/usr/bin/env bash
# scripts/tests/stack_test.sh - tests scripts/stack.sh on a second, throw-away stack (own folder,
# own ports) so the developer's stack is never touched: up is idempotent, status and env tell the
# truth, the URLs work (and a wrong password does not), down is idempotent, data survives a
# restart, and down --purge removes the folder. When target/debug/api exists (cargo test builds
# it first), also the three API replicas: healthy, ready on both stores, up is idempotent, the
# admin port serves /metrics, down stops them and is idempotent.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
STACK=$REPO_DIR/scripts/stack.sh
API_BIN=$REPO_DIR/target/debug/api
passed=0
failed=0

TEST_NAME=stack_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

http_code() { curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$1"; }

alive() { # a process with pid $1 exists and is not a zombie
  [[ -r /proc/$1/stat ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) != Z ]]
}

STACK_DIR=$(mktemp -d /tmp/stack-test.XXXXXX)
chmod 755 "$STACK_DIR" # the postgres system user must reach its data folder
STACK_PG_PORT=$(free_port 27000)
STACK_REDIS_PORT=$(free_port 27010)
# The stores only, until the API part below; never the default API ports.
STACK_SERVICES="pg redis"
STACK_API_PORT=$(free_port 27020 3)
STACK_API_ADMIN_PORT=$(free_port $((STACK_API_PORT + 3)) 3)
export STACK_DIR STACK_PG_PORT STACK_REDIS_PORT STACK_SERVICES STACK_API_PORT STACK_API_ADMIN_PORT
trap 'bash "$STACK" down --purge >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"' EXIT

check "up starts both services" bash "$STACK" up
check "up again is idempotent" bash "$STACK" up
check "status says all run" bash "$STACK" status
eval "$(bash "$STACK" env)"
check "DATABASE_URL works" psql "$DATABASE_URL" -c 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)'
check "a wrong password is refused" bash -c "! psql '${DATABASE_URL/results-local-only/wrong}' -c 'select 1'"
check "REDIS_URL works" redis-cli -p "$STACK_REDIS_PORT" set kept 1
check "the project's Redis settings apply" bash -c \
  "redis-cli -p $STACK_REDIS_PORT config get hash-max-listpack-value | grep -qx 128"
check "down stops both" bash "$STACK" down
check "status says stopped (exit 3)" bash -c "bash '$STACK' status; [[ \$? -eq 3 ]]"
check "down again is idempotent" bash "$STACK" down
check "up after down" bash "$STACK" up
check "PostgreSQL data survived the restart" bash -c "psql '$DATABASE_URL' -Atc 'SELECT x FROM kept' | grep -qx 42"
check "Redis data survived the restart" bash -c "redis-cli -p $STACK_REDIS_PORT get kept | grep -qx 1"
check "an unknown STACK_SERVICES name is refused" bash -c "! STACK_SERVICES='pg bogus' bash '$STACK' env"
missing_api_bin_refused() { # up fails, and says how to build the binary
  local out
  if out=$(STACK_SERVICES=api STACK_API_BIN=$STACK_DIR/no-api bash "$STACK" up 2>&1); then return 1; fi
  [[ $out == *'build it first: cargo build --release -p api'* ]]
}
check "a missing STACK_API_BIN is refused, saying how to build it" missing_api_bin_refused

if [[ -x $API_BIN ]]; then
  # Free ports again now that PostgreSQL and Redis listen (free_port skips theirs).
  STACK_API_PORT=$(free_port 27020 3)
  STACK_API_ADMIN_PORT=$(free_port $((STACK_API_PORT + 3)) 3)
  STACK_SERVICES="pg redis api" STACK_API_BIN=$API_BIN STACK_API_REPLICAS=3
  export STACK_API_PORT STACK_API_ADMIN_PORT STACK_SERVICES STACK_API_BIN STACK_API_REPLICAS
  api_pids() { cat "$STACK_DIR"/run/api{1,2,3}.pid 2>/dev/null | tr '\n' ' '; }
  readyz_ok() { # ready, on both stores
    local json
    json=$(curl -s --max-time 5 "$1/readyz") || return 1
    [[ $json == *'"ready":true'* && $json == *'"postgres":"up"'* && $json == *'"redis":"up"'* ]]
  }
  up_is_idempotent() { # same pids, each replica "already running"
    local before=$1 out
    out=$(bash "$STACK" up 2>&1) || return 1
    [[ $(grep -c 'api[123]: already running' <<<"$out") == 3 && $(api_pids) == "$before" ]]
  }
  gone() { [[ $1 =~ ^[0-9]+$ ]] && ! alive "$1"; }

  check "up starts the API replicas" bash "$STACK" up
  pids=$(api_pids)
  for n in 1 2 3; do
    url=http://127.0.0.1:$((STACK_API_PORT + n - 1))
    check "api$n /healthz is 200" test "$(http_code "$url/healthz")" = 200
    check "api$n /readyz is 200: ready, postgres up, redis up" readyz_ok "$url"
    check "api$n admin port serves /metrics" bash -c \
      "curl -fs --max-time 5 http://127.0.0.1:$((STACK_API_ADMIN_PORT + n - 1))/metrics | grep -q '^http_requests_total'"
  done
  check "up again is idempotent (same pids, already running)" up_is_idempotent "$pids"
  check "status says the replicas run and are ready" bash -c \
    "bash '$STACK' status | grep -c '^api[123] .* running .* ready\$' | grep -qx 3"
  check "env prints API_URLS" bash -c "bash '$STACK' env | grep -qxF \"export API_URLS='http://127.0.0.1:$STACK_API_PORT,http://127.0.0.1:$((STACK_API_PORT + 1)),http://127.0.0.1:$((STACK_API_PORT + 2))'\""
  check "down stops the replicas" bash "$STACK" down
  read -ra pid_list <<<"$pids"
  check "3 replica pids were recorded" test "${#pid_list[@]}" -eq 3
  for pid in "${pid_list[@]}"; do
    check "replica pid $pid is gone after down" gone "$pid"
  done
  check "the replicas' pid files are removed" bash -c "! compgen -G '$STACK_DIR/run/api*.pid'"
  check "down again is idempotent" bash "$STACK" down
  STACK_SERVICES="pg redis"
else
  printf 'stack_test: skipping the API replica checks: no %s (cargo build -p api makes it)\n' "$API_BIN" >&2
fi
check "a non-loopback host is refused" bash -c "! STACK_HOST=0.0.0.0 bash '$STACK' env"
check "down --purge removes the folder" bash -c "bash '$STACK' down --purge && [[ ! -e '$STACK_DIR' ]]"

printf 'stack_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
