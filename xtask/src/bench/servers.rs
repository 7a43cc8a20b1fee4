//! The servers `bench api` and `bench stack` start for themselves, on free loopback ports, never
//! touching the stack's own replicas or NGINX: API replicas (the release binary with default
//! settings), private NGINX masters in throw-away folders, and what is read from them
//! (`/metrics`, headers, bodies).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::bench::host::Children;
use crate::bench::stores::Stores;
use crate::bench::wrk::Load;
use crate::bench::{Run, Vars, flag, get as get_var, positive};
use crate::facts::Variable;
use crate::net::{Response, http};
use crate::supervise::{show_log_tail, wait_for};

/// Every server binds here.
pub const HOST: &str = "127.0.0.1";

/// The settings `bench api` and `bench stack` share (each table holds its own defaults).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// BENCH_KEY_PREFIX: the data set's Redis key prefix.
    pub prefix: String,
    /// BENCH_DURATION: seconds of each measured run.
    pub duration: u64,
    /// BENCH_WARMUP: seconds of warm-up per target.
    pub warmup: u64,
    /// BENCH_THREADS and BENCH_CONNECTIONS.
    pub load: Load,
    /// BENCH_BUILD.
    pub build: bool,
    /// BENCH_START_TIMEOUT: seconds a server has to become ready.
    pub start_timeout: u64,
}

/// The variables [`http_settings`] reads besides BENCH_KEY_PREFIX, and the stores' URLs: the
/// same in `bench api` and `bench stack`, each of whose tables lists them.
pub mod vars {
    use crate::facts::Variable;

    /// BENCH_DURATION.
    pub const DURATION: Variable =
        Variable { name: "BENCH_DURATION", default: "15", help: "Seconds of each measured run." };
    /// BENCH_WARMUP.
    pub const WARMUP: Variable =
        Variable { name: "BENCH_WARMUP", default: "5", help: "Seconds of warm-up per target before the first round." };
    /// BENCH_CONNECTIONS.
    pub const CONNECTIONS: Variable =
        Variable { name: "BENCH_CONNECTIONS", default: "64", help: "wrk keep-alive connections." };
    /// BENCH_THREADS.
    pub const THREADS: Variable = Variable {
        name: "BENCH_THREADS",
        default: "1",
        help: "wrk threads (keep 1: wrk shares the cores with the servers).",
    };
    /// BENCH_BUILD.
    pub const BUILD: Variable = Variable {
        name: "BENCH_BUILD",
        default: "1",
        help: "0: use the existing release api and seeder, no cargo build.",
    };
    /// BENCH_START_TIMEOUT.
    pub const START_TIMEOUT: Variable =
        Variable { name: "BENCH_START_TIMEOUT", default: "60", help: "Seconds to wait for a server to become ready." };
    /// DATABASE_URL (and REDIS_URL with it).
    pub const STORES: Variable = Variable {
        name: "DATABASE_URL",
        default: "",
        help: "[the stack's, as `cargo xtask stack env` prints it, unless both are set] With \
               REDIS_URL (redis://host:port), the stores; loopback only, and they must answer.",
    };
}

/// Reads [`HttpSettings`]; errors name the variable.
pub fn http_settings(vars: &impl Vars, table: &[Variable]) -> Result<HttpSettings> {
    let prefix = get_var(vars, table, "BENCH_KEY_PREFIX");
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        bail!("BENCH_KEY_PREFIX may hold letters, digits, '_' and '-' only");
    }
    let small = |name| -> Result<u32> {
        u32::try_from(positive(vars, table, name)?).with_context(|| format!("{name} is too large"))
    };
    Ok(HttpSettings {
        prefix,
        duration: positive(vars, table, "BENCH_DURATION")?,
        warmup: positive(vars, table, "BENCH_WARMUP")?,
        load: Load { threads: small("BENCH_THREADS")?, connections: small("BENCH_CONNECTIONS")? },
        build: flag(vars, table, "BENCH_BUILD")?,
        start_timeout: positive(vars, table, "BENCH_START_TIMEOUT")?,
    })
}

/// GET `path` on `port` (HTTP/1.0), with `timeout`.
pub fn get(port: u16, path: &str, timeout: Duration) -> Option<Response> {
    http("GET", HOST, port, path, timeout).ok()
}

/// GET `path`: the body of a 2xx, else None.
pub fn get_ok(port: u16, path: &str) -> Option<String> {
    get(port, path, Duration::from_secs(5)).filter(|r| (200..300).contains(&r.status)).map(|r| r.body)
}

/// An API replica we started.
#[derive(Debug, Clone)]
pub struct Replica {
    /// `api`, `api-nocache`, `api1` ...
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Public port.
    pub port: u16,
    /// Admin port (/metrics, /debug/pprof).
    pub admin: u16,
}

impl Replica {
    /// `host:port` of its public listener.
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }
}

/// How replicas are started.
pub struct ApiSpec<'a> {
    /// target/release/api.
    pub bin: &'a Path,
    /// The stores.
    pub stores: &'a Stores,
    /// API_KEY_PREFIX.
    pub prefix: &'a str,
    /// Seconds to wait for readiness with the complete data set.
    pub start_timeout: u64,
}

/// Whether a /readyz body reports the complete data set and a near cache that is done loading
/// (complete, or off or over its budget): a replica still copying the data set would measure its
/// warm-up, not its steady state.
fn ready_and_warm(body: &str) -> bool {
    body.contains("\"complete_data_set\":true")
        && !body.contains("\"near_cache\":\"warming\"")
        && !body.contains("\"near_cache\":\"resyncing\"")
}

/// Starts a replica with none of our API_* variables (its defaults) plus `extra`, its log in
/// `<out>/<name>.log`, and waits until /readyz reports the complete data set and a warm near
/// cache.
pub fn start_api(
    children: &mut Children,
    run: &Run,
    spec: &ApiSpec<'_>,
    name: &str,
    (port, admin): (u16, u16),
    extra: &[(&str, String)],
) -> Result<Replica> {
    let log_path = run.file(&format!("{name}.log"));
    let log = fs::File::create(&log_path)?;
    let mut c = Command::new(spec.bin);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("API_")) {
        c.env_remove(k);
    }
    c.env("API_LISTEN", format!("{HOST}:{port}"))
        .env("API_ADMIN_LISTEN", format!("{HOST}:{admin}"))
        .env("API_KEY_PREFIX", spec.prefix)
        // `bench api` fetches a CPU profile from the admin port (off by default in the API).
        .env("API_PPROF", "on")
        .env("DATABASE_URL", &spec.stores.database_url)
        .env("REDIS_URL", &spec.stores.redis_url)
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let pid = children.spawn(name, &mut c)?;
    let deadline = Instant::now() + Duration::from_secs(spec.start_timeout);
    loop {
        let ready = get(port, "/readyz", Duration::from_secs(2)).is_some_and(|r| ready_and_warm(&r.body));
        if ready {
            break;
        }
        if !children.running(pid) {
            show_log_tail(&log_path);
            bail!("{name} (API on {HOST}:{port}) exited during startup; its log: {}", log_path.display());
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} (API on {HOST}:{port}) not ready with the complete data set within {}s; log: {}",
                spec.start_timeout,
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    note!("{name}: API pid {pid} on http://{HOST}:{port} (admin {HOST}:{admin}) is ready");
    Ok(Replica { name: name.to_owned(), pid, port, admin })
}

/// Checks the wrk script's range is the served data set: first and last known, next unknown.
pub fn check_data_set(port: u16, (first, last): (u32, u32)) -> Result<()> {
    for id in [first, last] {
        if get_ok(port, &format!("/v1/results/{id}")).is_none() {
            bail!("the API does not serve /v1/results/{id}: is the data set the default one?");
        }
    }
    let status = get(port, &format!("/v1/results/{}", last + 1), Duration::from_secs(2)).map_or(0, |r| r.status);
    if status != 404 {
        note!("warning: /v1/results/{} answered {status}, not 404: the data set is not the default one", last + 1);
    }
    Ok(())
}

/// A private NGINX folder under $TMPDIR (temp paths, document root, the micro-cache), world
/// readable for workers that run as nobody; its error.log is copied into the run folder and the
/// folder removed when dropped (after our NGINX stopped: keep these before the [`Children`]).
pub struct NginxDir {
    /// The folder.
    pub path: PathBuf,
    keep_log_as: PathBuf,
}

impl NginxDir {
    /// Creates `$TMPDIR/<prefix>.<random>` with `tmp/` and `www/`.
    pub fn create(prefix: &str, keep_log_as: PathBuf) -> Result<NginxDir> {
        let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = tmp.join(format!("{prefix}.{}{nanos:x}", std::process::id()));
        fs::create_dir_all(path.join("tmp")).with_context(|| format!("cannot create {}", path.display()))?;
        fs::create_dir_all(path.join("www"))?;
        for p in [path.clone(), path.join("www")] {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        }
        Ok(NginxDir { path, keep_log_as })
    }

    /// Writes the body every /v1/results/<id> of a static NGINX answers.
    pub fn put_body(&self, body: &str) -> Result<()> {
        let file = self.path.join("www/result.json");
        fs::write(&file, body)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }
}

impl Drop for NginxDir {
    fn drop(&mut self) {
        fs::copy(self.path.join("error.log"), &self.keep_log_as).ok();
        fs::remove_dir_all(&self.path).ok();
    }
}

/// Fills a template of scripts/bench/ (`@NAME@` placeholders).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_owned(), |t, (k, v)| t.replace(&format!("@{k}@"), v))
}

/// Checks `dir/nginx.conf` with `nginx -t` and starts its master in the foreground (daemon
/// off), output to `<out>/<stem>.log`, `nginx -t`'s to `<out>/<stem>-test.log`. Returns its pid.
pub fn start_nginx(children: &mut Children, run: &Run, stem: &str, dir: &Path) -> Result<u32> {
    let prefix = format!("{}/", dir.display());
    let conf = dir.join("nginx.conf");
    let error_log = dir.join("error.log");
    let test_log = run.file(&format!("{stem}-test.log"));
    let out = Command::new("nginx")
        .args(["-t", "-q", "-p", &prefix, "-e"])
        .arg(&error_log)
        .arg("-c")
        .arg(&conf)
        .output()
        .context("cannot run nginx -t")?;
    fs::write(&test_log, [out.stdout, out.stderr].concat())?;
    if !out.status.success() {
        bail!("nginx rejects the configuration {}: see {}", conf.display(), test_log.display());
    }
    let log = fs::File::create(run.file(&format!("{stem}.log")))?;
    let mut c = Command::new("nginx");
    c.args(["-p", &prefix, "-e"])
        .arg(&error_log)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    children.spawn("nginx", &mut c)
}

/// The worker processes and cache manager of NGINX master `master` (not the cache loader,
/// which exits a minute after the start), waiting up to 5 s for the first.
pub fn nginx_workers(master: u32) -> Vec<u32> {
    let mut found = Vec::new();
    wait_for(Duration::from_secs(5), || {
        found = children_of(master, &["nginx: worker process", "nginx: cache manager"]);
        !found.is_empty()
    });
    found
}

/// Processes whose parent is `parent` and whose command line starts with one of `prefixes`.
fn children_of(parent: u32, prefixes: &[&str]) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmd = crate::supervise::proc_cmdline(*pid);
            ppid == Some(parent) && prefixes.iter().any(|p| cmd.starts_with(p))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// `nginx -v`'s version, `nginx/1.22.1`.
pub fn nginx_version() -> String {
    let out = Command::new("nginx").arg("-v").output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
    out.unwrap_or_default().trim().trim_start_matches("nginx version: ").to_owned()
}

/// wrk's banner, `wrk 4.1.0` (`wrk --version` prints it and exits 1).
pub fn wrk_version() -> String {
    let out = Command::new("wrk")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).into_owned());
    out.unwrap_or_default().lines().next().unwrap_or("").split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The sum of the samples of `metric{...}` lines of a Prometheus text exposition that `keep`
/// accepts (given the line).
pub fn metric_sum(text: &str, metric: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(metric).is_some_and(|r| r.starts_with('{')) && keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // From +0.0: an empty f64 sum() is -0.0, which prints as "-0".
        .fold(0.0, |a, b| a + b)
}

/// The value of label `label` in a sample line.
pub fn label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let at = line.find(&format!("{label}=\""))? + label.len() + 2;
    line[at..].split('"').next()
}

/// Installs what a benchmark needs and is missing (Debian packages, as root): wrk, nginx,
/// curl-free since the probes are ours, plus `extra` as (package, command).
pub fn ensure_tools(extra: &[(&str, &str)]) -> Result<()> {
    let wanted = [("wrk", "wrk"), ("nginx", "nginx")].iter().chain(extra);
    let missing: Vec<String> =
        wanted.filter(|(_, cmd)| !crate::supervise::have(cmd)).map(|(pkg, _)| (*pkg).to_owned()).collect();
    crate::apt::install(&missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_measured_once_its_near_cache_is_done_loading() {
        let body =
            |complete: bool, near: &str| format!("{{\"complete_data_set\":{complete},\"near_cache\":\"{near}\"}}");
        for near in ["complete", "off", "bounded"] {
            assert!(ready_and_warm(&body(true, near)), "{near}");
        }
        for near in ["warming", "resyncing"] {
            assert!(!ready_and_warm(&body(true, near)), "{near}");
        }
        assert!(!ready_and_warm(&body(false, "complete")), "the data set first");
        // A replica from before the near cache.
        assert!(ready_and_warm("{\"complete_data_set\":true}"));
    }

    #[test]
    fn templates_fill_every_placeholder() {
        assert_eq!(
            fill("root @DIR@/www; listen @LISTEN@; pid @DIR@/p;", &[("DIR", "/t"), ("LISTEN", "127.0.0.1:1")]),
            "root /t/www; listen 127.0.0.1:1; pid /t/p;"
        );
    }

    #[test]
    fn metrics_are_summed_over_the_chosen_lines() {
        let text = "# HELP http_requests_total x\n\
                    http_requests_total{method=\"GET\",route=\"/v1/results/{id}\",status=\"200\"} 40\n\
                    http_requests_total{method=\"GET\",route=\"/student/{id}\",status=\"200\"} 2\n\
                    http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 7\n\
                    http_requests_total_other{route=\"/v1/results/{id}\"} 1000\n";
        let results =
            |l: &str| label(l, "route").is_some_and(|r| r.starts_with("/v1/results/") || r.starts_with("/student/"));
        assert!((metric_sum(text, "http_requests_total", results) - 42.0).abs() < 1e-9);
        assert_eq!(label("x{tier=\"memory\",outcome=\"hit\"} 3", "outcome"), Some("hit"));
    }
}
