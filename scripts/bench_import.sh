#!/usr/bin/env bash
# scripts/bench_import.sh - `seeder import` of a results file against `psql \copy` of the same
# file, side by side, and the import's peak RSS as the file grows.
#
# For each size (674,823 rows, then 10x that): the generator's data set is written as a results
# file (`seeder export --generated`, the same bytes `seeder export` writes from PostgreSQL). Then,
# per run: a fresh database gets a staging table of the file's columns and `psql \copy` loads
# the file into it (the baseline: parsing and PostgreSQL only); another fresh database and a
# throw-away Redis get `seeder import --file` (whole-file check, ranks, PostgreSQL with keys, the
# fingerprint, Redis), timed with its peak RSS (/usr/bin/time), then `seeder verify`.
# Goals (issue 13): import <= 2x \copy; peak RSS under 300 MB at 10x, growing far less than the file.
#
# Usage: scripts/bench_import.sh [RUNS]   (default 3 runs at 674,823 rows, 1 at 10x)
# Environment: BENCH_SIZES ["674823 6748230"], BENCH_RUNS_10X [1], SEEDER_PG_CONNECTIONS [2],
#   BENCH_RESULT_FILE [docs/bench/import.json] (empty: not written),
#   DATABASE_URL (a PostgreSQL whose user may create databases; default: cargo xtask stack's).
# Redis: a private redis-server on a free loopback port with the project's redis.conf but no
#   memory cap and no persistence (10x the results need ~0.5 GB; the stack's is capped at 512 MB),
#   stopped at exit.
# Output: a table on stdout, also runs/bench-import/<timestamp>/summary.txt with runs.csv.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
cd "$REPO_DIR"

RUNS=${1:-3}
SIZES=${BENCH_SIZES:-674823 6748230}
RUNS_10X=${BENCH_RUNS_10X:-1}
RESULT_FILE=${BENCH_RESULT_FILE-docs/bench/import.json}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/bench_import.sh [RUNS]" >&2; exit 2; }
export PGOPTIONS="-c client_min_messages=warning"

log() { printf 'bench: %s\n' "$*" >&2; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

if [[ -z ${DATABASE_URL:-} ]]; then
  STACK_SERVICES="pg" cargo xtask stack up
  eval "$(cargo xtask stack env)"
fi

OUT=$REPO_DIR/runs/bench-import/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/redis"
REDIS_PID=
cleanup() {
  [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  rm -f "$OUT"/results-*.csv
}
trap cleanup EXIT
REDIS_PORT=$((20000 + RANDOM % 12000))
while (echo >/dev/tcp/127.0.0.1/$REDIS_PORT) 2>/dev/null; do REDIS_PORT=$((20000 + RANDOM % 12000)); done
redis-server redis/redis.conf --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$OUT/redis" --save '' \
  --maxmemory 0 --daemonize no >"$OUT/redis/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT

log "building the release seeder"
cargo build --release --locked -p seeder
SEEDER=$REPO_DIR/target/release/seeder

db_url() { printf '%s/%s' "${DATABASE_URL%/*}" "$1"; }
drop_db() {
  psql "$DATABASE_URL" -q -o /dev/null -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
    WHERE datname = '$1' AND usename = current_user AND pid <> pg_backend_pid()" -c "DROP DATABASE IF EXISTS $1"
}
fresh_db() { drop_db "$1"; psql "$DATABASE_URL" -q -c "CREATE DATABASE $1"; }
# The staging table: the results file's columns, typed as the schema types them.
STAGING="CREATE TABLE staging (registration_number integer, full_name text, school_code integer, school text,
  region text, stream text, english smallint, mathematics smallint, physics smallint, chemistry smallint,
  biology smallint, geography smallint, history smallint, economics smallint, aptitude smallint)"

echo "target,run,file_mb,copy_seconds,import_seconds,ratio,import_peak_rss_mb" >"$OUT/runs.csv"
for rows in $SIZES; do
  file=$OUT/results-$rows.csv
  log "writing the results file of $rows students"
  "$SEEDER" export --generated --students "$rows" --file "$file" >&2
  file_mb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { printf "%.1f", b / 1048576 }')
  runs=$RUNS
  ((rows > 1000000)) && runs=$RUNS_10X
  for run in $(seq 1 "$runs"); do
    fresh_db bench_copy
    psql "$(db_url bench_copy)" -q -c "$STAGING"
    start=$(now)
    psql "$(db_url bench_copy)" -q -v ON_ERROR_STOP=1 -c "\\copy staging FROM '$file' WITH (FORMAT csv, HEADER true)"
    copy=$(seconds "$start" "$(now)")
    drop_db bench_copy

    prefix=bench-import-$run-$$
    fresh_db bench_import
    start=$(now)
    /usr/bin/time -f '%M' -o "$OUT/rss-$rows-$run.txt" "$SEEDER" import --file "$file" \
      --database-url "$(db_url bench_import)" --key-prefix "$prefix" --progress quiet \
      >"$OUT/import-$rows-$run.txt" 2>"$OUT/import-$rows-$run.log"
    import=$(seconds "$start" "$(now)")
    "$SEEDER" verify --database-url "$(db_url bench_import)" --key-prefix "$prefix" >"$OUT/verify-$rows-$run.txt" ||
      { log "verify failed: see $OUT/verify-$rows-$run.txt"; exit 1; }
    redis-cli -p "$REDIS_PORT" --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -p "$REDIS_PORT" unlink >/dev/null
    drop_db bench_import
    rss_kb=$(tail -n 1 "$OUT/rss-$rows-$run.txt")
    awk -v n="rows_$rows" -v r="$run" -v f="$file_mb" -v c="$copy" -v i="$import" -v m="$rss_kb" \
      'BEGIN { printf "%s,%d,%s,%.3f,%.3f,%.2f,%.1f\n", n, r, f, c, i, i / c, m / 1024 }' | tee -a "$OUT/runs.csv" >&2
  done
  rm -f "$file"
done

{
  echo "import benchmark: $(nproc) cores shared by the seeder, PostgreSQL and Redis; medians per size"
  printf '%10s %9s %12s %14s %8s %16s\n' rows "file MB" "\\copy s" "import s" ratio "peak RSS MB"
  for rows in $SIZES; do
    col() { awk -F, -v n="rows_$rows" -v c="$1" 'NR > 1 && $1 == n { print $c }' "$OUT/runs.csv" | median; }
    printf '%10s %9s %12s %14s %8s %16s\n' "$rows" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)"
  done
  echo "goals: import <= 2.0 x \\copy (check, ranks, keys and Redis included); peak RSS < 300 MB at 10x"
  echo "import phases (last run of the first size):"
  first=${SIZES%% *}
  cat "$OUT/import-$first-$RUNS.txt"
} | tee "$OUT/summary.txt"

python3 scripts/bench/result_json.py --bench import --csv "$OUT/runs.csv" --out "$OUT/import.json" \
  --command "scripts/bench_import.sh $RUNS"
if [[ -n $RESULT_FILE ]]; then
  mkdir -p "$(dirname -- "$RESULT_FILE")"
  cp -f -- "$OUT/import.json" "$RESULT_FILE"
  log "wrote $RESULT_FILE"
fi
