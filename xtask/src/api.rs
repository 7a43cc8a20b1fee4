//! The API replicas api1..apiN: each runs STACK_API_BIN detached on STACK_API_PORT+N-1 (admin
//! STACK_API_ADMIN_PORT+N-1) with the stores' URLs, its pid in `run/apiN.pid` and that path in
//! its environment (STACK_API_PIDFILE), so a recycled pid is never taken for ours.

use std::path::PathBuf;

use anyhow::{Result, bail};
use rustix::process::Signal;

use crate::config::Config;
use crate::facts::{API_DRAIN_DELAY_MS, MAX_API_REPLICAS, PG_API_PASSWORD, PG_API_USER};
use crate::net::{get_any, get_ok, port_in_use};
use crate::pg::{self, Status};
use crate::supervise::{await_healthy, launch, our_pid, proc_env, remove_quietly, terminate};
use crate::{redis, say, warn};

const PIDFILE_VAR: &str = "STACK_API_PIDFILE";

fn pidfile(c: &Config, n: u8) -> PathBuf {
    c.run_dir().join(format!("api{n}.pid"))
}

fn logfile(c: &Config, n: u8) -> PathBuf {
    c.log_dir().join(format!("api{n}.log"))
}

/// Replica N's pid, when it is ours and alive.
pub fn pid(c: &Config, n: u8) -> Option<u32> {
    our_pid(&pidfile(c, n), PIDFILE_VAR)
}

/// Replicas beyond STACK_API_REPLICAS that still have a pid file (started with a higher
/// STACK_API_REPLICAS): `down` and `status` must see them too.
pub fn extra_replicas(c: &Config) -> Vec<u8> {
    (c.api_replicas + 1..=MAX_API_REPLICAS).filter(|n| pidfile(c, *n).exists()).collect()
}

fn healthy(c: &Config, n: u8) -> bool {
    get_ok(&c.host, c.api_port(n), "/healthz").is_some()
}

fn ready(c: &Config, n: u8) -> bool {
    get_ok(&c.host, c.api_port(n), "/readyz").is_some()
}

/// The /readyz JSON (its body comes with the 503 too).
fn readyz(c: &Config, n: u8) -> String {
    get_any(&c.host, c.api_port(n), "/readyz").unwrap_or_default().trim().to_owned()
}

fn check_bin(c: &Config) -> Result<()> {
    let exec = c.api_bin.metadata().is_ok_and(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    });
    if !exec {
        bail!(
            "the API binary STACK_API_BIN={} does not exist (or is not executable); build it \
             first: cargo build --release -p api (scripts/up.sh does this).",
            c.api_bin.display()
        );
    }
    Ok(())
}

fn check_ports(c: &Config, n: u8) -> Result<()> {
    if pid(c, n).is_some() {
        return Ok(());
    }
    let replicas = c.api_replicas;
    for (port, what, var) in
        [(c.api_port(n), "public", "STACK_API_PORT"), (c.api_admin_port(n), "admin", "STACK_API_ADMIN_PORT")]
    {
        if port_in_use(&c.host, port) {
            bail!(
                "port {port} on {} ({what} port of api{n} = {var}+{}) is already in use by \
                 another process (not this stack's api{n}). Set {var} to the first of {replicas} \
                 free ports.",
                c.host,
                n - 1
            );
        }
    }
    Ok(())
}

/// Checks before anything starts: the binary and ports, unless the replica already runs.
pub fn preflight(c: &Config, n: u8) -> Result<()> {
    if pid(c, n).is_some() {
        return Ok(());
    }
    check_bin(c)?;
    check_ports(c, n)
}

/// Starts replica N unless it runs; waits for /healthz and reports /readyz.
pub fn up(c: &Config, n: u8) -> Result<()> {
    let (name, log, pidfile) = (format!("api{n}"), logfile(c, n), pidfile(c, n));
    let addr = c.addr(c.api_port(n));
    let url = format!("http://{addr}");
    if let Some(pid) = pid(c, n) {
        let listen = proc_env(pid, "API_LISTEN").unwrap_or_default();
        if listen != addr {
            bail!(
                "our {name} (pid {pid}) already runs on {}, not {addr} (STACK_API_PORT={}). Run \
                 'cargo xtask stack down' first, or set STACK_API_PORT to match.",
                if listen.is_empty() { "an unknown address" } else { &listen },
                c.api_port
            );
        }
        say!("{name}: already running (pid {pid}, {addr})");
        if !healthy(c, n) {
            warn!(
                "{name} (pid {pid}) does not answer {url}/healthz; read {}, or restart it with \
                 'cargo xtask stack stop {name}' and 'up'.",
                log.display()
            );
        }
        return Ok(());
    }
    remove_quietly(&pidfile);
    check_bin(c)?;
    check_ports(c, n)?;
    let admin = c.addr(c.api_admin_port(n));
    say!("{name}: starting {} on {addr}, admin {admin} (log: {})", c.api_bin.display(), log.display());
    // The caller's other API_* settings (API_LOG, API_PG_POOL_SIZE, ...) pass through with the
    // rest of our environment; these override theirs.
    let envs: Vec<(String, String)> = Vec::from([
        ("API_LISTEN".to_owned(), addr.clone()),
        ("API_ADMIN_LISTEN".to_owned(), admin),
        // Least privilege: a SELECT-only role and a read-only Redis user (pg.rs, redis.rs).
        ("DATABASE_URL".to_owned(), c.pg_url_as(PG_API_USER, PG_API_PASSWORD, c.pg_port)),
        ("REDIS_URL".to_owned(), redis::api_url(c)),
        ("DATABASE_REPLICA_URLS".to_owned(), pg::replica_urls_as(c, PG_API_USER, PG_API_PASSWORD).unwrap_or_default()),
        ("API_KEY_PREFIX".to_owned(), c.key_prefix.clone()),
        ("API_DRAIN_DELAY_MS".to_owned(), API_DRAIN_DELAY_MS.to_string()),
        ("API_WORKER_THREADS".to_owned(), c.api_worker_threads.clone()),
        (PIDFILE_VAR.to_owned(), pidfile.to_string_lossy().into_owned()),
    ]);
    let mut launched = launch(&pidfile, &log, &envs, &c.api_bin, &[])?;
    await_healthy(&name, &mut launched, &log, &format!("{url}/healthz"), c.timeout, || healthy(c, n))?;
    let pid = launched.pid;
    if ready(c, n) {
        say!("{name}: up (pid {pid}, {addr}): /readyz {}", readyz(c, n));
    } else {
        warn!(
            "{name}: up (pid {pid}, {addr}) but not ready: /readyz {}. Are PostgreSQL and Redis \
             up? Read {}.",
            readyz(c, n),
            log.display()
        );
    }
    Ok(())
}

/// SIGTERM (it reports not-ready, then drains), SIGKILL after STACK_TIMEOUT.
pub fn down(c: &Config, n: u8) -> Result<()> {
    let (name, pidfile) = (format!("api{n}"), pidfile(c, n));
    let Some(pid) = pid(c, n) else {
        remove_quietly(&pidfile);
        say!("{name}: already stopped");
        return Ok(());
    };
    terminate(
        &name,
        pid,
        &logfile(c, n),
        &format!("SIGTERM: not ready for {API_DRAIN_DELAY_MS} ms, then drains its requests"),
        c.timeout,
        (Signal::TERM, Signal::KILL),
    )?;
    remove_quietly(&pidfile);
    say!("{name}: stopped");
    Ok(())
}

/// Replica N's status: running and ready / not ready, or not answering.
pub fn status(c: &Config, n: u8) -> Status {
    let port = c.api_port(n);
    let admin = format!("admin={}", c.addr(c.api_admin_port(n)));
    let Some(pid) = pid(c, n) else { return ("stopped".into(), None, port, admin, false) };
    let listen = proc_env(pid, "API_LISTEN").unwrap_or_default();
    if listen != c.addr(port) {
        let listen = if listen.is_empty() { "an unknown address".into() } else { listen };
        return (
            "not-ready".into(),
            Some(pid),
            port,
            format!("(running on {listen}, not STACK_API_PORT+{})", n - 1),
            false,
        );
    }
    if ready(c, n) {
        ("running".into(), Some(pid), port, format!("{admin} ready"), true)
    } else if healthy(c, n) {
        ("running".into(), Some(pid), port, format!("{admin} not ready ({})", readyz(c, n)), true)
    } else {
        (
            "not-ready".into(),
            Some(pid),
            port,
            format!("{admin} (not answering /healthz; read {})", logfile(c, n).display()),
            false,
        )
    }
}
