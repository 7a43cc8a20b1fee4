//! Prometheus and the four exporters (Debian's packages) as our own processes on STACK_HOST,
//! never the system services those packages install. Prometheus reads `$STACK_DIR/prometheus`:
//! the repository's prometheus.yml with this stack's interval, rules/ linked from the
//! repository, and targets/*.json written from this stack's ports on every `up` (Prometheus
//! re-reads them by itself). cAdvisor runs only under compose.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use rustix::process::Signal;

use crate::config::Config;
use crate::facts::{PG_EXPORTER_PASSWORD, PG_EXPORTER_USER};
use crate::net::{get_ok, http, port_in_use};
use crate::pg::Status;
use crate::service::Monitor;
use crate::supervise::{await_healthy, cmd, launch, our_pid, remove_quietly, show_log_tail, terminate};
use crate::{nginx, redis, say, warn};

const PIDFILE_VAR: &str = "STACK_MON_PIDFILE";

fn pidfile(c: &Config, m: Monitor) -> PathBuf {
    c.run_dir().join(format!("{}.pid", m.name()))
}
fn logfile(c: &Config, m: Monitor) -> PathBuf {
    c.log_dir().join(format!("{}.log", m.name()))
}
fn prometheus_dir(c: &Config) -> PathBuf {
    c.dir.join("prometheus")
}
/// What answers when the monitor is up.
fn health_path(m: Monitor) -> &'static str {
    if m == Monitor::Prometheus { "/-/ready" } else { "/metrics" }
}
fn health_url(c: &Config, m: Monitor) -> String {
    format!("http://{}{}", c.addr(c.monitor_port(m)), health_path(m))
}
fn healthy(c: &Config, m: Monitor) -> bool {
    get_ok(&c.host, c.monitor_port(m), health_path(m)).is_some()
}

/// The monitor's pid, when it is ours and alive.
pub fn pid(c: &Config, m: Monitor) -> Option<u32> {
    our_pid(&pidfile(c, m), PIDFILE_VAR)
}

/// Writes `$STACK_DIR/prometheus`: the configuration with this stack's interval, the rules
/// linked, and one file_sd target file per job from the stack's ports.
fn write_prometheus_config(c: &Config) -> Result<()> {
    let dir = prometheus_dir(c);
    let targets = dir.join("targets");
    fs::create_dir_all(&targets)?;
    fs::create_dir_all(dir.join("data"))?;
    let repo_conf = fs::read_to_string(c.repo.join("prometheus/prometheus.yml"))?;
    let interval = &c.prometheus_interval;
    let mut conf = String::new();
    for line in repo_conf.lines() {
        let key = ["scrape_interval", "evaluation_interval", "scrape_timeout"]
            .into_iter()
            .find(|k| line.strip_prefix("  ").is_some_and(|l| l.starts_with(&format!("{k}: "))));
        match key {
            Some(k) => conf.push_str(&format!("  {k}: {interval}\n")),
            None => {
                conf.push_str(line);
                conf.push('\n');
            }
        }
    }
    replace(&dir.join("prometheus.yml"), &conf)?;
    let rules = dir.join("rules");
    let _ = fs::remove_file(&rules);
    std::os::unix::fs::symlink(c.repo.join("prometheus/rules"), &rules)?;
    // Written by hand rather than through serde_json, whose maps sort their keys: these files
    // read as prometheus/targets/native/ does (targets first), one entry per line.
    let api: Vec<String> = (1..=c.api_replicas)
        .map(|n| format!(r#"{{"targets": ["{}"], "labels": {{"replica": "api{n}"}}}}"#, c.addr(c.api_admin_port(n))))
        .collect();
    let one = |port: u16| vec![format!(r#"{{"targets": ["{}"]}}"#, c.addr(port))];
    for (file, entries) in [
        ("api.json", api),
        ("nginx.json", one(c.monitor_port(Monitor::NginxExporter))),
        ("redis.json", one(c.monitor_port(Monitor::RedisExporter))),
        ("postgres.json", one(c.monitor_port(Monitor::PgExporter))),
        ("node.json", one(c.monitor_port(Monitor::NodeExporter))),
        ("loadgen.json", one(c.loadgen_metrics_port)),
    ] {
        replace(&targets.join(file), &format!("[\n  {}\n]\n", entries.join(",\n  ")))?;
    }
    Ok(())
}

/// Replaces a file atomically: Prometheus watches its target files.
fn replace(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// The command line and extra environment of a monitor.
fn command(c: &Config, m: Monitor) -> (Vec<String>, Vec<(String, String)>) {
    let addr = c.addr(c.monitor_port(m));
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    match m {
        // Only what the dashboard shows and a host needs: the systemd, hwmon, ... collectors have
        // nothing to read here.
        Monitor::NodeExporter => {
            let mut args = vec![format!("--web.listen-address={addr}")];
            args.extend(s(&[
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.loadavg",
                "--collector.netdev",
                "--collector.diskstats",
                "--collector.filesystem",
                "--collector.stat",
                "--collector.uname",
            ]));
            (args, vec![])
        }
        // It retries until NGINX answers, so it may start before (or without) NGINX.
        Monitor::NginxExporter => {
            let mut args =
                vec![format!("-nginx.scrape-uri={}", nginx::status_url(c)), format!("-web.listen-address={addr}")];
            args.extend(s(&["-nginx.retries=100000", "-nginx.retry-interval=2s", "-nginx.timeout=2s"]));
            (args, vec![])
        }
        Monitor::RedisExporter => {
            (vec![format!("-redis.addr={}", redis::exporter_url(c)), format!("-web.listen-address={addr}")], vec![])
        }
        // Its own pg_monitor role (pg.rs): statistics, no table access.
        Monitor::PgExporter => (
            vec![format!("--web.listen-address={addr}"), "--disable-settings-metrics".into()],
            vec![(
                "DATA_SOURCE_NAME".into(),
                format!("{}?sslmode=disable", c.pg_url_as(PG_EXPORTER_USER, PG_EXPORTER_PASSWORD, c.pg_port)),
            )],
        ),
        Monitor::Prometheus => {
            let dir = prometheus_dir(c);
            (
                vec![
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    "--storage.tsdb.retention.time=7d".into(),
                    format!("--web.listen-address={addr}"),
                    "--web.enable-lifecycle".into(),
                ],
                vec![],
            )
        }
    }
}

/// Checks before anything starts: the port.
pub fn preflight(c: &Config, m: Monitor) -> Result<()> {
    let port = c.monitor_port(m);
    if pid(c, m).is_none() && port_in_use(&c.host, port) {
        bail!(
            "port {port} on {} ({}, for {}) is already in use by another process (not this \
             stack's {}; a system {} perhaps). Set {} to a free port.",
            c.host,
            m.port_var(),
            m.name(),
            m.name(),
            m.program(),
            m.port_var()
        );
    }
    Ok(())
}

/// Starts the monitor unless it runs (Prometheus: its configuration rewritten and checked
/// first, and reloaded when it already runs).
pub fn up(c: &Config, m: Monitor) -> Result<()> {
    let (name, log, pidfile) = (m.name(), logfile(c, m), pidfile(c, m));
    if m == Monitor::Prometheus {
        write_prometheus_config(c)?;
        let conf = prometheus_dir(c).join("prometheus.yml");
        let promlog = c.log_dir().join("promtool.log");
        let out = cmd("promtool").args(["check", "config"]).arg(&conf).output()?;
        fs::write(&promlog, [out.stdout, out.stderr].concat())?;
        if !out.status.success() {
            show_log_tail(&promlog);
            bail!("promtool rejects {} (from prometheus/prometheus.yml; see above).", conf.display());
        }
    }
    let addr = c.addr(c.monitor_port(m));
    if let Some(pid) = pid(c, m) {
        say!("{name}: already running (pid {pid}, {addr})");
        if m == Monitor::Prometheus {
            // Picks up a changed configuration or rules without a restart.
            let reloaded = http("POST", &c.host, c.monitor_port(m), "/-/reload", Duration::from_secs(5))
                .is_ok_and(|r| (200..300).contains(&r.status));
            if !reloaded {
                warn!("prometheus (pid {pid}) did not accept a reload; read {}.", log.display());
            }
        }
        return Ok(());
    }
    remove_quietly(&pidfile);
    preflight(c, m)?;
    let (args, mut envs) = command(c, m);
    envs.push((PIDFILE_VAR.into(), pidfile.to_string_lossy().into_owned()));
    say!("{name}: starting {} on {addr} (log: {})", m.program(), log.display());
    let program = crate::supervise::find_program(m.program()).unwrap_or_else(|| PathBuf::from(m.program()));
    let mut launched = launch(&pidfile, &log, &envs, &program, &args)?;
    if m == Monitor::NginxExporter && nginx::pid(c).is_none() {
        // It listens only once NGINX's stub_status answered; it keeps trying.
        warn!(
            "{name}: started (pid {}), waiting for NGINX's {} before it serves /metrics.",
            launched.pid,
            nginx::status_url(c)
        );
        return Ok(());
    }
    await_healthy(name, &mut launched, &log, &health_url(c, m), c.timeout, || healthy(c, m))?;
    say!("{name}: up (pid {}, {})", launched.pid, health_url(c, m));
    Ok(())
}

/// SIGTERM, SIGKILL after STACK_TIMEOUT.
pub fn down(c: &Config, m: Monitor) -> Result<()> {
    let pidfile = pidfile(c, m);
    let Some(pid) = pid(c, m) else {
        remove_quietly(&pidfile);
        say!("{}: already stopped", m.name());
        return Ok(());
    };
    terminate(m.name(), pid, &logfile(c, m), "", c.timeout, (Signal::TERM, Signal::KILL))?;
    remove_quietly(&pidfile);
    say!("{}: stopped", m.name());
    Ok(())
}

/// The monitor's status; Prometheus adds the share of its targets that are up.
pub fn status(c: &Config, m: Monitor) -> Status {
    let port = c.monitor_port(m);
    let Some(pid) = pid(c, m) else { return ("stopped".into(), None, port, String::new(), false) };
    if healthy(c, m) {
        let mut extra = String::new();
        if m == Monitor::Prometheus {
            let up = get_ok(&c.host, port, "/api/v1/query?query=sum(up)%20%2F%20count(up)")
                .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["data"]["result"][0]["value"][1].as_str().map(str::to_owned));
            extra = format!("targets_up={}", up.as_deref().unwrap_or("?"));
        }
        ("running".into(), Some(pid), port, extra, true)
    } else if m == Monitor::NginxExporter && nginx::pid(c).is_none() {
        (
            "waiting".into(),
            Some(pid),
            port,
            format!("(for NGINX's {}; it serves /metrics once NGINX runs)", nginx::status_url(c)),
            false,
        )
    } else {
        (
            "not-ready".into(),
            Some(pid),
            port,
            format!("(not answering {}; read {})", health_url(c, m), logfile(c, m).display()),
            false,
        )
    }
}
