#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests (`kubectl kustomize deploy/k8s/...`) against the
repository: the API's router and listen ports, the binaries' environment variables, the NGINX
template and the students' page byte for byte, docker-compose.yml's images and ports, and the
invariants between the objects (selectors, probes, shutdown timing, PostgreSQL connections).

Usage: check_manifests.py RENDERED.yaml REPO_DIR HELP_DIR {base|local}
  HELP_DIR holds help-api.txt, help-seeder-load.txt and help-seeder-verify.txt (the binaries'
  --help output). Prints one line per check, "PASS<TAB>what" or "FAIL<TAB>what", and exits 1
  when a check failed. scripts/tests/k8s_test.sh runs it on the real renders and on broken
  copies, which it must reject.
"""

import base64
import glob
import math
import os
import re
import sys

import yaml

rendered_path, repo, help_dir, variant = sys.argv[1:5]
failures = 0


def check(ok, what):
    global failures
    if not ok:
        failures += 1
    print(f"{'PASS' if ok else 'FAIL'}\t{what}")


def read_text(*parts):
    with open(os.path.join(repo, *parts), encoding="utf-8") as f:
        return f.read()


# libyaml's loader when PyYAML has it (several times faster on a render).
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
with open(rendered_path, encoding="utf-8") as f:
    docs = [d for d in yaml.load_all(f, Loader=Loader) if d]
compose = yaml.load(read_text("docker-compose.yml"), Loader=Loader)
compose_services = compose.get("services") or {}


def find(kind, name):
    """The object of KIND named NAME, or NAME plus kustomize's 10-character hash suffix."""
    for d in docs:
        n = (d.get("metadata") or {}).get("name", "")
        if d.get("kind") == kind and (n == name or re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", n)):
            return d
    return None


def require(kind, name):
    obj = find(kind, name)
    check(obj is not None, f"the render has {kind} {name}")
    return obj or {}


def pod_spec(obj):
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(obj):
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def containers(obj, init=True):
    spec = pod_spec(obj)
    return (spec.get("initContainers") or [] if init else []) + (spec.get("containers") or [])


def container(obj, name):
    for c in containers(obj):
        if c.get("name") == name:
            return c
    check(False, f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} has a container {name}")
    return {}


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env") or []}


def port_of(addr):
    m = re.search(r":(\d+)$", str(addr or ""))
    return int(m.group(1)) if m else None


def named_port(c, port):
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def cpu_cores(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def compose_default(value):
    """docker-compose.yml's ${VAR:-default} -> default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def subset(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def help_env(name):
    with open(os.path.join(help_dir, f"help-{name}.txt"), encoding="utf-8") as f:
        return set(re.findall(r"\[env:\s*([A-Z][A-Z0-9_]*)", f.read()))


def read_in_sources(crate, var):
    """A variable the binary reads outside clap (the log filters: EnvFilter::try_from_env)."""
    for path in glob.glob(os.path.join(repo, crate, "src", "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            if f'"{var}"' in f.read():
                return True
    return False


def check_env_names(c, known, crate, who):
    unknown = sorted(n for n in env_of(c) if n not in known and not read_in_sources(crate, n))
    check(bool(known), f"{who}: the binary's --help names environment variables ({len(known)})")
    check(not unknown, f"{who}: every environment variable is one the binary reads (unknown: {unknown or 'none'})")


# --- objects ---------------------------------------------------------------------------------
api = require("Deployment", "api")
api_svc = require("Service", "api")
hpa = require("HorizontalPodAutoscaler", "api")
pdb = require("PodDisruptionBudget", "api")
nginx = require("Deployment", "nginx")
nginx_svc = require("Service", "nginx")
seeder = require("Job", "seeder")
nginx_cm = require("ConfigMap", "nginx-project")
web_cm = require("ConfigMap", "web")

# --- every container has requests and limits -------------------------------------------------
for d in docs:
    if d.get("kind") not in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        continue
    for c in containers(d):
        res = c.get("resources") or {}
        ok = all((res.get(k) or {}).get(r) for k in ("requests", "limits") for r in ("cpu", "memory"))
        check(ok, f"{d['kind']} {d['metadata']['name']}/{c.get('name')}: cpu and memory requests and limits set")
        if ok:
            check(
                cpu_cores(res["requests"]["cpu"]) <= cpu_cores(res["limits"]["cpu"]),
                f"{d['kind']} {d['metadata']['name']}/{c.get('name')}: cpu request <= limit",
            )

# --- the API -----------------------------------------------------------------------------------
routes = read_text("api", "src", "routes.rs")
admin_routes = read_text("api", "src", "admin.rs")
api_c = container(api, "api")
api_env = env_of(api_c)
compose_api = compose_services.get("api1") or {}
compose_api_env = {k: compose_default(v) for k, v in (compose_api.get("environment") or {}).items()}
public_port = port_of(api_env.get("API_LISTEN"))
admin_port = port_of(api_env.get("API_ADMIN_LISTEN"))
check(str(api_env.get("API_LISTEN", "")).startswith("0.0.0.0:"), "api: API_LISTEN on every interface of the pod")
check(str(api_env.get("API_ADMIN_LISTEN", "")).startswith("0.0.0.0:"), "api: API_ADMIN_LISTEN on every interface of the pod")
ports = {p.get("name"): p.get("containerPort") for p in api_c.get("ports") or []}
check(ports.get("http") == public_port, f"api: container port http {ports.get('http')} = API_LISTEN's {public_port}")
check(ports.get("admin") == admin_port, f"api: container port admin {ports.get('admin')} = API_ADMIN_LISTEN's {admin_port}")
compose_public = port_of(compose_api_env.get("API_LISTEN"))
compose_admin = port_of(compose_api_env.get("API_ADMIN_LISTEN"))
check(public_port == compose_public, f"api: public port {public_port} = docker-compose.yml's {compose_public}")
check(admin_port == compose_admin, f"api: admin port {admin_port} = docker-compose.yml's {compose_admin}")
compose_image = compose_default(compose_api.get("image"))
check(api_c.get("image") == compose_image, f"api: image {api_c.get('image')} = docker-compose.yml's {compose_image}")
check(api_c.get("command") == ["api"], "api: runs the api binary")
for key, value in sorted(compose_api_env.items()):
    # Ports are checked above; store URLs are the Secret's in Kubernetes (checked below).
    if key in ("API_LISTEN", "API_ADMIN_LISTEN", "DATABASE_URL", "REDIS_URL", "DATABASE_REPLICA_URLS"):
        continue
    check(str(api_env.get(key)) == str(value), f"api: {key}={api_env.get(key)} as in docker-compose.yml ({value})")

replica_urls = next((e for e in api_c.get("env") or [] if e.get("name") == "DATABASE_REPLICA_URLS"), {})
replica_ref = (replica_urls.get("valueFrom") or {}).get("secretKeyRef") or {}
check(
    str(replica_ref.get("name")).startswith("results-stores") and replica_ref.get("optional") is True,
    f"api: DATABASE_REPLICA_URLS from the Secret results-stores, optional (replicas are not required): {replica_ref}",
)

def is_public_route(path):
    """Whether the public router serves `path`: a literal `.route("…")`, or a `pub const …_ROUTE`
    with that value listed in the router's route table (`(NAME, get(…))`)."""
    if f'.route("{path}"' in routes:
        return True
    names = re.findall(r'pub const ([A-Z_]+): &str = "' + re.escape(path) + r'";', routes)
    return any(re.search(r"\(\s*" + name + r"\s*,", routes) for name in names)


for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    get = (api_c.get(probe) or {}).get("httpGet") or {}
    got = get.get("path")
    check(got == path, f"api: {probe} asks {got} (want {path})")
    check(
        got is not None and is_public_route(got),
        f"api: {probe} path {got} is a route of api/src/routes.rs' public router",
    )
    check(
        named_port(api_c, get.get("port")) == public_port,
        f"api: {probe} on port {get.get('port')} = the public port {public_port}",
    )

annotations = ((api.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
check(annotations.get("prometheus.io/scrape") == "true", "api: pods annotated for Prometheus scraping")
check(
    str(annotations.get("prometheus.io/port")) == str(admin_port),
    f"api: prometheus.io/port {annotations.get('prometheus.io/port')} = the admin port {admin_port}",
)
metrics_path = annotations.get("prometheus.io/path", "/metrics")
check(f'.route("{metrics_path}"' in admin_routes, f"api: {metrics_path} is a route of api/src/admin.rs")

check_env_names(api_c, help_env("api"), "api", "api")

# One runtime thread per core the container may use.
threads = api_env.get("API_WORKER_THREADS")
cpu_limit = cpu_cores(((api_c.get("resources") or {}).get("limits") or {}).get("cpu", 0))
check(
    threads is not None and int(threads) == max(1, math.ceil(cpu_limit)),
    f"api: API_WORKER_THREADS={threads} matches its CPU limit ({cpu_limit} cores)",
)

# Shutdown: preStop sleep, then SIGTERM -> drain delay -> shutdown grace, all inside the
# termination grace period.
def prestop_sleep(c):
    cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    if len(cmd) == 2 and cmd[0] == "sleep" and re.fullmatch(r"\d+", str(cmd[1])):
        return int(cmd[1])
    return None


grace = pod_spec(api).get("terminationGracePeriodSeconds")
sleep_s = prestop_sleep(api_c)
drain_ms = int(api_env.get("API_DRAIN_DELAY_MS") or 0)
shutdown_ms = int(api_env.get("API_SHUTDOWN_GRACE_MS") or 10_000)
check(sleep_s is not None, f"api: preStop sleeps a fixed time ({sleep_s} s)")
check(isinstance(grace, int), f"api: terminationGracePeriodSeconds set ({grace})")
if sleep_s is not None and isinstance(grace, int):
    check(sleep_s <= grace, f"api: preStop sleep {sleep_s} s <= grace period {grace} s")
    total = sleep_s + (drain_ms + shutdown_ms) / 1000
    check(
        total < grace,
        f"api: preStop {sleep_s} s + API_DRAIN_DELAY_MS {drain_ms} + API_SHUTDOWN_GRACE_MS {shutdown_ms} = {total:g} s < grace {grace} s",
    )
check(drain_ms > 0, f"api: API_DRAIN_DELAY_MS={drain_ms} > 0 (NGINX's pooled connections are told to close)")
sec = pod_spec(api).get("securityContext") or {}
check(sec.get("runAsNonRoot") is True, "api: pods run as non-root")

# Service, HPA, PDB select the API.
labels = pod_labels(api)
check(subset((api.get("spec") or {}).get("selector", {}).get("matchLabels"), labels), "api: Deployment selector matches its pods")
check(subset((api_svc.get("spec") or {}).get("selector"), labels), "api Service selects the API pods")
svc_ports = (api_svc.get("spec") or {}).get("ports") or []
check(
    any(named_port(api_c, p.get("targetPort")) == public_port for p in svc_ports),
    "api Service targets the public port",
)
check(
    not any(named_port(api_c, p.get("targetPort")) == admin_port for p in svc_ports),
    "api Service does not expose the admin port",
)
target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
check(
    target.get("kind") == "Deployment" and target.get("name") == api.get("metadata", {}).get("name"),
    f"HPA scales Deployment {target.get('name')}",
)
hpa_spec = hpa.get("spec") or {}
min_r, max_r = hpa_spec.get("minReplicas", 1), hpa_spec.get("maxReplicas", 0)
check(1 <= min_r <= max_r, f"HPA replicas {min_r}..{max_r}")
check(
    any(((m.get("resource") or {}).get("name") == "cpu") for m in hpa_spec.get("metrics") or []),
    "HPA scales on CPU",
)
check(subset(((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels"), labels), "PDB selects the API pods")
max_unavailable = (pdb.get("spec") or {}).get("maxUnavailable")
min_available = (pdb.get("spec") or {}).get("minAvailable")
check(
    (isinstance(max_unavailable, int) and 0 < max_unavailable < min_r)
    or (isinstance(min_available, int) and 0 < min_available < min_r),
    f"PDB leaves replicas up and lets drains proceed (maxUnavailable {max_unavailable}, minAvailable {min_available}, minReplicas {min_r})",
)

# PostgreSQL connections: every replica's pool plus the seeder's under max_connections.
pg_conf = read_text("postgres", "postgresql.conf")
m = re.search(r"^\s*max_connections\s*=\s*(\d+)", pg_conf, re.M)
max_connections = int(m.group(1)) if m else 100
m = re.search(r"^\s*superuser_reserved_connections\s*=\s*(\d+)", pg_conf, re.M)
reserved = int(m.group(1)) if m else 3
pool = int(api_env.get("API_PG_POOL_SIZE") or 8)

# --- the seeder Job ------------------------------------------------------------------------------
load = container(seeder, "load")
verify = container(seeder, "verify")
check(load.get("command") == ["seeder", "load"], f"seeder: first `seeder load` (got {load.get('command')})")
check(verify.get("command") == ["seeder", "verify"], f"seeder: then `seeder verify` (got {verify.get('command')})")
check(
    load in (pod_spec(seeder).get("initContainers") or []),
    "seeder: load is an init container (verify runs after it)",
)
check(pod_spec(seeder).get("restartPolicy") in ("OnFailure", "Never"), "seeder: a Job's restartPolicy")
check_env_names(load, help_env("seeder-load"), "seeder", "seeder load")
check_env_names(verify, help_env("seeder-verify"), "seeder", "seeder verify")
for c in (load, verify):
    prefix = env_of(c).get("SEEDER_KEY_PREFIX", "results")
    check(
        prefix == api_env.get("API_KEY_PREFIX", "results"),
        f"seeder {c.get('name')}: SEEDER_KEY_PREFIX {prefix} = the API's API_KEY_PREFIX",
    )
seeder_conns = int(env_of(load).get("SEEDER_PG_CONNECTIONS") or 2)
worst = max_r * pool + seeder_conns
check(
    worst <= max_connections - reserved,
    f"PostgreSQL: maxReplicas {max_r} x API_PG_POOL_SIZE {pool} + seeder {seeder_conns} = {worst} <= max_connections {max_connections} - {reserved} reserved",
)
compose_seeder_env = {k: compose_default(v) for k, v in (compose_services.get("seeder", {}).get("environment") or {}).items()}
for key in ("SEEDER_STUDENTS", "SEEDER_KEY_PREFIX"):
    check(
        str(env_of(load).get(key)) == str(compose_seeder_env.get(key)),
        f"seeder: {key}={env_of(load).get(key)} as in docker-compose.yml ({compose_seeder_env.get(key)})",
    )

# Secrets: referenced by name, with the keys the binaries read.
for obj in (api, seeder):
    for c in containers(obj):
        for e in c.get("env") or []:
            if e["name"] in ("DATABASE_URL", "REDIS_URL"):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                check(
                    re.fullmatch(r"results-stores(-[a-z0-9]{10})?", ref.get("name", "")) is not None
                    and ref.get("key") == e["name"],
                    f"{obj['kind']} {obj['metadata']['name']}/{c['name']}: {e['name']} from Secret results-stores",
                )

# --- NGINX -----------------------------------------------------------------------------------------
def cm_data(cm, key):
    data = cm.get("data") or {}
    if key in data:
        return data[key].encode("utf-8")
    if key in (cm.get("binaryData") or {}):
        return base64.b64decode(cm["binaryData"][key])
    return None


def file_bytes(*parts):
    with open(os.path.join(repo, *parts), "rb") as f:
        return f.read()


for name in ("nginx.conf.template", "render.sh"):
    check(cm_data(nginx_cm, name) == file_bytes("nginx", name), f"ConfigMap nginx-project {name} = nginx/{name} byte for byte")
web_files = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(repo, "web", "*")) if os.path.basename(p) != "kustomization.yaml"
)
check(bool(web_files), f"web/ has files ({', '.join(web_files)})")
for name in web_files:
    check(cm_data(web_cm, name) == file_bytes("web", name), f"ConfigMap web {name} = web/{name} byte for byte")
extra = sorted(set((web_cm.get("data") or {}) | (web_cm.get("binaryData") or {})) - set(web_files))
check(not extra, f"ConfigMap web holds only web/'s files (extra: {extra or 'none'})")

render = container(nginx, "render")
edge = container(nginx, "nginx")
exporter = container(nginx, "nginx-exporter")
render_env = env_of(render)
render_sh = read_text("nginx", "render.sh")
render_vars = set(re.findall(r"^#\s+(NGINX_[A-Z_]+)\s", render_sh, re.M))
check(len(render_vars) >= 5, f"nginx/render.sh documents its variables ({len(render_vars)})")
unknown = sorted(set(render_env) - render_vars)
check(not unknown, f"nginx render: every NGINX_* variable is one render.sh reads (unknown: {unknown or 'none'})")
compose_nginx = compose_services.get("nginx") or {}
check(render.get("image") == compose_nginx.get("image"), f"nginx render: image {render.get('image')} = docker-compose.yml's")
check(edge.get("image") == compose_nginx.get("image"), f"nginx: image {edge.get('image')} = docker-compose.yml's {compose_nginx.get('image')}")
compose_exporter = compose_services.get("nginx-exporter") or {}
check(
    exporter.get("image") == compose_exporter.get("image"),
    f"nginx-exporter: image {exporter.get('image')} = docker-compose.yml's {compose_exporter.get('image')}",
)


def mounts(c):
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}


volumes = {v["name"]: v for v in pod_spec(nginx).get("volumes") or []}


def volume_configmap(c, path):
    vol = volumes.get(mounts(c).get(path)) or {}
    return (vol.get("configMap") or {}).get("name")


script = " ".join(render.get("command") or [])
m = re.search(r"sh (\S+)/render\.sh\s*>\s*(\S+)", script)
check(m is not None, "nginx render: runs render.sh into a file")
if m:
    project_dir, rendered_conf = m.group(1), m.group(2)
    check(
        volume_configmap(render, project_dir) == nginx_cm.get("metadata", {}).get("name"),
        f"nginx render: {project_dir} is the nginx-project ConfigMap",
    )
    conf_dir = os.path.dirname(rendered_conf)
    cmd = edge.get("command") or []
    check(
        "-c" in cmd and cmd[cmd.index("-c") + 1] == rendered_conf,
        f"nginx: runs on the rendered {rendered_conf}",
    )
    check(
        mounts(render).get(conf_dir) is not None and mounts(render).get(conf_dir) == mounts(edge).get(conf_dir),
        f"nginx: {conf_dir} is one volume shared by the render step and NGINX",
    )
web_root = render_env.get("NGINX_WEB_ROOT")
check(
    volume_configmap(render, web_root) == web_cm.get("metadata", {}).get("name")
    and volume_configmap(edge, web_root) == web_cm.get("metadata", {}).get("name"),
    f"nginx: NGINX_WEB_ROOT {web_root} is the web ConfigMap",
)
nginx_dir = render_env.get("NGINX_DIR")
check(
    nginx_dir is not None and mounts(render).get(nginx_dir) and mounts(render).get(nginx_dir) == mounts(edge).get(nginx_dir),
    f"nginx: NGINX_DIR {nginx_dir} is one volume shared by the render step and NGINX",
)
listen = port_of(":" + str(render_env.get("NGINX_LISTEN", "")).split(":")[-1])
edge_ports = {p.get("name"): p.get("containerPort") for p in edge.get("ports") or []}
check(edge_ports.get("http") == listen, f"nginx: container port http {edge_ports.get('http')} = NGINX_LISTEN {listen}")
compose_ports = [str(p).rsplit(":", 1)[-1] for p in compose_nginx.get("ports") or []]
check(str(listen) in compose_ports, f"nginx: public port {listen} = docker-compose.yml's container port {compose_ports}")
status = render_env.get("NGINX_STATUS_LISTEN", "")
check(status.startswith("127.0.0.1:"), f"nginx: stub_status only inside the pod ({status})")
scrape = " ".join(exporter.get("args") or [])
check(f"127.0.0.1:{port_of(status)}/stub_status" in scrape, f"nginx-exporter scrapes the stub_status listener ({scrape})")
nginx_ann = ((nginx.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
exporter_ports = [p.get("containerPort") for p in exporter.get("ports") or []]
check(
    nginx_ann.get("prometheus.io/scrape") == "true" and int(nginx_ann.get("prometheus.io/port", 0)) in exporter_ports,
    f"nginx: Prometheus annotation port {nginx_ann.get('prometheus.io/port')} is the exporter's {exporter_ports}",
)
for probe in ("readinessProbe", "livenessProbe"):
    get = (edge.get(probe) or {}).get("httpGet") or {}
    check(
        named_port(edge, get.get("port")) == listen and get.get("path") == "/healthz",
        f"nginx: {probe} asks NGINX's own /healthz on {listen}",
    )
check("location = /healthz" in read_text("nginx", "nginx.conf.template"), "nginx: the template answers /healthz itself")
upstreams = str(render_env.get("NGINX_UPSTREAMS", "")).replace(",", " ").split()
check(bool(upstreams), f"nginx: NGINX_UPSTREAMS set ({upstreams})")
for up in sorted(set(upstreams)):
    host, _, port = up.rpartition(":")
    svc = find("Service", host)
    svc_port = next((p for p in ((svc or {}).get("spec") or {}).get("ports") or [] if str(p.get("port")) == port), None)
    check(svc is api_svc and svc_port is not None, f"nginx: upstream {up} is the api Service's port")
    if svc_port:
        check(
            named_port(api_c, svc_port.get("targetPort")) == public_port,
            f"nginx: upstream {up} reaches the API's public port {public_port}",
        )
check(subset((nginx_svc.get("spec") or {}).get("selector"), pod_labels(nginx)), "nginx Service selects the NGINX pods")
check(
    any(named_port(edge, p.get("targetPort")) == listen for p in (nginx_svc.get("spec") or {}).get("ports") or []),
    "nginx Service targets NGINX_LISTEN",
)
sleep_n, grace_n = prestop_sleep(edge), pod_spec(nginx).get("terminationGracePeriodSeconds")
check(
    sleep_n is not None and isinstance(grace_n, int) and sleep_n < grace_n,
    f"nginx: preStop sleep {sleep_n} s < grace period {grace_n} s",
)

# --- per variant ---------------------------------------------------------------------------------
secrets = [d for d in docs if d.get("kind") == "Secret"]
if variant == "base":
    check(not secrets, f"base: no Secret committed (found: {[s['metadata']['name'] for s in secrets] or 'none'})")
    check(
        not any((d.get("metadata") or {}).get("namespace") for d in docs),
        "base: no namespace fixed (kubectl -n or an overlay chooses)",
    )
    check(find("StatefulSet", "postgres") is None and find("StatefulSet", "redis") is None, "base: no in-cluster stores")
else:
    stores = require("Secret", "results-stores")
    values = {k: base64.b64decode(v).decode() for k, v in (stores.get("data") or {}).items()}
    check(set(values) == {"DATABASE_URL", "REDIS_URL"}, f"local: Secret results-stores has DATABASE_URL and REDIS_URL ({sorted(values)})")
    pg_secret = require("Secret", "postgres-local")
    pg_values = {k: base64.b64decode(v).decode() for k, v in (pg_secret.get("data") or {}).items()}
    compose_pg = {k: compose_default(v) for k, v in (compose_services.get("postgres", {}).get("environment") or {}).items()}
    check(
        pg_values == {k: compose_pg.get(k) for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")},
        "local: PostgreSQL's role, password and database are compose's local-only defaults",
    )
    check("local-only" in pg_values.get("POSTGRES_PASSWORD", ""), "local: the committed password says local-only")
    m = re.fullmatch(r"postgres(?:ql)?://([^:]+):([^@]+)@([^:/]+):(\d+)/(\w+)", values.get("DATABASE_URL", ""))
    check(m is not None, "local: DATABASE_URL is postgres://user:password@host:port/db")
    pg = require("StatefulSet", "postgres")
    redis = require("StatefulSet", "redis")
    pg_c, redis_c = container(pg, "postgres"), container(redis, "redis")
    if m:
        user, password, host, port, db = m.groups()
        check(
            (user, password, db) == (pg_values.get("POSTGRES_USER"), pg_values.get("POSTGRES_PASSWORD"), pg_values.get("POSTGRES_DB")),
            "local: DATABASE_URL's user, password and database are the in-cluster PostgreSQL's",
        )
        svc = find("Service", host)
        sp = next((p for p in ((svc or {}).get("spec") or {}).get("ports") or [] if str(p.get("port")) == port), None)
        check(
            svc is not None and subset(svc["spec"].get("selector"), pod_labels(pg)) and sp is not None
            and named_port(pg_c, sp.get("targetPort")) == 5432,
            f"local: DATABASE_URL's {host}:{port} is the postgres StatefulSet's Service",
        )
    m = re.fullmatch(r"redis://([^:/]+):(\d+)/?", values.get("REDIS_URL", ""))
    check(m is not None, "local: REDIS_URL is redis://host:port")
    if m:
        host, port = m.groups()
        svc = find("Service", host)
        sp = next((p for p in ((svc or {}).get("spec") or {}).get("ports") or [] if str(p.get("port")) == port), None)
        check(
            svc is not None and subset(svc["spec"].get("selector"), pod_labels(redis)) and sp is not None
            and named_port(redis_c, sp.get("targetPort")) == 6379,
            f"local: REDIS_URL's {host}:{port} is the redis StatefulSet's Service",
        )
    for c, svc_name in ((pg_c, "postgres"), (redis_c, "redis")):
        want = (compose_services.get(svc_name) or {}).get("image")
        check(c.get("image") == want, f"local: {svc_name} image {c.get('image')} = docker-compose.yml's {want}")
    redis_args = redis_c.get("args") or []
    compose_redis_cmd = (compose_services.get("redis") or {}).get("command") or []
    check(redis_args == compose_redis_cmd, "local: redis runs compose's command line")
    pg_args = pg_c.get("args") or []
    compose_pg_cmd = (compose_services.get("postgres") or {}).get("command") or []
    check(pg_args == compose_pg_cmd, "local: postgres runs compose's command line")
    for cm_name, folder, file_name in (("redis-config", "redis", "redis.conf"), ("postgres-config", "postgres", "postgresql.conf")):
        cm = require("ConfigMap", cm_name)
        check(cm_data(cm, file_name) == file_bytes(folder, file_name), f"local: ConfigMap {cm_name} = {folder}/{file_name} byte for byte")
    namespaces = {(d.get("metadata") or {}).get("namespace") for d in docs if d.get("kind") != "Namespace"}
    ns = find("Namespace", "results")
    check(
        ns is not None and namespaces == {ns["metadata"]["name"]},
        f"local: everything in the namespace it creates ({sorted(str(n) for n in namespaces)})",
    )

sys.exit(1 if failures else 0)
