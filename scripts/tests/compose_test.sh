#!/usr/bin/env bash
# scripts/tests/compose_test.sh - static checks of docker-compose.yml and the Dockerfile, without a
# Docker engine:
#   - `docker-compose config -q` accepts the file (Debian's docker-compose is installed if missing)
#   - every bind-mounted host path inside the repository exists (system paths such as cAdvisor's
#     /sys are listed, not checked)
#   - every service another one waits on with `condition: service_healthy` has a healthcheck, and
#     every long-running service (restart policy other than "no") has one
#   - only nginx, grafana and prometheus publish ports, and only on 127.0.0.1
#   - the api replicas' API_LISTEN / API_ADMIN_LISTEN ports match the upstreams of NGINX rendered
#     with the compose values (nginx/render.sh) and the api job in prometheus/targets/compose/*.json
#   - every environment variable given to an api or seeder service is one the binary reads (named
#     in its --help, or read in its sources, e.g. the log filters): catches typos
#   - the Dockerfile's final image runs as a non-root USER
# Prints one FAILED line per failed check and `compose_test: N passed, M failed` last; exits
# non-zero when a check failed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
LOG_PREFIX=compose_test
# shellcheck source=scripts/lib/common.sh
source "$REPO_DIR/scripts/lib/common.sh"
cd "$REPO_DIR"

COMPOSE_FILE=$REPO_DIR/docker-compose.yml
passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  printf 'compose_test: FAILED: %s\n' "$*" >&2
}

WORK=$(mktemp -d /tmp/compose-test.XXXXXX)
add_cleanup "rm -rf '$WORK'"

# --- tools -------------------------------------------------------------------------------------
COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  apt_install docker-compose
  COMPOSE=(docker-compose)
fi
python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml
log "using ${COMPOSE[*]} ($("${COMPOSE[@]}" version 2>/dev/null | head -n 1))"

# --- 1. the file is valid ----------------------------------------------------------------------
# Interpolation defaults only: variables from the caller's shell must not change what is checked.
compose() {
  env -u POSTGRES_USER -u POSTGRES_PASSWORD -u POSTGRES_DB -u RESULTS_IMAGE -u RESULTS_KEY_PREFIX \
    -u SEEDER_STUDENTS -u NGINX_HOST_PORT -u PROMETHEUS_HOST_PORT -u GRAFANA_HOST_PORT \
    -u GRAFANA_ADMIN_PASSWORD "${COMPOSE[@]}" -f "$COMPOSE_FILE" "$@"
}
if compose config -q 2>"$WORK/config.err"; then
  pass
else
  fail "${COMPOSE[*]} config -q rejects docker-compose.yml: $(tr '\n' ' ' <"$WORK/config.err")"
fi
# The normalized file (anchors merged, variables substituted) is what the checks below read.
compose config >"$WORK/config.yml" 2>/dev/null || : >"$WORK/config.yml"

# --- 2. the binaries' environment variables ----------------------------------------------------
if [[ ! -x target/debug/api || ! -x target/debug/seeder ]]; then
  log "building target/debug/api and target/debug/seeder for their --help"
  cargo build -q -p api -p seeder
fi
: >"$WORK/env-api.txt"
: >"$WORK/env-seeder.txt"
target/debug/api --help >"$WORK/help-api.txt"
{
  target/debug/seeder --help
  for sub in load verify migrate export; do target/debug/seeder "$sub" --help || true; done
} >"$WORK/help-seeder.txt" 2>/dev/null

# --- 3. NGINX rendered with the compose values -------------------------------------------------
# Exactly what the nginx service runs (docker/nginx-start.sh), printed instead of started.
NGINX_RENDERED=$WORK/nginx.conf
if [[ -f nginx/render.sh ]]; then
  if ! NGINX_PROJECT_DIR=$REPO_DIR/nginx bash docker/nginx-start.sh --print \
    >"$NGINX_RENDERED" 2>"$WORK/render.err"; then
    fail "docker/nginx-start.sh --print (nginx/render.sh with the compose values) failed: $(tr '\n' ' ' <"$WORK/render.err")"
    : >"$NGINX_RENDERED"
  fi
else
  : >"$NGINX_RENDERED"
fi

# nginx -t on that configuration when NGINX is installed (it is not installed just for this): the
# compose host names point at 127.0.0.1 and the pid/temp/cache folder at a temporary one, since
# neither exists outside the container.
if [[ -s $NGINX_RENDERED ]] && command -v nginx >/dev/null 2>&1; then
  mkdir -p "$WORK/nginx-dir/tmp"
  sed -E -e 's/\b(api[0-9]+):([0-9]+)/127.0.0.1:\2/' -e "s#/var/cache/nginx-edge#$WORK/nginx-dir#g" \
    -e 's/^user .*;$//' "$NGINX_RENDERED" >"$WORK/nginx-test.conf"
  if nginx -t -q -c "$WORK/nginx-test.conf" >"$WORK/nginx-t.out" 2>&1; then
    pass
  else
    fail "nginx -t on the compose configuration: $(tr '\n' ' ' <"$WORK/nginx-t.out")"
  fi
fi

# --- 4. the checks on the normalized file ------------------------------------------------------
# One line per check: "PASS<TAB>what", "FAIL<TAB>what" or "NOTE<TAB>what" (information only).
python3 - "$REPO_DIR" "$WORK" >"$WORK/results.txt" <<'PYTHON'
import glob
import json
import os
import re
import sys

import yaml

repo, work = sys.argv[1], sys.argv[2]


def out(kind, what):
    print(f"{kind}\t{what}")


def check(ok, what):
    out("PASS" if ok else "FAIL", what)


with open(os.path.join(work, "config.yml")) as f:
    config = yaml.safe_load(f) or {}
services = config.get("services") or {}
check(bool(services), "the normalized compose file has services")

# Services whose image cannot run any healthcheck (FROM scratch: no shell, no HTTP client). They
# must say `healthcheck: disable: true`, and nothing may wait on them being healthy.
NO_HEALTHCHECK = {"nginx-exporter": "FROM scratch image, watched by Prometheus' up metric"}
# Ports published to the host, always on loopback.
PUBLISHED = {"nginx", "grafana", "prometheus"}


def healthcheck_of(name):
    hc = (services.get(name) or {}).get("healthcheck")
    if not hc or hc.get("disable") or not hc.get("test") or hc.get("test") == ["NONE"]:
        return None
    return hc


# --- bind mounts ---
def bind_sources(svc):
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):  # long syntax (docker compose v2 normalizes to it)
            if vol.get("type") == "bind":
                yield vol.get("source", "")
            continue
        source = vol.split(":", 1)[0]
        if source.startswith(("/", ".", "~")):
            yield source


for name, svc in sorted(services.items()):
    for source in bind_sources(svc):
        path = os.path.normpath(os.path.join(repo, source))
        if path == repo or path.startswith(repo + os.sep):
            rel = os.path.relpath(path, repo)
            check(os.path.exists(path), f"{name}: bind-mounted ./{rel} exists")
        else:
            out("NOTE", f"{name}: host system path {source} (not checked here)")

# --- healthchecks ---
waited_on = {}
for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        continue
    for dep, spec in deps.items():
        if (spec or {}).get("condition") == "service_healthy":
            waited_on.setdefault(dep, []).append(name)
for dep, waiters in sorted(waited_on.items()):
    check(
        dep in services and healthcheck_of(dep) is not None,
        f"{dep} has a healthcheck ({', '.join(sorted(waiters))} wait for it to be healthy)",
    )
for name, svc in sorted(services.items()):
    if str(svc.get("restart", "no")) == "no":
        out("NOTE", f"{name}: one-shot (restart: no), no healthcheck needed")
        continue
    if name in NO_HEALTHCHECK:
        hc = svc.get("healthcheck") or {}
        disabled = bool(hc.get("disable")) or hc.get("test") == ["NONE"]
        check(disabled, f"{name}: healthcheck explicitly disabled")
        check(name not in waited_on, f"{name}: nobody waits for it to be healthy")
        out("NOTE", f"{name}: no healthcheck: {NO_HEALTHCHECK[name]}")
        continue
    check(healthcheck_of(name) is not None, f"{name} (long-running) has a healthcheck")

# --- published ports ---
for name, svc in sorted(services.items()):
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            host_ip, published = port.get("host_ip", ""), port.get("published")
        else:
            parts = str(port).split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            published = parts[-2] if len(parts) >= 2 else parts[0]
        check(name in PUBLISHED, f"{name} may publish a port ({port})")
        check(host_ip == "127.0.0.1", f"{name}: published port {published} bound to 127.0.0.1")
for name in sorted(PUBLISHED):
    check(bool((services.get(name) or {}).get("ports")), f"{name} publishes its port")

# --- the api replicas' ports ---
def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return env


def command_of(svc):
    cmd = svc.get("command") or []
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def port_of(addr):
    m = re.search(r":(\d+)$", str(addr or ""))
    return int(m.group(1)) if m else None


api_services = sorted(n for n, s in services.items() if command_of(s)[:1] == ["api"])
seeder_services = sorted(n for n, s in services.items() if command_of(s)[:1] == ["seeder"])
check(len(api_services) >= 1, f"api services found: {', '.join(api_services) or 'none'}")
check(len(seeder_services) == 1, f"seeder service found: {', '.join(seeder_services) or 'none'}")
public_ports = {n: port_of(env_of(services[n]).get("API_LISTEN")) for n in api_services}
admin_ports = {n: port_of(env_of(services[n]).get("API_ADMIN_LISTEN")) for n in api_services}
for n in api_services:
    check(
        str(env_of(services[n]).get("API_LISTEN", "")).startswith("0.0.0.0:"),
        f"{n}: API_LISTEN on every interface ({env_of(services[n]).get('API_LISTEN')})",
    )
    check(
        str(env_of(services[n]).get("API_ADMIN_LISTEN", "")).startswith("0.0.0.0:"),
        f"{n}: API_ADMIN_LISTEN on every interface ({env_of(services[n]).get('API_ADMIN_LISTEN')})",
    )
    hc = " ".join(map(str, (healthcheck_of(n) or {}).get("test") or []))
    check(f":{public_ports[n]}/healthz" in hc, f"{n}: healthcheck probes /healthz on {public_ports[n]}")

# NGINX: the upstream servers of the configuration rendered with the compose values.
rendered = open(os.path.join(work, "nginx.conf")).read()
if not os.path.exists(os.path.join(repo, "nginx", "render.sh")):
    check(False, "nginx/render.sh exists (renders the NGINX configuration for compose)")
else:
    upstreams = {}
    for m in re.finditer(r"^\s*server\s+([A-Za-z0-9_.-]+):(\d+)\b", rendered, re.M):
        upstreams[m.group(1)] = int(m.group(2))
    for n in api_services:
        check(
            upstreams.get(n) == public_ports[n],
            f"nginx upstream {n}:{upstreams.get(n)} matches API_LISTEN port {public_ports[n]}",
        )
    extra = sorted(set(upstreams) - set(api_services))
    check(not extra, f"nginx upstreams are compose api services (extra: {extra or 'none'})")
    check(
        re.search(r"(?:^|[{;\s])listen\s+(?:\S+:)?8080\b", rendered) is not None,
        "rendered nginx listens on 8080 (the published port)",
    )
    check(
        re.search(r"(?:^|[{;\s])listen\s+(?:\S+:)?8089\b", rendered) is not None
        and "stub_status" in rendered,
        "rendered nginx serves stub_status on 8089 (nginx-exporter, healthcheck)",
    )

exporter_cmd = " ".join(command_of(services.get("nginx-exporter") or {}))
check("http://nginx:8089/stub_status" in exporter_cmd, "nginx-exporter scrapes nginx:8089/stub_status")

# Prometheus: the api job's file_sd targets for compose.
target_files = sorted(glob.glob(os.path.join(repo, "prometheus", "targets", "compose", "*.json")))
check(bool(target_files), "prometheus/targets/compose/*.json exist")
api_targets = {}
for path in target_files:
    try:
        groups = json.load(open(path))
    except ValueError as e:
        check(False, f"{os.path.relpath(path, repo)} is valid JSON ({e})")
        continue
    for group in groups:
        labels = group.get("labels") or {}
        is_api = labels.get("job") == "api" or os.path.basename(path).startswith("api")
        for target in group.get("targets") or []:
            host, _, port = target.rpartition(":")
            if is_api and host in api_services:
                api_targets[host] = int(port)
if target_files:
    for n in api_services:
        check(
            api_targets.get(n) == admin_ports[n],
            f"prometheus api target {n}:{api_targets.get(n)} matches API_ADMIN_LISTEN port {admin_ports[n]}",
        )
    for host in sorted(set(api_targets) - set(api_services)):
        check(False, f"prometheus api target {host} is a compose service")

# Every other compose target is a compose service on the port that service listens on.
EXPORTER_PORTS = {
    "nginx-exporter": 9113,
    "redis-exporter": 9121,
    "postgres-exporter": 9187,
    "node-exporter": 9100,
    "cadvisor": 8080,
    "prometheus": 9090,
}
for path in target_files:
    rel = os.path.relpath(path, repo)
    try:
        groups = json.load(open(path))
    except ValueError:
        continue
    for group in groups:
        for target in group.get("targets") or []:
            host, _, port = target.rpartition(":")
            if host in api_services:
                continue
            if host == "host.docker.internal":
                hosts = [str(h) for h in (services.get("prometheus") or {}).get("extra_hosts") or []]
                check(
                    any(h.replace("=", ":").startswith("host.docker.internal:host-gateway") for h in hosts),
                    f"{rel}: target {target} on the host: prometheus maps host.docker.internal (Linux)",
                )
            elif host not in services:
                out("NOTE", f"{rel}: target {target} is not a compose service (yet)")
            elif host in EXPORTER_PORTS:
                check(int(port) == EXPORTER_PORTS[host], f"{rel}: target {target} is {host}'s port {EXPORTER_PORTS[host]}")
            else:
                check(False, f"{rel}: target {target}: {host} is not a metrics endpoint in compose")

# --- Grafana: the provisioned datasource is the compose Prometheus, dashboards where mounted ---
grafana = services.get("grafana") or {}
grafana_targets = {}
for vol in grafana.get("volumes") or []:
    if isinstance(vol, dict):
        grafana_targets[vol.get("target")] = vol.get("source")
    else:
        parts = vol.split(":")
        grafana_targets[parts[1]] = parts[0]
ds_files = glob.glob(os.path.join(repo, "grafana", "provisioning", "datasources", "*.y*ml"))
prom_urls = []
for path in ds_files:
    for ds in (yaml.safe_load(open(path)) or {}).get("datasources") or []:
        if ds.get("type") == "prometheus":
            prom_urls.append(ds.get("url"))
check(bool(prom_urls), "grafana provisions a Prometheus datasource")
for url in prom_urls:
    check(url == "http://prometheus:9090", f"grafana datasource url {url} is the compose prometheus:9090")
for path in glob.glob(os.path.join(repo, "grafana", "provisioning", "dashboards", "*.y*ml")):
    for provider in (yaml.safe_load(open(path)) or {}).get("providers") or []:
        dpath = (provider.get("options") or {}).get("path")
        check(dpath in grafana_targets, f"grafana dashboard provider path {dpath} is a grafana mount")

# --- environment variable names the binaries read ---
def help_env(binary):
    text = open(os.path.join(work, f"help-{binary}.txt")).read()
    return set(re.findall(r"\[env:\s*([A-Z][A-Z0-9_]*)", text))


def read_in_sources(binary, name):
    for path in glob.glob(os.path.join(repo, binary, "src", "**", "*.rs"), recursive=True):
        if f'"{name}"' in open(path).read():
            return True
    return False


for binary, names in (("api", api_services), ("seeder", seeder_services)):
    known = help_env(binary)
    check(len(known) >= 3, f"{binary} --help names its environment variables ({len(known)} found)")
    given = set()
    for n in names:
        given |= set(env_of(services[n]))
    for var in sorted(given):
        ok = var in known or read_in_sources(binary, var)
        check(ok, f"{binary}: environment variable {var} is read by the binary")

# --- the Dockerfile runs as non-root ---
stages, current = {}, None
for raw in open(os.path.join(repo, "Dockerfile")).read().replace("\\\n", " ").splitlines():
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "FROM":
        parts = rest.split()
        parts = [p for p in parts if not p.startswith("--")]
        base = parts[0]
        name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
        current = name
        stages[current] = {"base": base, "user": None}
    elif word == "USER" and current:
        stages[current]["user"] = rest.strip()


def effective_user(stage, seen=()):
    info = stages[stage]
    if info["user"] is not None:
        return info["user"]
    if info["base"] in stages and info["base"] not in seen:
        return effective_user(info["base"], seen + (stage,))
    return None  # the base image's user: root for debian


# Every workspace member's manifest and sources are copied, and every COPY source exists and is
# not excluded by .dockerignore (a crate added later must be added to the Dockerfile too).
import tomllib

members = tomllib.load(open(os.path.join(repo, "Cargo.toml"), "rb"))["workspace"]["members"]
dockerfile = open(os.path.join(repo, "Dockerfile")).read().replace("\\\n", " ")
copies = []
for line in dockerfile.splitlines():
    parts = line.split()
    if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
        copies += [p for p in parts[1:-1] if not p.startswith("--")]
for member in members:
    check(f"{member}/Cargo.toml" in copies, f"Dockerfile copies {member}/Cargo.toml (dependency layer)")
    check(f"{member}/src" in copies, f"Dockerfile copies {member}/src")
ignored = []
if os.path.exists(os.path.join(repo, ".dockerignore")):
    ignored = [l.strip().rstrip("/") for l in open(os.path.join(repo, ".dockerignore")) if l.strip() and not l.startswith("#")]
for src in copies:
    top = src.rstrip("/").split("/")[0]
    check(os.path.exists(os.path.join(repo, src)) and top not in ignored, f"Dockerfile COPY source {src} exists and is not ignored")

final = list(stages)[-1] if stages else None
user = effective_user(final) if final else None
check(
    user is not None and user.split(":")[0] not in ("root", "0"),
    f"Dockerfile: final stage {final} runs as a non-root USER ({user})",
)
for stage in ("runtime", "api", "seeder"):
    if stage in stages:
        u = effective_user(stage)
        check(u is not None and u.split(":")[0] not in ("root", "0"), f"Dockerfile: stage {stage} runs as USER {u}")
PYTHON

# --- 5. Prometheus' configuration as the container sees it -------------------------------------
# The prometheus service's bind mounts rebuilt under a temporary root, then promtool (when
# installed; it is not installed here just for this) checks the config, its rules and target files.
if command -v promtool >/dev/null 2>&1; then
  root=$WORK/prometheus-root
  python3 - "$WORK/config.yml" >"$WORK/prom-mounts.txt" <<'PYTHON'
import sys

import yaml

svc = (yaml.safe_load(open(sys.argv[1])) or {}).get("services", {}).get("prometheus") or {}
for vol in svc.get("volumes") or []:
    if isinstance(vol, dict):
        if vol.get("type") == "bind":
            print(f"{vol['source']}\t{vol['target']}")
    elif vol.startswith("/"):
        source, target = vol.split(":")[:2]
        print(f"{source}\t{target}")
PYTHON
  while IFS=$'\t' read -r source target; do
    mkdir -p "$(dirname "$root$target")"
    ln -s "$source" "$root$target"
  done <"$WORK/prom-mounts.txt"
  if promtool check config "$root/etc/prometheus/prometheus.yml" >"$WORK/promtool.out" 2>&1; then
    pass
  else
    fail "promtool check config on the prometheus service's mounts: $(tr '\n' ' ' <"$WORK/promtool.out")"
  fi
else
  log "note: promtool not installed: the mounted Prometheus configuration is not checked"
fi

while IFS=$'\t' read -r kind what; do
  case $kind in
  PASS) pass ;;
  FAIL) fail "$what" ;;
  NOTE) log "note: $what" ;;
  esac
done <"$WORK/results.txt"

printf 'compose_test: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0)) || exit 1
