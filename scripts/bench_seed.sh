#!/usr/bin/env bash
# scripts/bench_seed.sh - the seeder against `psql \copy` of the same rows, side by side.
#
# For each run: a fresh database gets the schema, then `psql \copy` loads the exported CSV rows
# (the baseline: PostgreSQL only); another fresh database and a fresh Redis prefix get a full
# `seeder --force` (generate + PostgreSQL + Redis). Reports medians over the runs, the ratio
# seeder / \copy (goal: at most 2.0, for PostgreSQL plus Redis together), and the Redis memory
# the results take (`used_memory` after minus before; goal: under 64 MB for the full set).
#
# Usage: scripts/bench_seed.sh [RUNS]        (default 3 runs)
# Environment: BENCH_STUDENTS [674823], BENCH_SEED [2026], SEEDER_PG_CONNECTIONS [2],
#              BENCH_RESULT_FILE [docs/bench/seed.json] (the machine-readable medians, read by
#              cargo xtask capacity-model for Redis memory per result; empty: not written),
#              plus the STACK_* variables of cargo xtask stack.
# Output: a table on stdout, also written to runs/bench-seed/<timestamp>/summary.txt with the
#         per-run figures in runs.csv. The machine's cores are shared by the seeder, PostgreSQL
#         and Redis, as in production on one box.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
cd "$REPO_DIR"

RUNS=${1:-3}
STUDENTS=${BENCH_STUDENTS:-674823}
SEED=${BENCH_SEED:-2026}
RESULT_FILE=${BENCH_RESULT_FILE-docs/bench/seed.json}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/bench_seed.sh [RUNS]" >&2; exit 2; }

# Keep psql quiet about "does not exist, skipping" and similar notices.
export PGOPTIONS="-c client_min_messages=warning"

log() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

STACK_SERVICES="pg redis" cargo xtask stack up
eval "$(cargo xtask stack env)"
REDIS_PORT=${REDIS_URL##*:}
redis() { redis-cli -p "$REDIS_PORT" "$@"; }
used_memory() { redis info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }

log "building the release seeder"
cargo build --release --locked -p seeder
SEEDER=$REPO_DIR/target/release/seeder

OUT=$REPO_DIR/runs/bench-seed/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/csv"
log "exporting $STUDENTS students (seed $SEED) as CSV for the baseline"
"$SEEDER" export --dir "$OUT/csv" --students "$STUDENTS" --seed "$SEED" >&2

db_url() { printf '%s/%s' "${DATABASE_URL%/*}" "$1"; }
# Not DROP ... WITH (FORCE): that must also terminate autovacuum workers, which belong to the
# superuser; a plain DROP cancels them itself. Our own leftover sessions are ended first.
drop_db() {
  psql "$DATABASE_URL" -q -o /dev/null -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
    WHERE datname = '$1' AND usename = current_user AND pid <> pg_backend_pid()" -c "DROP DATABASE IF EXISTS $1"
}
fresh_db() { # fresh_db NAME -> a migrated empty database
  drop_db "$1"
  psql "$DATABASE_URL" -q -c "CREATE DATABASE $1"
  "$SEEDER" migrate --database-url "$(db_url "$1")" >/dev/null
}
drop_prefix() { redis --scan --pattern "$1:*" | xargs -r -n 500 redis-cli -p "$REDIS_PORT" unlink >/dev/null; }

echo "run,copy_seconds,seeder_seconds,ratio,redis_bytes,bytes_per_result" >"$OUT/runs.csv"
for run in $(seq 1 "$RUNS"); do
  fresh_db bench_copy
  start=$(now)
  psql "$(db_url bench_copy)" -q -v ON_ERROR_STOP=1 -f "$OUT/csv/copy.psql"
  copy=$(seconds "$start" "$(now)")
  drop_db bench_copy

  prefix=bench-$run-$$
  fresh_db bench_seed
  before=$(used_memory)
  start=$(now)
  "$SEEDER" --database-url "$(db_url bench_seed)" --key-prefix "$prefix" --students "$STUDENTS" --seed "$SEED" \
    --force --progress quiet >"$OUT/seeder-$run.txt" 2>"$OUT/seeder-$run.log"
  seeder=$(seconds "$start" "$(now)")
  after=$(used_memory)
  "$SEEDER" verify --database-url "$(db_url bench_seed)" --key-prefix "$prefix" >"$OUT/verify-$run.txt" ||
    { log "verify failed after run $run: see $OUT/verify-$run.txt"; exit 1; }
  drop_prefix "$prefix"
  drop_db bench_seed

  bytes=$((after - before))
  awk -v r="$run" -v c="$copy" -v s="$seeder" -v b="$bytes" -v n="$STUDENTS" \
    'BEGIN { printf "%d,%.3f,%.3f,%.2f,%d,%.1f\n", r, c, s, s / c, b, b / n }' | tee -a "$OUT/runs.csv" >&2
done

col() { tail -n +2 "$OUT/runs.csv" | cut -d, -f"$1" | median; }
copy_m=$(col 2) seeder_m=$(col 3) ratio_m=$(col 4) bytes_m=$(col 5) per_m=$(col 6)
{
  echo "seeder benchmark: $STUDENTS students, seed $SEED, $RUNS run(s), medians; $(nproc) cores shared by all processes"
  printf '%-44s %10s\n' "psql \\copy (PostgreSQL only)" "$copy_m s"
  printf '%-44s %10s\n' "seeder (generate + PostgreSQL + Redis)" "$seeder_m s"
  printf '%-44s %10s   goal <= 2.0\n' "ratio seeder / \\copy" "$ratio_m"
  awk -v b="$bytes_m" -v p="$per_m" 'BEGIN { printf "%-44s %7.1f MB   goal < 64 MB\n%-44s %10.1f\n", "Redis used_memory for the results", b / 1048576, "Redis bytes per result", p }'
  echo "seeder phases (last run):"
  cat "$OUT/seeder-$RUNS.txt"
} | tee "$OUT/summary.txt"
rm -rf "$OUT/csv"

# The machine-readable result (medians), for cargo xtask capacity-model.
python3 scripts/bench/result_json.py --bench seed --csv "$OUT/runs.csv" --out "$OUT/seed.json" \
  --command "scripts/bench_seed.sh $RUNS" --meta students="$STUDENTS" --meta seed="$SEED" \
  --meta redis_version="$(redis info server | tr -d '\r' | sed -n 's/^redis_version://p')"
if [[ -n $RESULT_FILE ]]; then
  mkdir -p "$(dirname -- "$RESULT_FILE")"
  cp -f -- "$OUT/seed.json" "$RESULT_FILE"
  log "wrote $RESULT_FILE (then: cargo xtask capacity-model --write)"
fi
