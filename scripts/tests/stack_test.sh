#!/usr/bin/env bash
# scripts/tests/stack_test.sh - tests scripts/stack.sh on a second, throw-away stack (own folder,
# own ports) so the developer's stack is never touched: up is idempotent, status and env tell the
# truth, the URLs work (and a wrong password does not), down is idempotent, data survives a
# restart, and down --purge removes the folder.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
STACK=$SCRIPT_DIR/../stack.sh
passed=0
failed=0

check() { # check "description" command...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'stack_test: FAILED: %s\n' "$what" >&2
  fi
}

free_port() { # the first port from $1 upwards that nothing listens on
  local port=$1
  while (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

STACK_DIR=$(mktemp -d /tmp/stack-test.XXXXXX)
chmod 755 "$STACK_DIR" # the postgres system user must reach its data folder
STACK_PG_PORT=$(free_port 57432)
STACK_REDIS_PORT=$(free_port 58379)
export STACK_DIR STACK_PG_PORT STACK_REDIS_PORT
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
check "a non-loopback host is refused" bash -c "! STACK_HOST=0.0.0.0 bash '$STACK' env"
check "down --purge removes the folder" bash -c "bash '$STACK' down --purge && [[ ! -e '$STACK_DIR' ]]"

printf 'stack_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
