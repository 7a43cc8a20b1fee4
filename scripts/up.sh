#!/usr/bin/env bash
# scripts/up.sh - the newcomer's first command: bring the native stack up, seed it, start the API,
# then show it working under a short result-day load test.
#
# Starts PostgreSQL and Redis (cargo xtask stack up, installing what is missing), builds the
# release seeder, API and load generator, loads the default data set (674,823 students; a no-op
# when already loaded), checks that PostgreSQL and Redis agree, starts the rest of the stack (three
# API replicas 127.0.0.1:8081-8083 behind NGINX on 127.0.0.1:8080, ...), and ends with the load
# generator's default run through NGINX (300 users, ~25 s; loadgen --help), whose summary and
# report folder (runs/loadgen/<time>/report.html) it prints. The exit status is the load test's:
# non-zero when an SLO gate was missed.
#
# Environment: SEEDER_STUDENTS, SEEDER_SEED, SEEDER_FIRST_ID, SEEDER_FORCE, SEEDER_KEY_PREFIX (see `seeder --help`),
# the STACK_* variables of cargo xtask stack (the replicas read SEEDER_KEY_PREFIX's keys unless
# STACK_KEY_PREFIX says otherwise), UP_LOAD_TEST=off to skip the load test, and the LOADGEN_*
# variables of `loadgen --help`. Stop everything with cargo xtask stack down.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cd "$(dirname -- "$SCRIPT_DIR")"

STACK_SERVICES="pg redis" cargo xtask stack up
eval "$(cargo xtask stack env)"
export DATABASE_URL REDIS_URL

cargo build --release --locked -p seeder -p api -p loadgen
./target/release/seeder
./target/release/seeder verify

# The replicas start after the seeder, so they find the complete data set at once.
export STACK_KEY_PREFIX=${STACK_KEY_PREFIX:-${SEEDER_KEY_PREFIX:-results}}
cargo xtask stack up

eval "$(cargo xtask stack env)"

status=0
if [[ ${UP_LOAD_TEST:-on} != off ]]; then
  echo
  echo "up: a short result-day load test through NGINX ($PUBLIC_URL): ./target/release/loadgen"
  # The load generator knows the IDs from the data set's size and seed, as given to the seeder.
  export LOADGEN_STUDENTS=${LOADGEN_STUDENTS:-${SEEDER_STUDENTS:-674823}}
  export LOADGEN_SEED=${LOADGEN_SEED:-${SEEDER_SEED:-2026}}
  if [[ -n ${SEEDER_FIRST_ID:-} ]]; then export LOADGEN_FIRST_ID=${LOADGEN_FIRST_ID:-$SEEDER_FIRST_ID}; fi
  export LOADGEN_METRICS_LISTEN=${LOADGEN_METRICS_LISTEN:-${STACK_HOST:-127.0.0.1}:${STACK_LOADGEN_METRICS_PORT:-9400}}
  ./target/release/loadgen --host "$PUBLIC_URL" || status=$?
  report=""
  for dir in runs/loadgen/2*/; do report=$dir; done # run folders are UTC times: the last is newest
  echo "Report:  ${report}report.html   (summary.txt, report.json, errors.json beside it)"
fi

echo
echo "Page:    $PUBLIC_URL/   (the students' page: type a registration number such as 1000000)"
echo "Try it:  curl -s $PUBLIC_URL/v1/results/1000000"
echo "Watch:   $PROMETHEUS_URL   (Prometheus; the Grafana dashboard runs under compose)"
echo "Load:    cargo run --release -p loadgen -- --help   (docs/loadgen.md)"
echo "Status:  cargo xtask stack status   (replicas: $API_URLS)"
echo "Logs:    ${STACK_DIR:-.stack}/log/api1.log ... (and postgres.log, redis.log)"
exit "$status"
