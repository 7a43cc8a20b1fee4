//! The stack's commands: `up`, `down [--purge]`, `stop SERVICE...`, `status` and `env`, each
//! dispatching to the services' own modules in start order (reverse order to stop), under a
//! lock on the stack folder so two of us never work on one stack at once.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::facts::MARKER;
use crate::pg::Status;
use crate::service::{Monitor, Service, start_order};
use crate::supervise::have;
use crate::{api, apt, monitor, nginx, pg, redis, say};

/// Exit status of `status` when a chosen service does not run.
pub const STATUS_NOT_RUNNING: u8 = 3;

fn preflight(c: &Config, svc: Service) -> Result<()> {
    match svc {
        Service::Pg => pg::preflight(c),
        Service::PgReplica => pg::replica_preflight(c),
        Service::Redis => redis::preflight(c),
        Service::RedisCluster => redis::cluster_preflight(c),
        Service::Api(n) => api::preflight(c, n),
        Service::Nginx => nginx::preflight(c),
        Service::Monitor(m) => monitor::preflight(c, m),
    }
}

fn start(c: &Config, svc: Service) -> Result<()> {
    match svc {
        Service::Pg => pg::up(c),
        Service::PgReplica => pg::replica_up(c),
        Service::Redis => redis::up(c),
        Service::RedisCluster => redis::cluster_up(c),
        Service::Api(n) => api::up(c, n),
        Service::Nginx => nginx::up(c),
        Service::Monitor(m) => monitor::up(c, m),
    }
}

fn stop(c: &Config, svc: Service) -> Result<()> {
    match svc {
        Service::Pg => pg::down(c),
        Service::PgReplica => pg::replica_down(c),
        Service::Redis => redis::down(c),
        Service::RedisCluster => redis::cluster_down(c),
        Service::Api(n) => api::down(c, n),
        Service::Nginx => nginx::down(c),
        Service::Monitor(m) => monitor::down(c, m),
    }
}

fn status_of(c: &Config, svc: Service) -> Status {
    match svc {
        Service::Pg => pg::status(c),
        Service::PgReplica => pg::replica_status(c),
        Service::Redis => redis::status(c),
        Service::RedisCluster => redis::cluster_status(c),
        Service::Api(n) => api::status(c, n),
        Service::Nginx => nginx::status(c),
        Service::Monitor(m) => monitor::status(c, m),
    }
}

/// The status line's name: `postgres` for pg, as the status table always said.
fn status_name(svc: Service) -> String {
    if svc == Service::Pg { "postgres".into() } else { svc.to_string() }
}

/// One status line, `NAME STATE pid=PID HOST:PORT EXTRA`, and whether the service runs.
pub fn status_line(c: &Config, svc: Service) -> (String, bool) {
    let (state, pid, port, extra, ok) = status_of(c, svc);
    let pid = pid.map_or("-".into(), |p| p.to_string());
    (format!("{:<14} {:<9} pid={:<8} {}:{:<6} {}", status_name(svc), state, pid, c.url_host(), port, extra), ok)
}

/// Every service, plus replicas beyond STACK_API_REPLICAS that still have a pid file.
fn known_services(c: &Config) -> Vec<Service> {
    let mut all = start_order(c.api_replicas);
    all.extend(api::extra_replicas(c).into_iter().map(Service::Api));
    all
}

/// Debian packages `up` needs that are missing.
fn missing_packages(c: &Config) -> Vec<String> {
    let mut missing = Vec::new();
    if pg::installed_bins().is_empty() {
        missing.push("postgresql");
    }
    for (program, package) in [
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("nginx", "nginx"),
        ("prometheus", "prometheus"),
    ] {
        if !have(program) {
            missing.push(package);
        }
    }
    for svc in &c.selected {
        if let Service::Monitor(m) = svc
            && *m != Monitor::Prometheus
            && !have(m.program())
        {
            missing.push(m.program());
        }
    }
    // The script tests and the drill probe the replicas with curl.
    if c.selected.iter().any(|s| matches!(s, Service::Api(_))) && !have("curl") {
        missing.push("curl");
    }
    missing.into_iter().map(str::to_owned).collect()
}

/// Installs what `up` needs and is missing.
pub fn ensure_packages(c: &Config) -> Result<()> {
    let missing = missing_packages(c);
    if !missing.is_empty() {
        apt::install(&missing)?;
        let still = missing_packages(c);
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(" "));
        }
    }
    Ok(())
}

/// Serialises up/down/stop on one stack folder; released when dropped (the file closes). Our
/// files are opened close-on-exec, so the services we start never hold it.
struct Lock(#[expect(dead_code, reason = "held for its lock, released on drop")] File);

fn lock(c: &Config) -> Result<Lock> {
    let path = c.dir.join(".lock");
    let file = File::create(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let deadline = Instant::now() + c.timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock(file)),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => sleep(Duration::from_millis(200)),
            Err(fs::TryLockError::WouldBlock) => {
                bail!("another cargo xtask stack is working on {}; wait for it to finish and retry.", c.dir.display())
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).context("cannot lock the stack folder"),
        }
    }
}

fn prepare_dir(c: &Config) -> Result<()> {
    for d in [c.dir.clone(), c.log_dir(), c.run_dir()] {
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    }
    let marker = c.dir.join(MARKER);
    if !marker.exists() {
        fs::write(&marker, "Created by cargo xtask stack. Delete with: cargo xtask stack down --purge\n")?;
    }
    Ok(())
}

/// The `KEY=value` lines of `env` and `up`: the URLs a client needs.
pub fn env_pairs(c: &Config) -> Vec<(&'static str, String)> {
    let mut pairs = vec![("DATABASE_URL", c.database_url()), ("REDIS_URL", redis::clients_url(c))];
    if let Some(replicas) = pg::replica_urls(c) {
        pairs.push(("DATABASE_REPLICA_URLS", replicas));
    }
    pairs.extend([("API_URLS", c.api_urls()), ("PUBLIC_URL", c.public_url()), ("PROMETHEUS_URL", c.prometheus_url())]);
    pairs
}

/// `up`: installs what is missing, checks every chosen service first (so a conflict starts or
/// creates nothing), starts them in order, and prints where everything runs.
pub fn up(c: &Config) -> Result<()> {
    ensure_packages(c)?;
    for svc in &c.selected {
        preflight(c, *svc)?;
    }
    prepare_dir(c)?;
    let _lock = lock(c)?;
    for svc in &c.selected {
        start(c, *svc)?;
    }
    let mut out = std::io::stdout().lock();
    let names: Vec<String> = c.selected.iter().map(ToString::to_string).collect();
    writeln!(out, "Stack is up ({}; data, logs, sockets: {})", names.join(" "), c.dir.display())?;
    for svc in known_services(c) {
        writeln!(out, "  {}", status_line(c, svc).0)?;
    }
    let log = c.log_dir();
    writeln!(
        out,
        "  logs: {}, {}, {}/apiN.log, {}, {}/<exporter>.log, {}/prometheus.log",
        log.join("postgres.log").display(),
        log.join("redis.log").display(),
        log.display(),
        nginx::log(c).display(),
        log.display(),
        log.display()
    )?;
    for (k, v) in env_pairs(c) {
        writeln!(out, "{k}={v}")?;
    }
    writeln!(out, "Load them into your shell with: eval \"$(cargo xtask stack env)\"")?;
    Ok(())
}

/// `down`: stops everything of ours that runs, in reverse order; `purge` then deletes the folder
/// (only one this tool made).
pub fn down(c: &Config, purge: bool) -> Result<()> {
    if !c.dir.is_dir() {
        say!("{} does not exist; nothing is running from it", c.dir.display());
        return Ok(());
    }
    let lock = lock(c)?;
    for svc in known_services(c).into_iter().rev() {
        stop(c, svc)?;
    }
    if purge {
        if !c.dir.join(MARKER).exists() {
            bail!(
                "{} has no {MARKER} marker, so it was not created by this tool; not deleting it. \
                 Remove it by hand if you are sure.",
                c.dir.display()
            );
        }
        drop(lock);
        fs::remove_dir_all(&c.dir).with_context(|| format!("cannot delete {}", c.dir.display()))?;
        say!("purged {}", c.dir.display());
    }
    Ok(())
}

/// `stop SERVICE...`: only these (the config's selection), in reverse start order.
pub fn stop_selected(c: &Config) -> Result<()> {
    if !c.dir.is_dir() {
        bail!("{} does not exist; nothing is running from it.", c.dir.display());
    }
    let _lock = lock(c)?;
    for svc in c.selected.iter().rev() {
        stop(c, *svc)?;
    }
    Ok(())
}

/// `status`: one line per service; true when every chosen service runs.
pub fn status(c: &Config) -> Result<bool> {
    let mut all_ok = true;
    let mut out = std::io::stdout().lock();
    for svc in known_services(c) {
        let (line, ok) = status_line(c, svc);
        writeln!(out, "{line}")?;
        if !ok && c.is_selected(svc) {
            all_ok = false;
        }
    }
    Ok(all_ok)
}

/// The log files of a service.
fn log_files(c: &Config, svc: Service) -> Vec<std::path::PathBuf> {
    let log = c.log_dir();
    match svc {
        Service::Pg => vec![log.join("postgres.log")],
        Service::PgReplica => vec![log.join("postgres-replica.log")],
        Service::Redis => vec![log.join("redis.log")],
        Service::RedisCluster => c.cluster_ports().map(|p| log.join(format!("redis-cluster-{p}.log"))).collect(),
        Service::Api(n) => vec![log.join(format!("api{n}.log"))],
        Service::Nginx => vec![nginx::log(c)],
        Service::Monitor(m) => vec![log.join(format!("{}.log", m.name()))],
    }
}

/// `logs`: the last `lines` lines of each chosen service's logs that exist, under a header.
pub fn logs(c: &Config, lines: usize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for svc in &c.selected {
        for file in log_files(c, *svc).into_iter().filter(|f| f.is_file()) {
            let text = fs::read_to_string(&file).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            writeln!(out, "==> {} ({svc}) <==", file.display())?;
            for line in &all[all.len().saturating_sub(lines)..] {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// `env`: `export KEY='value'` lines for `eval`. URL-encoded values hold no single quote.
pub fn env(c: &Config) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (k, v) in env_pairs(c) {
        writeln!(out, "export {k}='{v}'")?;
    }
    Ok(())
}
