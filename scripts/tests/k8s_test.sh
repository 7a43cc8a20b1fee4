#!/usr/bin/env bash
# scripts/tests/k8s_test.sh - renders the Kubernetes manifests (deploy/k8s/base and
# deploy/k8s/overlays/local) with `kubectl kustomize` and checks them against the repository,
# without a cluster:
#   - both render (kustomize's load restrictor is respected: no flag needed), with every kubectl
#     named in K8S_TEST_KUBECTLS (default: kubectl; Debian's kubernetes-client is installed when
#     none is there), and different kubectls render the same objects
#   - scripts/tests/k8s/check_manifests.py on each render: probe paths are routes of the API's
#     router, probe and container ports are the API's listen ports, every environment variable
#     is one the API / seeder reads (their --help) or render.sh reads, images and ports agree
#     with docker-compose.yml, the NGINX and web ConfigMaps equal nginx/ and web/ byte for byte,
#     requests and limits on every container, the Service/HPA/PDB select the API, preStop +
#     drain + shutdown grace fit the termination grace period, PostgreSQL connections fit
#     max_connections, secrets only by name (local-only values in the local overlay)
#   - NGINX's configuration rendered as the pod's init container renders it (the ConfigMap's own
#     render.sh and template, the manifest's NGINX_* values) passes `nginx -t` when NGINX is
#     installed (it is not installed just for this)
#   - the API binary run with the manifest's settings: /healthz 200 and /readyz answered on the
#     public port, /metrics on the admin port, and on SIGTERM /readyz reports draining, then the
#     process exits within API_DRAIN_DELAY_MS + API_SHUTDOWN_GRACE_MS
#   - broken copies of the render (a wrong probe path, a misspelt variable, a changed template
#     byte, a preStop longer than the grace period, ...) are each rejected by the checker
# Prints one FAILED line per failed check and `k8s_test: N passed, M failed` last; exits
# non-zero when a check failed. Ports for the API run: free ones from 27800 up.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
LOG_PREFIX=k8s_test
# shellcheck source=scripts/lib/common.sh
source "$REPO_DIR/scripts/lib/common.sh"
TEST_NAME=k8s_test
# shellcheck source=scripts/tests/lib.sh
source "$SCRIPT_DIR/lib.sh"
cd "$REPO_DIR"

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'k8s_test: FAILED: %s\n' "$*" >&2
}
fatal() {
  fail "$*"
  echo "k8s_test: $passed passed, $failed failed"
  exit 1
}

WORK=$(mktemp -d /tmp/k8s-test.XXXXXX)
add_cleanup "rm -rf '$WORK'"
CHECKER=$SCRIPT_DIR/k8s/check_manifests.py
BASE_PORT=27800

# --- tools -------------------------------------------------------------------------------------
python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml
read -r -a KUBECTLS <<<"${K8S_TEST_KUBECTLS:-kubectl}"
if [[ ${KUBECTLS[*]} == kubectl ]] && ! command -v kubectl >/dev/null 2>&1; then
  # Debian's kubectl 1.20 embeds kustomize v2.0.3: the manifests are written for it too.
  apt_install kubernetes-client
fi
for k in "${KUBECTLS[@]}"; do
  "$k" kustomize --help >/dev/null 2>&1 || fatal "$k has no kustomize subcommand"
  log "using $k: $("$k" version --client 2>/dev/null | tr '\n' ' ' | sed 's/  */ /g')"
done

# --- the binaries' --help (their environment variables) ----------------------------------------
if [[ ! -x target/debug/api || ! -x target/debug/seeder ]]; then
  log "building target/debug/api and target/debug/seeder for their --help"
  cargo build -q -p api -p seeder
fi
target/debug/api --help >"$WORK/help-api.txt"
target/debug/seeder load --help >"$WORK/help-seeder-load.txt"
target/debug/seeder verify --help >"$WORK/help-seeder-verify.txt"

# count_results FILE: the checker's PASS/FAIL lines into the totals (FAILED lines on stderr).
count_results() {
  local kind what
  while IFS=$'\t' read -r kind what; do
    case $kind in
    PASS) pass ;;
    FAIL) fail "$what" ;;
    esac
  done <"$1"
}

# normalized FILE: the render's objects with kustomize's name hashes removed and Secret values
# decoded, sorted (kustomize versions hash and wrap base64 differently; the rest must be equal).
normalized() {
  python3 - "$1" <<'PYTHON'
import json, re, sys
import yaml
import base64
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:  # base64 line wrapping differs between versions: compare the values
    if d.get("kind") == "Secret":
        d["data"] = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
text = "\n".join(sorted(json.dumps(d, sort_keys=True) for d in docs))
print(re.sub(r'((?:nginx-project|web|results-stores|postgres-local|postgres-config|redis-config))-[a-z0-9]{10}"', r'\1"', text))
PYTHON
}

# --- 1. render and check -----------------------------------------------------------------------
for variant in base local; do
  case $variant in
  base) dir=deploy/k8s/base ;;
  local) dir=deploy/k8s/overlays/local ;;
  esac
  for i in "${!KUBECTLS[@]}"; do
    k=${KUBECTLS[$i]}
    out=$WORK/$variant-$i.yaml
    if "$k" kustomize "$dir" >"$out" 2>"$WORK/render.err"; then
      pass
      grep -v '^# Warning:' "$WORK/render.err" >&2 || true
    else
      fail "$k kustomize $dir: $(tr '\n' ' ' <"$WORK/render.err")"
      continue
    fi
    python3 "$CHECKER" "$out" "$REPO_DIR" "$WORK" "$variant" >"$WORK/results.txt" 2>"$WORK/checker.err" || true
    [[ -s $WORK/checker.err ]] && fail "check_manifests.py on $dir ($k) crashed: $(tail -3 "$WORK/checker.err" | tr '\n' ' ')"
    count_results "$WORK/results.txt"
    if ((i > 0)); then
      if cmp -s <(normalized "$WORK/$variant-0.yaml") <(normalized "$out"); then
        pass
      else
        fail "$k renders $dir differently from ${KUBECTLS[0]} (beyond name hashes)"
      fi
    fi
  done
done
LOCAL=$WORK/local-0.yaml
[[ -s $LOCAL ]] || fatal "no render of deploy/k8s/overlays/local to test further"

# --- 2. NGINX's configuration as the init container renders it ----------------------------------
# The ConfigMap's render.sh and template, the init container's NGINX_* values; the Service name
# and in-pod paths point at this machine instead (as compose_test.sh does for compose).
mkdir -p "$WORK/project" "$WORK/web" "$WORK/nginx-dir/tmp"
python3 - "$LOCAL" "$WORK" >"$WORK/nginx-env.txt" <<'PYTHON'
import base64, os, sys
import yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
work = sys.argv[2]
for d in docs:
    name = d["metadata"]["name"]
    if d["kind"] == "ConfigMap" and (name.startswith("nginx-project") or name.startswith("web-")):
        folder = "project" if name.startswith("nginx-project") else "web"
        for key, value in (d.get("data") or {}).items():
            open(os.path.join(work, folder, key), "w").write(value)
    if d["kind"] == "Deployment" and name == "nginx":
        for c in d["spec"]["template"]["spec"]["initContainers"]:
            if c["name"] == "render":
                for e in c.get("env") or []:
                    print(f"{e['name']}={e['value']}")
PYTHON
if [[ -s $WORK/project/render.sh ]] && grep -q '^NGINX_UPSTREAMS=' "$WORK/nginx-env.txt"; then
  mapfile -t nginx_env <"$WORK/nginx-env.txt"
  if env -i PATH="$PATH" "${nginx_env[@]}" sh "$WORK/project/render.sh" >"$WORK/k8s-nginx.conf" 2>"$WORK/render-sh.err"; then
    pass
  else
    fail "render.sh with the manifest's NGINX_* values: $(tr '\n' ' ' <"$WORK/render-sh.err")"
  fi
  check "the rendered upstream has the three api:8081 servers" \
    test "$(grep -c '^ *server api:8081 max_fails' "$WORK/k8s-nginx.conf")" -eq 3
  check "the rendered configuration listens on 8080 (public) and 127.0.0.1:8089 (stub_status)" \
    grep -q 'listen 8080 default_server' "$WORK/k8s-nginx.conf"
  check "the rendered configuration has stub_status on 127.0.0.1:8089 only" \
    grep -q 'listen 127.0.0.1:8089;' "$WORK/k8s-nginx.conf"
  if command -v nginx >/dev/null 2>&1; then
    sed -E -e 's/\bserver api:([0-9]+)/server 127.0.0.1:\1/' -e "s#/var/cache/nginx-edge#$WORK/nginx-dir#g" \
      -e "s#/usr/share/nginx/results-web#$WORK/web#g" -e 's/^user .*;$//' \
      -e "s/listen 8080 /listen 127.0.0.1:$(free_port $BASE_PORT) /" -e "s/127\.0\.0\.1:8089/127.0.0.1:$(free_port $((BASE_PORT + 10)))/" \
      "$WORK/k8s-nginx.conf" >"$WORK/nginx-test.conf"
    if nginx -t -q -c "$WORK/nginx-test.conf" >"$WORK/nginx-t.out" 2>&1; then
      pass
    else
      fail "nginx -t on the configuration the nginx pod renders: $(tr '\n' ' ' <"$WORK/nginx-t.out")"
    fi
  else
    log "note: nginx not installed: the pod's rendered configuration is not checked with nginx -t"
  fi
else
  fail "the local render has no nginx-project ConfigMap or no render init container with NGINX_UPSTREAMS"
fi

# --- 3. the API with the manifest's settings ------------------------------------------------------
python3 - "$LOCAL" >"$WORK/api-env.txt" <<'PYTHON'
import sys
import yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "api":
        spec = d["spec"]["template"]["spec"]
        c = next(c for c in spec["containers"] if c["name"] == "api")
        for e in c.get("env") or []:
            if "value" in e:
                print(f"{e['name']}={e['value']}")
PYTHON
api_value() { sed -n "s/^$1=//p" "$WORK/api-env.txt"; }
drain_ms=$(api_value API_DRAIN_DELAY_MS)
grace_ms=$(api_value API_SHUTDOWN_GRACE_MS)
check "the api container sets API_DRAIN_DELAY_MS and API_SHUTDOWN_GRACE_MS" test -n "$drain_ms" -a -n "$grace_ms"
public=$(free_port $BASE_PORT)
admin=$(free_port $((public + 1)))
closed=$(free_port $((admin + 1))) # nothing listens there: both stores are down
mapfile -t api_env < <(grep -v -e '^API_LISTEN=' -e '^API_ADMIN_LISTEN=' "$WORK/api-env.txt")
env -i PATH="$PATH" "${api_env[@]}" API_LISTEN="127.0.0.1:$public" API_ADMIN_LISTEN="127.0.0.1:$admin" \
  DATABASE_URL="postgres://results:none@127.0.0.1:$closed/results" REDIS_URL="redis://127.0.0.1:$closed" \
  target/debug/api >"$WORK/api.log" 2>&1 &
API_PID=$!
add_cleanup "kill $API_PID 2>/dev/null; wait $API_PID 2>/dev/null"
if wait_for 15 curl -fsS -o /dev/null "http://127.0.0.1:$public/healthz"; then
  pass
  status() { curl -s -o "$WORK/body" -w '%{http_code}' --max-time 2 "$1" || true; }
  check "GET /healthz on the public port (the liveness probe) is 200" test "$(status "http://127.0.0.1:$public/healthz")" = 200
  code=$(status "http://127.0.0.1:$public/readyz")
  check "GET /readyz on the public port (the readiness probe) answers 503 with both stores down (got $code)" test "$code" = 503
  check "/readyz says not draining before SIGTERM" grep -q '"draining":false' "$WORK/body"
  check "GET /metrics on the admin port (the Prometheus annotation) is 200" test "$(status "http://127.0.0.1:$admin/metrics")" = 200
  started=$(date +%s%N)
  kill -TERM "$API_PID"
  sleep 0.3
  status "http://127.0.0.1:$public/readyz" >/dev/null
  check "after SIGTERM, /readyz still answers and says draining (API_DRAIN_DELAY_MS=$drain_ms)" grep -q '"draining":true' "$WORK/body"
  rc=0
  wait "$API_PID" || rc=$?
  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  check "the API exits 0 after SIGTERM (got $rc)" test "$rc" -eq 0
  check "the API held its listener for the drain delay (${elapsed_ms} ms >= $drain_ms ms)" test "$elapsed_ms" -ge "${drain_ms:-0}"
  check "the API stopped within drain + shutdown grace (${elapsed_ms} ms <= $((drain_ms + grace_ms)) ms)" \
    test "$elapsed_ms" -le $((drain_ms + grace_ms))
else
  fail "the API did not serve /healthz on 127.0.0.1:$public within 15 s: $(tail -5 "$WORK/api.log" | tr '\n' ' ')"
fi

# --- 4. broken copies must be rejected ----------------------------------------------------------
# Each mutation breaks one invariant; the checker must exit 1 and name it.
python3 - "$LOCAL" "$WORK" >"$WORK/mutations.txt" <<'PYTHON'
import os, sys
import yaml
src, work = sys.argv[1], sys.argv[2]


def load():
    return [d for d in yaml.safe_load_all(open(src)) if d]


def obj(docs, kind, prefix):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))


def ctr(d, name):
    spec = d["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


def env_set(c, name, value):
    for e in c["env"]:
        if e["name"] == name:
            e["value"] = value
            return
    c["env"].append({"name": name, "value": value})


mutations = {
    "readiness probe on a path the router lacks": (
        lambda docs: ctr(obj(docs, "Deployment", "api"), "api")["readinessProbe"]["httpGet"].update(path="/ready"),
        "readinessProbe path /ready is a route"),
    "a misspelt API variable": (
        lambda docs: env_set(ctr(obj(docs, "Deployment", "api"), "api"), "API_DRAIN_DELAY", "2000"),
        "api: every environment variable is one the binary reads"),
    "one byte of the NGINX template changed": (
        lambda docs: obj(docs, "ConfigMap", "nginx-project")["data"].update(
            {"nginx.conf.template": obj(docs, "ConfigMap", "nginx-project")["data"]["nginx.conf.template"].replace("keepalive 512", "keepalive 513")}),
        "nginx.conf.template = nginx/nginx.conf.template byte for byte"),
    "a stale students' page": (
        lambda docs: obj(docs, "ConfigMap", "web")["data"].update(
            {"app.js": obj(docs, "ConfigMap", "web")["data"]["app.js"] + "\n"}),
        "ConfigMap web app.js = web/app.js"),
    "preStop longer than the grace period allows": (
        lambda docs: ctr(obj(docs, "Deployment", "api"), "api")["lifecycle"]["preStop"]["exec"].update(command=["sleep", "15"]),
        "< grace"),
    "a PDB that selects nothing": (
        lambda docs: obj(docs, "PodDisruptionBudget", "api")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "apis"}),
        "PDB selects the API pods"),
    "a container without limits": (
        lambda docs: ctr(obj(docs, "Deployment", "nginx"), "nginx-exporter")["resources"].pop("limits"),
        "nginx/nginx-exporter: cpu and memory requests and limits set"),
    "a container port that is not API_LISTEN's": (
        lambda docs: ctr(obj(docs, "Deployment", "api"), "api")["ports"][0].update(containerPort=8082),
        "api: container port http 8082"),
    "another NGINX image than compose's": (
        lambda docs: ctr(obj(docs, "Deployment", "nginx"), "nginx").update(image="nginx:1.27"),
        "nginx: image nginx:1.27"),
    "more replicas than PostgreSQL has connections for": (
        lambda docs: obj(docs, "HorizontalPodAutoscaler", "api")["spec"].update(maxReplicas=30),
        "PostgreSQL: maxReplicas 30"),
    "an upstream that is no Service port": (
        lambda docs: env_set(ctr(obj(docs, "Deployment", "nginx"), "render"), "NGINX_UPSTREAMS", "api:9999"),
        "nginx: upstream api:9999 is the api Service's port"),
    "the seeder loading another key prefix": (
        lambda docs: env_set(ctr(obj(docs, "Job", "seeder"), "load"), "SEEDER_KEY_PREFIX", "other"),
        "SEEDER_KEY_PREFIX other = the API's"),
    "liveness probe on the admin port": (
        lambda docs: ctr(obj(docs, "Deployment", "api"), "api")["livenessProbe"]["httpGet"].update(port="admin"),
        "livenessProbe on port admin = the public port"),
}
for i, (what, (mutate, expect)) in enumerate(mutations.items()):
    docs = load()
    mutate(docs)
    path = os.path.join(work, f"broken-{i}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f)
    print(f"{path}\t{what}\t{expect}")
PYTHON
while IFS=$'\t' read -r path what expect; do
  rc=0
  python3 "$CHECKER" "$path" "$REPO_DIR" "$WORK" local >"$WORK/broken.out" 2>&1 || rc=$?
  if ((rc == 1)) && grep -F -- "$expect" "$WORK/broken.out" | grep -q '^FAIL'; then
    pass
  else
    fail "a broken render ($what) is not rejected with '$expect' (exit $rc)"
  fi
done <"$WORK/mutations.txt"
check "13 broken renders were tried" test "$(wc -l <"$WORK/mutations.txt")" -eq 13

echo "k8s_test: $passed passed, $failed failed"
((failed == 0))
