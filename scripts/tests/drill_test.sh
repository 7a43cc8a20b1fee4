#!/usr/bin/env bash
# scripts/tests/drill_test.sh - the result-day drill's short variant: scripts/drill.sh --short on
# its own throw-away stack (ports from 27600): 20,000 students, 200 paced users through NGINX, and
# every fault of the full drill for a few seconds each (SIGKILL of a replica, rolling restart, Redis
# restart, PostgreSQL restart, a correction, a harvest, an enumeration flood, slow clients). Checks the
# drill's exit status and, from its phases.csv and table.txt, zero failed client requests in
# every phase, each phase's expected outcome (the flood leaves PostgreSQL flat, slow connections
# are cut within NGINX's header timeout, the correction is served within its bound or is skipped
# while the seeder has no `correct` subcommand), and the timeline PNG. Also the drill's refusals
# of bad options. Binaries: the fresher of target/release/api and target/debug/api (cargo test
# builds the latter; DRILL_TEST_API_BIN), the release seeder when built, else the debug one, and
# target/debug/loadgen (DRILL_TEST_LOADGEN_BIN).
# Prints `drill_test: N passed, M failed` last; exit status 1 when a check failed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
DRILL=$REPO_DIR/scripts/drill.sh
passed=0
failed=0
TEST_NAME=drill_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

# The API binary: the fresher of target/release/api and target/debug/api. Debug replicas on a busy
# machine were CPU-starved when Redis went away (every lookup falls back to PostgreSQL at once):
# 200-260 of ~1,000 requests in restart-redis got 503 in some runs, none in others; release ones
# lost none at 2,000 users.
api_bin=${DRILL_TEST_API_BIN:-}
if [[ -z $api_bin && -x $REPO_DIR/target/release/api && $REPO_DIR/target/release/api -nt $REPO_DIR/target/debug/api ]]; then
  api_bin=$REPO_DIR/target/release/api
fi
test_binaries "$api_bin"
say "binaries: $API_BIN, $SEEDER_BIN"
LOADGEN_BIN=${DRILL_TEST_LOADGEN_BIN:-$REPO_DIR/target/debug/loadgen}
[[ -x $LOADGEN_BIN ]] || fatal "no loadgen binary $LOADGEN_BIN (cargo build -p loadgen)"
OUT=$(mktemp -d /tmp/drill-test.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# --- refusals --------------------------------------------------------------------------------
check "--help explains the phases and exits 0" bash -c "bash '$DRILL' --help | grep -q 'restart-postgres'"
refused() { # refused MESSAGE ARGS...: exit status 2 naming the fault, before any stack starts
  local want=$1 out rc=0
  shift
  out=$(bash "$DRILL" --no-build "$@" 2>&1) || rc=$?
  [[ $rc == 2 && $out == *"$want"* ]]
}
check "an unknown option is refused (exit 2)" refused "unknown option '--nope'" --nope
check "--users 0 is refused" refused "--users (DRILL_USERS) must be at least 1" --users 0
check "--phase-secs abc is refused" refused "PHASE_SECS='abc' must be a whole number" --phase-secs abc
check "a missing binary is named" bash -c \
  "out=\$(DRILL_API_BIN='$API_BIN' DRILL_SEEDER_BIN='$SEEDER_BIN' DRILL_LOADGEN_BIN=/nonexistent bash '$DRILL' --no-build 2>&1); [[ \$? == 2 && \$out == *'no binary /nonexistent'* ]]"

# --- the short drill ---------------------------------------------------------------------------
say "running scripts/drill.sh --short (about 2 minutes)"
rc=0
DRILL_API_BIN=$API_BIN DRILL_SEEDER_BIN=$SEEDER_BIN DRILL_LOADGEN_BIN=$LOADGEN_BIN \
  bash "$DRILL" --short --no-build --base 27600 --out "$OUT/run" >"$OUT/drill.out" 2>"$OUT/drill.err" || rc=$?
sed 's/^/    /' "$OUT/drill.out" >&2
if ((rc != 0)); then
  say "drill.sh exited $rc; its last log lines:"
  tail -n 15 "$OUT/drill.err" | sed 's/^/    /' >&2
fi
check "the short drill exits 0 (every phase met its expected outcome)" test "$rc" = 0

PHASES=$OUT/run/phases.csv
TABLE=$OUT/run/table.txt
row() { awk -v p="$1" '$1 == p' "$TABLE"; } # the table row of phase $1
for phase in ramp-up baseline kill-replica rolling-restart restart-redis restart-postgres correction harvest flood slowloris; do
  check "phase $phase is in phases.csv" grep -q "^$phase," "$PHASES"
  # table columns: phase secs requests failed p50 p99 PG-lookups PG-xact verdict ...
  check "phase $phase: client requests counted" bash -c "[[ \$(awk -v p='$phase' '\$1 == p { print \$3 }' '$TABLE') -gt 0 ]]"
  check "phase $phase: zero failed client requests" bash -c "[[ \$(awk -v p='$phase' '\$1 == p { print \$4 }' '$TABLE') == 0 ]]"
done
for phase in ramp-up baseline kill-replica rolling-restart restart-redis restart-postgres harvest flood slowloris; do
  check "phase $phase: PASS" bash -c "awk -v p='$phase' '\$1 == p { print \$9 }' '$TABLE' | grep -qx PASS"
done
if "$SEEDER_BIN" correct --help >/dev/null 2>&1; then
  check "phase correction: PASS, served within the bound" bash -c "awk '\$1 == \"correction\"' '$TABLE' | grep -q ' PASS .*served by NGINX'"
else
  check "phase correction: skipped, saying why" bash -c "awk '\$1 == \"correction\"' '$TABLE' | grep -q 'SKIPPED *skipped: seeder has no correct subcommand'"
fi
check "flood: PostgreSQL flat against the baseline" bash -c "row=\$(awk '\$1 == \"flood\"' '$TABLE'); [[ \$row == *'PostgreSQL flat'* ]]"
check "flood: its own requests were all answered as expected" bash -c \
  "awk '\$1 == \"flood\"' '$TABLE' | grep -Eq 'flood: [1-9][0-9]* requests \([0-9]+/s\), 0 not answered'"
check "slowloris: connections opened and cut by NGINX" \
  jq -e '.opened > 0 and .cut_by_server > 0 and .longest_s <= 7' "$OUT/run/slowloris.json"
check "the table says PASS overall" grep -q '^verdict: PASS' "$TABLE"
check "series.csv has a row per second" bash -c "[[ \$(wc -l <'$OUT/run/series.csv') -gt 30 ]]"
check "timeline.png is a PNG" bash -c "head -c 8 '$OUT/run/timeline.png' | od -An -tx1 | tr -d ' \n' | grep -qx 89504e470d0a1a0a"
check "the users' loadgen wrote its summary" test -s "$OUT/run/loadgen-users/summary.json"
check "the users' loadgen saw no failure over the whole run (exact)" jq -e '.stats.failures == 0' "$OUT/run/loadgen-users/summary.json"
stack_dir=$(sed -n 's/.* drill: stack in \([^:]*\):.*/\1/p' "$OUT/drill.err" | head -n 1)
check "the drill's throw-away stack is down and its folder removed ($stack_dir)" bash -c "[[ -n '$stack_dir' && ! -e '$stack_dir' ]]"

printf 'drill_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
