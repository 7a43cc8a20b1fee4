#!/usr/bin/env bash
# scripts/up.sh - the newcomer's first command: bring the native stack up, seed it, start the API.
#
# Starts PostgreSQL and Redis (scripts/stack.sh up, installing what is missing), builds the
# release seeder and API, loads the default data set (674,823 students; a no-op when already
# loaded), checks that PostgreSQL and Redis agree, then starts the three API replicas
# (127.0.0.1:8081-8083). Later issues extend this with NGINX and a default load-test run.
#
# Environment: SEEDER_STUDENTS, SEEDER_SEED, SEEDER_FORCE, SEEDER_KEY_PREFIX (see `seeder --help`)
# and the STACK_* variables of scripts/stack.sh (the replicas read SEEDER_KEY_PREFIX's keys unless
# STACK_KEY_PREFIX says otherwise). Stop everything with scripts/stack.sh down.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cd "$(dirname -- "$SCRIPT_DIR")"

STACK_SERVICES="pg redis" bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
export DATABASE_URL REDIS_URL

cargo build --release --locked -p seeder -p api
./target/release/seeder
./target/release/seeder verify

# The replicas start after the seeder, so they find the complete data set at once.
export STACK_KEY_PREFIX=${STACK_KEY_PREFIX:-${SEEDER_KEY_PREFIX:-results}}
bash scripts/stack.sh up

echo
echo "Try it:  curl -s ${API_URLS%%,*}/v1/results/1000000"
echo "Status:  scripts/stack.sh status   (replicas: $API_URLS)"
echo "Logs:    ${STACK_DIR:-.stack}/log/api1.log ... (and postgres.log, redis.log)"
