#!/usr/bin/env bash
# scripts/tests/monitoring_test.sh - tests the monitoring configuration: prometheus/ and grafana/.
#
#   1. prometheus/prometheus.yml passes `promtool check config` in both layouts it is used in
#      (compose: targets/compose/ mounted as targets/; native: targets/native/ as the stack
#      script writes it), every job has a compose target file, and the rules load.
#   2. `promtool check rules` on prometheus/rules/*.yml and `promtool test rules` on
#      prometheus/rules/tests/*.yml (every alert fires, and does not, on synthetic series).
#   3. grafana/dashboards/*.json: valid JSON, unique panel ids, every (non-row) panel on
#      datasource uid `prometheus` with at least one query, every query valid PromQL (written as
#      recording rules panel_<id>_<n> and parsed by promtool), the provisioning files in place.
#   4. End to end, only when an API replica answers on 127.0.0.1:8181 (e.g. after
#      scripts/stack.sh up; otherwise skipped with a note, not failed): a throw-away Prometheus
#      with this repository's config and rules (scrape and evaluation every 1 s) scrapes the
#      replicas' admin ports 8181-8183, ~300 requests go to the public ports 8081-8083, and the
#      dashboard's key API queries (req/s, latency, status codes, lookup tiers) and the recording
#      rules must return data.
#
# Needs promtool, prometheus, python3, curl, jq. Prints `monitoring_test: N passed, M failed` last
# and exits non-zero when a check failed.
set -uo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
PROM_DIR=$REPO_DIR/prometheus
GRAFANA_DIR=$REPO_DIR/grafana
HOST=127.0.0.1
passed=0
failed=0

log() { printf 'monitoring_test: %s\n' "$*" >&2; }

pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'monitoring_test: FAILED: %s\n' "$1" >&2
}

check() { # check "description" command...  (the command's output is shown only on failure)
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass
  else
    fail "$what"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  fi
}

for tool in promtool prometheus python3 curl jq; do
  if ! command -v "$tool" >/dev/null; then
    log "missing $tool (apt-get install prometheus python3 curl jq)"
    exit 2
  fi
done

WORK=$(mktemp -d /tmp/monitoring-test.XXXXXX)
PROM_PID=
cleanup() {
  if [[ -n $PROM_PID ]]; then
    kill "$PROM_PID" 2>/dev/null
    wait "$PROM_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. the Prometheus configuration, in the layouts it runs in ---------------------------------

layout() { # layout DIR TARGETS_DIR: DIR/prometheus.yml, DIR/rules, DIR/targets as the container sees them
  mkdir -p "$1"
  cp "$PROM_DIR/prometheus.yml" "$1/prometheus.yml"
  cp -r "$PROM_DIR/rules" "$1/rules"
  cp -r "$2" "$1/targets"
}

no_warning() { # promtool check config without any WARNING (e.g. a missing target file)
  local out
  out=$(promtool check config "$1" 2>&1) || {
    printf '%s\n' "$out"
    return 1
  }
  ! grep -i warning <<<"$out"
}

layout "$WORK/compose" "$PROM_DIR/targets/compose"
check "promtool check config (compose layout, every target file present)" no_warning "$WORK/compose/prometheus.yml"
layout "$WORK/native" "$PROM_DIR/targets/native"
check "promtool check config (native layout)" promtool check config "$WORK/native/prometheus.yml"

# Every job reads targets/<job>.json; compose has all of them, native all but cAdvisor.
jobs_and_files() {
  python3 - "$PROM_DIR/prometheus.yml" <<'EOF'
import sys, re
text = open(sys.argv[1]).read()
for job, path in re.findall(r"job_name:\s*(\S+)\s+file_sd_configs:\s+- files: \[(\S+?)\]", text):
    print(job, path)
EOF
}
mapfile -t JOB_FILES < <(jobs_and_files)
expected_jobs="api nginx redis postgres node cadvisor loadgen"
check "scrape jobs are: $expected_jobs" test "$(printf '%s\n' "${JOB_FILES[@]}" | cut -d' ' -f1 | tr '\n' ' ')" = "$expected_jobs "
for line in "${JOB_FILES[@]}"; do
  job=${line%% *} file=${line#* }
  check "job $job reads targets/$job.json" test "$file" = "targets/$job.json"
  check "prometheus/targets/compose/$job.json exists" test -f "$PROM_DIR/targets/compose/$job.json"
  [[ $job == cadvisor ]] && continue
  check "prometheus/targets/native/$job.json exists" test -f "$PROM_DIR/targets/native/$job.json"
done
check "compose api targets are api1..3:8181" test \
  "$(jq -c '[.[].targets[]]' "$PROM_DIR/targets/compose/api.json")" = '["api1:8181","api2:8181","api3:8181"]'
check "native api targets are 127.0.0.1:8181..8183" test \
  "$(jq -c '[.[].targets[]]' "$PROM_DIR/targets/native/api.json")" = '["127.0.0.1:8181","127.0.0.1:8182","127.0.0.1:8183"]'
check "scrape_interval is 5s" grep -Eq '^  scrape_interval: 5s$' "$PROM_DIR/prometheus.yml"

# --- 2. rules ------------------------------------------------------------------------------------

check "promtool check rules prometheus/rules/*.yml" promtool check rules "$PROM_DIR"/rules/*.yml
check "promtool test rules prometheus/rules/tests/*.yml" promtool test rules "$PROM_DIR"/rules/tests/*.yml
for alert in HighP99Latency HighErrorRatio ReplicaDown RedisDown PostgresDown FallbackPathInUse; do
  check "alert $alert is defined" grep -q "alert: $alert\$" "$PROM_DIR/rules/alerts.yml"
  check "alert $alert has unit tests" grep -q "alertname: $alert\$" "$PROM_DIR"/rules/tests/*.yml
done

# --- 3. Grafana ----------------------------------------------------------------------------------

check "datasource provisioning: uid prometheus, http://prometheus:9090" \
  bash -c "grep -q 'uid: prometheus\$' '$GRAFANA_DIR/provisioning/datasources/prometheus.yml' &&
           grep -q 'url: http://prometheus:9090\$' '$GRAFANA_DIR/provisioning/datasources/prometheus.yml'"
check "dashboard provisioning reads /var/lib/grafana/dashboards" \
  grep -q 'path: /var/lib/grafana/dashboards$' "$GRAFANA_DIR/provisioning/dashboards/dashboards.yml"

# Checks each dashboard; prints "PASS|FAIL<TAB>what" lines and writes the queries as recording
# rules (Grafana's interval variables replaced by 1m) into $WORK/dashboard-rules.yml (JSON is YAML).
dashboard_checks() {
  python3 - "$WORK/dashboard-rules.yml" "$WORK/dashboard-exprs.tsv" "$GRAFANA_DIR"/dashboards/*.json <<'EOF'
import json, re, sys
rules_path, exprs_path, files = sys.argv[1], sys.argv[2], sys.argv[3:]
rules, exprs = [], []
def result(ok, what):
    print(("PASS" if ok else "FAIL") + "\t" + what)
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m"}
for path in files:
    name = path.rsplit("/", 1)[-1]
    try:
        dash = json.load(open(path))
    except ValueError as e:
        result(False, f"{name} is valid JSON ({e})")
        continue
    result(True, f"{name} is valid JSON")
    result(dash.get("schemaVersion", 0) >= 36, f"{name}: schemaVersion {dash.get('schemaVersion')} >= 36")
    result(bool(dash.get("uid")), f"{name}: has a uid")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))  # panels inside collapsed rows
    ids = [p.get("id") for p in panels]
    dupes = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    result(not dupes and None not in ids, f"{name}: panel ids unique and set (duplicates: {dupes})")
    for p in panels:
        if p.get("type") == "row":
            continue
        pid, title = p.get("id"), p.get("title", "?")
        ds = p.get("datasource") or {}
        result(ds.get("uid") == "prometheus", f"{name} panel {pid} '{title}': datasource uid prometheus")
        targets = p.get("targets") or []
        result(bool(targets), f"{name} panel {pid} '{title}': at least one target")
        for n, t in enumerate(targets):
            tds = t.get("datasource") or ds
            result(tds.get("uid") == "prometheus", f"{name} panel {pid} target {n}: datasource uid prometheus")
            expr = t.get("expr") or ""
            result(bool(expr.strip()), f"{name} panel {pid} target {n}: has an expr")
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            unknown = re.findall(r"\$\w+", expr)
            result(not unknown, f"{name} panel {pid} target {n}: no unknown variables {unknown}")
            rules.append({"record": f"panel_{pid}_{n}", "expr": expr})
            exprs.append(f"{title}\t{expr}")
json.dump({"groups": [{"name": "dashboard-panels", "rules": rules}]}, open(rules_path, "w"), indent=1)
open(exprs_path, "w").write("\n".join(exprs) + "\n")
EOF
}
while IFS=$'\t' read -r verdict what; do
  if [[ $verdict == PASS ]]; then pass; else fail "$what"; fi
done < <(dashboard_checks || printf 'FAIL\tthe dashboard checker crashed\n')
check "every dashboard query is valid PromQL (promtool check rules)" promtool check rules "$WORK/dashboard-rules.yml"

# --- 4. end to end against the native stack's replicas --------------------------------------------

free_port() { # the first port from $1 upwards that nothing listens on
  local port=$1
  while (echo >"/dev/tcp/$HOST/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

panel_expr() { # the (first n-th) query of the dashboard panel titled $1, with 1m windows
  awk -F'\t' -v t="$1" -v n="${2:-1}" '$1 == t && ++i == n { print $2 }' "$WORK/dashboard-exprs.tsv"
}

query() { # query EXPR: the instant query's result array (JSON) or nothing
  curl -s --max-time 5 --data-urlencode "query=$1" "http://$HOST:$PROM_PORT/api/v1/query" |
    jq -ce 'select(.status == "success") | .data.result'
}

has_data() { # has_data EXPR: the query returns at least one series
  local result
  result=$(query "$1") || return 1
  [[ $(jq length <<<"$result") -gt 0 ]] || {
    echo "empty result: $1"
    return 1
  }
}

has_numbers() { # has_numbers EXPR: at least one series, every value a positive number (not NaN)
  local result
  result=$(query "$1") || return 1
  jq -e 'length > 0 and all(.[]; (.value[1] | tonumber? // -1) > 0)' <<<"$result" >/dev/null || {
    echo "not all positive numbers: $result"
    return 1
  }
}

send_requests() { # send_requests FROM COUNT: GETs for IDs FROM.. round-robin over the live replicas
  local i id port
  for ((i = 0; i < $2; i++)); do
    id=$(($1 + i)) port=${API_PORTS[i % ${#API_PORTS[@]}]}
    curl -s -o /dev/null --max-time 5 "http://$HOST:$port/v1/results/$id"
  done
  # A few errors so the status panel has more than one code: unknown and malformed IDs.
  curl -s -o /dev/null "http://$HOST:${API_PORTS[0]}/v1/results/9999999"
  curl -s -o /dev/null "http://$HOST:${API_PORTS[0]}/student/12ab"
}

if ! curl -sf --max-time 2 -o /dev/null "http://$HOST:8181/metrics"; then
  log "note: no API replica on $HOST:8181 (start one with scripts/stack.sh up): end-to-end part skipped"
else
  API_PORTS=() ADMIN_TARGETS=()
  for n in 1 2 3; do
    if curl -sf --max-time 2 -o /dev/null "http://$HOST:$((8180 + n))/metrics"; then
      API_PORTS+=($((8080 + n)))
      ADMIN_TARGETS+=("{\"targets\": [\"$HOST:$((8180 + n))\"], \"labels\": {\"replica\": \"api$n\"}}")
    fi
  done
  log "end to end: ${#API_PORTS[@]} replica(s) up, a throw-away Prometheus scrapes them every 1 s"
  # The repository's config and rules (linked, as the native stack does), faster intervals, and
  # only the api job's target file: the other jobs have no targets here.
  E2E=$WORK/e2e
  mkdir -p "$E2E/targets" "$E2E/data"
  sed -e 's/^  scrape_interval: .*/  scrape_interval: 1s/' -e 's/^  scrape_timeout: .*/  scrape_timeout: 1s/' \
    -e 's/^  evaluation_interval: .*/  evaluation_interval: 1s/' "$PROM_DIR/prometheus.yml" >"$E2E/prometheus.yml"
  ln -s "$PROM_DIR/rules" "$E2E/rules"
  (
    IFS=,
    printf '[%s]\n' "${ADMIN_TARGETS[*]}"
  ) >"$E2E/targets/api.json"
  check "promtool check config (end-to-end layout, rules linked)" promtool check config "$E2E/prometheus.yml"
  PROM_PORT=$(free_port 19090)
  prometheus --config.file="$E2E/prometheus.yml" --storage.tsdb.path="$E2E/data" \
    --web.listen-address="$HOST:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
  PROM_PID=$!
  ready=0
  for _ in $(seq 1 100); do
    if curl -sf --max-time 1 -o /dev/null "http://$HOST:$PROM_PORT/-/ready"; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [[ $ready -eq 0 ]]; then
    fail "the throw-away Prometheus became ready"
    sed 's/^/    /' "$WORK/prometheus.log" >&2
  else
    pass
    # Wait for the first scrape, then send the requests in two rounds with scrapes in between,
    # so every counter has a before and an after inside the 1m windows.
    for _ in $(seq 1 50); do
      [[ $(query "sum(up{job=\"api\"})" | jq -r '.[0].value[1] // 0') == "${#API_PORTS[@]}" ]] && break
      sleep 0.2
    done
    check "Prometheus scrapes every live replica (up == 1)" has_numbers 'up{job="api"}'
    send_requests 1000000 100
    sleep 2.5
    send_requests 1000100 200
    sleep 3 # two scrapes and a rule evaluation
    for title_n in "Requests/s per replica and total|1" "Requests/s per replica and total|2" \
      "Latency p50 / p95 / p99 (results routes)|1" "Latency p50 / p95 / p99 (results routes)|3" \
      "Status codes|1" "Lookup tiers|1" "Requests/s|1" "p99 latency|1" "In flight|1" "Store connections per replica|1"; do
      title=${title_n%|*} n=${title_n#*|}
      expr=$(panel_expr "$title" "$n")
      if [[ -z $expr ]]; then
        fail "dashboard panel '$title' query $n exists"
        continue
      fi
      case $title in
      Requests/s* | Latency* | "p99 latency") check "panel '$title' query $n returns positive numbers" has_numbers "$expr" ;;
      *) check "panel '$title' query $n returns data" has_data "$expr" ;;
      esac
    done
    check "per-replica rate carries the replica label" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Requests/s per replica and total" 1)' \
        http://$HOST:$PROM_PORT/api/v1/query | jq -e '[.data.result[].metric.replica] | length > 0 and all(startswith(\"api\"))'"
    check "status codes include 200, 404 and 400" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Status codes" 1)' http://$HOST:$PROM_PORT/api/v1/query |
        jq -e '[.data.result[].metric.status] as \$s | (\$s | index(\"200\")) and (\$s | index(\"404\")) and (\$s | index(\"400\"))'"
    check "lookup tiers include redis hit" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Lookup tiers" 1)' http://$HOST:$PROM_PORT/api/v1/query |
        jq -e 'any(.data.result[].metric; .tier == \"redis\" and .outcome == \"hit\")'"
    for record in job:http_requests:rate1m replica:http_requests:rate1m job:http_results_requests:rate1m \
      job:http_request_duration_seconds:p99_1m job:result_lookups:rate1m; do
      check "recording rule $record has data" has_data "$record"
    done
    check "all rules loaded and evaluated without errors (6 alerts, health ok)" \
      bash -c "curl -s http://$HOST:$PROM_PORT/api/v1/rules |
        jq -e '[.data.groups[].rules[]] as \$r | ([\$r[] | select(.type == \"alerting\")] | length == 6)
               and all(\$r[]; .health == \"ok\")'"
  fi
fi

printf 'monitoring_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
