//! The stores a benchmark uses: the native stack's PostgreSQL and Redis (started through the
//! stack library, or given by DATABASE_URL and REDIS_URL), throw-away databases made with
//! `psql`, Redis key prefixes swept afterwards, and the seeder that makes sure the data set is
//! loaded.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::config::{Config, Environment, is_loopback};
use crate::net::{Reply, port_in_use, redis};
use crate::{redis as stack_redis, stack};

/// A host and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// The `host:port` of a `redis://host:port[/]` URL (no user, no database number).
pub fn redis_addr(url: &str) -> Result<Addr> {
    let rest = url.strip_prefix("redis://").map(|r| r.trim_end_matches('/'));
    let parsed = rest.filter(|r| !r.contains(['@', '/'])).and_then(|r| r.rsplit_once(':'));
    match parsed.and_then(|(h, p)| Some(Addr { host: h.to_owned(), port: p.parse().ok()? })) {
        Some(a) if !a.host.is_empty() => Ok(a),
        _ => bail!("REDIS_URL must be redis://host:port here (got {url})"),
    }
}

/// The `host:port` of a `postgres://user:password@host:port/db` URL.
pub fn pg_addr(url: &str) -> Result<Addr> {
    let after_at = url.rsplit_once('@').map(|(_, r)| r);
    let hostport = after_at.and_then(|r| r.split_once('/')).map(|(hp, _)| hp);
    match hostport
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(h, p)| Some(Addr { host: h.to_owned(), port: p.parse().ok()? }))
    {
        Some(a) if !a.host.is_empty() => Ok(a),
        _ => bail!("DATABASE_URL must name host:port (got a URL without them)"),
    }
}

/// The URL of database `name` on the server of `url` (its last path segment replaced, any
/// query dropped).
pub fn db_url(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => format!("{base}/{name}"),
    }
}

/// The stack's configuration from the environment, with STACK_SERVICES replaced by `services`.
pub fn stack_config(services: &str) -> Result<Config> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("STACK_SERVICES".into(), services.into());
    let cwd = std::env::current_dir()?;
    Config::load(&vars, &cwd)
}

/// `cargo xtask stack up` of `services` (idempotent: what runs is left alone); the stack's
/// configuration.
pub fn stack_up(services: &str) -> Result<Config> {
    let c = stack_config(services)?;
    stack::up(&c).with_context(|| format!("starting the stack's {services}"))?;
    Ok(c)
}

/// The stores of `bench api` and `bench stack`: DATABASE_URL and REDIS_URL from the
/// environment, else the stack's (as `cargo xtask stack env` prints them); loopback only, and
/// they must answer (the benchmark does not start them).
#[derive(Debug, Clone)]
pub struct Stores {
    /// DATABASE_URL.
    pub database_url: String,
    /// REDIS_URL.
    pub redis_url: String,
    /// Redis' address.
    pub redis: Addr,
}

impl Stores {
    /// Finds and checks the stores.
    pub fn find() -> Result<Stores> {
        let from_env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let (database_url, redis_url) = match (from_env("DATABASE_URL"), from_env("REDIS_URL")) {
            (Some(d), Some(r)) => (d, r),
            _ => {
                let c = Config::load(&Environment, &std::env::current_dir()?)?;
                (c.database_url(), stack_redis::clients_url(&c))
            }
        };
        let redis = redis_addr(&redis_url)?;
        let pg = pg_addr(&database_url)?;
        for (addr, var, what) in [(&redis, "REDIS_URL", "Redis"), (&pg, "DATABASE_URL", "PostgreSQL")] {
            if !is_loopback(&addr.host) {
                bail!("{var} must point at a loopback address (got {})", addr.host);
            }
            if !port_in_use(&addr.host, addr.port) {
                bail!(
                    "{what} is not reachable at {}:{}: start the stack with 'cargo xtask stack up'",
                    addr.host,
                    addr.port
                );
            }
        }
        Ok(Stores { database_url, redis_url, redis })
    }
}

/// `psql` on `url`, quiet, stopping at the first error, with `args`; fails with psql's complaint.
pub fn psql(url: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"])
        .args(args)
        // Keep psql quiet about "does not exist, skipping" and similar notices.
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !out.status.success() {
        bail!("psql {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Drops database `name` on the server of `admin_url`. Not `DROP ... WITH (FORCE)`: that must
/// also end autovacuum workers, which belong to the superuser; a plain DROP cancels them itself.
/// Our own leftover sessions are ended first.
pub fn drop_db(admin_url: &str, name: &str) -> Result<()> {
    psql(
        admin_url,
        &[
            "-c",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' \
                 AND usename = current_user AND pid <> pg_backend_pid()"
            ),
            "-c",
            &format!("DROP DATABASE IF EXISTS {name}"),
        ],
    )
}

/// An empty database `name` (dropped first if it exists).
pub fn fresh_db(admin_url: &str, name: &str) -> Result<()> {
    drop_db(admin_url, name)?;
    psql(admin_url, &["-c", &format!("CREATE DATABASE {name}")])
}

/// A Redis INFO field.
pub fn redis_info(addr: &Addr, section: &str, field: &str) -> Option<String> {
    let info = crate::net::redis_text(&addr.host, addr.port, &["INFO", section])?;
    crate::net::info_field(&info, field)
}

/// Unlinks every key `PREFIX:*` (SCAN, so Redis keeps serving meanwhile).
pub fn drop_prefix(addr: &Addr, prefix: &str) -> Result<()> {
    let pattern = format!("{prefix}:*");
    let mut cursor = "0".to_owned();
    loop {
        let reply = redis(&addr.host, addr.port, &["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])
            .context("Redis SCAN failed")?;
        let Reply::Array(Some(parts)) = reply else { bail!("unexpected SCAN reply {reply:?}") };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(keys))] = parts.as_slice() else {
            bail!("unexpected SCAN reply {parts:?}")
        };
        let keys: Vec<&str> = keys.iter().filter_map(Reply::text).collect();
        if !keys.is_empty() {
            let mut args = vec!["UNLINK"];
            args.extend(keys);
            redis(&addr.host, addr.port, &args).context("Redis UNLINK failed")?;
        }
        if next == "0" {
            return Ok(());
        }
        cursor.clone_from(next);
    }
}

/// Runs `seeder --key-prefix PREFIX --progress quiet` (a no-op when the data set is loaded;
/// loads Redis from PostgreSQL when only Redis lacks it) with no SEEDER_* variable of ours, so
/// it loads the default data set; its output in `out/seeder.txt` and `.log`. Returns what it
/// said (first line, without the fingerprint).
pub fn ensure_data_set(seeder: &Path, stores: &Stores, prefix: &str, out: &Path) -> Result<String> {
    note!("making sure the data set is loaded under Redis prefix '{prefix}' (seeder; a no-op when it is)");
    let mut c = Command::new(seeder);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SEEDER_")) {
        c.env_remove(k);
    }
    let status = c
        .args(["--key-prefix", prefix, "--progress", "quiet"])
        .env("DATABASE_URL", &stores.database_url)
        .env("REDIS_URL", &stores.redis_url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.join("seeder.txt"))?)
        .stderr(std::fs::File::create(out.join("seeder.log"))?)
        .status()
        .context("cannot run the seeder")?;
    if !status.success() {
        bail!("the seeder failed: see {}", out.join("seeder.log").display());
    }
    let said = std::fs::read_to_string(out.join("seeder.txt")).unwrap_or_default();
    Ok(seeder_said(said.lines().next().unwrap_or("")))
}

/// The seeder's first line without its fingerprint and its `--force` hint.
pub fn seeder_said(line: &str) -> String {
    let mut s = line.replace(" (--force reloads)", "");
    if let Some(at) = s.find(", fingerprint ") {
        let tail = &s[at + 14..];
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        s.replace_range(at..at + 14 + hex, "");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_give_their_addresses() {
        assert_eq!(redis_addr("redis://127.0.0.1:56379").expect("ok"), Addr { host: "127.0.0.1".into(), port: 56379 });
        assert_eq!(redis_addr("redis://127.0.0.1:56379/").expect("ok").port, 56379);
        assert!(redis_addr("redis-cluster://127.0.0.1:56401").is_err());
        assert!(redis_addr("redis://u:p@127.0.0.1:1/0").is_err());
        let pg = pg_addr("postgres://results:pw@127.0.0.1:55432/results").expect("ok");
        assert_eq!(pg, Addr { host: "127.0.0.1".into(), port: 55432 });
        assert!(pg_addr("postgres:///results").is_err());
    }

    #[test]
    fn database_urls_swap_their_database() {
        assert_eq!(
            db_url("postgres://u:p@127.0.0.1:55432/results", "bench_copy"),
            "postgres://u:p@127.0.0.1:55432/bench_copy"
        );
        assert_eq!(db_url("postgres://u:p@h:1/results?sslmode=disable", "x"), "postgres://u:p@h:1/x");
    }

    #[test]
    fn the_seeder_line_loses_its_fingerprint() {
        assert_eq!(
            seeder_said("already loaded: 674823 students, fingerprint 0a1b2c3d (--force reloads)"),
            "already loaded: 674823 students"
        );
    }
}
