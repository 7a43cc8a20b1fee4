#!/usr/bin/env bash
# scripts/up.sh - the newcomer's first command: bring the native stack up and seed it.
#
# Starts PostgreSQL and Redis (scripts/stack.sh up, installing what is missing), builds the
# release seeder, loads the default data set (674,823 students; a no-op when already loaded),
# and checks that PostgreSQL and Redis agree. Later issues extend this with the API replicas,
# NGINX and a default load-test run.
#
# Environment: SEEDER_STUDENTS, SEEDER_SEED, SEEDER_FORCE (see `seeder --help`) and the STACK_*
# variables of scripts/stack.sh. Stop everything with scripts/stack.sh down.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cd "$(dirname -- "$SCRIPT_DIR")"

bash scripts/stack.sh up
eval "$(bash scripts/stack.sh env)"
export DATABASE_URL REDIS_URL

cargo build --release --locked -p seeder
./target/release/seeder
./target/release/seeder verify
