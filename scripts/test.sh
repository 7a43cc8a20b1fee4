#!/usr/bin/env bash
# scripts/test.sh - the project's one test command: what newcomers run and what CI proves.
#
# Starts the native stack's PostgreSQL and Redis (installing what is missing), sweeps what earlier
# runs left behind (full runs only), builds every test once, then runs `cargo test` and the script tests in
# scripts/tests/ side by side (TEST_JOBS at a time, default 3), each suite's output whole when it
# ends, then a table of wall times and one tally line. All of it is `cargo xtask test`
# (xtask/src/suite.rs); extra arguments go to `cargo test` alone (e.g. scripts/test.sh -p seeder
# killed). The STACK_* variables of cargo xtask stack (ports, data folder) apply here too.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

# Built once and called directly: the script tests' many stack up/downs then skip cargo's lock.
cargo build -q --locked -p xtask
exec "${CARGO_TARGET_DIR:-target}/debug/xtask" test "$@"
