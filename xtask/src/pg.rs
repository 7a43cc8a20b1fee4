//! PostgreSQL: our own cluster in `$STACK_DIR/postgres/data` (initdb on first use, settings from
//! postgres/postgresql.conf plus per-instance ones written at every start, the application role
//! and database), and the opt-in streaming read replica cloned from it with pg_basebackup.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::facts::{
    PG_API_PASSWORD, PG_API_USER, PG_EXPORTER_PASSWORD, PG_EXPORTER_USER, PG_REPLICATION_PASSWORD, PG_REPLICATION_USER,
    PG_SUPERUSER,
};
use crate::net::port_in_use;
use crate::service::Service;
use crate::supervise::{append, cmd, is_root, pid_alive, proc_cwd_is, read_lines, show_log_tail, stdout_of, wait_for};
use crate::{say, warn};

/// One PostgreSQL instance of ours: the primary or the replica.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `postgres` or `pg_replica`, for messages.
    pub name: &'static str,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// The port it must listen on.
    pub port: u16,
    /// The variable that sets that port.
    pub port_var: &'static str,
}

/// The primary.
pub fn primary(c: &Config) -> Instance {
    Instance {
        name: "postgres",
        data: c.dir.join("postgres/data"),
        log: c.log_dir().join("postgres.log"),
        port: c.pg_port,
        port_var: "STACK_PG_PORT",
    }
}

/// The read replica.
pub fn replica(c: &Config) -> Instance {
    Instance {
        name: "pg_replica",
        data: c.dir.join("postgres/replica"),
        log: c.log_dir().join("postgres-replica.log"),
        port: c.pg_replica_port,
        port_var: "STACK_PG_REPLICA_PORT",
    }
}

impl Instance {
    /// A cluster exists there.
    pub fn initialised(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }
    /// Line 1 of postmaster.pid.
    pub fn pid(&self) -> Option<u32> {
        read_lines(&self.data.join("postmaster.pid")).first()?.trim().parse().ok()
    }
    /// Line 4 of postmaster.pid: the port it runs on.
    pub fn running_port(&self) -> Option<u16> {
        read_lines(&self.data.join("postmaster.pid")).get(3)?.trim().parse().ok()
    }
    /// Our postmaster runs: postmaster.pid names a live process working in our data directory
    /// (what `pg_ctl status` checks, plus the directory, so a recycled pid is not ours).
    pub fn running(&self) -> bool {
        self.initialised() && self.pid().is_some_and(|pid| pid_alive(pid) && proc_cwd_is(pid, &self.data))
    }
}

/// The server binaries: an existing cluster needs its own major version's.
pub fn resolve_bin(c: &Config) -> Result<PathBuf> {
    let data = primary(c).data;
    if let Ok(version) = fs::read_to_string(data.join("PG_VERSION")) {
        let v = version.trim();
        if let Some(bin) = &c.pg_bin {
            let out = stdout_of(cmd(bin.join("pg_ctl")).arg("--version")).unwrap_or_default();
            if out.split_whitespace().last().is_some_and(|ver| ver == v || ver.starts_with(&format!("{v}."))) {
                return Ok(bin.clone());
            }
        }
        let bin = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if bin.join("pg_ctl").is_file() {
            return Ok(bin);
        }
        bail!(
            "the cluster in {} is PostgreSQL {v}, but its binaries ({}) are not installed. \
             Install postgresql-{v}, or 'cargo xtask stack down --purge' to start afresh.",
            data.display(),
            bin.display()
        );
    }
    if let Some(bin) = &c.pg_bin {
        if !bin.join("initdb").is_file() {
            bail!("STACK_PG_BIN={} has no initdb; point it at a PostgreSQL bin directory.", bin.display());
        }
        return Ok(bin.clone());
    }
    installed_bins().pop().ok_or_else(|| {
        anyhow::anyhow!(
            "no PostgreSQL server found in /usr/lib/postgresql/*/bin; run 'cargo xtask stack up' \
             as root to install it."
        )
    })
}

/// Every installed server bin directory, highest major version last.
pub fn installed_bins() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, b)| b).collect()
}

/// A server program run as the cluster's owner: the `postgres` system user when we are root
/// (initdb and pg_ctl refuse root), else ourselves.
fn pg_run(program: &Path) -> Command {
    if is_root() {
        let mut c = cmd("runuser");
        c.args(["-u", PG_SUPERUSER, "--"]).arg(program).current_dir("/");
        c
    } else {
        cmd(program)
    }
}

/// psql as the superuser over our unix socket (trusted), on `port`.
fn psql(c: &Config, bin: &Path, port: u16) -> Command {
    let mut p = cmd(bin.join("psql"));
    p.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"]).arg(c.run_dir()).args([
        "-p",
        &port.to_string(),
        "-U",
        PG_SUPERUSER,
        "-d",
        "postgres",
    ]);
    p
}

/// One query's trimmed output, None on failure.
fn query(c: &Config, bin: &Path, port: u16, sql: &str) -> Option<String> {
    stdout_of(psql(c, bin, port).args(["-c", sql]))
}

/// Runs a psql script fed on stdin (so passwords never show in `ps`); its output on success.
fn psql_script(c: &Config, bin: &Path, port: u16, script: &str) -> Result<String> {
    let mut child = psql(c, bin, port).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("psql failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A single-quoted argument for a psql meta-command such as \set.
fn meta_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A single-quoted postgresql.conf value.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn pg_ready(c: &Config, bin: &Path, port: u16) -> bool {
    cmd(bin.join("pg_isready"))
        .args(["-q", "-h", &c.host, "-p", &port.to_string(), "-d", "postgres"])
        .status()
        .is_ok_and(|s| s.success())
}

fn chown_to_postgres(paths: &[&Path]) -> Result<()> {
    if is_root() {
        let ok = cmd("chown").arg(format!("{PG_SUPERUSER}:")).args(paths).status()?.success();
        if !ok {
            bail!("cannot give {paths:?} to the '{PG_SUPERUSER}' system user");
        }
    }
    Ok(())
}

/// The pg_hba.conf lines that let the replica stream from the primary.
fn replication_hba(c: &Config) -> String {
    let mut lines = String::new();
    for addr in ["127.0.0.1/32", "::1/128"] {
        lines.push_str(&format!("host    replication  {PG_REPLICATION_USER}  {addr}  scram-sha-256\n"));
    }
    if c.host != "127.0.0.1" && c.host != "::1" {
        lines.push_str(&format!("host    replication  {PG_REPLICATION_USER}  {}/32  scram-sha-256\n", c.host));
    }
    lines
}

/// stack.conf (project settings, then this instance's) and pg_hba.conf, rewritten before every
/// start so changes to postgres/postgresql.conf or the STACK_* variables apply at the next start.
fn write_config(c: &Config, inst: &Instance) -> Result<()> {
    let project = c.repo.join("postgres/postgresql.conf");
    let settings = fs::read_to_string(&project).with_context(|| format!("cannot read {}", project.display()))?;
    let conf = format!(
        "# Generated by cargo xtask stack at every start. Do not edit: change\n\
         # postgres/postgresql.conf or the STACK_* variables instead.\n\n\
         # ---- project settings: {}\n{settings}\n\
         # ---- per-instance settings (STACK_HOST, {}, STACK_DIR)\n\
         listen_addresses = {}\nport = {}\nunix_socket_directories = {}\n\
         # The log goes to stderr, which pg_ctl -l sends to {}.\nlogging_collector = off\n",
        project.display(),
        inst.port_var,
        conf_quote(&c.host),
        inst.port,
        conf_quote(&c.run_dir().to_string_lossy()),
        inst.log.display(),
    );
    let mut hba = String::from(
        "# Generated by cargo xtask stack at every start. Do not edit.\n\
         # Unix socket (only in $STACK_DIR/run): trusted. TCP (loopback only): SCRAM password.\n\
         # TYPE  DATABASE     USER  ADDRESS        METHOD\n\
         local   all          all                  trust\n\
         local   replication  all                  trust\n\
         host    all          all   127.0.0.1/32   scram-sha-256\n\
         host    all          all   ::1/128        scram-sha-256\n",
    );
    if c.host != "127.0.0.1" && c.host != "::1" {
        hba.push_str(&format!("host    all          all   {}/32   scram-sha-256\n", c.host));
    }
    hba.push_str("# TCP replication (the read replica, pg_replica): its own role, SCRAM password.\n");
    hba.push_str(&replication_hba(c));
    let conf_path = inst.data.join("stack.conf");
    let hba_path = inst.data.join("pg_hba.conf");
    fs::write(&conf_path, conf)?;
    fs::write(&hba_path, hba)?;
    for p in [&conf_path, &hba_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o600))?;
    }
    chown_to_postgres(&[&conf_path, &hba_path])
}

/// Fails if the instance's port is taken by something that is not this instance.
fn check_port(c: &Config, inst: &Instance) -> Result<()> {
    if !inst.running() && port_in_use(&c.host, inst.port) {
        bail!(
            "port {} on {} is already in use by another process (not this stack's {} in {}). Set \
             {} to a free port.",
            inst.port,
            c.host,
            if inst.name == "postgres" { "PostgreSQL" } else { "replica" },
            inst.data.display(),
            inst.port_var
        );
    }
    Ok(())
}

/// Checks before anything starts: binaries, the port.
pub fn preflight(c: &Config) -> Result<()> {
    resolve_bin(c)?;
    check_port(c, &primary(c))
}

/// Starts the primary unless it runs, waits until it takes TCP connections, and (re)applies the
/// application role and database.
pub fn up(c: &Config) -> Result<()> {
    let bin = resolve_bin(c)?;
    let inst = primary(c);
    if inst.running() {
        let port = inst.running_port();
        if port != Some(c.pg_port) {
            bail!(
                "our PostgreSQL ({}) already runs on port {}, not STACK_PG_PORT={}. Run 'cargo \
                 xtask stack down' first, or set STACK_PG_PORT to that port.",
                inst.data.display(),
                port.map_or("?".into(), |p| p.to_string()),
                c.pg_port
            );
        }
        say!("postgres: already running (pid {}, {})", inst.pid().unwrap_or(0), c.addr(c.pg_port));
    } else {
        check_port(c, &inst)?;
        let parent = c.dir.join("postgres");
        fs::create_dir_all(&parent)?;
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o700))?;
        append(&inst.log)?;
        if is_root() {
            if cmd("id").args(["-u", PG_SUPERUSER]).output().map(|o| !o.status.success()).unwrap_or(true) {
                bail!(
                    "system user '{PG_SUPERUSER}' does not exist; it comes with the Debian \
                     postgresql package (apt-get install postgresql)."
                );
            }
            // The server creates its socket and lock file in run/ and appends to its log.
            chown_to_postgres(&[&parent, &c.run_dir(), &inst.log])?;
            let writable = pg_run(Path::new("test"))
                .args(["-w"])
                .arg(&parent)
                .args(["-a", "-w"])
                .arg(c.run_dir())
                .args(["-a", "-w"])
                .arg(&inst.log)
                .status()?
                .success();
            if !writable {
                bail!(
                    "the '{PG_SUPERUSER}' system user cannot write under {} (a parent directory \
                     is probably not searchable by others). Set STACK_DIR to a directory it can \
                     reach, e.g. /var/tmp/results-stack.",
                    c.dir.display()
                );
            }
        }
        // After a crash: let init reap a zombie postmaster, or the new one refuses to start
        // because postmaster.pid names a "live" process.
        if let Some(old) = inst.pid()
            && !wait_for(c.timeout, || crate::supervise::proc_state(old) != Some('Z'))
        {
            bail!(
                "a dead PostgreSQL (pid {old}) still holds {}/postmaster.pid; wait a moment and retry.",
                inst.data.display()
            );
        }
        if !inst.initialised() {
            initdb(c, &bin, &inst)?;
        }
        write_config(c, &inst)?;
        say!("postgres: starting {}/postgres on {} (log: {})", bin.display(), c.addr(c.pg_port), inst.log.display());
        start(c, &bin, &inst, "PostgreSQL")?;
    }
    if !wait_for(c.timeout, || pg_ready(c, &bin, c.pg_port)) {
        show_log_tail(&inst.log);
        bail!(
            "PostgreSQL does not accept TCP connections on {} after {}s. Read {}.",
            c.addr(c.pg_port),
            c.timeout.as_secs(),
            inst.log.display()
        );
    }
    ensure_role_db(c, &bin)?;
    ensure_service_roles(c, &bin)
}

fn start(c: &Config, bin: &Path, inst: &Instance, what: &str) -> Result<()> {
    let ok = pg_run(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&inst.data)
        .arg("-l")
        .arg(&inst.log)
        .args(["-w", "-t", &c.timeout.as_secs().to_string(), "start"])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        show_log_tail(&inst.log);
        bail!("{what} did not start within {}s. Read {}.", c.timeout.as_secs(), inst.log.display());
    }
    Ok(())
}

fn initdb(c: &Config, bin: &Path, inst: &Instance) -> Result<()> {
    if fs::read_dir(&inst.data).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty but holds no PostgreSQL cluster (no PG_VERSION). Move it away or run \
             'cargo xtask stack down --purge'.",
            inst.data.display()
        );
    }
    let initlog = c.log_dir().join("initdb.log");
    say!(
        "postgres: creating cluster in {} with {}/initdb (output: {})",
        inst.data.display(),
        bin.display(),
        initlog.display()
    );
    let run = |locale: &str| -> Result<bool> {
        let log = append(&initlog)?;
        Ok(pg_run(&bin.join("initdb"))
            .arg("-D")
            .arg(&inst.data)
            .args(["-U", PG_SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", locale])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?
            .success())
    };
    if !run("--locale=C.UTF-8")? {
        warn!("initdb --locale=C.UTF-8 failed (see {}); retrying with --no-locale", initlog.display());
        let _ = fs::remove_dir_all(&inst.data);
        if !run("--no-locale")? {
            bail!("initdb failed; read {}", initlog.display());
        }
    }
    let mut conf = fs::OpenOptions::new().append(true).open(inst.data.join("postgresql.conf"))?;
    conf.write_all(
        b"\n# Added by cargo xtask stack: project settings (from postgres/postgresql.conf)\n\
          # and per-instance settings (from the STACK_* variables), rewritten at every\n\
          # start of the cluster.\ninclude 'stack.conf'\n",
    )?;
    Ok(())
}

/// Creates the role and database if missing; (re)applies the password, LOGIN CREATEDB and the
/// owner every time.
fn ensure_role_db(c: &Config, bin: &Path) -> Result<()> {
    let script = format!(
        "\\set u {}\n\\set pw {}\n\\set db {}\n\
         SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u'),\n\
                EXISTS (SELECT FROM pg_database WHERE datname = :'db');\n\
         SET password_encryption = 'scram-sha-256';\n\
         SELECT format('CREATE ROLE %I', :'u')\n WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \\gexec\n\
         SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'u', :'pw') \\gexec\n\
         SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'u')\n WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n\
         SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'u') \\gexec\n",
        meta_quote(&c.pg_user),
        meta_quote(&c.pg_password),
        meta_quote(&c.pg_db)
    );
    let out = psql_script(c, bin, c.pg_port, &script).with_context(|| {
        format!(
            "could not create role '{}' / database '{}'; see the psql error above and {}",
            c.pg_user,
            c.pg_db,
            primary(c).log.display()
        )
    })?;
    let (u, db) = (&c.pg_user, &c.pg_db);
    match out.lines().next().unwrap_or_default() {
        "t|t" => say!("postgres: role '{u}' and database '{db}' exist (password re-applied)"),
        "t|f" => say!("postgres: created database '{db}' owned by existing role '{u}'"),
        "f|t" => say!("postgres: created role '{u}' (LOGIN CREATEDB); database '{db}' existed, now owned by it"),
        _ => say!("postgres: created role '{u}' (LOGIN CREATEDB) and database '{db}'"),
    }
    Ok(())
}

/// The API's role (SELECT only) and the exporter's (pg_monitor): postgres/roles.sql, the same
/// file compose and the k8s local overlay run, with this stack's names and passwords.
fn ensure_service_roles(c: &Config, bin: &Path) -> Result<()> {
    let file = c.repo.join("postgres/roles.sql");
    let script = fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut child = psql(c, bin, c.pg_port)
        .envs([
            ("RESULTS_PG_DB", c.pg_db.as_str()),
            ("RESULTS_PG_OWNER", c.pg_user.as_str()),
            ("RESULTS_PG_API_USER", PG_API_USER),
            ("RESULTS_PG_API_PASSWORD", PG_API_PASSWORD),
            ("RESULTS_PG_EXPORTER_USER", PG_EXPORTER_USER),
            ("RESULTS_PG_EXPORTER_PASSWORD", PG_EXPORTER_PASSWORD),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!(
            "could not create the roles '{PG_API_USER}' / '{PG_EXPORTER_USER}' with {}; see the psql error \
             above and {}",
            file.display(),
            primary(c).log.display()
        );
    }
    say!("postgres: roles '{PG_API_USER}' (SELECT only, the API) and '{PG_EXPORTER_USER}' (pg_monitor) ready");
    Ok(())
}

fn stop(c: &Config, inst: &Instance, what: &str) -> Result<()> {
    let bin = resolve_bin(c)
        .with_context(|| format!("cannot find the PostgreSQL binaries to stop {}", inst.data.display()))?;
    if !inst.running() {
        say!("{}: already stopped", inst.name);
        return Ok(());
    }
    say!("{}: stopping (pid {})", inst.name, inst.pid().unwrap_or(0));
    let ok = pg_run(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&inst.data)
        .args(["-m", "fast", "-w", "-t", &c.timeout.as_secs().to_string(), "stop"])
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!(
            "{what} did not stop within {}s. Read {}; retry 'cargo xtask stack down'.",
            c.timeout.as_secs(),
            inst.log.display()
        );
    }
    say!("{}: stopped", inst.name);
    Ok(())
}

/// Stops the primary (fast shutdown).
pub fn down(c: &Config) -> Result<()> {
    let inst = primary(c);
    if !inst.initialised() {
        say!("postgres: no cluster in {}; nothing to stop", inst.data.display());
        return Ok(());
    }
    stop(c, &inst, "PostgreSQL")
}

/// One status line's fields: state, pid, port, extra; and whether it counts as running.
pub type Status = (String, Option<u32>, u16, String, bool);

/// The primary's status.
pub fn status(c: &Config) -> Status {
    let inst = primary(c);
    if !inst.initialised() {
        return ("stopped".into(), None, c.pg_port, "(no cluster yet)".into(), false);
    }
    let Ok(bin) = resolve_bin(c) else { return ("stopped".into(), None, c.pg_port, String::new(), false) };
    if !inst.running() {
        return ("stopped".into(), None, c.pg_port, String::new(), false);
    }
    let port = inst.running_port().unwrap_or(0);
    if port != c.pg_port {
        return (
            "not-ready".into(),
            inst.pid(),
            port,
            format!("(running on port {port}, not STACK_PG_PORT={})", c.pg_port),
            false,
        );
    }
    if !pg_ready(c, &bin, port) {
        return (
            "not-ready".into(),
            inst.pid(),
            port,
            format!("(not accepting TCP connections; read {})", inst.log.display()),
            false,
        );
    }
    let dbs = query(c, &bin, port, "SELECT count(*) FROM pg_database WHERE NOT datistemplate");
    ("running".into(), inst.pid(), port, format!("databases={}", dbs.as_deref().unwrap_or("?")), true)
}

// --- the read replica ---------------------------------------------------------------------------
// A real streaming standby of the primary: cloned with pg_basebackup -R over a TCP replication
// connection (its own role, SCRAM, the password in a 0600 passfile), started on
// STACK_PG_REPLICA_PORT with the primary's binaries and settings. Read-only. No replication slot:
// a replica stopped for long can fall behind the WAL the primary keeps; then delete its data
// directory (or 'down --purge') and 'up' clones it afresh.

fn replica_streaming(c: &Config, bin: &Path) -> bool {
    query(
        c,
        bin,
        c.pg_replica_port,
        "SELECT pg_is_in_recovery() AND EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    .as_deref()
        == Some("t")
}

/// DATABASE_REPLICA_URLS for the API while our replica runs.
pub fn replica_urls(c: &Config) -> Option<String> {
    replica_urls_as(c, &c.pg_user, &c.pg_password)
}

/// [`replica_urls`] for role `user`.
pub fn replica_urls_as(c: &Config, user: &str, password: &str) -> Option<String> {
    let inst = replica(c);
    (inst.running() && resolve_bin(c).is_ok()).then(|| c.pg_url_as(user, password, c.pg_replica_port))
}

/// Checks before anything starts: binaries, the primary chosen or running, the port.
pub fn replica_preflight(c: &Config) -> Result<()> {
    let bin = resolve_bin(c)?;
    if !bin.join("pg_basebackup").is_file() {
        bail!("{}/pg_basebackup is missing (it comes with the postgresql package).", bin.display());
    }
    if !c.is_selected(Service::Pg) && !primary(c).running() {
        bail!(
            "pg_replica streams from this stack's PostgreSQL, which does not run: add pg to \
             STACK_SERVICES (STACK_SERVICES=\"pg pg_replica ...\")."
        );
    }
    check_port(c, &replica(c))
}

/// The running primary, ready to serve a replica: wal_level, the replication role (password
/// re-applied), and its pg_hba.conf lines (added and reloaded if it started before they existed).
fn prepare_primary(c: &Config, bin: &Path) -> Result<()> {
    let p = primary(c);
    if !(p.running() && p.running_port() == Some(c.pg_port) && pg_ready(c, bin, c.pg_port)) {
        bail!(
            "pg_replica streams from this stack's PostgreSQL, which does not run on port {}: start \
             it too (STACK_SERVICES=\"pg pg_replica ...\").",
            c.pg_port
        );
    }
    let level = query(c, bin, c.pg_port, "SHOW wal_level").unwrap_or_default();
    if level != "replica" && level != "logical" {
        bail!(
            "the primary runs with wal_level={level}, too little for a streaming replica: set \
             wal_level = replica in postgres/postgresql.conf, then 'cargo xtask stack down' and 'up'."
        );
    }
    let script = format!(
        "\\set u {}\n\\set pw {}\nSET password_encryption = 'scram-sha-256';\n\
         SELECT format('CREATE ROLE %I', :'u')\n WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \\gexec\n\
         SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'u', :'pw') \\gexec\n",
        meta_quote(PG_REPLICATION_USER),
        meta_quote(PG_REPLICATION_PASSWORD)
    );
    psql_script(c, bin, c.pg_port, &script).with_context(|| {
        format!("could not create the replication role '{PG_REPLICATION_USER}'; read {}", p.log.display())
    })?;
    let hba = p.data.join("pg_hba.conf");
    let needle = format!("replication  {PG_REPLICATION_USER} ");
    if !fs::read_to_string(&hba).unwrap_or_default().contains(&needle) {
        say!("pg_replica: allowing replication connections on the primary (pg_hba.conf, reload)");
        fs::OpenOptions::new().append(true).open(&hba)?.write_all(replication_hba(c).as_bytes())?;
        query(c, bin, c.pg_port, "SELECT pg_reload_conf()");
    }
    Ok(())
}

/// Clones the primary (pg_basebackup -R: standby.signal and primary_conninfo).
fn clone_primary(c: &Config, bin: &Path, inst: &Instance) -> Result<()> {
    let clonelog = c.log_dir().join("pg_basebackup.log");
    let passfile = c.dir.join("postgres/replication.pgpass");
    fs::write(&passfile, format!("*:*:*:{PG_REPLICATION_USER}:{PG_REPLICATION_PASSWORD}\n"))?;
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600))?;
    chown_to_postgres(&[&passfile])?;
    say!(
        "pg_replica: cloning the primary into {} (pg_basebackup -R; output: {})",
        inst.data.display(),
        clonelog.display()
    );
    let log = append(&clonelog)?;
    let ok = pg_run(&bin.join("pg_basebackup"))
        .arg("-D")
        .arg(&inst.data)
        .args(["-R", "-X", "stream", "-c", "fast", "-d"])
        .arg(format!(
            "host={} port={} user={PG_REPLICATION_USER} passfile={} application_name=stack_pg_replica",
            c.host,
            c.pg_port,
            passfile.display()
        ))
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?
        .success();
    if !ok {
        show_log_tail(&clonelog);
        let _ = fs::remove_dir_all(&inst.data);
        bail!("pg_basebackup failed; read {} and {}.", clonelog.display(), primary(c).log.display());
    }
    write_config(c, inst)
}

/// A replica cloned from another cluster (the primary was purged and created anew) can never
/// stream from this one.
fn replica_matches_primary(c: &Config, bin: &Path, inst: &Instance) -> bool {
    let ours = stdout_of(pg_run(&bin.join("pg_controldata")).arg("-D").arg(&inst.data))
        .and_then(|out| {
            out.lines().find_map(|l| l.strip_prefix("Database system identifier:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_default();
    let theirs = query(c, bin, c.pg_port, "SELECT system_identifier FROM pg_control_system()");
    !ours.is_empty() && Some(ours) == theirs
}

/// Starts the replica unless it runs (cloning it first when needed), waits until it streams.
pub fn replica_up(c: &Config) -> Result<()> {
    let bin = resolve_bin(c)?;
    let inst = replica(c);
    if inst.running() {
        let port = inst.running_port();
        if port != Some(c.pg_replica_port) {
            bail!(
                "our PostgreSQL replica ({}) already runs on port {}, not STACK_PG_REPLICA_PORT={}. \
                 Run 'cargo xtask stack down' first, or set STACK_PG_REPLICA_PORT to that port.",
                inst.data.display(),
                port.map_or("?".into(), |p| p.to_string()),
                c.pg_replica_port
            );
        }
        say!("pg_replica: already running (pid {}, {})", inst.pid().unwrap_or(0), c.addr(c.pg_replica_port));
    } else {
        check_port(c, &inst)?;
        prepare_primary(c, &bin)?;
        append(&inst.log)?;
        chown_to_postgres(&[&inst.log])?;
        if inst.initialised() && !replica_matches_primary(c, &bin, &inst) {
            say!("pg_replica: {} was cloned from another cluster; cloning afresh", inst.data.display());
            fs::remove_dir_all(&inst.data)?;
        }
        if inst.initialised() {
            write_config(c, &inst)?;
        } else {
            clone_primary(c, &bin, &inst)?;
        }
        say!("pg_replica: starting a streaming replica on {} (log: {})", c.addr(c.pg_replica_port), inst.log.display());
        start(c, &bin, &inst, "the PostgreSQL replica")?;
    }
    if !wait_for(c.timeout, || replica_streaming(c, &bin)) {
        show_log_tail(&inst.log);
        bail!(
            "the PostgreSQL replica is not streaming from the primary after {}s. Read {}; if it \
             fell behind the primary's WAL, 'cargo xtask stack down', delete {} and 'up' again.",
            c.timeout.as_secs(),
            inst.log.display(),
            inst.data.display()
        );
    }
    say!("pg_replica: in recovery and streaming from {}", c.addr(c.pg_port));
    Ok(())
}

/// Stops the replica; silent when there never was one (it is opt-in).
pub fn replica_down(c: &Config) -> Result<()> {
    let inst = replica(c);
    if !inst.initialised() {
        return Ok(());
    }
    stop(c, &inst, "the PostgreSQL replica")
}

/// The replica's status.
pub fn replica_status(c: &Config) -> Status {
    let inst = replica(c);
    let port = c.pg_replica_port;
    if !inst.initialised() {
        return ("stopped".into(), None, port, "(opt-in: STACK_SERVICES=\"pg pg_replica ...\")".into(), false);
    }
    let Ok(bin) = resolve_bin(c) else { return ("stopped".into(), None, port, String::new(), false) };
    if !inst.running() {
        return ("stopped".into(), None, port, String::new(), false);
    }
    let running_port = inst.running_port().unwrap_or(0);
    if running_port != port {
        return (
            "not-ready".into(),
            inst.pid(),
            running_port,
            format!("(running on port {running_port}, not STACK_PG_REPLICA_PORT={port})"),
            false,
        );
    }
    if replica_streaming(c, &bin) {
        ("running".into(), inst.pid(), port, format!("streaming from :{}", c.pg_port), true)
    } else {
        (
            "not-ready".into(),
            inst.pid(),
            port,
            format!("(not streaming from the primary; read {})", inst.log.display()),
            false,
        )
    }
}
