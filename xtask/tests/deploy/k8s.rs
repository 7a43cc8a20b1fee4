//! The Kubernetes manifests (deploy/k8s/base and deploy/k8s/overlays/local) rendered with
//! `kubectl kustomize` and checked against the repository, without a cluster: probes against the
//! API's router, variables against the binaries' `--help`, images and ports against
//! docker-compose.yml, the ConfigMaps byte for byte against nginx/ and web/, shutdown timing,
//! selectors, requests and limits, PostgreSQL connections. Then NGINX's configuration as the pod
//! renders it, the API run with the manifest's settings, and broken renders the checks must reject.
//!
//! `K8S_TEST_KUBECTLS` (space-separated, default `kubectl`) renders with several kubectls and
//! requires the same objects from each; Debian's kubernetes-client (kubectl 1.20, kustomize
//! v2.0.3, which the manifests are written for) is installed when no kubectl is there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::compose::{localized_nginx_conf, raw_env, raw_services};
use crate::support::{
    Checks, bytes, compose_default, cpu_cores, fields, help, help_env, items, optional_tool, port_of, read,
    read_in_sources, repo, run, text, tool, yaml_docs,
};

/// The renders checked: (variant, kustomization folder).
const VARIANTS: [(Variant, &str); 2] =
    [(Variant::Base, "deploy/k8s/base"), (Variant::Local, "deploy/k8s/overlays/local")];

/// PostgreSQL's own defaults, used when postgres/postgresql.conf does not set them.
const PG_DEFAULT_MAX_CONNECTIONS: i64 = 100;
const PG_DEFAULT_RESERVED_CONNECTIONS: i64 = 3;

/// The generated objects whose names kustomize suffixes with a content hash.
const HASHED: &[&str] =
    &["nginx-project", "web", "results-stores", "postgres-local", "postgres-config", "redis-config"];

/// Which render: the base (stores outside the cluster) or the local overlay (in-cluster stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// deploy/k8s/base.
    Base,
    /// deploy/k8s/overlays/local.
    Local,
}

/// The kubectls to render with: `K8S_TEST_KUBECTLS` or `kubectl`, installed when missing.
fn kubectls() -> &'static [String] {
    static KUBECTLS: OnceLock<Vec<String>> = OnceLock::new();
    KUBECTLS.get_or_init(|| {
        let named = std::env::var("K8S_TEST_KUBECTLS").unwrap_or_default();
        let list: Vec<String> = named.split_whitespace().map(str::to_owned).collect();
        if list.is_empty() {
            return vec![tool("kubectl", "kubernetes-client").display().to_string()];
        }
        list
    })
}

/// One `kubectl kustomize` run: the objects, or the error.
struct Render {
    kubectl: String,
    variant: Variant,
    folder: &'static str,
    docs: Result<Vec<Value>, String>,
}

/// Every variant rendered with every kubectl, once per test run.
fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let mut out = Vec::new();
        for (variant, folder) in VARIANTS {
            for kubectl in kubectls() {
                let (ok, stdout, stderr) = run(Command::new(kubectl).arg("kustomize").arg(repo().join(folder)));
                // kustomize v5 warns about `bases:` (kept for v2.0.3): show, do not fail.
                let warnings: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("# Warning:")).collect();
                if !warnings.is_empty() {
                    eprintln!("{kubectl} kustomize {folder}: {}", warnings.join("\n"));
                }
                let docs = if ok { yaml_docs(&stdout) } else { Err(stderr) };
                out.push(Render { kubectl: kubectl.clone(), variant, folder, docs });
            }
        }
        out
    })
}

/// The first kubectl's render of `variant`; panics when it failed (the render test says why).
fn render(variant: Variant) -> &'static [Value] {
    let r = renders().iter().find(|r| r.variant == variant).expect("a render per variant");
    r.docs.as_deref().unwrap_or_else(|e| panic!("{} kustomize {} failed: {e}", r.kubectl, r.folder))
}

/// What the checks compare the render with, read from the repository once.
struct Facts {
    api_help: String,
    seeder_load_help: String,
    seeder_verify_help: String,
    compose: Map<String, Value>,
}

fn facts() -> &'static Facts {
    static FACTS: OnceLock<Facts> = OnceLock::new();
    FACTS.get_or_init(|| Facts {
        api_help: help("api", &[]),
        seeder_load_help: help("seeder", &["load"]),
        seeder_verify_help: help("seeder", &["verify"]),
        compose: raw_services(),
    })
}

/// The default clap prints for variable `var` (`[env: VAR=] [default: X]`), None without one.
fn help_default(help: &str, var: &str) -> Option<String> {
    let after = help.split_once(&format!("[env: {var}=")).or_else(|| help.split_once(&format!("[env: {var}]")))?.1;
    let block = after.split("[env:").next().unwrap_or(after);
    let block = block.split("\n\n").next().unwrap_or(block);
    let default = block.split_once("[default: ")?.1;
    Some(default.split_once(']')?.0.to_owned())
}

// --- reading the objects ----------------------------------------------------------------------

/// The object of `kind` named `name`, or `name` plus kustomize's 10-character hash suffix.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| text(&d["kind"]) == kind && is_named(&text(&d["metadata"]["name"]), name))
}

fn is_named(actual: &str, name: &str) -> bool {
    actual == name
        || actual
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|hash| hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

fn require<'a>(c: &mut Checks, docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let obj = find(docs, kind, name);
    c.check(obj.is_some(), format!("the render has {kind} {name}"));
    obj.unwrap_or(&Value::Null)
}

fn pod_spec(obj: &Value) -> &Value {
    &obj["spec"]["template"]["spec"]
}

fn pod_labels(obj: &Value) -> &Value {
    &obj["spec"]["template"]["metadata"]["labels"]
}

/// Init containers, then containers.
fn containers(obj: &Value) -> Vec<&Value> {
    let spec = pod_spec(obj);
    items(&spec["initContainers"]).iter().chain(items(&spec["containers"])).collect()
}

fn container<'a>(c: &mut Checks, obj: &'a Value, name: &str) -> &'a Value {
    let found = containers(obj).into_iter().find(|ctr| text(&ctr["name"]) == name);
    if found.is_none() {
        c.check(false, format!("{} {} has a container {name}", text(&obj["kind"]), text(&obj["metadata"]["name"])));
    }
    found.unwrap_or(&Value::Null)
}

/// A container's variables: their literal value, None for `valueFrom`.
fn env_of(ctr: &Value) -> BTreeMap<String, Option<String>> {
    items(&ctr["env"]).iter().map(|e| (text(&e["name"]), e.get("value").map(text))).collect()
}

/// A variable's literal value ("" when unset or not literal).
fn value(env: &BTreeMap<String, Option<String>>, name: &str) -> String {
    env.get(name).cloned().flatten().unwrap_or_default()
}

fn port(addr: &str) -> Option<i64> {
    port_of(addr).map(i64::from)
}

/// A probe's or Service's port (a number or a container port's name) as a number.
fn named_port(ctr: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    let name = port.as_str()?;
    items(&ctr["ports"]).iter().find(|p| text(&p["name"]) == name).and_then(|p| p["containerPort"].as_i64())
}

/// A label selector that is set and matches `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// An optional value for messages: the value, or `none`.
fn show<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// The seconds of a `preStop: exec: ["sleep", "N"]`.
fn prestop_sleep(ctr: &Value) -> Option<i64> {
    let cmd: Vec<String> = items(&ctr["lifecycle"]["preStop"]["exec"]["command"]).iter().map(text).collect();
    match cmd.as_slice() {
        [sleep, secs] if sleep == "sleep" && !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()) => {
            secs.parse().ok()
        }
        _ => None,
    }
}

/// A ConfigMap's file `key` as bytes (`data` or base64 `binaryData`).
fn cm_data(cm: &Value, key: &str) -> Option<Vec<u8>> {
    if let Some(s) = cm["data"][key].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD.decode(cm["binaryData"][key].as_str()?).ok()
}

/// A Secret's values, decoded.
fn secret_values(secret: &Value) -> BTreeMap<String, String> {
    fields(&secret["data"])
        .map(|(k, v)| {
            let raw =
                base64::engine::general_purpose::STANDARD.decode(text(v).replace(['\n', ' '], "")).unwrap_or_default();
            (k.clone(), String::from_utf8_lossy(&raw).into_owned())
        })
        .collect()
}

/// The files of a repository folder a ConfigMap is generated from (all but its kustomization).
fn folder_files(folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join(folder))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    names.sort();
    names
}

/// The Service named `host` and its port `port` (both must exist).
fn service_port<'a>(docs: &'a [Value], host: &str, port: &str) -> Option<(&'a Value, &'a Value)> {
    let svc = find(docs, "Service", host)?;
    let p = items(&svc["spec"]["ports"]).iter().find(|p| text(&p["port"]) == port)?;
    Some((svc, p))
}

/// The first compose service running `binary` (its command's first word).
fn compose_service<'a>(compose: &'a Map<String, Value>, binary: &str) -> &'a Value {
    compose.values().find(|s| items(&s["command"]).first().is_some_and(|c| text(c) == binary)).unwrap_or(&Value::Null)
}

fn compose_env(compose: &Map<String, Value>, service: &str) -> BTreeMap<String, String> {
    raw_env(compose.get(service).unwrap_or(&Value::Null))
}

fn check_env_names(c: &mut Checks, ctr: &Value, known: &BTreeSet<String>, krate: &str, who: &str) {
    let unknown: Vec<String> =
        env_of(ctr).into_keys().filter(|n| !known.contains(n) && !read_in_sources(krate, n)).collect();
    c.check(!known.is_empty(), format!("{who}: the binary's --help names environment variables ({})", known.len()));
    c.check(
        unknown.is_empty(),
        format!("{who}: every environment variable is one the binary reads (unknown: {unknown:?})"),
    );
}

/// Whether the API's public router (api/src/routes.rs) serves `path`: a literal
/// `.route("...")`, or a `pub const NAME: &str = "..."` listed in the route table as `(NAME, ...)`.
fn is_public_route(routes: &str, path: &str) -> bool {
    if routes.contains(&format!(".route(\"{path}\"")) {
        return true;
    }
    let compact: String = routes.chars().filter(|c| !c.is_whitespace()).collect();
    routes.lines().filter_map(|l| l.trim_start().strip_prefix("pub const ")).any(|decl| {
        decl.split_once(": &str = ").is_some_and(|(name, value)| {
            value.trim_end() == format!("\"{path}\";") && compact.contains(&format!("({name},"))
        })
    })
}

// --- the checks -------------------------------------------------------------------------------

/// Every check of a render against the repository. Each failure names what broke; the broken
/// renders below must each be rejected by one of them.
fn check_manifests(docs: &[Value], variant: Variant) -> Checks {
    let mut c = Checks::new(match variant {
        Variant::Base => "k8s base",
        Variant::Local => "k8s local",
    });
    check_resources(&mut c, docs);
    let api = check_api(&mut c, docs);
    check_seeder(&mut c, docs, &api);
    check_secret_refs(&mut c, docs);
    check_nginx(&mut c, docs, &api);
    check_hardening(&mut c, docs);
    check_network_policies(&mut c, docs);
    match variant {
        Variant::Base => check_base(&mut c, docs),
        Variant::Local => check_local(&mut c, docs),
    }
    c
}

/// Every workload (the Deployments, the Job, the local overlay's stores): no service-account token, pods
/// that cannot run as root, under the runtime's seccomp profile, and containers without
/// privilege escalation, capabilities or a writable root filesystem.
fn check_hardening(c: &mut Checks, docs: &[Value]) {
    for obj in docs.iter().filter(|d| matches!(text(&d["kind"]).as_str(), "Deployment" | "Job" | "StatefulSet")) {
        let name = text(&obj["metadata"]["name"]);
        let pod = pod_spec(obj);
        c.check(
            pod["automountServiceAccountToken"] == Value::Bool(false),
            format!("{name}: no service-account token (automountServiceAccountToken: false)"),
        );
        for ctr in containers(obj) {
            let who = format!("{name}/{}", text(&ctr["name"]));
            let sc = &ctr["securityContext"];
            let either = |field: &str| if sc[field].is_null() { &pod["securityContext"][field] } else { &sc[field] };
            c.check(
                either("runAsNonRoot") == &Value::Bool(true) && either("runAsUser").as_i64() != Some(0),
                format!("{who}: runs as non-root (runAsNonRoot, a non-zero runAsUser)"),
            );
            c.check(
                text(&either("seccompProfile")["type"]) == "RuntimeDefault",
                format!("{who}: seccompProfile RuntimeDefault"),
            );
            c.check(
                sc["allowPrivilegeEscalation"] == Value::Bool(false),
                format!("{who}: allowPrivilegeEscalation false"),
            );
            c.check(sc["readOnlyRootFilesystem"] == Value::Bool(true), format!("{who}: readOnlyRootFilesystem true"));
            c.check(
                items(&sc["capabilities"]["drop"]).iter().any(|cap| text(cap) == "ALL"),
                format!("{who}: capabilities drop ALL"),
            );
        }
    }
}

/// A NetworkPolicy rule's ports, as container port numbers of `ctr` (names resolved).
fn rule_ports(ctr: &Value, rule: &Value) -> Vec<Option<i64>> {
    items(&rule["ports"]).iter().map(|p| named_port(ctr, &p["port"])).collect()
}

/// Every workload is selected by a NetworkPolicy restricting its ingress; the API's public port
/// is reachable from the NGINX pods only and its admin port from the monitoring namespace only
/// (never from the NGINX pods, never from anywhere).
fn check_network_policies(c: &mut Checks, docs: &[Value]) {
    let policies: Vec<&Value> = docs.iter().filter(|d| text(&d["kind"]) == "NetworkPolicy").collect();
    for obj in docs.iter().filter(|d| matches!(text(&d["kind"]).as_str(), "Deployment" | "Job")) {
        let name = text(&obj["metadata"]["name"]);
        let selecting: Vec<&&Value> = policies
            .iter()
            .filter(|p| {
                selects(&p["spec"]["podSelector"]["matchLabels"], pod_labels(obj))
                    && items(&p["spec"]["policyTypes"]).iter().any(|t| text(t) == "Ingress")
            })
            .collect();
        c.check(!selecting.is_empty(), format!("{name}: a NetworkPolicy restricts its ingress"));
    }
    let (Some(api), Some(nginx)) = (find(docs, "Deployment", "api"), find(docs, "Deployment", "nginx")) else {
        return;
    };
    let Some(ctr) = containers(api).into_iter().find(|ctr| text(&ctr["name"]) == "api") else { return };
    let port_named = |n: &str| named_port(ctr, &Value::String(n.to_owned()));
    let (public, admin) = (port_named("http"), port_named("admin"));
    c.check(public.is_some() && admin.is_some(), "api: container ports http and admin");
    let rules: Vec<&Value> = policies
        .iter()
        .filter(|p| selects(&p["spec"]["podSelector"]["matchLabels"], pod_labels(api)))
        .flat_map(|p| items(&p["spec"]["ingress"]))
        .collect();
    let admits = |port: Option<i64>| -> Vec<&Value> {
        rules.iter().copied().filter(|r| items(&r["ports"]).is_empty() || rule_ports(ctr, r).contains(&port)).collect()
    };
    let from_nginx_only = |r: &Value| {
        let from = items(&r["from"]);
        !from.is_empty()
            && from.iter().all(|f| {
                f["namespaceSelector"].is_null() && selects(&f["podSelector"]["matchLabels"], pod_labels(nginx))
            })
    };
    let from_monitoring_only = |r: &Value| {
        let from = items(&r["from"]);
        !from.is_empty()
            && from.iter().all(|f| {
                f["podSelector"].is_null()
                    && text(&f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]) == "monitoring"
            })
    };
    let public_rules = admits(public);
    c.check(
        !public_rules.is_empty() && public_rules.iter().all(|r| from_nginx_only(r)),
        format!("api: the public port {} is reachable from the NGINX pods only", show(public)),
    );
    let admin_rules = admits(admin);
    c.check(
        !admin_rules.is_empty() && admin_rules.iter().all(|r| from_monitoring_only(r)),
        format!("api: the admin port {} is reachable from the monitoring namespace only", show(admin)),
    );
}

/// Every workload container sets cpu and memory requests and limits, requests within limits.
fn check_resources(c: &mut Checks, docs: &[Value]) {
    for d in
        docs.iter().filter(|d| ["Deployment", "StatefulSet", "Job", "DaemonSet"].contains(&text(&d["kind"]).as_str()))
    {
        for ctr in containers(d) {
            let who = format!("{} {}/{}", text(&d["kind"]), text(&d["metadata"]["name"]), text(&ctr["name"]));
            let res = &ctr["resources"];
            let ok = ["requests", "limits"].iter().all(|k| ["cpu", "memory"].iter().all(|r| truthy(&res[k][r])));
            c.check(ok, format!("{who}: cpu and memory requests and limits set"));
            if ok {
                c.check(
                    cpu_cores(&res["requests"]["cpu"]) <= cpu_cores(&res["limits"]["cpu"]),
                    format!("{who}: cpu request <= limit"),
                );
            }
        }
    }
}

/// What the later checks need from the API's objects.
struct Api<'a> {
    container: &'a Value,
    env: BTreeMap<String, Option<String>>,
    public_port: Option<i64>,
    service: &'a Value,
    max_replicas: i64,
}

fn check_api<'a>(c: &mut Checks, docs: &'a [Value]) -> Api<'a> {
    let f = facts();
    let api = require(c, docs, "Deployment", "api");
    let api_svc = require(c, docs, "Service", "api");
    let hpa = require(c, docs, "HorizontalPodAutoscaler", "api");
    let pdb = require(c, docs, "PodDisruptionBudget", "api");
    let routes = read("api/src/routes.rs");
    let admin_routes = read("api/src/admin.rs");
    let api_c = container(c, api, "api");
    let env = env_of(api_c);
    let compose_api = compose_service(&f.compose, "api");
    let compose_env = raw_env(compose_api);

    let listen = value(&env, "API_LISTEN");
    let admin_listen = value(&env, "API_ADMIN_LISTEN");
    let (public_port, admin_port) = (port(&listen), port(&admin_listen));
    c.check(listen.starts_with("0.0.0.0:"), "api: API_LISTEN on every interface of the pod");
    c.check(admin_listen.starts_with("0.0.0.0:"), "api: API_ADMIN_LISTEN on every interface of the pod");
    let ports: BTreeMap<String, Option<i64>> =
        items(&api_c["ports"]).iter().map(|p| (text(&p["name"]), p["containerPort"].as_i64())).collect();
    let http = ports.get("http").copied().flatten();
    let admin = ports.get("admin").copied().flatten();
    c.check(
        http.is_some() && http == public_port,
        format!("api: container port http {} = API_LISTEN's {}", show(http), show(public_port)),
    );
    c.check(
        admin.is_some() && admin == admin_port,
        format!("api: container port admin {} = API_ADMIN_LISTEN's {}", show(admin), show(admin_port)),
    );
    let compose_public = compose_env.get("API_LISTEN").and_then(|a| port(a));
    let compose_admin = compose_env.get("API_ADMIN_LISTEN").and_then(|a| port(a));
    c.check(
        public_port.is_some() && public_port == compose_public,
        format!("api: public port {} = docker-compose.yml's {}", show(public_port), show(compose_public)),
    );
    c.check(
        admin_port.is_some() && admin_port == compose_admin,
        format!("api: admin port {} = docker-compose.yml's {}", show(admin_port), show(compose_admin)),
    );
    let compose_image = compose_default(&text(&compose_api["image"]));
    let image = text(&api_c["image"]);
    c.check(image == compose_image, format!("api: image {image} = docker-compose.yml's {compose_image}"));
    c.check(api_c["command"] == serde_json::json!(["api"]), "api: runs the api binary");
    for (key, want) in &compose_env {
        // Ports are checked above; store URLs are the Secret's in Kubernetes (checked below).
        if ["API_LISTEN", "API_ADMIN_LISTEN", "DATABASE_URL", "REDIS_URL", "DATABASE_REPLICA_URLS"]
            .contains(&key.as_str())
        {
            continue;
        }
        let got = env.get(key).cloned().flatten();
        c.check(got.as_ref() == Some(want), format!("api: {key}={} as in docker-compose.yml ({want})", show(got)));
    }
    let replica_ref = items(&api_c["env"])
        .iter()
        .find(|e| text(&e["name"]) == "DATABASE_REPLICA_URLS")
        .map_or(&Value::Null, |e| &e["valueFrom"]["secretKeyRef"]);
    c.check(
        text(&replica_ref["name"]).starts_with("results-stores") && replica_ref["optional"] == Value::Bool(true),
        format!("api: DATABASE_REPLICA_URLS from the Secret results-stores, optional (replicas are not required): {replica_ref}"),
    );

    for (probe, want) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &api_c[probe]["httpGet"];
        let got = get["path"].as_str();
        c.check(got == Some(want), format!("api: {probe} asks {} (want {want})", show(got)));
        c.check(
            got.is_some_and(|p| is_public_route(&routes, p)),
            format!("api: {probe} path {} is a route of api/src/routes.rs' public router", show(got)),
        );
        c.check(
            public_port.is_some() && named_port(api_c, &get["port"]) == public_port,
            format!("api: {probe} on port {} = the public port {}", text(&get["port"]), show(public_port)),
        );
    }

    let annotations = &api["spec"]["template"]["metadata"]["annotations"];
    c.check(text(&annotations["prometheus.io/scrape"]) == "true", "api: pods annotated for Prometheus scraping");
    let scrape_port = text(&annotations["prometheus.io/port"]);
    c.check(
        admin_port.is_some() && scrape_port == show(admin_port),
        format!("api: prometheus.io/port {scrape_port} = the admin port {}", show(admin_port)),
    );
    let metrics_path = annotations["prometheus.io/path"].as_str().unwrap_or("/metrics");
    c.check(
        admin_routes.contains(&format!(".route(\"{metrics_path}\"")),
        format!("api: {metrics_path} is a route of api/src/admin.rs"),
    );

    check_env_names(c, api_c, &help_env(&f.api_help), "api", "api");

    // One runtime thread per core the container may use.
    let threads = value(&env, "API_WORKER_THREADS");
    let cpu_limit = cpu_cores(&api_c["resources"]["limits"]["cpu"]);
    let want_threads = (cpu_limit.ceil() as i64).max(1);
    c.check(
        threads.parse::<i64>() == Ok(want_threads),
        format!("api: API_WORKER_THREADS={threads} matches its CPU limit ({cpu_limit} cores)"),
    );

    // Shutdown: preStop sleep, then SIGTERM -> drain delay -> shutdown grace, all inside the
    // termination grace period. Unset variables take the API's defaults (its --help).
    let ms = |var: &str| {
        let v = value(&env, var);
        let v = if v.is_empty() { help_default(&f.api_help, var).unwrap_or_default() } else { v };
        v.parse::<i64>().unwrap_or(0)
    };
    let grace = pod_spec(api)["terminationGracePeriodSeconds"].as_i64();
    let sleep_s = prestop_sleep(api_c);
    let (drain_ms, shutdown_ms) = (ms("API_DRAIN_DELAY_MS"), ms("API_SHUTDOWN_GRACE_MS"));
    c.check(sleep_s.is_some(), format!("api: preStop sleeps a fixed time ({} s)", show(sleep_s)));
    c.check(grace.is_some(), format!("api: terminationGracePeriodSeconds set ({})", show(grace)));
    if let (Some(sleep_s), Some(grace)) = (sleep_s, grace) {
        c.check(sleep_s <= grace, format!("api: preStop sleep {sleep_s} s <= grace period {grace} s"));
        let total_ms = sleep_s * 1000 + drain_ms + shutdown_ms;
        c.check(
            total_ms < grace * 1000,
            format!(
                "api: preStop {sleep_s} s + API_DRAIN_DELAY_MS {drain_ms} + API_SHUTDOWN_GRACE_MS {shutdown_ms} = {} s < grace {grace} s",
                total_ms as f64 / 1000.0
            ),
        );
    }
    c.check(
        drain_ms > 0,
        format!("api: API_DRAIN_DELAY_MS={drain_ms} > 0 (NGINX's pooled connections are told to close)"),
    );
    c.check(pod_spec(api)["securityContext"]["runAsNonRoot"] == Value::Bool(true), "api: pods run as non-root");

    // Service, HPA, PDB select the API.
    let labels = pod_labels(api);
    c.check(selects(&api["spec"]["selector"]["matchLabels"], labels), "api: Deployment selector matches its pods");
    c.check(selects(&api_svc["spec"]["selector"], labels), "api Service selects the API pods");
    let svc_ports = items(&api_svc["spec"]["ports"]);
    c.check(
        public_port.is_some() && svc_ports.iter().any(|p| named_port(api_c, &p["targetPort"]) == public_port),
        "api Service targets the public port",
    );
    c.check(
        !svc_ports.iter().any(|p| admin_port.is_some() && named_port(api_c, &p["targetPort"]) == admin_port),
        "api Service does not expose the admin port",
    );
    let target = &hpa["spec"]["scaleTargetRef"];
    c.check(
        text(&target["kind"]) == "Deployment" && text(&target["name"]) == text(&api["metadata"]["name"]),
        format!("HPA scales Deployment {}", text(&target["name"])),
    );
    let min_r = hpa["spec"]["minReplicas"].as_i64().unwrap_or(1);
    let max_r = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(0);
    c.check(1 <= min_r && min_r <= max_r, format!("HPA replicas {min_r}..{max_r}"));
    c.check(items(&hpa["spec"]["metrics"]).iter().any(|m| text(&m["resource"]["name"]) == "cpu"), "HPA scales on CPU");
    c.check(selects(&pdb["spec"]["selector"]["matchLabels"], labels), "PDB selects the API pods");
    let max_unavailable = pdb["spec"]["maxUnavailable"].as_i64();
    let min_available = pdb["spec"]["minAvailable"].as_i64();
    c.check(
        max_unavailable.is_some_and(|m| 0 < m && m < min_r) || min_available.is_some_and(|m| 0 < m && m < min_r),
        format!(
            "PDB leaves replicas up and lets drains proceed (maxUnavailable {}, minAvailable {}, minReplicas {min_r})",
            show(max_unavailable),
            show(min_available)
        ),
    );
    Api { container: api_c, env, public_port, service: api_svc, max_replicas: max_r }
}

/// A setting of postgres/postgresql.conf (`name = N`), None when not set.
fn pg_setting(conf: &str, name: &str) -> Option<i64> {
    conf.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == name).then(|| v.split('#').next()?.trim().parse().ok()).flatten()
    })
}

fn check_seeder(c: &mut Checks, docs: &[Value], api: &Api) {
    let f = facts();
    let seeder = require(c, docs, "Job", "seeder");
    let load = container(c, seeder, "load");
    let verify = container(c, seeder, "verify");
    c.check(
        load["command"] == serde_json::json!(["seeder", "load"]),
        format!("seeder: first `seeder load` (got {})", load["command"]),
    );
    c.check(
        verify["command"] == serde_json::json!(["seeder", "verify"]),
        format!("seeder: then `seeder verify` (got {})", verify["command"]),
    );
    c.check(
        !load.is_null() && items(&pod_spec(seeder)["initContainers"]).contains(load),
        "seeder: load is an init container (verify runs after it)",
    );
    c.check(
        ["OnFailure", "Never"].contains(&text(&pod_spec(seeder)["restartPolicy"]).as_str()),
        "seeder: a Job's restartPolicy",
    );
    check_env_names(c, load, &help_env(&f.seeder_load_help), "seeder", "seeder load");
    check_env_names(c, verify, &help_env(&f.seeder_verify_help), "seeder", "seeder verify");
    let api_prefix = api
        .env
        .get("API_KEY_PREFIX")
        .cloned()
        .flatten()
        .unwrap_or_else(|| results_core::keys::DEFAULT_PREFIX.to_owned());
    for ctr in [load, verify] {
        let prefix = env_of(ctr)
            .get("SEEDER_KEY_PREFIX")
            .cloned()
            .flatten()
            .unwrap_or_else(|| results_core::keys::DEFAULT_PREFIX.to_owned());
        c.check(
            prefix == api_prefix,
            format!("seeder {}: SEEDER_KEY_PREFIX {prefix} = the API's API_KEY_PREFIX", text(&ctr["name"])),
        );
    }

    // PostgreSQL connections: every replica's pool plus the seeder's under max_connections.
    let pg_conf = read("postgres/postgresql.conf");
    let max_connections = pg_setting(&pg_conf, "max_connections").unwrap_or(PG_DEFAULT_MAX_CONNECTIONS);
    let reserved = pg_setting(&pg_conf, "superuser_reserved_connections").unwrap_or(PG_DEFAULT_RESERVED_CONNECTIONS);
    let setting = |env: &BTreeMap<String, Option<String>>, var: &str, help: &str| {
        let v = value(env, var);
        let v = if v.is_empty() { help_default(help, var).unwrap_or_default() } else { v };
        v.parse::<i64>().unwrap_or(0)
    };
    let pool = setting(&api.env, "API_PG_POOL_SIZE", &f.api_help);
    let seeder_conns = setting(&env_of(load), "SEEDER_PG_CONNECTIONS", &f.seeder_load_help);
    let worst = api.max_replicas * pool + seeder_conns;
    c.check(
        pool > 0 && worst <= max_connections - reserved,
        format!(
            "PostgreSQL: maxReplicas {} x API_PG_POOL_SIZE {pool} + seeder {seeder_conns} = {worst} <= max_connections {max_connections} - {reserved} reserved",
            api.max_replicas
        ),
    );
    let compose_seeder_name = f
        .compose
        .iter()
        .find(|(_, s)| items(&s["command"]).first().is_some_and(|c| text(c) == "seeder"))
        .map(|(n, _)| n.as_str())
        .unwrap_or("seeder");
    let compose_seeder = compose_env(&f.compose, compose_seeder_name);
    let load_env = env_of(load);
    for key in ["SEEDER_STUDENTS", "SEEDER_KEY_PREFIX"] {
        let got = load_env.get(key).cloned().flatten();
        let want = compose_seeder.get(key);
        c.check(
            got.is_some() && got.as_ref() == want,
            format!("seeder: {key}={} as in docker-compose.yml ({})", show(got.as_ref()), show(want)),
        );
    }
}

/// DATABASE_URL and REDIS_URL come from the Secret results-stores, by name, with their own keys.
/// The store URLs come from the Secret: the seeder's under their own names, the API's (its
/// least-privileged role and user) under `API_` + the name.
fn check_secret_refs(c: &mut Checks, docs: &[Value]) {
    for (obj, key_prefix) in [(find(docs, "Deployment", "api"), "API_"), (find(docs, "Job", "seeder"), "")] {
        let Some(obj) = obj else { continue };
        for ctr in containers(obj) {
            for e in items(&ctr["env"]) {
                let name = text(&e["name"]);
                if name == "DATABASE_URL" || name == "REDIS_URL" {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    c.check(
                        is_named(&text(&r["name"]), "results-stores")
                            && text(&r["key"]) == format!("{key_prefix}{name}"),
                        format!(
                            "{} {}/{}: {name} from Secret results-stores key {key_prefix}{name}",
                            text(&obj["kind"]),
                            text(&obj["metadata"]["name"]),
                            text(&ctr["name"])
                        ),
                    );
                }
            }
        }
    }
}

fn mounts(ctr: &Value) -> BTreeMap<String, String> {
    items(&ctr["volumeMounts"]).iter().map(|m| (text(&m["mountPath"]), text(&m["name"]))).collect()
}

fn check_nginx(c: &mut Checks, docs: &[Value], api: &Api) {
    let f = facts();
    let nginx = require(c, docs, "Deployment", "nginx");
    let nginx_svc = require(c, docs, "Service", "nginx");
    let nginx_cm = require(c, docs, "ConfigMap", "nginx-project");
    let web_cm = require(c, docs, "ConfigMap", "web");

    // The ConfigMaps hold the repository's files byte for byte, and nothing else.
    for (cm, name, folder) in [(nginx_cm, "nginx-project", "nginx"), (web_cm, "web", "web")] {
        let files = folder_files(folder);
        c.check(!files.is_empty(), format!("{folder}/ has files ({files:?})"));
        for file in &files {
            let same = cm_data(cm, file).is_some_and(|b| Some(b) == bytes(Path::new(folder).join(file)));
            let what = if folder == "nginx" {
                format!("ConfigMap {name} {file} = nginx/{file} byte for byte")
            } else {
                format!("ConfigMap {name} {file} = {folder}/{file} byte for byte")
            };
            c.check(same, what);
        }
        let extra: Vec<&String> = fields(&cm["data"])
            .chain(fields(&cm["binaryData"]))
            .map(|(k, _)| k)
            .filter(|k| !files.contains(k))
            .collect();
        c.check(extra.is_empty(), format!("ConfigMap {name} holds only {folder}/'s files (extra: {extra:?})"));
    }

    let render = container(c, nginx, "render");
    let edge = container(c, nginx, "nginx");
    let exporter = container(c, nginx, "nginx-exporter");
    let render_env = env_of(render);
    // render.sh documents each variable it reads on a `#   NGINX_NAME  ...` line.
    let render_vars: BTreeSet<String> = read("nginx/render.sh")
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("NGINX_") && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .map(str::to_owned)
        .collect();
    c.check(render_vars.len() >= 5, format!("nginx/render.sh documents its variables ({})", render_vars.len()));
    let unknown: Vec<&String> = render_env.keys().filter(|k| !render_vars.contains(*k)).collect();
    c.check(
        unknown.is_empty(),
        format!("nginx render: every NGINX_* variable is one render.sh reads (unknown: {unknown:?})"),
    );
    let compose_nginx = text(&f.compose.get("nginx").unwrap_or(&Value::Null)["image"]);
    let compose_exporter = text(&f.compose.get("nginx-exporter").unwrap_or(&Value::Null)["image"]);
    c.check(
        text(&render["image"]) == compose_nginx,
        format!("nginx render: image {} = docker-compose.yml's", text(&render["image"])),
    );
    c.check(
        text(&edge["image"]) == compose_nginx,
        format!("nginx: image {} = docker-compose.yml's {compose_nginx}", text(&edge["image"])),
    );
    c.check(
        text(&exporter["image"]) == compose_exporter,
        format!("nginx-exporter: image {} = docker-compose.yml's {compose_exporter}", text(&exporter["image"])),
    );

    let volumes: BTreeMap<String, &Value> =
        items(&pod_spec(nginx)["volumes"]).iter().map(|v| (text(&v["name"]), v)).collect();
    let volume_configmap = |ctr: &Value, path: &str| -> String {
        mounts(ctr).get(path).and_then(|v| volumes.get(v)).map(|v| text(&v["configMap"]["name"])).unwrap_or_default()
    };
    // The init container runs `sh DIR/render.sh >FILE`; NGINX runs `-c FILE`.
    let script = items(&render["command"]).iter().map(text).collect::<Vec<_>>().join(" ");
    let rendered = script.split_once("sh ").and_then(|(_, rest)| {
        let (dir, rest) = rest.split_once("/render.sh")?;
        let file = rest.trim_start().strip_prefix('>')?.split_whitespace().next()?;
        Some((dir.rsplit(' ').next()?.to_owned(), file.to_owned()))
    });
    c.check(rendered.is_some(), "nginx render: runs render.sh into a file");
    if let Some((project_dir, conf)) = &rendered {
        c.check(
            volume_configmap(render, project_dir) == text(&nginx_cm["metadata"]["name"]),
            format!("nginx render: {project_dir} is the nginx-project ConfigMap"),
        );
        let conf_dir = Path::new(conf).parent().map(|p| p.display().to_string()).unwrap_or_default();
        let cmd: Vec<String> = items(&edge["command"]).iter().map(text).collect();
        let c_arg = cmd.iter().position(|a| a == "-c").and_then(|i| cmd.get(i + 1));
        c.check(c_arg == Some(conf), format!("nginx: runs on the rendered {conf}"));
        let (rm, em) = (mounts(render), mounts(edge));
        c.check(
            rm.contains_key(&conf_dir) && rm.get(&conf_dir) == em.get(&conf_dir),
            format!("nginx: {conf_dir} is one volume shared by the render step and NGINX"),
        );
    }
    let web_root = value(&render_env, "NGINX_WEB_ROOT");
    let web_name = text(&web_cm["metadata"]["name"]);
    c.check(
        !web_name.is_empty()
            && volume_configmap(render, &web_root) == web_name
            && volume_configmap(edge, &web_root) == web_name,
        format!("nginx: NGINX_WEB_ROOT {web_root} is the web ConfigMap"),
    );
    let nginx_dir = value(&render_env, "NGINX_DIR");
    c.check(
        !nginx_dir.is_empty()
            && mounts(render).contains_key(&nginx_dir)
            && mounts(render).get(&nginx_dir) == mounts(edge).get(&nginx_dir),
        format!("nginx: NGINX_DIR {nginx_dir} is one volume shared by the render step and NGINX"),
    );
    let listen_value = value(&render_env, "NGINX_LISTEN");
    let listen: Option<i64> = listen_value.rsplit(':').next().and_then(|p| p.parse().ok());
    let edge_http =
        items(&edge["ports"]).iter().find(|p| text(&p["name"]) == "http").and_then(|p| p["containerPort"].as_i64());
    c.check(
        listen.is_some() && edge_http == listen,
        format!("nginx: container port http {} = NGINX_LISTEN {}", show(edge_http), show(listen)),
    );
    let compose_ports: Vec<String> = items(&f.compose.get("nginx").unwrap_or(&Value::Null)["ports"])
        .iter()
        .map(|p| text(p).rsplit(':').next().unwrap_or_default().to_owned())
        .collect();
    c.check(
        compose_ports.contains(&show(listen)),
        format!("nginx: public port {} = docker-compose.yml's container port {compose_ports:?}", show(listen)),
    );
    let status = value(&render_env, "NGINX_STATUS_LISTEN");
    c.check(status.starts_with("127.0.0.1:"), format!("nginx: stub_status only inside the pod ({status})"));
    let scrape = items(&exporter["args"]).iter().map(text).collect::<Vec<_>>().join(" ");
    c.check(
        port(&status).is_some_and(|p| scrape.contains(&format!("127.0.0.1:{p}/stub_status"))),
        format!("nginx-exporter scrapes the stub_status listener ({scrape})"),
    );
    let ann = &nginx["spec"]["template"]["metadata"]["annotations"];
    let exporter_ports: Vec<i64> =
        items(&exporter["ports"]).iter().filter_map(|p| p["containerPort"].as_i64()).collect();
    let ann_port = text(&ann["prometheus.io/port"]);
    c.check(
        text(&ann["prometheus.io/scrape"]) == "true" && ann_port.parse().is_ok_and(|p| exporter_ports.contains(&p)),
        format!("nginx: Prometheus annotation port {ann_port} is the exporter's {exporter_ports:?}"),
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &edge[probe]["httpGet"];
        c.check(
            listen.is_some() && named_port(edge, &get["port"]) == listen && text(&get["path"]) == "/healthz",
            format!("nginx: {probe} asks NGINX's own /healthz on {}", show(listen)),
        );
    }
    c.check(
        read("nginx/nginx.conf.template").contains("location = /healthz"),
        "nginx: the template answers /healthz itself",
    );
    let upstreams: BTreeSet<String> =
        value(&render_env, "NGINX_UPSTREAMS").replace(',', " ").split_whitespace().map(str::to_owned).collect();
    c.check(!upstreams.is_empty(), format!("nginx: NGINX_UPSTREAMS set ({upstreams:?})"));
    for up in &upstreams {
        let (host, port_text) = up.rsplit_once(':').unwrap_or(("", up));
        let found = service_port(docs, host, port_text).filter(|(svc, _)| std::ptr::eq(*svc, api.service));
        c.check(found.is_some(), format!("nginx: upstream {up} is the api Service's port"));
        if let Some((_, svc_port)) = found {
            c.check(
                api.public_port.is_some() && named_port(api.container, &svc_port["targetPort"]) == api.public_port,
                format!("nginx: upstream {up} reaches the API's public port {}", show(api.public_port)),
            );
        }
    }
    c.check(selects(&nginx_svc["spec"]["selector"], pod_labels(nginx)), "nginx Service selects the NGINX pods");
    c.check(
        listen.is_some()
            && items(&nginx_svc["spec"]["ports"]).iter().any(|p| named_port(edge, &p["targetPort"]) == listen),
        "nginx Service targets NGINX_LISTEN",
    );
    let (sleep_n, grace_n) = (prestop_sleep(edge), pod_spec(nginx)["terminationGracePeriodSeconds"].as_i64());
    c.check(
        matches!((sleep_n, grace_n), (Some(s), Some(g)) if s < g),
        format!("nginx: preStop sleep {} s < grace period {} s", show(sleep_n), show(grace_n)),
    );
}

/// The base: no Secret committed, no namespace fixed, no in-cluster stores.
fn check_base(c: &mut Checks, docs: &[Value]) {
    let secrets: Vec<String> =
        docs.iter().filter(|d| text(&d["kind"]) == "Secret").map(|d| text(&d["metadata"]["name"])).collect();
    c.check(secrets.is_empty(), format!("base: no Secret committed (found: {secrets:?})"));
    c.check(
        !docs.iter().any(|d| truthy(&d["metadata"]["namespace"])),
        "base: no namespace fixed (kubectl -n or an overlay chooses)",
    );
    c.check(
        find(docs, "StatefulSet", "postgres").is_none() && find(docs, "StatefulSet", "redis").is_none(),
        "base: no in-cluster stores",
    );
}

/// The local overlay: local-only Secrets pointing at the in-cluster stores, which run compose's
/// images, command lines and configuration files, all in the namespace it creates.
fn check_local(c: &mut Checks, docs: &[Value]) {
    let f = facts();
    let stores = secret_values(require(c, docs, "Secret", "results-stores"));
    let keys: Vec<&String> = stores.keys().collect();
    c.check(
        keys == ["API_DATABASE_URL", "API_REDIS_URL", "DATABASE_URL", "REDIS_URL"],
        format!("local: Secret results-stores has the seeder's and the API's URLs ({keys:?})"),
    );
    // Least privilege: the replicas' URLs name their own users, the seeder's its own.
    let user_of = |key: &str| {
        let url = stores.get(key).cloned().unwrap_or_default();
        url.split_once("://")
            .and_then(|(_, r)| r.split_once('@'))
            .and_then(|(cred, _)| cred.split_once(':'))
            .map(|(u, _)| u.to_owned())
    };
    use xtask::facts::{PG_API_USER, REDIS_API_USER, REDIS_SEEDER_USER};
    c.check(
        user_of("API_DATABASE_URL").as_deref() == Some(PG_API_USER),
        format!("local: API_DATABASE_URL's role is {PG_API_USER}"),
    );
    c.check(
        user_of("API_REDIS_URL").as_deref() == Some(REDIS_API_USER),
        format!("local: API_REDIS_URL's user is {REDIS_API_USER}"),
    );
    c.check(
        user_of("REDIS_URL").as_deref() == Some(REDIS_SEEDER_USER),
        format!("local: REDIS_URL's user is {REDIS_SEEDER_USER}"),
    );
    let pg_values = secret_values(require(c, docs, "Secret", "postgres-local"));
    let compose_pg = compose_env(&f.compose, "postgres");
    let wanted: BTreeMap<String, String> = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
        .iter()
        .map(|k| ((*k).to_owned(), compose_pg.get(*k).cloned().unwrap_or_default()))
        .collect();
    c.check(pg_values == wanted, "local: PostgreSQL's role, password and database are compose's local-only defaults");
    c.check(
        pg_values.get("POSTGRES_PASSWORD").is_some_and(|p| p.contains("local-only")),
        "local: the committed password says local-only",
    );
    let pg = require(c, docs, "StatefulSet", "postgres");
    let redis = require(c, docs, "StatefulSet", "redis");
    // The stores answer the API and the seeder only (compose's `stores` network).
    let names_in = |selector: &Value| -> BTreeSet<String> {
        items(&selector["matchExpressions"])
            .iter()
            .filter(|e| text(&e["key"]) == "app.kubernetes.io/name" && text(&e["operator"]) == "In")
            .flat_map(|e| items(&e["values"]).iter().map(text).collect::<Vec<_>>())
            .collect()
    };
    let policy = require(c, docs, "NetworkPolicy", "stores");
    let guarded = names_in(&policy["spec"]["podSelector"]);
    let clients: BTreeSet<String> = items(&policy["spec"]["ingress"])
        .iter()
        .flat_map(|r| items(&r["from"]))
        .flat_map(|f| names_in(&f["podSelector"]))
        .collect();
    let only_from = items(&policy["spec"]["ingress"]).iter().all(|r| !items(&r["from"]).is_empty());
    c.check(
        guarded == BTreeSet::from(["postgres".to_owned(), "redis".to_owned()])
            && only_from
            && clients == BTreeSet::from(["api".to_owned(), "seeder".to_owned()]),
        format!("local: the stores accept the API and the seeder only ({guarded:?} from {clients:?})"),
    );
    let pg_c = container(c, pg, "postgres");
    let redis_c = container(c, redis, "redis");
    // The stores listen where compose's clients reach them (its DATABASE_URL and REDIS_URL).
    let compose_api = raw_env(compose_service(&f.compose, "api"));
    let store_port = |var: &str| compose_api.get(var).and_then(|u| port(u.split('/').nth(2).unwrap_or_default()));

    // postgres://user:password@host:port/db
    let url = stores.get("DATABASE_URL").cloned().unwrap_or_default();
    let parsed = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")).and_then(|rest| {
        let (cred, rest) = rest.split_once('@')?;
        let (user, password) = cred.split_once(':')?;
        let (hostport, db) = rest.split_once('/')?;
        let (host, port) = hostport.split_once(':')?;
        Some((user.to_owned(), password.to_owned(), host.to_owned(), port.to_owned(), db.to_owned()))
    });
    c.check(parsed.is_some(), "local: DATABASE_URL is postgres://user:password@host:port/db");
    if let Some((user, password, host, port_text, db)) = parsed {
        c.check(
            [Some(&user), Some(&password), Some(&db)]
                == [pg_values.get("POSTGRES_USER"), pg_values.get("POSTGRES_PASSWORD"), pg_values.get("POSTGRES_DB")],
            "local: DATABASE_URL's user, password and database are the in-cluster PostgreSQL's",
        );
        let ok = service_port(docs, &host, &port_text).is_some_and(|(svc, sp)| {
            selects(&svc["spec"]["selector"], pod_labels(pg))
                && store_port("DATABASE_URL").is_some()
                && named_port(pg_c, &sp["targetPort"]) == store_port("DATABASE_URL")
        });
        c.check(ok, format!("local: DATABASE_URL's {host}:{port_text} is the postgres StatefulSet's Service"));
    }
    let url = stores.get("REDIS_URL").cloned().unwrap_or_default();
    let parsed = url
        .strip_prefix("redis://")
        .map(|r| r.rsplit_once('@').map_or(r, |(_, hostport)| hostport).trim_end_matches('/'))
        .and_then(|r| r.split_once(':'));
    c.check(
        parsed.is_some_and(|(_, p)| p.parse::<u16>().is_ok()),
        "local: REDIS_URL is redis://[user:password@]host:port",
    );
    if let Some((host, port_text)) = parsed {
        let ok = service_port(docs, host, port_text).is_some_and(|(svc, sp)| {
            selects(&svc["spec"]["selector"], pod_labels(redis))
                && store_port("REDIS_URL").is_some()
                && named_port(redis_c, &sp["targetPort"]) == store_port("REDIS_URL")
        });
        c.check(ok, format!("local: REDIS_URL's {host}:{port_text} is the redis StatefulSet's Service"));
    }
    for (ctr, name) in [(pg_c, "postgres"), (redis_c, "redis")] {
        let compose_svc = f.compose.get(name).unwrap_or(&Value::Null);
        let want = text(&compose_svc["image"]);
        c.check(
            text(&ctr["image"]) == want,
            format!("local: {name} image {} = docker-compose.yml's {want}", text(&ctr["image"])),
        );
        let args = if ctr["args"].is_null() { serde_json::json!([]) } else { ctr["args"].clone() };
        // Compose's command line with its variables at their defaults (the local-only passwords).
        let cmd: Vec<Value> = items(&compose_svc["command"]).iter().map(|a| compose_default(&text(a)).into()).collect();
        c.check(args == Value::Array(cmd), format!("local: {name} runs compose's command line"));
    }
    for (cm_name, folder, file) in
        [("redis-config", "redis", "redis.conf"), ("postgres-config", "postgres", "postgresql.conf")]
    {
        let cm = require(c, docs, "ConfigMap", cm_name);
        c.check(
            cm_data(cm, file).is_some_and(|b| Some(b) == bytes(Path::new(folder).join(file))),
            format!("local: ConfigMap {cm_name} = {folder}/{file} byte for byte"),
        );
    }
    let namespaces: BTreeSet<String> =
        docs.iter().filter(|d| text(&d["kind"]) != "Namespace").map(|d| text(&d["metadata"]["namespace"])).collect();
    let ns = find(docs, "Namespace", "results").map(|n| text(&n["metadata"]["name"]));
    c.check(
        ns.as_ref().is_some_and(|ns| namespaces.len() == 1 && namespaces.contains(ns)),
        format!("local: everything in the namespace it creates ({namespaces:?})"),
    );
}

// --- the tests --------------------------------------------------------------------------------

/// A render's objects compared across kustomize versions: name hashes removed and Secret
/// values decoded (versions hash and wrap base64 differently; the rest must be equal).
fn normalized(docs: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = docs
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if text(&d["kind"]) == "Secret" {
                let values: Map<String, Value> = secret_values(&d).into_iter().map(|(k, v)| (k, v.into())).collect();
                d["data"] = Value::Object(values);
            }
            let mut json = d.to_string();
            for name in HASHED {
                // "name-0123456789" -> "name" wherever it appears (object names and references).
                let quoted = format!("\"{name}-");
                let mut from = 0;
                while let Some(i) = json[from..].find(&quoted).map(|i| i + from) {
                    let hash_start = i + quoted.len();
                    let hash = json.get(hash_start..hash_start + 11).unwrap_or_default();
                    if hash.ends_with('"') && is_named(&format!("{name}-{}", &hash[..10]), name) {
                        json.replace_range(i + 1 + name.len()..hash_start + 10, "");
                    }
                    from = i + 1;
                }
            }
            json
        })
        .collect();
    out.sort();
    out
}

#[test]
fn both_variants_render_alike_with_every_kubectl() {
    let mut c = Checks::new("k8s renders");
    for (variant, folder) in VARIANTS {
        let mut first: Option<(&str, Vec<String>)> = None;
        for r in renders().iter().filter(|r| r.variant == variant) {
            c.check(
                r.docs.is_ok(),
                format!("{} kustomize {folder}: {}", r.kubectl, r.docs.as_ref().err().map_or("", |e| e)),
            );
            let Ok(docs) = &r.docs else { continue };
            c.check(!docs.is_empty(), format!("{} kustomize {folder} renders objects", r.kubectl));
            match &first {
                None => first = Some((&r.kubectl, normalized(docs))),
                Some((k0, n0)) => {
                    c.check(
                        *n0 == normalized(docs),
                        format!("{} renders {folder} differently from {k0} (beyond name hashes)", r.kubectl),
                    );
                }
            }
        }
    }
    c.assert_all();
}

#[test]
fn renders_compare_equal_only_up_to_name_hashes_and_secret_encoding() {
    let good = render(Variant::Local);
    let rehashed: Vec<Value> = good
        .iter()
        .map(|d| {
            let json = d
                .to_string()
                .replace(&text(&find(good, "ConfigMap", "web").expect("web")["metadata"]["name"]), "web-0123456789");
            serde_json::from_str(&json).expect("JSON")
        })
        .collect();
    assert_eq!(normalized(good), normalized(&rehashed), "another name hash is the same render");
    let mut changed = good.to_vec();
    obj_mut(&mut changed, "Deployment", "api")["spec"]["replicas"] = 4.into();
    assert_ne!(normalized(good), normalized(&changed), "another replica count is another render");
}

/// Every kubectl's render of `variant` passes every check.
fn every_render_passes(variant: Variant) {
    let mut all = Checks::new(match variant {
        Variant::Base => "k8s base",
        Variant::Local => "k8s local",
    });
    let mut checked = 0;
    for r in renders().iter().filter(|r| r.variant == variant) {
        if let Ok(docs) = &r.docs {
            all.absorb(check_manifests(docs, variant));
            checked += 1;
        }
    }
    all.check(checked > 0, "a render to check");
    all.assert_all();
}

#[test]
fn the_base_render_matches_the_repository() {
    every_render_passes(Variant::Base);
}

#[test]
fn the_local_render_matches_the_repository() {
    every_render_passes(Variant::Local);
}

#[test]
fn the_nginx_pod_renders_a_configuration_nginx_accepts() {
    let mut c = Checks::new("k8s nginx");
    let docs = render(Variant::Local);
    let dir = tempfile::tempdir().expect("temp dir");
    let (project, web, nginx_dir) = (dir.path().join("project"), dir.path().join("web"), dir.path().join("nginx-dir"));
    for d in [&project, &web, &nginx_dir.join("tmp")] {
        std::fs::create_dir_all(d).expect("folder");
    }
    // The ConfigMaps' files where the pod mounts them, the init container's NGINX_* values.
    for (name, folder) in [("nginx-project", &project), ("web", &web)] {
        let cm = find(docs, "ConfigMap", name).unwrap_or(&Value::Null);
        for (key, _) in fields(&cm["data"]).chain(fields(&cm["binaryData"])) {
            std::fs::write(folder.join(key), cm_data(cm, key).unwrap_or_default()).expect("write");
        }
    }
    let render_c = find(docs, "Deployment", "nginx")
        .and_then(|n| containers(n).into_iter().find(|ctr| text(&ctr["name"]) == "render"))
        .unwrap_or(&Value::Null);
    let env = env_of(render_c);
    let ready = project.join("render.sh").is_file() && env.contains_key("NGINX_UPSTREAMS");
    c.check(ready, "the local render has an nginx-project ConfigMap and a render init container with NGINX_UPSTREAMS");
    if ready {
        let (ok, conf, err) = run(Command::new("sh")
            .arg(project.join("render.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v.clone().unwrap_or_default()))));
        c.check(ok, format!("render.sh with the manifest's NGINX_* values: {err}"));
        let upstream = value(&env, "NGINX_UPSTREAMS");
        let upstream = upstream.replace(',', " ");
        let servers: Vec<&str> = upstream.split_whitespace().collect();
        let rendered_servers =
            conf.lines().filter(|l| l.trim_start().starts_with("server ") && l.contains(" max_fails")).count();
        c.check(
            !servers.is_empty()
                && rendered_servers == servers.len()
                && servers.iter().all(|s| conf.contains(&format!("server {s} max_fails"))),
            format!("the rendered upstream has the {} NGINX_UPSTREAMS servers ({servers:?})", servers.len()),
        );
        let listen = value(&env, "NGINX_LISTEN");
        let status = value(&env, "NGINX_STATUS_LISTEN");
        c.check(
            conf.contains(&format!("listen {listen} default_server")),
            format!("the rendered configuration listens on {listen} (public)"),
        );
        c.check(
            conf.contains(&format!("listen {status};")),
            format!("the rendered configuration has stub_status on {status} only"),
        );
        match optional_tool("nginx") {
            None => {
                eprintln!("note: nginx not installed: the pod's rendered configuration is not checked with nginx -t")
            }
            Some(nginx) => {
                let public = free_port();
                let status_port = free_port();
                let web_root = value(&env, "NGINX_WEB_ROOT");
                let local = localized_nginx_conf(
                    &conf,
                    &nginx_dir,
                    &[
                        (&web_root, web.display().to_string()),
                        (&format!("listen {listen} "), format!("listen 127.0.0.1:{public} ")),
                        (&status, format!("127.0.0.1:{status_port}")),
                    ],
                );
                let path = dir.path().join("nginx-test.conf");
                std::fs::write(&path, local).expect("write");
                let (ok, out, err) = run(Command::new(nginx).args(["-t", "-q", "-c"]).arg(&path));
                c.check(ok, format!("nginx -t on the configuration the nginx pod renders: {out}{err}"));
            }
        }
    }
    c.assert_all();
}

/// A loopback port nothing listens on, from 27800 up (this suite's hundred; the stack tests use
/// 26000-26999), never handed out twice in this process.
fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<u16> = std::sync::Mutex::new(27800);
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let p = *next;
        assert!(p < 27900, "no free ports left in 27800-27899");
        *next += 1;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Kills the API when a check panics half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_api_runs_with_the_manifests_settings_and_drains_on_sigterm() {
    let mut c = Checks::new("k8s api run");
    let docs = render(Variant::Local);
    let api_c = find(docs, "Deployment", "api")
        .and_then(|a| containers(a).into_iter().find(|ctr| text(&ctr["name"]) == "api"))
        .unwrap_or(&Value::Null);
    let env: BTreeMap<String, String> = env_of(api_c).into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    let drain_ms: Option<u64> = env.get("API_DRAIN_DELAY_MS").and_then(|v| v.parse().ok());
    let grace_ms: Option<u64> = env.get("API_SHUTDOWN_GRACE_MS").and_then(|v| v.parse().ok());
    c.check(
        drain_ms.is_some() && grace_ms.is_some(),
        "the api container sets API_DRAIN_DELAY_MS and API_SHUTDOWN_GRACE_MS",
    );
    let (drain_ms, grace_ms) = (drain_ms.unwrap_or_default(), grace_ms.unwrap_or_default());
    let (public, admin, closed) = (free_port(), free_port(), free_port()); // nothing listens on `closed`: both stores are down
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = Command::new(crate::support::binary("api"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().filter(|(k, _)| *k != "API_LISTEN" && *k != "API_ADMIN_LISTEN"))
        .env("API_LISTEN", format!("127.0.0.1:{public}"))
        .env("API_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("DATABASE_URL", format!("postgres://results:none@127.0.0.1:{closed}/results"))
        .env("REDIS_URL", format!("redis://127.0.0.1:{closed}"))
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .stdin(Stdio::null())
        .spawn()
        .expect("the api starts");
    let mut api = Running(child);
    let get = |port: u16, path: &str| xtask::net::http("GET", "127.0.0.1", port, path, Duration::from_secs(2)).ok();
    let up = xtask::supervise::wait_for(Duration::from_secs(15), || get(public, "/healthz").is_some());
    c.check(
        up,
        format!(
            "the API serves /healthz on 127.0.0.1:{public} within 15 s: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        ),
    );
    if up {
        let status = |port, path| get(port, path).map(|r| r.status);
        c.check(status(public, "/healthz") == Some(200), "GET /healthz on the public port (the liveness probe) is 200");
        let ready = get(public, "/readyz");
        c.check(
            ready.as_ref().map(|r| r.status) == Some(503),
            format!(
                "GET /readyz on the public port (the readiness probe) answers 503 with both stores down ({ready:?})"
            ),
        );
        c.check(
            ready.as_ref().is_some_and(|r| r.body.contains("\"draining\":false")),
            "/readyz says not draining before SIGTERM",
        );
        c.check(
            status(admin, "/metrics") == Some(200),
            "GET /metrics on the admin port (the Prometheus annotation) is 200",
        );
        let started = Instant::now();
        let pid = rustix::process::Pid::from_raw(api.0.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        std::thread::sleep(Duration::from_millis(300));
        let draining = get(public, "/readyz");
        c.check(
            draining.as_ref().is_some_and(|r| r.body.contains("\"draining\":true")),
            format!(
                "after SIGTERM, /readyz still answers and says draining (API_DRAIN_DELAY_MS={drain_ms}): {draining:?}"
            ),
        );
        let exit = api.0.wait().expect("wait for the api");
        let elapsed = started.elapsed().as_millis() as u64;
        c.check(exit.success(), format!("the API exits 0 after SIGTERM ({exit})"));
        c.check(
            elapsed >= drain_ms,
            format!("the API held its listener for the drain delay ({elapsed} ms >= {drain_ms} ms)"),
        );
        c.check(
            elapsed <= drain_ms + grace_ms,
            format!("the API stopped within drain + shutdown grace ({elapsed} ms <= {} ms)", drain_ms + grace_ms),
        );
    }
    c.assert_all();
}

/// A container of a rendered object, for the broken renders.
fn ctr_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str, ctr: &str) -> &'a mut Value {
    let obj = obj_mut(docs, kind, name);
    let spec = &mut obj["spec"]["template"]["spec"];
    let in_init = items(&spec["initContainers"]).iter().any(|c| text(&c["name"]) == ctr);
    let list = if in_init { &mut spec["initContainers"] } else { &mut spec["containers"] };
    list.as_array_mut().and_then(|l| l.iter_mut().find(|c| text(&c["name"]) == ctr)).expect("the container")
}

fn obj_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|d| text(&d["kind"]) == kind && is_named(&text(&d["metadata"]["name"]), name))
        .expect("the object")
}

fn env_set(ctr: &mut Value, name: &str, value: &str) {
    let env = ctr["env"].as_array_mut().expect("env");
    match env.iter_mut().find(|e| text(&e["name"]) == name) {
        Some(e) => e["value"] = value.into(),
        None => env.push(serde_json::json!({"name": name, "value": value})),
    }
}

fn cm_edit(docs: &mut [Value], name: &str, key: &str, edit: impl Fn(&str) -> String) {
    let data = &mut obj_mut(docs, "ConfigMap", name)["data"][key];
    *data = edit(data.as_str().expect("a text file")).into();
}

/// A broken copy of the local render: what was broken, how, and the failed check that must
/// name it.
type Mutation = (&'static str, fn(&mut [Value]), &'static str);

const MUTATIONS: &[Mutation] = &[
    (
        "readiness probe on a path the router lacks",
        |d| ctr_mut(d, "Deployment", "api", "api")["readinessProbe"]["httpGet"]["path"] = "/ready".into(),
        "readinessProbe path /ready is a route",
    ),
    (
        "a misspelt API variable",
        |d| env_set(ctr_mut(d, "Deployment", "api", "api"), "API_DRAIN_DELAY", "2000"),
        "api: every environment variable is one the binary reads",
    ),
    (
        "one byte of the NGINX template changed",
        |d| cm_edit(d, "nginx-project", "nginx.conf.template", |t| t.replace("keepalive 512", "keepalive 513")),
        "nginx.conf.template = nginx/nginx.conf.template byte for byte",
    ),
    (
        "a stale students' page",
        |d| cm_edit(d, "web", "app.js", |t| format!("{t}\n")),
        "ConfigMap web app.js = web/app.js",
    ),
    (
        "preStop longer than the grace period allows",
        |d| {
            ctr_mut(d, "Deployment", "api", "api")["lifecycle"]["preStop"]["exec"]["command"] =
                serde_json::json!(["sleep", "15"])
        },
        "< grace",
    ),
    (
        "a PDB that selects nothing",
        |d| {
            obj_mut(d, "PodDisruptionBudget", "api")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] =
                "apis".into()
        },
        "PDB selects the API pods",
    ),
    (
        "a container without limits",
        |d| {
            ctr_mut(d, "Deployment", "nginx", "nginx-exporter")["resources"]
                .as_object_mut()
                .expect("resources")
                .remove("limits");
        },
        "nginx/nginx-exporter: cpu and memory requests and limits set",
    ),
    (
        "a container port that is not API_LISTEN's",
        |d| ctr_mut(d, "Deployment", "api", "api")["ports"][0]["containerPort"] = 8082.into(),
        "api: container port http 8082",
    ),
    (
        "another NGINX image than compose's",
        |d| ctr_mut(d, "Deployment", "nginx", "nginx")["image"] = "nginx:1.27".into(),
        "nginx: image nginx:1.27",
    ),
    (
        "more replicas than PostgreSQL has connections for",
        |d| obj_mut(d, "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"] = 30.into(),
        "PostgreSQL: maxReplicas 30",
    ),
    (
        "an upstream that is no Service port",
        |d| env_set(ctr_mut(d, "Deployment", "nginx", "render"), "NGINX_UPSTREAMS", "api:9999"),
        "nginx: upstream api:9999 is the api Service's port",
    ),
    (
        "the seeder loading another key prefix",
        |d| env_set(ctr_mut(d, "Job", "seeder", "load"), "SEEDER_KEY_PREFIX", "other"),
        "SEEDER_KEY_PREFIX other = the API's",
    ),
    (
        "liveness probe on the admin port",
        |d| ctr_mut(d, "Deployment", "api", "api")["livenessProbe"]["httpGet"]["port"] = "admin".into(),
        "livenessProbe on port admin = the public port",
    ),
    (
        "the admin port open to every pod",
        |d| obj_mut(d, "NetworkPolicy", "api")["spec"]["ingress"][1]["from"] = serde_json::json!([]),
        "the admin port 8181 is reachable from the monitoring namespace only",
    ),
    (
        "the admin port opened to NGINX",
        |d| {
            obj_mut(d, "NetworkPolicy", "api")["spec"]["ingress"][0]["ports"]
                .as_array_mut()
                .expect("ports")
                .push(serde_json::json!({"port": "admin"}))
        },
        "the admin port 8181 is reachable from the monitoring namespace only",
    ),
    (
        "the NGINX pod without a policy",
        |d| {
            obj_mut(d, "NetworkPolicy", "nginx")["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] =
                "x".into()
        },
        "nginx: a NetworkPolicy restricts its ingress",
    ),
    (
        "NGINX let through to the stores",
        |d| {
            obj_mut(d, "NetworkPolicy", "stores")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]
                ["values"]
                .as_array_mut()
                .expect("values")
                .push("nginx".into())
        },
        "local: the stores accept the API and the seeder only",
    ),
    (
        "Redis as root",
        |d| pod_spec_mut(d, "StatefulSet", "redis")["securityContext"]["runAsUser"] = 0.into(),
        "redis/redis: runs as non-root",
    ),
    (
        "NGINX with a writable root filesystem",
        |d| ctr_mut(d, "Deployment", "nginx", "nginx")["securityContext"]["readOnlyRootFilesystem"] = false.into(),
        "nginx/nginx: readOnlyRootFilesystem true",
    ),
    (
        "NGINX as root",
        |d| pod_spec_mut(d, "Deployment", "nginx")["securityContext"]["runAsUser"] = 0.into(),
        "nginx/nginx: runs as non-root",
    ),
    (
        "a service-account token in the seeder",
        |d| pod_spec_mut(d, "Job", "seeder")["automountServiceAccountToken"] = true.into(),
        "seeder: no service-account token",
    ),
];

fn pod_spec_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    &mut obj_mut(docs, kind, name)["spec"]["template"]["spec"]
}

#[test]
fn broken_renders_are_each_rejected_naming_what_broke() {
    let mut c = Checks::new("k8s broken renders");
    let good = render(Variant::Local);
    c.check(check_manifests(good, Variant::Local).failures().is_empty(), "the unbroken local render passes");
    for (what, mutate, expect) in MUTATIONS {
        let mut docs = good.to_vec();
        mutate(&mut docs);
        let checks = check_manifests(&docs, Variant::Local);
        c.check(
            checks.failures().iter().any(|f| f.contains(expect)),
            format!("a broken render ({what}) is not rejected with '{expect}' (failures: {:?})", checks.failures()),
        );
    }
    c.assert_all();
}
