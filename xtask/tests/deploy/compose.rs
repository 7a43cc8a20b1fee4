//! docker-compose.yml and the Dockerfile, checked without a Docker engine: compose itself
//! (Debian's docker-compose, installed when missing) validates and normalizes the file, and the
//! tests read the normalized file against the repository (mounted paths, healthchecks, published
//! ports, NGINX's and Prometheus' view of the API replicas, the binaries' variables).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::support::{
    Checks, compose_default, fields, help, help_env, items, optional_tool, port_of, read, read_in_sources, repo, run,
    subcommands, text, tool, yaml,
};
use xtask::facts::default_of;

/// Services whose image cannot run any healthcheck (FROM scratch: no shell, no HTTP client), and
/// why that is acceptable. They must say `healthcheck: disable: true`, and nothing may wait on
/// them being healthy.
const NO_HEALTHCHECK: &[(&str, &str)] = &[("nginx-exporter", "FROM scratch image, watched by Prometheus' up metric")];

/// Services with a read-only root filesystem, no capabilities and no-new-privileges: the
/// project's own containers and the exporters.
const HARDENED: &[&str] =
    &["api1", "api2", "api3", "seeder", "nginx", "nginx-exporter", "redis-exporter", "postgres-exporter"];

/// The one service allowed privileges (it reads every container's cgroups on the host).
const PRIVILEGED: &str = "cadvisor";

/// The services allowed on the `stores` network: the stores, their clients and exporters.
const ON_STORES: &[&str] =
    &["postgres", "redis", "seeder", "api1", "api2", "api3", "redis-exporter", "postgres-exporter"];

/// The only services that publish ports to the host (always on its loopback).
const PUBLISHED: &[&str] = &["grafana", "nginx", "prometheus"];

/// The compose command: `docker compose` (v2) when there is one, else `docker-compose`,
/// installed from Debian when neither is.
fn compose_command() -> Command {
    static PLUGIN: OnceLock<bool> = OnceLock::new();
    let plugin = *PLUGIN.get_or_init(|| {
        optional_tool("docker").is_some_and(|docker| {
            Command::new(docker).args(["compose", "version"]).output().is_ok_and(|o| o.status.success())
        })
    });
    let mut c = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new(tool("docker-compose", "docker-compose"))
    };
    // Interpolation defaults only: the caller's shell must not change what is checked. The
    // variables are the ones the file interpolates.
    let raw = read("docker-compose.yml");
    for var in raw.split("${").skip(1) {
        let name: String = var.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        // A required variable (`${NAME:?why}`) gets a value, as the user must give one.
        if var[name.len()..].starts_with(":?") {
            c.env(name, "set-by-the-test");
        } else {
            c.env_remove(name);
        }
    }
    c.current_dir(repo()).arg("-f").arg(repo().join("docker-compose.yml"));
    c
}

/// The normalized file (`compose config`: anchors merged, variables substituted) the checks
/// read, or compose's complaint. One run validates and normalizes (`config -q` is the same
/// validation without the output).
fn config() -> &'static Result<Value, String> {
    static CONFIG: OnceLock<Result<Value, String>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ok, out, err) = run(compose_command().arg("config"));
        if ok { Ok(yaml(&out, "compose config's output")) } else { Err(err) }
    })
}

/// The services of a compose file, by name.
type Services = Map<String, Value>;

fn services() -> &'static Services {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    let config = config().as_ref().unwrap_or_else(|e| panic!("compose config rejects docker-compose.yml: {e}"));
    config["services"].as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn service<'a>(s: &'a Services, name: &str) -> &'a Value {
    s.get(name).unwrap_or(&Value::Null)
}

/// A service's healthcheck when it has a working one (not disabled, a test command set).
fn healthcheck_of<'a>(s: &'a Services, name: &str) -> Option<&'a Value> {
    let hc = &service(s, name)["healthcheck"];
    let test = &hc["test"];
    let disabled =
        hc["disable"].as_bool() == Some(true) || *test == Value::Null || *test == serde_json::json!(["NONE"]);
    (hc.is_object() && !disabled).then_some(hc)
}

fn env_of(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Array(list) => list
            .iter()
            .map(|item| {
                let item = text(item);
                match item.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (item, String::new()),
                }
            })
            .collect(),
        env => fields(env).map(|(k, v)| (k.clone(), text(v))).collect(),
    }
}

fn command_of(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        cmd => items(cmd).iter().map(text).collect(),
    }
}

/// The services running `binary` (their command's first word).
fn services_running<'a>(s: &'a Services, binary: &str) -> Vec<&'a String> {
    s.iter().filter(|(_, s)| command_of(s).first().is_some_and(|c| c == binary)).map(|(n, _)| n).collect()
}

/// A service's volumes as (source, target, is a bind mount), short or long syntax.
fn volumes_of(svc: &Value) -> Vec<(String, String, bool)> {
    items(&svc["volumes"])
        .iter()
        .map(|vol| match vol {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                let bind = source.starts_with(['/', '.', '~']);
                (source, target, bind)
            }
            long => (text(&long["source"]), text(&long["target"]), text(&long["type"]) == "bind"),
        })
        .collect()
}

/// A path with `.` and `..` resolved lexically (as Python's normpath).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A published port as (host address, published port): `"127.0.0.1:8080:8080"` or the long form.
fn published(port: &Value) -> (String, String) {
    if port.is_object() {
        return (text(&port["host_ip"]), text(&port["published"]));
    }
    let port = text(port);
    let parts: Vec<&str> = port.split(':').collect();
    let host_ip = if parts.len() == 3 { parts[0] } else { "" };
    let published = if parts.len() >= 2 { parts[parts.len() - 2] } else { parts[0] };
    (host_ip.to_owned(), published.to_owned())
}

/// The container port a service publishes first (`127.0.0.1:${X:-8080}:8080` -> 8080).
fn container_port(s: &Services, name: &str) -> Option<u16> {
    let first = items(&service(s, name)["ports"]).first()?;
    if first.is_object() {
        return text(&first["target"]).parse().ok();
    }
    text(first).rsplit(':').next()?.split('/').next()?.parse().ok()
}

#[test]
fn docker_compose_accepts_the_file_and_it_has_services() {
    let mut c = Checks::new("compose config");
    let config = config();
    c.check(
        config.is_ok(),
        format!("compose config rejects docker-compose.yml: {}", config.as_ref().err().map_or("", |e| e)),
    );
    c.check(!services().is_empty(), "the normalized compose file has services");
    c.assert_all();
}

#[test]
fn bind_mounted_repository_paths_exist() {
    check_bind_mounts(services()).assert_all();
}

fn check_bind_mounts(s: &Services) -> Checks {
    let mut c = Checks::new("bind mounts");
    let repo = repo();
    for (name, svc) in s {
        for (source, _, bind) in volumes_of(svc) {
            if !bind {
                continue;
            }
            let path = normalize(&repo.join(&source));
            match path.strip_prefix(&repo) {
                Ok(rel) => {
                    c.check(path.exists(), format!("{name}: bind-mounted ./{} exists", rel.display()));
                }
                Err(_) => c.note(format!("{name}: host system path {source} (not checked here)")),
            }
        }
    }
    c
}

#[test]
fn awaited_and_long_running_services_have_healthchecks() {
    check_healthchecks(services()).assert_all();
}

fn check_healthchecks(s: &Services) -> Checks {
    let mut c = Checks::new("healthchecks");
    let mut waited_on: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, svc) in s {
        for (dep, spec) in fields(&svc["depends_on"]) {
            if text(&spec["condition"]) == "service_healthy" {
                waited_on.entry(dep).or_default().push(name);
            }
        }
    }
    for (dep, waiters) in &waited_on {
        c.check(
            s.contains_key(*dep) && healthcheck_of(s, dep).is_some(),
            format!("{dep} has a healthcheck ({} wait for it to be healthy)", waiters.join(", ")),
        );
    }
    for (name, svc) in s {
        let restart = text(&svc["restart"]);
        if restart.is_empty() || restart == "no" {
            c.note(format!("{name}: one-shot (restart: no), no healthcheck needed"));
            continue;
        }
        if let Some((_, why)) = NO_HEALTHCHECK.iter().find(|(n, _)| n == name) {
            let hc = &svc["healthcheck"];
            let disabled = hc["disable"].as_bool() == Some(true) || hc["test"] == serde_json::json!(["NONE"]);
            c.check(disabled, format!("{name}: healthcheck explicitly disabled"));
            c.check(!waited_on.contains_key(name.as_str()), format!("{name}: nobody waits for it to be healthy"));
            c.note(format!("{name}: no healthcheck: {why}"));
            continue;
        }
        c.check(healthcheck_of(s, name).is_some(), format!("{name} (long-running) has a healthcheck"));
    }
    c
}

fn networks_of(svc: &Value) -> BTreeSet<String> {
    match &svc["networks"] {
        Value::Object(map) => map.keys().cloned().collect(),
        list => items(list).iter().map(text).collect(),
    }
}

#[test]
fn services_are_hardened_and_split_over_networks_and_grafana_has_no_default_password() {
    check_hardening(services()).assert_all();
}

fn check_hardening(s: &Services) -> Checks {
    let mut c = Checks::new("hardening");
    for (name, svc) in s {
        let opts: Vec<String> = items(&svc["security_opt"]).iter().map(text).collect();
        let privileged = svc["privileged"].as_bool() == Some(true);
        if name != PRIVILEGED {
            c.check(!privileged, format!("{name}: not privileged"));
            c.check(
                opts.iter().any(|o| o == "no-new-privileges:true" || o == "no-new-privileges"),
                format!("{name}: security_opt no-new-privileges"),
            );
        }
        if HARDENED.contains(&name.as_str()) {
            c.check(svc["read_only"].as_bool() == Some(true), format!("{name}: read_only root filesystem"));
            c.check(items(&svc["cap_drop"]).iter().any(|cap| text(cap) == "ALL"), format!("{name}: cap_drop ALL"));
            c.check(items(&svc["cap_add"]).is_empty(), format!("{name}: no cap_add"));
        }
        let networks = networks_of(svc);
        c.check(!networks.is_empty() && !networks.contains("default"), format!("{name}: on named networks only"));
        c.check(
            !networks.contains("stores") || ON_STORES.contains(&name.as_str()),
            format!("{name}: not on the stores network ({networks:?})"),
        );
        let edge = ["nginx", "api1", "api2", "api3"].contains(&name.as_str());
        c.check(networks.contains("edge") == edge, format!("{name}: on the edge network iff NGINX or a replica"));
    }
    let grafana = env_of(service(s, "grafana"));
    c.check(grafana.get("GF_AUTH_ANONYMOUS_ENABLED").is_none_or(|v| v != "true"), "grafana: no anonymous access");
    let raw = read("docker-compose.yml");
    c.check(
        raw.contains("${GRAFANA_ADMIN_PASSWORD:?"),
        "grafana: GRAFANA_ADMIN_PASSWORD is required (${GRAFANA_ADMIN_PASSWORD:?...}), no default committed",
    );
    c.check(read(".gitignore").lines().any(|l| l.trim() == ".env" || l.trim() == "/.env"), ".env is git-ignored");
    c
}

/// The user in a store URL (`scheme://user:password@host...`).
fn url_user(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (cred, _) = rest.split_once('@')?;
    Some(cred.split_once(':').map_or(cred, |(u, _)| u).to_owned())
}

#[test]
fn each_client_of_the_stores_has_its_own_least_privileged_user() {
    check_store_users(services()).assert_all();
}

fn check_store_users(s: &Services) -> Checks {
    use xtask::facts::{PG_API_USER, PG_EXPORTER_USER, REDIS_API_USER, REDIS_SEEDER_USER};
    let mut c = Checks::new("store users");
    // Redis: `--user NAME reset on >PASSWORD RULES...` groups on the command line.
    let cmd = command_of(service(s, "redis"));
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in cmd.split(|a| a == "--user").skip(1) {
        let rules: Vec<String> = group.iter().take_while(|a| !a.starts_with("--")).cloned().collect();
        if let Some((name, rest)) = rules.split_first() {
            let after_password: Vec<String> =
                rest.iter().skip_while(|r| !r.starts_with('>') && *r != "nopass").skip(1).cloned().collect();
            users.insert(name.clone(), after_password);
        }
    }
    let prefix = env_of(service(s, "api1")).get("API_KEY_PREFIX").cloned().unwrap_or_default();
    c.check(
        users.get(REDIS_API_USER) == Some(&xtask::redis::api_acl_rules(&prefix)),
        format!(
            "redis: {REDIS_API_USER}'s rules are xtask::redis::api_acl_rules(\"{prefix}\") ({:?})",
            users.get(REDIS_API_USER)
        ),
    );
    c.check(
        users.get(REDIS_SEEDER_USER) == Some(&xtask::redis::seeder_acl_rules(&prefix)),
        format!("redis: {REDIS_SEEDER_USER}'s rules are xtask::redis::seeder_acl_rules(\"{prefix}\")"),
    );
    let default_rules = users.get("default").cloned().unwrap_or_default();
    c.check(
        default_rules
            .iter()
            .filter(|r| r.starts_with('+') || r.starts_with('~') || r.starts_with('%'))
            .eq(["+ping"].iter()),
        format!("redis: the password-less default user may only PING ({default_rules:?})"),
    );
    for (svc, want) in [("api1", REDIS_API_USER), ("seeder", REDIS_SEEDER_USER)] {
        let url = env_of(service(s, svc)).get("REDIS_URL").cloned().unwrap_or_default();
        c.check(url_user(&url).as_deref() == Some(want), format!("{svc}: REDIS_URL as {want}"));
    }
    let exporter_user = env_of(service(s, "redis-exporter")).get("REDIS_USER").cloned().unwrap_or_default();
    c.check(users.contains_key(&exporter_user), format!("redis-exporter: its REDIS_USER '{exporter_user}' exists"));

    // PostgreSQL: postgres/roles.sql runs at initialisation with the roles the clients use.
    let pg = env_of(service(s, "postgres"));
    let url_of = |svc: &str, var: &str| env_of(service(s, svc)).get(var).and_then(|u| url_user(u));
    c.check(
        volumes_of(service(s, "postgres")).iter().any(|(src, target, _)| {
            src.ends_with("postgres/roles.sql") && target.starts_with("/docker-entrypoint-initdb.d/")
        }),
        "postgres: postgres/roles.sql mounted in /docker-entrypoint-initdb.d",
    );
    c.check(
        pg.get("RESULTS_PG_API_USER").map(String::as_str) == Some(PG_API_USER)
            && url_of("api1", "DATABASE_URL").as_deref() == Some(PG_API_USER),
        format!("api1: DATABASE_URL as {PG_API_USER}, the role roles.sql creates"),
    );
    c.check(
        pg.get("RESULTS_PG_EXPORTER_USER").map(String::as_str) == Some(PG_EXPORTER_USER)
            && url_of("postgres-exporter", "DATA_SOURCE_NAME").as_deref() == Some(PG_EXPORTER_USER),
        format!("postgres-exporter: as {PG_EXPORTER_USER}, the pg_monitor role roles.sql creates"),
    );
    let owner = pg.get("POSTGRES_USER").cloned();
    for (name, svc) in s {
        if name != "seeder" && name != "postgres" {
            let urls = env_of(svc).into_values().filter_map(|v| url_user(&v)).collect::<Vec<_>>();
            c.check(
                owner.as_ref().is_none_or(|o| !urls.contains(o)),
                format!("{name}: does not connect as the owner/superuser {owner:?}"),
            );
        }
    }
    c
}

#[test]
fn only_nginx_grafana_and_prometheus_publish_ports_and_only_on_loopback() {
    check_published_ports(services()).assert_all();
}

fn check_published_ports(s: &Services) -> Checks {
    let mut c = Checks::new("published ports");
    for (name, svc) in s {
        for port in items(&svc["ports"]) {
            let (host_ip, published) = published(port);
            c.check(PUBLISHED.contains(&name.as_str()), format!("{name} may publish a port ({port})"));
            c.check(host_ip == "127.0.0.1", format!("{name}: published port {published} bound to 127.0.0.1"));
        }
    }
    for name in PUBLISHED {
        c.check(!items(&service(s, name)["ports"]).is_empty(), format!("{name} publishes its port"));
    }
    c
}

/// The API replicas as (service, public port, admin port), from their API_LISTEN and
/// API_ADMIN_LISTEN.
fn api_ports(s: &Services) -> Vec<(&String, Option<u16>, Option<u16>)> {
    services_running(s, "api")
        .into_iter()
        .map(|n| {
            let env = env_of(service(s, n));
            let port = |var: &str| env.get(var).and_then(|a| port_of(a));
            (n, port("API_LISTEN"), port("API_ADMIN_LISTEN"))
        })
        .collect()
}

/// NGINX's configuration exactly as the nginx service renders it (docker/nginx-start.sh
/// --print, which runs nginx/render.sh with the compose values).
fn nginx_rendered() -> &'static Result<String, String> {
    static RENDERED: OnceLock<Result<String, String>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let (ok, out, err) = run(Command::new("bash")
            .arg(repo().join("docker/nginx-start.sh"))
            .arg("--print")
            .env("NGINX_PROJECT_DIR", repo().join("nginx"))
            .current_dir(repo()));
        if ok { Ok(out) } else { Err(err) }
    })
}

/// The port of `listen [ADDR:]PORT` directives in a configuration.
fn listens(conf: &str) -> BTreeSet<u16> {
    conf.split([';', '{', '}', '\n'])
        .filter_map(|stmt| stmt.trim().strip_prefix("listen "))
        .filter_map(|args| {
            let addr = args.split_whitespace().next()?;
            addr.rsplit(':').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn api_replicas_listen_where_their_healthchecks_nginx_and_prometheus_look() {
    check_api_ports(services()).assert_all();
}

fn check_api_ports(s: &Services) -> Checks {
    let mut c = Checks::new("api ports");
    let apis = api_ports(s);
    let names: Vec<&str> = apis.iter().map(|(n, ..)| n.as_str()).collect();
    let seeders = services_running(s, "seeder");
    c.check(!apis.is_empty(), format!("api services found: {names:?}"));
    c.check(seeders.len() == 1, format!("seeder service found: {seeders:?}"));
    for (n, public, _) in &apis {
        let env = env_of(service(s, n));
        for var in ["API_LISTEN", "API_ADMIN_LISTEN"] {
            let value = env.get(var).cloned().unwrap_or_default();
            c.check(value.starts_with("0.0.0.0:"), format!("{n}: {var} on every interface ({value})"));
        }
        let probe: Vec<String> =
            healthcheck_of(s, n).map(|hc| items(&hc["test"]).iter().map(text).collect()).unwrap_or_default();
        let want = format!(":{}/healthz", public.unwrap_or_default());
        c.check(probe.join(" ").contains(&want), format!("{n}: healthcheck probes /healthz on {public:?}"));
    }

    // NGINX: the upstream servers of the configuration rendered with the compose values.
    match nginx_rendered() {
        Err(err) => {
            c.check(false, format!("docker/nginx-start.sh --print (nginx/render.sh, compose values) failed: {err}"));
        }
        Ok(rendered) => {
            let upstreams: BTreeMap<&str, Option<u16>> = rendered
                .lines()
                .filter_map(|l| l.trim().strip_prefix("server "))
                .filter_map(|rest| rest.split_whitespace().next()?.trim_end_matches(';').split_once(':'))
                .map(|(host, port)| (host, port.parse().ok()))
                .collect();
            for (n, public, _) in &apis {
                let up = upstreams.get(n.as_str()).copied().flatten();
                c.check(
                    up.is_some() && up == *public,
                    format!("nginx upstream {n}:{up:?} matches API_LISTEN port {public:?}"),
                );
            }
            let extra: Vec<&&str> = upstreams.keys().filter(|u| !names.contains(u)).collect();
            c.check(extra.is_empty(), format!("nginx upstreams are compose api services (extra: {extra:?})"));
            let listening = listens(rendered);
            let public = container_port(s, "nginx");
            c.check(
                public.is_some_and(|p| listening.contains(&p)),
                format!("rendered nginx listens on {public:?} (the published container port)"),
            );
            // The stub_status listener is the one nginx-exporter scrapes.
            let scrape = command_of(service(s, "nginx-exporter")).join(" ");
            let status =
                scrape.split("http://nginx:").nth(1).and_then(|r| r.strip_suffix("/stub_status")?.parse().ok());
            c.check(status.is_some(), format!("nginx-exporter scrapes http://nginx:PORT/stub_status ({scrape})"));
            c.check(
                status.is_some_and(|p: u16| listening.contains(&p)) && rendered.contains("stub_status"),
                format!("rendered nginx serves stub_status on {status:?} (nginx-exporter, healthcheck)"),
            );
            let healthcheck = healthcheck_of(s, "nginx").map(|hc| hc["test"].to_string()).unwrap_or_default();
            c.check(
                status.is_some_and(|p| healthcheck.contains(&format!("/127.0.0.1/{p}"))),
                format!("nginx's healthcheck asks the stub_status listener {status:?}"),
            );
        }
    }

    // Prometheus: the api job's file_sd targets for compose are the replicas' admin ports.
    let mut api_targets: BTreeMap<String, u16> = BTreeMap::new();
    for (file, groups) in prometheus_targets(&mut c) {
        for group in items(&groups) {
            let is_api = text(&group["labels"]["job"]) == "api" || file.starts_with("api");
            for target in items(&group["targets"]).iter().map(text) {
                if let Some((host, port)) = target.rsplit_once(':')
                    && is_api
                {
                    api_targets.insert(host.to_owned(), port.parse().unwrap_or_default());
                }
            }
        }
    }
    for (n, _, admin) in &apis {
        let target = api_targets.get(n.as_str()).copied();
        c.check(
            target.is_some() && target == *admin,
            format!("prometheus api target {n}:{target:?} matches API_ADMIN_LISTEN port {admin:?}"),
        );
    }
    for host in api_targets.keys().filter(|h| !names.contains(&h.as_str())) {
        c.check(false, format!("prometheus api target {host} is a compose service"));
    }
    c
}

/// prometheus/targets/compose/*.json as (file name, parsed groups); a file that is not JSON is
/// a failed check.
fn prometheus_targets(c: &mut Checks) -> Vec<(String, Value)> {
    let dir = repo().join("prometheus/targets/compose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    c.check(!files.is_empty(), "prometheus/targets/compose/*.json exist");
    files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(groups) => Some((name, groups)),
                Err(e) => {
                    c.check(false, format!("prometheus/targets/compose/{name} is valid JSON ({e})"));
                    None
                }
            }
        })
        .collect()
}

/// The port a service's metrics listen on: the exporters' defaults, which the native stack uses
/// too (xtask's facts), Prometheus' published container port, and cAdvisor's healthcheck's.
fn metrics_port(s: &Services, service_name: &str) -> Option<u16> {
    let fact = |var| default_of(var).parse().ok();
    match service_name {
        "nginx-exporter" => fact("STACK_NGINX_EXPORTER_PORT"),
        "redis-exporter" => fact("STACK_REDIS_EXPORTER_PORT"),
        "postgres-exporter" => fact("STACK_PG_EXPORTER_PORT"),
        "node-exporter" => fact("STACK_NODE_EXPORTER_PORT"),
        "prometheus" => container_port(s, "prometheus"),
        "cadvisor" => healthcheck_of(s, "cadvisor").and_then(|hc| {
            let url = items(&hc["test"]).iter().map(text).find(|a| a.starts_with("http://"))?;
            port_of(url.trim_start_matches("http://").split('/').next()?)
        }),
        _ => None,
    }
}

#[test]
fn prometheus_targets_are_compose_services_on_their_ports() {
    check_prometheus_targets(services()).assert_all();
}

fn check_prometheus_targets(s: &Services) -> Checks {
    let mut c = Checks::new("prometheus targets");
    let apis: Vec<&String> = services_running(s, "api");
    for (file, groups) in prometheus_targets(&mut c) {
        for target in items(&groups).iter().flat_map(|g| items(&g["targets"])).map(text) {
            let (host, port) = target.rsplit_once(':').unwrap_or((&target, ""));
            if apis.iter().any(|a| *a == host) {
                continue;
            }
            if host == "host.docker.internal" {
                let mapped = items(&service(s, "prometheus")["extra_hosts"])
                    .iter()
                    .any(|h| text(h).replace('=', ":").starts_with("host.docker.internal:host-gateway"));
                c.check(
                    mapped,
                    format!("{file}: target {target} on the host: prometheus maps host.docker.internal (Linux)"),
                );
            } else if !s.contains_key(host) {
                c.note(format!("{file}: target {target} is not a compose service (yet)"));
            } else if let Some(want) = metrics_port(s, host) {
                c.check(port.parse() == Ok(want), format!("{file}: target {target} is {host}'s port {want}"));
            } else {
                c.check(false, format!("{file}: target {target}: {host} is not a metrics endpoint in compose"));
            }
        }
    }
    c
}

/// YAML files of a repository folder (`*.yml`, `*.yaml`), parsed.
fn yaml_files(rel: &str) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo().join(rel))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| yaml(&std::fs::read_to_string(p).unwrap_or_default(), &p.display().to_string())).collect()
}

#[test]
fn grafana_reads_the_compose_prometheus_and_its_mounted_dashboards() {
    check_grafana(services()).assert_all();
}

fn check_grafana(s: &Services) -> Checks {
    let mut c = Checks::new("grafana");
    let mounts: BTreeSet<String> = volumes_of(service(s, "grafana")).into_iter().map(|(_, target, _)| target).collect();
    let urls: Vec<String> = yaml_files("grafana/provisioning/datasources")
        .iter()
        .flat_map(|f| items(&f["datasources"]).to_vec())
        .filter(|ds| text(&ds["type"]) == "prometheus")
        .map(|ds| text(&ds["url"]))
        .collect();
    c.check(!urls.is_empty(), "grafana provisions a Prometheus datasource");
    let want = format!("http://prometheus:{}", container_port(s, "prometheus").unwrap_or_default());
    for url in &urls {
        c.check(*url == want, format!("grafana datasource url {url} is the compose {want}"));
    }
    for file in yaml_files("grafana/provisioning/dashboards") {
        for provider in items(&file["providers"]) {
            let path = text(&provider["options"]["path"]);
            c.check(mounts.contains(&path), format!("grafana dashboard provider path {path} is a grafana mount"));
        }
    }
    c
}

#[test]
fn every_variable_given_to_api_and_seeder_is_one_they_read() {
    check_variables(services()).assert_all();
}

/// The variables each binary names in its `--help` (the seeder's: all its subcommands').
fn known_variables() -> &'static [(&'static str, BTreeSet<String>); 2] {
    static KNOWN: OnceLock<[(&str, BTreeSet<String>); 2]> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let seeder_help = help("seeder", &[]);
        let mut seeder = help_env(&seeder_help);
        for sub in subcommands(&seeder_help) {
            seeder.extend(help_env(&help("seeder", &[&sub])));
        }
        [("api", help_env(&help("api", &[]))), ("seeder", seeder)]
    })
}

fn check_variables(s: &Services) -> Checks {
    let mut c = Checks::new("compose variables");
    for (binary, known) in known_variables() {
        c.check(known.len() >= 3, format!("{binary} --help names its environment variables ({} found)", known.len()));
        let given: BTreeSet<String> =
            services_running(s, binary).into_iter().flat_map(|n| env_of(service(s, n)).into_keys()).collect();
        c.check(!given.is_empty(), format!("compose gives {binary} variables"));
        for var in given {
            let ok = known.contains(&var) || read_in_sources(binary, &var);
            c.check(ok, format!("{binary}: environment variable {var} is read by the binary"));
        }
    }
    c
}

/// The Dockerfile with its continuation lines joined, comments and blank lines dropped.
fn dockerfile_lines(dockerfile: &str) -> Vec<String> {
    dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The workspace's members, from the root Cargo.toml's `members = [...]`.
fn workspace_members() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let list = manifest.split_once("members").and_then(|(_, r)| r.split_once('[')).and_then(|(_, r)| r.split_once(']'));
    list.map(|(inside, _)| inside.split('"').skip(1).step_by(2).map(str::to_owned).collect()).unwrap_or_default()
}

#[test]
fn dockerfile_copies_every_member_and_runs_as_non_root() {
    check_dockerfile(&read("Dockerfile")).assert_all();
}

fn check_dockerfile(dockerfile: &str) -> Checks {
    let mut c = Checks::new("Dockerfile");
    let lines = dockerfile_lines(dockerfile);
    // Stages in order: (name, base, USER).
    let mut stages: Vec<(String, String, Option<String>)> = Vec::new();
    let mut copies: Vec<String> = Vec::new();
    let mut exposed: Vec<String> = Vec::new();
    for line in &lines {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word.to_uppercase().as_str() {
            "FROM" => {
                let parts: Vec<&str> = rest.split_whitespace().filter(|p| !p.starts_with("--")).collect();
                let name = match parts.as_slice() {
                    [_, as_, name, ..] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                    _ => format!("#{}", stages.len()),
                };
                stages.push((name, parts.first().copied().unwrap_or_default().to_owned(), None));
            }
            "EXPOSE" => exposed.extend(rest.split_whitespace().map(|p| p.trim_end_matches("/tcp").to_owned())),
            "USER" => {
                if let Some(stage) = stages.last_mut() {
                    stage.2 = Some(rest.trim().to_owned());
                }
            }
            "COPY" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                if !parts.iter().any(|p| p.starts_with("--from")) && parts.len() > 1 {
                    copies.extend(
                        parts[..parts.len() - 1].iter().filter(|p| !p.starts_with("--")).map(|p| (*p).to_owned()),
                    );
                }
            }
            _ => {}
        }
    }

    // The admin port (/metrics, pprof) is documented as not for the world: an image that
    // EXPOSEs it invites `docker run -P` and platforms that publish exposed ports to publish it.
    let admin_port = lines
        .iter()
        .find_map(|l| l.split("API_ADMIN_LISTEN=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|addr| addr.rsplit_once(':'))
        .map(|(_, port)| port.to_owned());
    c.check(admin_port.is_some(), "the Dockerfile sets API_ADMIN_LISTEN");
    c.check(
        admin_port.as_ref().is_none_or(|port| !exposed.contains(port)),
        format!("the admin port {admin_port:?} is not EXPOSEd ({exposed:?})"),
    );

    // Every member's manifest (the dependency layer) and sources are copied: a crate added to
    // the workspace must be added to the Dockerfile too, or cargo cannot load the workspace.
    // A member the image never builds (no `-p`, no crate's path dependency; xtask) needs only its
    // manifest and a placeholder, so editing it does not invalidate the image's build layer.
    let members = workspace_members();
    let manifest = read("Cargo.toml");
    let built: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.starts_with("RUN "))
        .flat_map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .filter(|w| w[0] == "-p")
                .map(|w| w[1])
                .collect::<Vec<_>>()
        })
        .collect();
    c.check(!members.is_empty(), "Cargo.toml lists workspace members");
    c.check(!built.is_empty(), format!("the Dockerfile builds packages ({built:?})"));
    for member in &members {
        c.check(
            copies.contains(&format!("{member}/Cargo.toml")),
            format!("Dockerfile copies {member}/Cargo.toml (dependency layer)"),
        );
        let needed = built.contains(member.as_str()) || manifest.contains(&format!("{member} = {{ path"));
        c.check(
            copies.contains(&format!("{member}/src")) || !needed,
            format!("Dockerfile copies {member}/src (it builds it or a crate depends on it)"),
        );
    }
    // A patched dependency ([patch.crates-io] with a path, e.g. vendor/fred) is built in the
    // dependency layer like any crate: without its folder cargo cannot resolve the workspace.
    let patches: Vec<&str> = manifest
        .split_once("[patch.")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.starts_with("[workspace") && !l.starts_with("[profile"))
        .filter_map(|l| l.split_once("path = \"").and_then(|(_, r)| r.split_once('"')).map(|(p, _)| p))
        .collect();
    for patch in &patches {
        let top = patch.split('/').next().unwrap_or(patch);
        c.check(
            copies.iter().any(|src| src.trim_end_matches('/') == *patch || src.trim_end_matches('/') == top),
            format!("Dockerfile copies the patched dependency {patch}"),
        );
    }
    let ignored: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for src in &copies {
        let top = src.trim_end_matches('/').split('/').next().unwrap_or_default();
        c.check(
            repo().join(src).exists() && !ignored.iter().any(|i| i == top),
            format!("Dockerfile COPY source {src} exists and is not ignored"),
        );
    }

    // A stage without USER runs as its base's user: a stage's, or the base image's (root).
    let effective_user = |stage: &str| {
        let mut seen = BTreeSet::new();
        let mut current = stage.to_owned();
        loop {
            let (_, base, user) = stages.iter().find(|(n, ..)| *n == current)?;
            if let Some(user) = user {
                return Some(user.clone());
            }
            if !seen.insert(current.clone()) {
                return None;
            }
            current = base.clone();
        }
    };
    let non_root =
        |user: &Option<String>| user.as_deref().is_some_and(|u| !matches!(u.split(':').next(), Some("root" | "0")));
    let last = stages.last().map(|(n, ..)| n.clone()).unwrap_or_default();
    let user = effective_user(&last);
    c.check(non_root(&user), format!("Dockerfile: final stage {last} runs as a non-root USER ({user:?})"));
    for stage in ["runtime", "api", "seeder"] {
        if stages.iter().any(|(n, ..)| n == stage) {
            let user = effective_user(stage);
            c.check(non_root(&user), format!("Dockerfile: stage {stage} runs as USER {user:?}"));
        }
    }
    c
}

#[test]
fn nginx_accepts_the_configuration_the_nginx_service_renders() {
    // NGINX is not installed just for this (the edge tests install it).
    let Some(nginx) = optional_tool("nginx") else {
        eprintln!("note: nginx not installed: the compose configuration is not checked with nginx -t");
        return;
    };
    let mut c = Checks::new("compose nginx -t");
    let rendered = nginx_rendered().as_ref().expect("docker/nginx-start.sh --print renders");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp/");
    let conf = localized_nginx_conf(rendered, dir.path(), &[]);
    let path = dir.path().join("nginx-test.conf");
    std::fs::write(&path, conf).expect("write the configuration");
    let (ok, out, err) = run(Command::new(nginx).args(["-t", "-q", "-c"]).arg(&path));
    c.check(ok, format!("nginx -t on the compose configuration: {out}{err}"));
    c.assert_all();
}

/// A container's NGINX configuration made testable on this machine: upstream host names become
/// 127.0.0.1, the in-container folders `dir`, no `user` line (we may not be root); `replace`
/// holds further (from, to) substitutions.
pub fn localized_nginx_conf(conf: &str, dir: &Path, replace: &[(&str, String)]) -> String {
    let mut out = String::new();
    for line in conf.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("user ") && trimmed.ends_with(';') {
            out.push('\n');
            continue;
        }
        let mut line = line.replace("/var/cache/nginx-edge", &dir.display().to_string());
        if let Some(rest) = trimmed.strip_prefix("server ")
            && let Some((host, _)) = rest.split_once(':')
            && host.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        {
            line = line.replacen(&format!("server {host}:"), "server 127.0.0.1:", 1);
        }
        for (from, to) in replace.iter().filter(|(from, _)| !from.is_empty()) {
            line = line.replace(from, to);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn promtool_accepts_prometheus_as_mounted_in_its_container() {
    // promtool is not installed just for this (the monitoring tests install it).
    let Some(promtool) = optional_tool("promtool") else {
        eprintln!("note: promtool not installed: the mounted Prometheus configuration is not checked");
        return;
    };
    let mut c = Checks::new("compose promtool");
    // The prometheus service's bind mounts rebuilt under a temporary root.
    let root = tempfile::tempdir().expect("temp dir");
    let mut config_file = None;
    for (source, target, bind) in volumes_of(service(services(), "prometheus")) {
        if !bind {
            continue;
        }
        let link = root.path().join(target.trim_start_matches('/'));
        std::fs::create_dir_all(link.parent().expect("a parent")).expect("mount point's folder");
        std::os::unix::fs::symlink(&source, &link).expect("symlink");
        if target.ends_with("prometheus.yml") {
            config_file = Some(link);
        }
    }
    let flag = command_of(service(services(), "prometheus"))
        .into_iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_owned));
    let want = flag.map(|f| root.path().join(f.trim_start_matches('/')));
    c.check(
        config_file.is_some() && config_file == want,
        format!("prometheus' --config.file {want:?} is a mounted file"),
    );
    if let Some(file) = want {
        let (ok, out, err) = run(Command::new(promtool).args(["check", "config"]).arg(&file));
        c.check(ok, format!("promtool check config on the prometheus service's mounts: {out}{err}"));
    }
    c.assert_all();
}

fn svc_mut<'a>(s: &'a mut Services, name: &str) -> &'a mut Value {
    s.get_mut(name).unwrap_or_else(|| panic!("no service {name}"))
}

fn push(list: &mut Value, item: Value) {
    list.as_array_mut().expect("a list").push(item);
}

/// A broken copy of the normalized compose file: what was broken, how, the checks that read it,
/// and the failed check that must name it.
type Mutation = (&'static str, fn(&mut Services), fn(&Services) -> Checks, &'static str);

const MUTATIONS: &[Mutation] = &[
    (
        "the API reading Redis as the seeder",
        |s| {
            svc_mut(s, "api2")["environment"]["REDIS_URL"] =
                "redis://results-seeder:seeder-local-only@redis:6379".into();
            svc_mut(s, "api1")["environment"]["REDIS_URL"] =
                "redis://results-seeder:seeder-local-only@redis:6379".into();
        },
        check_store_users,
        "api1: REDIS_URL as results-api",
    ),
    (
        "the API's Redis user allowed to write",
        |s| {
            let cmd = svc_mut(s, "redis")["command"].as_array_mut().expect("a list");
            let at = cmd.iter().position(|a| a == "results-api").expect("the API's user") + 4;
            cmd.insert(at, "+@write".into());
        },
        check_store_users,
        "results-api's rules are xtask::redis::api_acl_rules",
    ),
    (
        "the exporter as the PostgreSQL owner",
        |s| {
            svc_mut(s, "postgres-exporter")["environment"]["DATA_SOURCE_NAME"] =
                "postgresql://results:results-local-only@postgres:5432/results".into()
        },
        check_store_users,
        "postgres-exporter: does not connect as the owner",
    ),
    (
        "NGINX on the stores network",
        |s| svc_mut(s, "nginx")["networks"]["stores"] = Value::Null,
        check_hardening,
        "nginx: not on the stores network",
    ),
    (
        "a replica with a writable root filesystem",
        |s| svc_mut(s, "api2")["read_only"] = false.into(),
        check_hardening,
        "api2: read_only root filesystem",
    ),
    (
        "the seeder given a capability back",
        |s| svc_mut(s, "seeder")["cap_add"] = serde_json::json!(["NET_ADMIN"]),
        check_hardening,
        "seeder: no cap_add",
    ),
    (
        "Grafana open to anonymous viewers",
        |s| svc_mut(s, "grafana")["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] = "true".into(),
        check_hardening,
        "grafana: no anonymous access",
    ),
    (
        "a privileged exporter",
        |s| svc_mut(s, "redis-exporter")["privileged"] = true.into(),
        check_hardening,
        "redis-exporter: not privileged",
    ),
    (
        "a bind mount of a missing file",
        |s| {
            let mount = format!("{}/nginx/missing.conf:/etc/nginx/missing.conf:ro", repo().display());
            push(&mut svc_mut(s, "nginx")["volumes"], mount.into());
        },
        check_bind_mounts,
        "nginx: bind-mounted ./nginx/missing.conf exists",
    ),
    (
        "a store others wait for without a healthcheck",
        |s| drop(svc_mut(s, "redis").as_object_mut().expect("a service").remove("healthcheck")),
        check_healthchecks,
        "redis has a healthcheck (",
    ),
    (
        "a healthcheck the FROM scratch exporter cannot run",
        |s| svc_mut(s, "nginx-exporter")["healthcheck"] = serde_json::json!({"test": ["CMD", "true"]}),
        check_healthchecks,
        "nginx-exporter: healthcheck explicitly disabled",
    ),
    (
        "a service waiting for the exporter without a healthcheck",
        |s| svc_mut(s, "grafana")["depends_on"]["nginx-exporter"] = serde_json::json!({"condition": "service_healthy"}),
        check_healthchecks,
        "nginx-exporter: nobody waits for it to be healthy",
    ),
    (
        "Redis published to the host",
        |s| svc_mut(s, "redis")["ports"] = serde_json::json!(["127.0.0.1:6379:6379"]),
        check_published_ports,
        "redis may publish a port",
    ),
    (
        "Grafana published on every interface",
        |s| svc_mut(s, "grafana")["ports"] = serde_json::json!(["3000:3000"]),
        check_published_ports,
        "grafana: published port 3000 bound to 127.0.0.1",
    ),
    (
        "a replica listening where NGINX does not look",
        |s| svc_mut(s, "api2")["environment"]["API_LISTEN"] = "0.0.0.0:8082".into(),
        check_api_ports,
        "nginx upstream api2:",
    ),
    (
        "a replica's admin port where Prometheus does not look",
        |s| svc_mut(s, "api1")["environment"]["API_ADMIN_LISTEN"] = "0.0.0.0:8182".into(),
        check_api_ports,
        "prometheus api target api1:",
    ),
    (
        "a replica's healthcheck on another port",
        |s| {
            svc_mut(s, "api3")["healthcheck"]["test"] =
                serde_json::json!(["CMD", "curl", "http://127.0.0.1:9999/healthz"])
        },
        check_api_ports,
        "api3: healthcheck probes /healthz",
    ),
    (
        "the NGINX exporter scraping a port NGINX does not serve",
        |s| {
            svc_mut(s, "nginx-exporter")["command"] =
                serde_json::json!(["--nginx.scrape-uri=http://nginx:8090/stub_status"])
        },
        check_api_ports,
        "rendered nginx serves stub_status",
    ),
    (
        "Prometheus without the host mapping the load generator's target needs",
        |s| drop(svc_mut(s, "prometheus").as_object_mut().expect("a service").remove("extra_hosts")),
        check_prometheus_targets,
        "prometheus maps host.docker.internal",
    ),
    (
        "Prometheus listening where Grafana does not look",
        |s| svc_mut(s, "prometheus")["ports"] = serde_json::json!(["127.0.0.1:9090:9091"]),
        check_grafana,
        "grafana datasource url http://prometheus:9090",
    ),
    (
        "Grafana's dashboards not mounted",
        |s| {
            svc_mut(s, "grafana")["volumes"]
                .as_array_mut()
                .expect("volumes")
                .retain(|v| !v.to_string().contains("dashboards"))
        },
        check_grafana,
        "grafana dashboard provider path",
    ),
    (
        "a misspelt seeder variable",
        |s| svc_mut(s, "seeder")["environment"]["SEEDER_STUDENT"] = "10".into(),
        check_variables,
        "seeder: environment variable SEEDER_STUDENT is read by the binary",
    ),
    (
        "an API variable no binary reads",
        |s| svc_mut(s, "api1")["environment"]["API_DRAIN_DELAY"] = "10".into(),
        check_variables,
        "api: environment variable API_DRAIN_DELAY is read by the binary",
    ),
];

/// A broken copy of the Dockerfile: what was broken, how, and the failed check that must name it.
type DockerfileMutation = (&'static str, fn(&str) -> String, &'static str);

const DOCKERFILE_MUTATIONS: &[DockerfileMutation] = &[
    (
        "no USER: the image runs as root",
        |d| d.replace("\nUSER ", "\n# USER "),
        "final stage default runs as a non-root USER",
    ),
    ("USER root", |d| d.replace("\nUSER 10001:10001", "\nUSER root"), "final stage default runs as a non-root USER"),
    ("the admin port EXPOSEd", |d| d.replace("\nEXPOSE 8081\n", "\nEXPOSE 8081 8181\n"), "the admin port"),
    ("a built crate's sources not copied", |d| d.replace("\nCOPY api/src api/src", "\n"), "Dockerfile copies api/src"),
    (
        "a member's manifest not copied",
        |d| d.replace("\nCOPY xtask/Cargo.toml", "\n# COPY"),
        "Dockerfile copies xtask/Cargo.toml",
    ),
    (
        "the patched fred not copied",
        |d| d.replace("\nCOPY vendor vendor", "\n"),
        "Dockerfile copies the patched dependency vendor/fred",
    ),
    (
        "a COPY of an ignored folder",
        |d| d.replace("\nCOPY migrations migrations", "\nCOPY migrations migrations\nCOPY target/debug/api /x"),
        "Dockerfile COPY source target/debug/api exists and is not ignored",
    ),
];

#[test]
fn broken_compose_files_and_dockerfiles_are_each_rejected_naming_what_broke() {
    let mut c = Checks::new("compose broken copies");
    let good = services();
    for (what, mutate, checks, expect) in MUTATIONS {
        let unbroken = checks(good);
        c.check(unbroken.failures().is_empty(), format!("the unbroken file passes the checks '{what}' breaks"));
        let mut broken = good.clone();
        mutate(&mut broken);
        let failures = checks(&broken).failures().to_vec();
        c.check(
            failures.iter().any(|f| f.contains(expect)),
            format!("a broken compose file ({what}) is not rejected with '{expect}' (failures: {failures:?})"),
        );
    }
    let dockerfile = read("Dockerfile");
    c.check(check_dockerfile(&dockerfile).failures().is_empty(), "the unbroken Dockerfile passes");
    for (what, mutate, expect) in DOCKERFILE_MUTATIONS {
        let broken = mutate(&dockerfile);
        c.check(broken != dockerfile, format!("the Dockerfile mutation '{what}' changes the file"));
        let failures = check_dockerfile(&broken).failures().to_vec();
        c.check(
            failures.iter().any(|f| f.contains(expect)),
            format!("a broken Dockerfile ({what}) is not rejected with '{expect}' (failures: {failures:?})"),
        );
    }
    c.assert_all();
}

/// docker-compose.yml's services as written (merge keys applied, variables left as they are),
/// for the Kubernetes tests, which need no compose installed.
pub fn raw_services() -> Map<String, Value> {
    let raw = yaml(&read("docker-compose.yml"), "docker-compose.yml");
    raw["services"].as_object().cloned().unwrap_or_default()
}

/// A raw compose service's environment with every `${VAR:-default}` at its default.
pub fn raw_env(svc: &Value) -> BTreeMap<String, String> {
    env_of(svc).into_iter().map(|(k, v)| (k, compose_default(&v))).collect()
}
