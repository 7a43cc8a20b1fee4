#!/usr/bin/env bash
# scripts/tests/capacity_model_test.sh - tests scripts/capacity_model.py and the benchmark
# result files it reads, on SAMPLE inputs made here in a temporary folder (not measured figures;
# nothing here is committed):
#   - `cargo xtask bench result` turns runs.csv files shaped like the benchmarks' into
#     docs/bench-style JSON with per-target medians
#   - the model's figures on those inputs equal the arithmetic done by hand (replicas, NGINX
#     nodes, Redis primaries and memory, PostgreSQL connections) for 1x and 10x
#   - --write fills the doc between its markers, --check then passes, and fails once an input
#     changes; a missing input, a file from an older benchmark and a doc without markers each
#     stop it with exit 2 and a message naming the file
#   - the benchmarks (xtask/src/bench/) write the columns the model reads (names agree)
#   - the committed docs/capacity-model.md: up to date with docs/bench/*.json when those exist,
#     otherwise it says it is not generated yet (and the script says which file is missing)
# Prints `capacity_model_test: N passed, M failed` last; exits non-zero on a failure.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
TEST_NAME=capacity_model_test
# shellcheck source=scripts/tests/lib.sh
source "$SCRIPT_DIR/lib.sh"
cd "$REPO_DIR"
passed=0
failed=0

WORK=$(mktemp -d /tmp/capacity-model-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
MODEL=scripts/capacity_model.py
result_json() { cargo xtask bench result "$@"; }
IN=$WORK/inputs
mkdir -p "$IN/bench"

# --- sample benchmark outputs (SAMPLE figures, shaped like the real runs.csv files) -------------
# cargo xtask bench stack's header, three rounds; the medians are 64 / 25 / 8 us per request.
{
  echo "round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,edge_cpu_cores,upstream_cpu_cores,machine_busy_pct,replica_requests,upstream_share,replica1_requests,replica2_requests,replica3_requests,edge_cpu_us_per_request,upstream_cpu_us_per_request,redis_cpu_us_per_request"
  echo "1,ceiling,30000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,20.00,16.00,0.00"
  echo "1,stack-nocache,14000,1,2,12,30,0,0,420,0.467,0.35,0.90,99,210000,1.000,70000,70000,70000,26.00,70.00,9.00"
  echo "2,ceiling,29000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,21.00,17.00,0.00"
  echo "2,stack-nocache,15000,1,2,12,30,0,0,420,0.517,0.35,0.90,99,225000,1.000,75000,75000,75000,25.00,64.00,8.00"
  echo "3,ceiling,31000,1,2,3,9,0,0,420,1.000,0.60,0.50,99,,,,,,19.00,15.00,0.00"
  echo "3,stack-nocache,14500,1,2,12,30,0,0,420,0.468,0.35,0.90,99,217500,1.000,72500,72500,72500,24.00,60.00,7.00"
} >"$WORK/stack-runs.csv"
{
  echo "round,target,rps,p50_ms,p90_ms,p99_ms,max_ms,non2xx,socket_errors,bytes_per_response,ratio_to_ceiling,server_cpu_cores,server_cpu_us_per_request,machine_busy_pct,rss_peak_mb"
  echo "1,ceiling,75000,1,2,3,9,0,0,420,1.000,1.00,13.3,99,5.0"
  echo "1,api,46000,1,2,3,9,0,0,420,0.613,1.30,28.0,99,17.0"
  echo "2,ceiling,76000,1,2,3,9,0,0,420,1.000,1.00,13.1,99,5.0"
  echo "2,api,47000,1,2,3,9,0,0,420,0.618,1.30,30.0,99,18.0"
} >"$WORK/api-runs.csv"
{
  echo "run,copy_seconds,seeder_seconds,ratio,redis_bytes,bytes_per_result"
  echo "1,8.2,3.2,0.39,35000000,51.9"
  echo "2,8.1,3.3,0.41,35100000,52.0"
  echo "3,8.3,3.1,0.37,35200000,52.1"
} >"$WORK/seed-runs.csv"
# loadgen capacity.csv: the SLO holds up to 5,000 req/s, the peak is 8,000 (utilization 0.625).
{
  echo "users,seconds,requests,rps,failures,error_ratio,p50_ms,p95_ms,p99_ms,max_ms,co_corrected,slo_passed"
  echo "250,20,20000,1000.00,0,0.000000,0.4,0.8,1.0,5,true,true"
  echo "1000,20,100000,5000.00,0,0.000000,1.3,5.7,18.0,66,true,true"
  echo "1500,20,120000,6000.00,0,0.000000,8.3,45.3,76.2,139,true,false"
  echo "3000,20,160000,8000.00,0,0.000000,78.3,242.6,276.4,523,true,false"
} >"$IN/capacity-knee.csv"
{
  echo "users,seconds,requests,rps,failures,error_ratio,p50_ms,p95_ms,p99_ms,max_ms,co_corrected,slo_passed"
  echo "500,20,4941,247.05,0,0.000000,0.6,1.0,1.3,4.9,false,true"
  echo "10000,20,101172,5058.60,0,0.000000,1.3,3.4,6.2,27.5,true,true"
} >"$IN/capacity-result-day.csv"

check "cargo xtask bench result writes stack.json" result_json --bench stack --csv "$WORK/stack-runs.csv" \
  --out "$IN/bench/stack.json" --command "sample" --meta replicas=3 --meta nginx_version="nginx/1.22.1"
check "cargo xtask bench result writes api.json" result_json --bench api --csv "$WORK/api-runs.csv" --out "$IN/bench/api.json"
check "cargo xtask bench result writes seed.json" result_json --bench seed --csv "$WORK/seed-runs.csv" \
  --out "$IN/bench/seed.json" --meta students=674823
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {'d': d}))" "$@"; }
check "stack.json: the median of the rounds per target (upstream 64 us)" \
  test "$(json "$IN/bench/stack.json" "d['medians']['stack-nocache']['upstream_cpu_us_per_request']")" = 64.0
check "stack.json: the ceiling's median rps (30000)" test "$(json "$IN/bench/stack.json" "d['medians']['ceiling']['rps']")" = 30000
check "stack.json: columns with empty cells are left out for that target" \
  test "$(json "$IN/bench/stack.json" "'replica_requests' in d['medians']['ceiling']")" = False
check "stack.json: rounds counted (3) and --meta kept (numbers as numbers)" \
  test "$(json "$IN/bench/stack.json" "(d['rounds'], d['meta']['replicas'], d['meta']['nginx_version'])")" = "(3, 3, 'nginx/1.22.1')"
check "seed.json: medians without a target column (52.0 bytes per result)" \
  test "$(json "$IN/bench/seed.json" "d['medians']['bytes_per_result']")" = 52.0
check "cargo xtask bench result refuses a --meta that is not KEY=VALUE" \
  bash -c "! cargo xtask bench result --bench x --csv '$WORK/seed-runs.csv' --out '$WORK/x.json' --meta novalue"

# --- the model on the sample inputs ------------------------------------------------------------
if python3 $MODEL --inputs "$IN" >"$WORK/out.md" 2>"$WORK/err.txt"; then
  check "the model runs on the sample inputs" true
else
  check "the model runs on the sample inputs: $(cat "$WORK/err.txt")" false
fi
row() { grep -F "| $1" "$WORK/out.md" | head -n 1; }
# By hand: 1.7 M / 60 s x 1.2 lookups x 1.5 peak = 51,000 lookups/s; utilization 5000/8000 = 0.625.
# API: 51,000 x 64 us / 0.625 = 5.22 cores -> 6 + 1 spare = 7; 10x: 52.2 -> 53 + 6 = 59.
# Edge: 1.7 M / 60 x 4.2 x 1.5 = 178,500 req/s x 25 us / 0.625 = 7.14 cores -> 1 node + 1; 10x: 71.4 -> 9 + 1.
# Redis: 51,000 x 8 us / 0.625 = 0.65 core -> 1 primary; 10x: 6.53 -> 7.
# Memory: 1.7 M x 52 B x 1.5 x 2 = 265.2 MB = 253 MB; 10x 2.5 GB. Pools: 7 x 8 = 56; 59 x 8 = 472 > 200.
check "utilization read from the knee (0.625 -> 0.62 shown)" grep -qF "| utilization within the SLO | 0.62 |" "$WORK/out.md"
check "peak API lookups 51,000 and 510,000 req/s" bash -c "row() { grep -F \"| \$1\" '$WORK/out.md'; }; row 'peak API lookups' | grep -qF '| 51,000 req/s | 510,000 req/s |'"
check "API replicas 7 (1x) and 59 (10x)" bash -c "grep -F '| **API replicas**' '$WORK/out.md' | grep -qE '\\*\\*7\\*\\* \\(5\\.2 cores.*\\*\\*59\\*\\* \\(52\\.2 cores'"
check "NGINX nodes 2 (1x) and 10 (10x)" bash -c "grep -F '| **NGINX nodes**' '$WORK/out.md' | grep -qE '\\*\\*2\\*\\* x 8 cores \\(7\\.1 cores.*\\*\\*10\\*\\* x 8 cores \\(71\\.4 cores'"
check "Redis primaries 1 (1x) and 7 (10x)" bash -c "grep -F '| **Redis primaries**' '$WORK/out.md' | grep -qE '\\*\\*1\\*\\* \\(0\\.65 cores.*\\*\\*7\\*\\* \\(6\\.53 cores'"
check "Redis memory 253 MB (1x) and 2.5 GB (10x)" bash -c "grep -F '| **Redis memory**' '$WORK/out.md' | grep -qE '\\*\\*253 MB\\*\\* in all.*\\*\\*2\\.5 GB\\*\\* in all'"
check "PostgreSQL pools: 56 of 200, 472 of 200 flagged" bash -c "grep -F '| PostgreSQL connections' '$WORK/out.md' | grep -qE '\\| 56 of 200 \\| 472 of 200 \\(\\*\\*needs a pooler'"
check "the single-replica cross-check is shown (29.0 us)" grep -qF "| one replica alone (cross-check) | 29.0 µs |" "$WORK/out.md"
check "the assumptions are stated (peak factor, candidates)" bash -c "grep -qF 'Peak factor 1.5' '$WORK/out.md' && grep -qF '1,700,000 candidates' '$WORK/out.md'"
python3 $MODEL --inputs "$IN" --candidates 3400000 >"$WORK/out2.md"
check "an assumption is an option: twice the candidates, twice the lookups (102,000 req/s)" \
  grep -qF "| peak API lookups | 102,000 req/s |" "$WORK/out2.md"

# --- --write / --check on a copy of the doc -----------------------------------------------------
cp docs/capacity-model.md "$WORK/doc.md"
check "--write fills the doc" python3 $MODEL --inputs "$IN" --doc "$WORK/doc.md" --write
check "the doc's section is the printed one" bash -c "grep -qF '| **API replicas**' '$WORK/doc.md' && ! grep -q 'Not generated yet' '$WORK/doc.md'"
check "the doc keeps its text around the markers" bash -c "grep -q '^## The model' '$WORK/doc.md' && grep -q 'capacity-model:end' '$WORK/doc.md'"
check "--check passes right after --write" python3 $MODEL --inputs "$IN" --doc "$WORK/doc.md" --check
sed -i 's/"upstream_cpu_us_per_request": 64.0/"upstream_cpu_us_per_request": 90.0/' "$IN/bench/stack.json"
rc=0
python3 $MODEL --inputs "$IN" --doc "$WORK/doc.md" --check 2>"$WORK/err.txt" || rc=$?
check "--check exits 1 once an input changed (got $rc)" test "$rc" -eq 1
check "--check says how to regenerate" grep -qF "capacity_model.py --write" "$WORK/err.txt"

# --- inputs missing or malformed ----------------------------------------------------------------
expect_2() { # expect_2 WHAT PATTERN ARGS...: the model exits 2 and says PATTERN
  local what=$1 pattern=$2 rc=0
  shift 2
  python3 $MODEL "$@" >/dev/null 2>"$WORK/err.txt" || rc=$?
  check "$what: exit 2 (got $rc)" test "$rc" -eq 2
  check "$what: says '$pattern'" grep -qF -- "$pattern" "$WORK/err.txt"
}
mv "$IN/bench/seed.json" "$WORK/seed.json"
expect_2 "seed.json missing" "missing input $IN/bench/seed.json: run cargo xtask bench seed" --inputs "$IN"
mv "$WORK/seed.json" "$IN/bench/seed.json"
python3 - "$IN/bench/stack.json" <<'PYTHON'
import json, sys
d = json.load(open(sys.argv[1]))
del d["medians"]["stack-nocache"]["redis_cpu_us_per_request"]
json.dump(d, open(sys.argv[1], "w"))
PYTHON
expect_2 "a stack.json from before the Redis column" "has no medians.stack-nocache.redis_cpu_us_per_request" --inputs "$IN"
result_json --bench stack --csv "$WORK/stack-runs.csv" --out "$IN/bench/stack.json"
echo "not json" >"$IN/bench/api.json"
expect_2 "api.json not JSON" "is not valid JSON" --inputs "$IN"
result_json --bench api --csv "$WORK/api-runs.csv" --out "$IN/bench/api.json"
printf '# no markers\n' >"$WORK/nomarkers.md"
expect_2 "a doc without markers" "the doc must hold the markers" --inputs "$IN" --doc "$WORK/nomarkers.md" --write
check "a doc without markers is left alone" test "$(cat "$WORK/nomarkers.md")" = "# no markers"

# --- the benchmarks write what the model reads ---------------------------------------------------
for col in edge_cpu_us_per_request upstream_cpu_us_per_request redis_cpu_us_per_request; do
  check "cargo xtask bench stack writes the column $col" grep -q "$col" xtask/src/bench/stack.rs
done
for col in server_cpu_us_per_request rss_peak_mb; do
  check "cargo xtask bench api writes the column $col" grep -q "$col" xtask/src/bench/api.rs
done
check "cargo xtask bench seed writes the column bytes_per_result" grep -q "bytes_per_result" xtask/src/bench/seed.rs
for bench in stack api seed; do
  check "cargo xtask bench $bench writes docs/bench/$bench.json" grep -q "docs/bench/$bench.json" "xtask/src/bench/$bench.rs"
done

# --- the committed doc --------------------------------------------------------------------------
if [[ -f docs/bench/stack.json && -f docs/bench/api.json && -f docs/bench/seed.json ]]; then
  check "docs/capacity-model.md is up to date with docs/bench/*.json (python3 $MODEL --check)" python3 $MODEL --check
else
  check "docs/capacity-model.md says it is not generated yet (no docs/bench/*.json committed)" \
    grep -q "Not generated yet" docs/capacity-model.md
  rc=0
  python3 $MODEL >/dev/null 2>"$WORK/err.txt" || rc=$?
  check "without the real inputs the model exits 2 naming the missing file (got $rc)" \
    bash -c "test $rc -eq 2 && grep -q 'missing input docs/bench/' '$WORK/err.txt'"
fi

echo "capacity_model_test: $passed passed, $failed failed"
((failed == 0))
