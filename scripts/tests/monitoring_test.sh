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
#   4. End to end on a throw-away native stack (cargo xtask stack on free ports in a folder of its
#      own: PostgreSQL, Redis, three replicas, NGINX, the node/nginx/redis/postgres exporters and
#      Prometheus with this repository's config and rules, scraping every 1 s): every target is up,
#      ~300 requests go through NGINX while target/debug/loadgen runs 14 s of load with its
#      /metrics where Prometheus looks, and the dashboard's key panels (API, NGINX, Redis,
#      PostgreSQL, host, load generator) and the recording rules return data; no alert fires; a stopped replica
#      raises ReplicaDown. Needs target/debug/api and a seeder binary (cargo test builds them).
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
TEST_NAME=monitoring_test
# throwaway_stack (its check is replaced by this file's own, which shows the output of a failure)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

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
  if [[ -n ${E2E_STACK:-} ]]; then
    "$XTASK" stack down --purge >/dev/null 2>&1 || true
    rm -rf "$STACK_DIR"
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
for alert in HighP99Latency HighErrorRatio ReplicaDown RedisDown PostgresDown FallbackPathInUse PgReadReplicaNotServing; do
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

# --- helpers of the end-to-end part ---------------------------------------------------------------

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

send_requests() { # send_requests FROM COUNT: GETs for IDs FROM.. through NGINX's public port
  local i
  for ((i = 0; i < $2; i++)); do
    curl -s -o /dev/null --max-time 5 "$PUBLIC/v1/results/$(($1 + i))"
  done
  # A few errors so the status panel has more than one code: unknown and malformed IDs.
  curl -s -o /dev/null "$PUBLIC/v1/results/9999999"
  curl -s -o /dev/null "$PUBLIC/student/12ab"
}

target_health() { # target_health JOB: the health of that job's active targets, one per line
  curl -s --max-time 5 "http://$HOST:$PROM_PORT/api/v1/targets?state=active" |
    jq -r --arg job "$1" '.data.activeTargets[] | select(.labels.job == $job) | .health'
}
all_up() { # all_up JOB COUNT: COUNT targets of JOB, every one up
  local health
  health=$(target_health "$1")
  [[ $(grep -c . <<<"$health") -eq $2 && $(grep -cx up <<<"$health") -eq $2 ]] || {
    echo "job $1: $(tr '\n' ' ' <<<"$health")"
    return 1
  }
}

# --- 4. end to end on a throw-away native stack ------------------------------------------------
# cargo xtask stack brings up PostgreSQL, Redis, three replicas, NGINX, the four exporters and
# Prometheus (the repository's configuration and rules, scraping every 1 s) on free ports in a
# folder of its own; a small data set is seeded and requests go through NGINX.
E2E_API_BIN=${MONITORING_API_BIN:-$REPO_DIR/target/debug/api}
E2E_LOADGEN_BIN=${MONITORING_LOADGEN_BIN:-$REPO_DIR/target/debug/loadgen}
newest_seeder # a release seeder older than the debug API may write a marker it does not trust
E2E_SEEDER_BIN=$SEEDER_BIN
if [[ ! -x $E2E_API_BIN || ! -x $E2E_SEEDER_BIN ]]; then
  fail "end to end: needs $E2E_API_BIN and a seeder binary (cargo build -p api -p seeder)"
else
  STACK_API_BIN=$E2E_API_BIN
  throwaway_stack monitoring-test 27200
  STACK_PROMETHEUS_INTERVAL=1s
  export STACK_PROMETHEUS_INTERVAL
  E2E_STACK=1
  log "end to end: a throw-away stack in $STACK_DIR (nginx $STACK_NGINX_PORT, prometheus $STACK_PROMETHEUS_PORT)"
  if ! "$XTASK" stack up >"$WORK/up-stores.log" 2>&1; then
    fail "xtask stack up (pg redis) for the end-to-end part"
    tail -n 15 "$WORK/up-stores.log" | sed 's/^/    /' >&2
  elif ! (eval "$("$XTASK" stack env)" && export DATABASE_URL REDIS_URL &&
    SEEDER_PROGRESS=quiet "$E2E_SEEDER_BIN" --students 3000 >"$WORK/seed.log" 2>&1); then
    fail "seeding 3,000 students for the end-to-end part"
    tail -n 15 "$WORK/seed.log" | sed 's/^/    /' >&2
  elif ! STACK_SERVICES="api nginx exporters prometheus" "$XTASK" stack up >"$WORK/up.log" 2>&1; then
    fail "xtask stack up (api nginx exporters prometheus)"
    tail -n 25 "$WORK/up.log" | sed 's/^/    /' >&2
  else
    pass
    PROM_PORT=$STACK_PROMETHEUS_PORT
    PUBLIC=http://$HOST:$STACK_NGINX_PORT
    check "xtask stack status: every exporter and Prometheus running" bash -c \
      "'$XTASK' stack status | grep -cE '^(node_exporter|nginx_exporter|redis_exporter|pg_exporter|prometheus) +running ' | grep -qx 5"
    check "xtask stack env prints PROMETHEUS_URL" bash -c \
      "'$XTASK' stack env | grep -qxF \"export PROMETHEUS_URL='http://$HOST:$PROM_PORT'\""
    check "promtool check config (native layout as xtask stack writes it)" promtool check config "$STACK_DIR/prometheus/prometheus.yml"
    check "the native api targets are the stack's admin ports, labelled api1..3" test \
      "$(jq -c '[.[] | [.targets[0], .labels.replica]]' "$STACK_DIR/prometheus/targets/api.json")" = \
      "[[\"$HOST:$STACK_API_ADMIN_PORT\",\"api1\"],[\"$HOST:$((STACK_API_ADMIN_PORT + 1))\",\"api2\"],[\"$HOST:$((STACK_API_ADMIN_PORT + 2))\",\"api3\"]]"
    # prometheus/targets/native/ documents the default ports: it must be what xtask stack writes.
    defaults_of_ports() { # the throw-away stack's target files with its ports mapped to the defaults
      sed -e "s/:$STACK_API_ADMIN_PORT\"/:8181\"/; s/:$((STACK_API_ADMIN_PORT + 1))\"/:8182\"/" \
        -e "s/:$((STACK_API_ADMIN_PORT + 2))\"/:8183\"/; s/:$STACK_NGINX_EXPORTER_PORT\"/:9113\"/" \
        -e "s/:$STACK_REDIS_EXPORTER_PORT\"/:9121\"/; s/:$STACK_PG_EXPORTER_PORT\"/:9187\"/" \
        -e "s/:$STACK_NODE_EXPORTER_PORT\"/:9100\"/; s/:$STACK_LOADGEN_METRICS_PORT\"/:9400\"/" "$1" | jq -c .
    }
    for file in "$PROM_DIR"/targets/native/*.json; do
      check "xtask stack writes targets/$(basename "$file") as prometheus/targets/native/ has it (default ports)" \
        test "$(defaults_of_ports "$STACK_DIR/prometheus/targets/$(basename "$file")")" = "$(jq -c . "$file")"
    done
    # Wait until every target has been scraped once (1 s interval), then send two rounds of
    # requests with scrapes in between, so every counter has a before and an after.
    for _ in $(seq 1 60); do
      all_up api 3 >/dev/null && all_up nginx 1 >/dev/null && all_up redis 1 >/dev/null &&
        all_up postgres 1 >/dev/null && all_up node 1 >/dev/null && break
      sleep 0.25
    done
    check "Prometheus scrapes the three replicas (up)" all_up api 3
    for job in nginx redis postgres node; do
      check "Prometheus scrapes the $job exporter (up)" all_up "$job" 1
    done
    check "the loadgen target is known (down while no load test runs)" bash -c \
      "curl -s 'http://$HOST:$PROM_PORT/api/v1/targets?state=active' | jq -e '[.data.activeTargets[] | select(.labels.job == \"loadgen\")] | length == 1'"
    # The load generator runs meanwhile (30 paced users for 14 s) with its /metrics where
    # Prometheus looks for it, so the dashboard's client-side panels get data too.
    LOADGEN_PID=
    if [[ -x $E2E_LOADGEN_BIN ]]; then
      "$E2E_LOADGEN_BIN" --host "$PUBLIC" --students 3000 --users 30 --increase-rate 30 --run-time 14s \
        --think-min-ms 50 --think-max-ms 150 --metrics-listen "$HOST:$STACK_LOADGEN_METRICS_PORT" \
        --slo-p95-ms 5000 --slo-p99-ms 5000 --slo-error-ratio 0 --progress-secs 0 \
        --runs-dir "$WORK/loadgen" >"$WORK/loadgen.log" 2>&1 &
      LOADGEN_PID=$!
      # (latency gates loose: a debug build on shared cores; every response must be right; up to
      # 10 s for its first scrape: a debug build starts slowly while other suites run beside it)
      for _ in $(seq 1 40); do all_up loadgen 1 >/dev/null && break; sleep 0.25; done
      check "the loadgen target is up while it runs" all_up loadgen 1
    fi
    send_requests 1000000 100
    sleep 2.5
    send_requests 1000100 200
    sleep 3 # two scrapes and a rule evaluation
    if [[ -z $LOADGEN_PID ]]; then
      fail "end to end: the load generator $E2E_LOADGEN_BIN is built (cargo build -p loadgen)"
    else
      check "panel 'Load generator latency p50 / p95 / p99' query 3 returns positive numbers" \
        has_numbers "$(panel_expr "Load generator latency p50 / p95 / p99" 3)"
      check "panel 'Load generator vs replicas: requests/s' query 1 returns positive numbers" \
        has_numbers "$(panel_expr "Load generator vs replicas: requests/s" 1)"
      # Waited for here: check runs its command in a subshell, where the load generator (still
      # running) is no child to wait for.
      loadgen_status=0
      wait "$LOADGEN_PID" || loadgen_status=$?
      check "the load generator's run passed: no failed request, every response checked" test "$loadgen_status" = 0
      grep -q '^verdict *PASS' "$WORK/loadgen.log" || sed 's/^/    /' "$WORK/loadgen.log" | tail -n 20 >&2
    fi
    for title_n in "Requests/s per replica and total|1" "Requests/s per replica and total|2" \
      "Latency p50 / p95 / p99 (results routes)|1" "Latency p50 / p95 / p99 (results routes)|3" \
      "Status codes|1" "Lookup tiers|1" "Requests/s|1" "p99 latency|1" "In flight|1" "Store connections per replica|1" \
      "API replicas up|1" "NGINX active connections|1" "NGINX requests/s|1" "Redis|1" "PostgreSQL|1" "NGINX|1" \
      "Redis memory|1" "Redis commands/s and clients|1" "Redis commands/s and clients|2" "PostgreSQL connections|1" \
      "PostgreSQL transactions/s|1" "Host CPU and memory|1" "Host CPU and memory|2"; do
      title=${title_n%|*} n=${title_n#*|}
      expr=$(panel_expr "$title" "$n")
      if [[ -z $expr ]]; then
        fail "dashboard panel '$title' query $n exists"
        continue
      fi
      case $title in
      Requests/s* | Latency* | "p99 latency" | "NGINX requests/s" | "Redis commands/s and clients" | \
        "Redis memory" | "API replicas up" | Redis | PostgreSQL | NGINX | "Host CPU and memory")
        check "panel '$title' query $n returns positive numbers" has_numbers "$expr" ;;
      *) check "panel '$title' query $n returns data" has_data "$expr" ;;
      esac
    done
    check "per-replica rate carries the replica label" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Requests/s per replica and total" 1)' \
        http://$HOST:$PROM_PORT/api/v1/query | jq -e '[.data.result[].metric.replica] | length == 3 and all(startswith(\"api\"))'"
    check "status codes include 200, 404 and 400" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Status codes" 1)' http://$HOST:$PROM_PORT/api/v1/query |
        jq -e '[.data.result[].metric.status] as \$s | (\$s | index(\"200\")) and (\$s | index(\"404\")) and (\$s | index(\"400\"))'"
    check "lookup tiers include a near-cache or Redis hit" \
      bash -c "curl -s --data-urlencode 'query=$(panel_expr "Lookup tiers" 1)' http://$HOST:$PROM_PORT/api/v1/query |
        jq -e 'any(.data.result[].metric; (.tier == \"near\" or .tier == \"redis\") and .outcome == \"hit\")'"
    for record in job:http_requests:rate1m replica:http_requests:rate1m job:http_results_requests:rate1m \
      job:http_request_duration_seconds:p99_1m job:result_lookups:rate1m; do
      check "recording rule $record has data" has_data "$record"
    done
    alert_count=$(grep -c -- '- alert: ' "$PROM_DIR/rules/alerts.yml")
    check "all rules loaded and evaluated without errors ($alert_count alerts as in alerts.yml, health ok)" \
      bash -c "curl -s http://$HOST:$PROM_PORT/api/v1/rules |
        jq -e '[.data.groups[].rules[]] as \$r | ([\$r[] | select(.type == \"alerting\")] | length == $alert_count)
               and all(\$r[]; .health == \"ok\")'"
    check "no alert fires on a healthy stack" bash -c \
      "curl -s http://$HOST:$PROM_PORT/api/v1/alerts | jq -e '[.data.alerts[] | select(.state == \"firing\")] | length == 0'"
    # The alerts a replica's death must raise: api1 stopped, ReplicaDown pending within seconds.
    "$XTASK" stack status >/dev/null 2>&1
    kill -TERM "$(cat "$STACK_DIR/run/api1.pid")" 2>/dev/null
    for _ in $(seq 1 40); do
      curl -s "http://$HOST:$PROM_PORT/api/v1/alerts" | jq -e 'any(.data.alerts[]; .labels.alertname == "ReplicaDown")' >/dev/null && break
      sleep 0.25
    done
    check "a stopped replica raises ReplicaDown (pending or firing)" bash -c \
      "curl -s http://$HOST:$PROM_PORT/api/v1/alerts | jq -e 'any(.data.alerts[]; .labels.alertname == \"ReplicaDown\")'"
  fi
fi

printf 'monitoring_test: %d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
