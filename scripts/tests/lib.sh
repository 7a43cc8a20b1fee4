# scripts/tests/lib.sh - helpers shared by the script tests. Source it after setting TEST_NAME
# (the prefix of every line, e.g. edge_test) and `passed=0 failed=0`. A script may define its own
# `say`/`fatal`, before sourcing or after (the helpers below call whichever is defined last).
# shellcheck shell=bash

# say and fatal, unless the sourcing script has its own (scripts/drill.sh: time-stamped lines,
# exit 2), which must survive the source.
if ! declare -F say >/dev/null; then
  say() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; } # a progress line on stderr
fi
if ! declare -F fatal >/dev/null; then
  fatal() { # fatal MESSAGE: count one failure, print the closing tally line, exit 1
    say "cannot continue: $*"
    failed=$((failed + 1))
    printf '%s: %d passed, %d failed\n' "$TEST_NAME" "$passed" "$failed"
    exit 1
  }
fi

check() { # check "description" command...: counts a pass, or a failure with its description
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf '%s: FAILED: %s\n' "$TEST_NAME" "$what" >&2
  fi
}

gone() { # gone PID: the process has exited (or is a zombie nobody reaps: a daemon's parent left)
  ! kill -0 "$1" 2>/dev/null || [[ $(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) == Z ]]
}

free_port() { # the first port from $1 upwards that nothing listens on (and the $2-1 after it)
  local port=$1 count=${2:-1} i
  for ((i = 0; i < count; i++)); do
    if (echo >"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null; then
      port=$((port + i + 1)) i=-1
    fi
  done
  echo "$port"
}

# test_binaries [API_BIN]: sets API_BIN (default target/debug/api, what `cargo test` builds) and
# SEEDER_BIN (the newer of target/release/seeder and target/debug/seeder), or calls the test's
# `fatal` naming what to build.
test_binaries() {
  local target
  target=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)/target
  API_BIN=${1:-$target/debug/api}
  newest_seeder
  [[ -x $API_BIN ]] || fatal "no API binary $API_BIN (cargo build -p api)"
  [[ -x $SEEDER_BIN ]] || fatal "no seeder binary (cargo build -p seeder)"
}

# newest_seeder: sets SEEDER_BIN to the newer of target/release/seeder and target/debug/seeder.
# A release binary left from an older checkout must not stand in for the debug one `cargo test`
# just built: it may lack a subcommand, or write a marker the API under test no longer trusts.
newest_seeder() {
  local target
  target=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)/target
  SEEDER_BIN=$target/debug/seeder
  if [[ -x $target/release/seeder && ( ! -x $SEEDER_BIN || $target/release/seeder -nt $SEEDER_BIN ) ]]; then
    SEEDER_BIN=$target/release/seeder
  fi
}

# xtask_bin: sets and exports XTASK, the built `cargo xtask` binary (target/debug/xtask). Script
# tests run many stack up/downs: calling the binary spares each one cargo's lock and freshness
# checks. Built here unless XTASK already names one (scripts/test.sh builds it once for all).
xtask_bin() {
  if [[ -z ${XTASK:-} || ! -x $XTASK ]]; then
    local repo
    repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
    (cd "$repo" && cargo build -q --locked -p xtask) || fatal "cargo build -p xtask failed"
    XTASK=${CARGO_TARGET_DIR:-$repo/target}/debug/xtask
  fi
  export XTASK
}

# seed_throwaway_stack STUDENTS: the throw-away stack's PostgreSQL and Redis up (STACK_SERVICES
# as set) and STUDENTS students seeded with SEEDER_BIN (test_binaries), or the test's `fatal`.
# Logs in $STACK_DIR/up-stores.log and seed.log.
seed_throwaway_stack() {
  "$XTASK" stack up >"$STACK_DIR/up-stores.log" 2>&1 ||
    fatal "xtask stack up (pg redis) failed: $(tail -5 "$STACK_DIR/up-stores.log")"
  eval "$("$XTASK" stack env)"
  SEEDER_PROGRESS=quiet "$SEEDER_BIN" --students "$1" >"$STACK_DIR/seed.log" 2>&1 ||
    fatal "seeding $1 students failed: $(tail -5 "$STACK_DIR/seed.log")"
}

# throwaway_stack NAME BASE: settings for a second, throw-away stack (cargo xtask stack) in a new
# /tmp/NAME.XXXXXX folder on free ports from BASE up, so a developer's stack is never touched.
# Each script test takes its own BASE (100 apart) below Linux's ephemeral range (32768-60999):
# a port inside it can be taken as the local port of any outgoing connection between the check
# and the bind (a CI run lost its node exporter's 58190 that way). Exports every
# STACK_* the stack reads (STACK_SERVICES="pg redis": callers choose what `up` starts next) and
# sets XTASK (xtask_bin). The API binary is target/debug/api unless STACK_API_BIN is set; the
# caller stops it with `"$XTASK" stack down --purge` and removes "$STACK_DIR".
throwaway_stack() {
  xtask_bin
  STACK_DIR=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$STACK_DIR" # the postgres system user (and NGINX's workers) must reach it
  local base=$2
  STACK_PG_PORT=$(free_port "$base")
  STACK_REDIS_PORT=$(free_port $((STACK_PG_PORT + 1)))
  STACK_API_PORT=$(free_port $((STACK_REDIS_PORT + 1)) 3)
  STACK_API_ADMIN_PORT=$(free_port $((STACK_API_PORT + 3)) 3)
  STACK_NGINX_PORT=$(free_port $((STACK_API_ADMIN_PORT + 3)))
  STACK_NGINX_STATUS_PORT=$(free_port $((STACK_NGINX_PORT + 1)))
  STACK_PROMETHEUS_PORT=$(free_port $((STACK_NGINX_STATUS_PORT + 1)))
  STACK_NODE_EXPORTER_PORT=$(free_port $((STACK_PROMETHEUS_PORT + 1)))
  STACK_NGINX_EXPORTER_PORT=$(free_port $((STACK_NODE_EXPORTER_PORT + 1)))
  STACK_REDIS_EXPORTER_PORT=$(free_port $((STACK_NGINX_EXPORTER_PORT + 1)))
  STACK_PG_EXPORTER_PORT=$(free_port $((STACK_REDIS_EXPORTER_PORT + 1)))
  STACK_LOADGEN_METRICS_PORT=$(free_port $((STACK_PG_EXPORTER_PORT + 1)))
  STACK_PG_REPLICA_PORT=$(free_port $((STACK_LOADGEN_METRICS_PORT + 1)))
  STACK_API_BIN=${STACK_API_BIN:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)/target/debug/api}
  STACK_API_REPLICAS=3 STACK_KEY_PREFIX=results STACK_SERVICES="pg redis"
  STACK_NGINX_MICROCACHE=on STACK_NGINX_RATE_LIMIT=off
  export STACK_DIR STACK_PG_PORT STACK_REDIS_PORT STACK_API_PORT STACK_API_ADMIN_PORT STACK_NGINX_PORT \
    STACK_NGINX_STATUS_PORT STACK_PROMETHEUS_PORT STACK_NODE_EXPORTER_PORT STACK_NGINX_EXPORTER_PORT \
    STACK_REDIS_EXPORTER_PORT STACK_PG_EXPORTER_PORT STACK_LOADGEN_METRICS_PORT STACK_PG_REPLICA_PORT STACK_API_BIN \
    STACK_API_REPLICAS STACK_KEY_PREFIX STACK_SERVICES STACK_NGINX_MICROCACHE STACK_NGINX_RATE_LIMIT
}
