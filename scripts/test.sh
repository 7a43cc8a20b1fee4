#!/usr/bin/env bash
# scripts/test.sh - the project's one test command: what newcomers run and what CI proves.
#
# Starts the native stack (PostgreSQL and Redis on loopback ports, installing what is missing),
# sweeps what earlier runs may have left behind (test databases, test Redis keys and users),
# then runs every test of the workspace against those real servers, and the script tests in
# scripts/tests/. Extra arguments go to `cargo test` (e.g. scripts/test.sh -p seeder killed).
#
# Environment: the STACK_* variables of cargo xtask stack (ports, data folder) apply here too.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
cd "$REPO_DIR"

export PGOPTIONS="-c client_min_messages=warning" # no "skipping" notices from psql

log() { printf 'test: %s\n' "$*" >&2; }

# The stack tool, built once: the script tests call the binary (XTASK) for their many up/downs.
cargo build -q --locked -p xtask
export XTASK=${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/xtask
STACK_SERVICES="pg redis" "$XTASK" stack up
# What the script tests need beyond the stack's packages (it installs the exporters itself when a
# test's throw-away stack asks for them): wrk for the edge test's loads under chaos.
command -v wrk >/dev/null || "$XTASK" install wrk
eval "$("$XTASK" stack env)"
export DATABASE_URL REDIS_URL

redis_host_port() { # redis://host:port -> "-h host -p port"
  local hostport=${REDIS_URL#redis://}
  printf -- '-h %s -p %s' "${hostport%:*}" "${hostport##*:}"
}

sweep() {
  log "sweeping leftovers of earlier test runs"
  # Test databases are named seedtest_<random>; a failed test may leave its database behind.
  psql "$DATABASE_URL" -Atq -c "SELECT datname FROM pg_database WHERE datname LIKE 'seedtest\_%'" |
    while read -r db; do
      # Not WITH (FORCE): it would have to end autovacuum workers, which only a superuser may;
      # a plain DROP cancels them itself.
      [[ -n $db ]] && psql "$DATABASE_URL" -q -o /dev/null \
        -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db' AND usename = current_user" \
        -c "DROP DATABASE IF EXISTS \"$db\""
    done
  # Test keys live under t-<random>:…; test Redis users are ro-<random>.
  # shellcheck disable=SC2046
  redis-cli $(redis_host_port) --scan --pattern 't-*' | xargs -r -n 500 redis-cli $(redis_host_port) unlink >/dev/null
  # shellcheck disable=SC2046
  redis-cli $(redis_host_port) acl users | grep '^ro-' | xargs -r -n 1 redis-cli $(redis_host_port) acl deluser >/dev/null || true
}

sweep
results=$(mktemp)
timings=$(mktemp) # one "  SECONDS s  SUITE" line per suite, printed as a table at the end
failed_scripts=()
# The table of wall times on every exit, a failed one included (that is when it is read most).
trap '{ log "wall time per suite:"; cat "$timings"; } >&2; rm -f "$results" "$timings"' EXIT
whole_suite=$(($# == 0))
[[ $whole_suite -eq 1 ]] && set -- --workspace
timed() { # timed NAME COMMAND...: runs the command (its output also into $results), notes its time
  local name=$1 start=$SECONDS status=0
  shift
  "$@" 2>&1 | tee -a "$results" || status=$?
  printf '%6d s  %s\n' "$((SECONDS - start))" "$name" >>"$timings"
  return "$status"
}
log "building the tests"
timed "cargo build (tests)" cargo test --locked --no-run "$@"
log "running cargo test $*"
timed "cargo test" cargo test --locked "$@"
if [[ $whole_suite -eq 1 ]]; then
  # The script tests: the edge (NGINX), Redis Cluster, the read replica, corrections, the drill,
  # monitoring end to end, hostile requests, OpenAPI fuzzing, the
  # students' page (in a headless browser). docker-compose.yml, the Dockerfile and deploy/k8s are
  # checked by cargo test above (xtask/tests/deploy).
  # Each prints "NAME: N passed, M failed" last and exits non-zero on a failure. They are
  # independent (each on its own ports), so one failing does not stop the others: a run reports
  # every failing script at once instead of one per CI round.
  for script in scripts/tests/*_test.sh; do
    log "running $script"
    timed "$(basename "$script" .sh)" bash "$script" || failed_scripts+=("$script")
  done
fi
# One closing line for the whole suite, summed from cargo's and the script tests' own lines.
awk '/^test result:/ { p += $4; f += $6 } /^[a-z0-9_]+_test: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
if ((${#failed_scripts[@]} > 0)); then
  log "failed: ${failed_scripts[*]}"
  exit 1
fi
