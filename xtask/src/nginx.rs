//! NGINX, the edge: our own master (never the system one), its configuration rendered from
//! nginx/nginx.conf.template by nginx/render.sh (the one renderer compose and k8s use too) into
//! `$STACK_DIR/nginx`, reloaded without dropped connections when the settings change.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustix::process::Signal;

use crate::config::Config;
use crate::net::{get_ok, port_in_use};
use crate::pg::Status;
use crate::supervise::{
    append, cmd, have, is_root, pid_alive, proc_cmdline, proc_comm, read_pid, remove_quietly, show_log_tail, terminate,
    wait_for,
};
use crate::{say, warn};

fn dir(c: &Config) -> PathBuf {
    c.dir.join("nginx")
}
fn conf(c: &Config) -> PathBuf {
    dir(c).join("nginx.conf")
}
fn pidfile(c: &Config) -> PathBuf {
    dir(c).join("nginx.pid")
}
/// NGINX's error log.
pub fn log(c: &Config) -> PathBuf {
    c.log_dir().join("nginx.log")
}
fn template(c: &Config) -> PathBuf {
    c.repo.join("nginx/nginx.conf.template")
}
fn renderer(c: &Config) -> PathBuf {
    c.repo.join("nginx/render.sh")
}
/// stub_status, for the exporter.
pub fn status_url(c: &Config) -> String {
    format!("http://{}/stub_status", c.addr(c.nginx_status_port))
}

/// The configuration for the current settings.
fn render(c: &Config) -> Result<String> {
    let upstreams: Vec<String> = (1..=c.api_replicas).map(|n| c.addr(c.api_port(n))).collect();
    let on_off = |b: bool| if b { "on" } else { "off" };
    let out = cmd("sh")
        .arg(renderer(c))
        .arg(template(c))
        .env("NGINX_UPSTREAMS", upstreams.join(" "))
        .env("NGINX_DIR", dir(c))
        .env("NGINX_CACHE_DIR", &c.nginx_cache_dir)
        .env("NGINX_ERROR_LOG", log(c))
        .env("NGINX_LISTEN", c.addr(c.nginx_port))
        .env("NGINX_STATUS_LISTEN", c.addr(c.nginx_status_port))
        .env("NGINX_MICROCACHE", on_off(c.nginx_microcache))
        .env("NGINX_RATE_LIMIT", on_off(c.nginx_rate_limit))
        .env("NGINX_RATE", c.nginx_rate.to_string())
        .env("NGINX_BURST", c.nginx_burst.to_string())
        .env("NGINX_CONN_LIMIT", c.nginx_conn_limit.to_string())
        .env("NGINX_REAL_IP_FROM", &c.nginx_real_ip_from)
        .env("NGINX_WEB_ROOT", c.repo.join("web"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run nginx/render.sh")?;
    if !out.status.success() {
        bail!("nginx/render.sh failed (see above).");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nginx(c: &Config) -> std::process::Command {
    let mut n = cmd("nginx");
    n.arg("-p").arg(format!("{}/", dir(c).display())).arg("-e").arg(log(c));
    n
}

/// `nginx -t` of a configuration file; prints nginx's complaint on failure.
fn test_conf(c: &Config, file: &std::path::Path) -> Result<bool> {
    let out = nginx(c).args(["-t", "-q", "-c"]).arg(file).output()?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.status.success())
}

/// Our master: the pid file's process, alive, an nginx whose command line names our configuration.
pub fn pid(c: &Config) -> Option<u32> {
    let pid = read_pid(&pidfile(c))?;
    let conf = conf(c);
    (pid_alive(pid) && proc_comm(pid) == "nginx" && proc_cmdline(pid).contains(conf.to_str()?)).then_some(pid)
}

fn healthy(c: &Config) -> bool {
    get_ok(&c.host, c.nginx_port, "/healthz").is_some()
}

fn check_ports(c: &Config) -> Result<()> {
    if pid(c).is_some() {
        return Ok(());
    }
    for (port, var) in [(c.nginx_port, "STACK_NGINX_PORT"), (c.nginx_status_port, "STACK_NGINX_STATUS_PORT")] {
        if port_in_use(&c.host, port) {
            bail!(
                "port {port} on {} ({var}) is already in use by another process (not this stack's \
                 NGINX). Set {var} to a free port.",
                c.host
            );
        }
    }
    Ok(())
}

/// Checks before anything starts: the template, envsubst, the ports, the page readable.
pub fn preflight(c: &Config) -> Result<()> {
    if !template(c).is_file() || !renderer(c).is_file() {
        bail!("missing {} or {}; is the checkout complete?", template(c).display(), renderer(c).display());
    }
    if !have("envsubst") {
        crate::apt::install(&["gettext-base".to_owned()])?;
    }
    check_ports(c)?;
    // Workers run as nobody when we are root: a checkout under a private home folder (mode 700)
    // would leave the students' page a 404 while the API works.
    let index = c.repo.join("web/index.html");
    if is_root()
        && have("runuser")
        && !cmd("runuser").args(["-u", "nobody", "--", "test", "-r"]).arg(&index).status().is_ok_and(|s| s.success())
    {
        warn!(
            "NGINX's workers (user nobody) cannot read {}: the students' page at / will answer \
             404. Make the checkout readable by others (chmod o+rx on its folders).",
            index.display()
        );
    }
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Starts NGINX, or reloads it when the rendered configuration changed.
pub fn up(c: &Config) -> Result<()> {
    fs::create_dir_all(dir(c).join("tmp"))?;
    let new = dir(c).join("nginx.conf.new");
    fs::write(&new, render(c)?)?;
    let url = c.public_url();
    if let Some(pid) = pid(c) {
        if fs::read(&new).ok() == fs::read(conf(c)).ok() {
            remove_quietly(&new);
            say!("nginx: already running (pid {pid}, {url})");
        } else {
            if !test_conf(c, &new)? {
                bail!(
                    "the new NGINX configuration ({}) is rejected by nginx -t (see above); the \
                     running one is kept.",
                    new.display()
                );
            }
            fs::rename(&new, conf(c))?;
            say!(
                "nginx: settings changed; reloading (pid {pid}, {url}; microcache={} rate_limit={} \
                 rate={}r/s burst={})",
                on_off(c.nginx_microcache),
                on_off(c.nginx_rate_limit),
                c.nginx_rate,
                c.nginx_burst
            );
            if !nginx(c).arg("-c").arg(conf(c)).args(["-s", "reload"]).status()?.success() {
                bail!("nginx -s reload failed. Read {}.", log(c).display());
            }
            // The master re-reads the configuration; give the new workers a moment.
            sleep(Duration::from_millis(500));
        }
        if !wait_for(c.timeout, || healthy(c)) {
            bail!("our nginx (pid {pid}) does not answer {url}/healthz. Read {}.", log(c).display());
        }
        return Ok(());
    }
    remove_quietly(&pidfile(c));
    check_ports(c)?;
    fs::rename(&new, conf(c))?;
    if !test_conf(c, &conf(c))? {
        show_log_tail(&log(c));
        bail!("nginx -t rejects {} (rendered from {}; see above).", conf(c).display(), template(c).display());
    }
    say!(
        "nginx: starting on {url} (status {}; microcache={} rate_limit={}) in front of {} (log: {})",
        status_url(c),
        on_off(c.nginx_microcache),
        on_off(c.nginx_rate_limit),
        c.api_urls(),
        log(c).display()
    );
    // The master daemonises itself (its own session) and writes its pid file.
    let out = append(&log(c))?;
    let started = nginx(c).arg("-c").arg(conf(c)).stdout(out.try_clone()?).stderr(out).status()?.success();
    if !started {
        show_log_tail(&log(c));
        bail!("nginx failed to start. Read {}.", log(c).display());
    }
    if !wait_for(c.timeout, || pid(c).is_some()) || !wait_for(c.timeout, || healthy(c)) {
        show_log_tail(&log(c));
        bail!("nginx does not answer {url}/healthz after {}s. Read {}.", c.timeout.as_secs(), log(c).display());
    }
    let pid = pid(c).unwrap_or(0);
    if get_ok(&c.host, c.nginx_port, "/readyz").is_some() {
        say!("nginx: up (pid {pid}, {url}); a replica behind it is ready");
    } else {
        warn!("nginx: up (pid {pid}, {url}) but no replica behind it is ready yet ({url}/readyz).");
    }
    Ok(())
}

/// Graceful quit (SIGQUIT: open requests finish), SIGTERM (fast shutdown) after STACK_TIMEOUT.
pub fn down(c: &Config) -> Result<()> {
    let Some(pid) = pid(c) else {
        remove_quietly(&pidfile(c));
        say!("nginx: already stopped");
        return Ok(());
    };
    terminate("nginx", pid, &log(c), "graceful quit: open requests finish", c.timeout, (Signal::QUIT, Signal::TERM))?;
    remove_quietly(&pidfile(c));
    say!("nginx: stopped");
    Ok(())
}

/// The value of `map "on|off" $NAME` in the running configuration (its settings, not ours).
fn conf_switch(conf_text: &str, name: &str) -> String {
    let needle = format!("\" ${name}");
    conf_text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("map \"") && l.contains(&needle))
        .find_map(|l| l.strip_prefix("map \"")?.split('"').next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// NGINX's status: connections, micro-cache and rate limit as running.
pub fn status(c: &Config) -> Status {
    let mut extra = format!("status={}", c.addr(c.nginx_status_port));
    let Some(pid) = pid(c) else { return ("stopped".into(), None, c.nginx_port, extra, false) };
    if !healthy(c) {
        extra.push_str(&format!(" (not answering /healthz; read {})", log(c).display()));
        return ("not-ready".into(), Some(pid), c.nginx_port, extra, false);
    }
    let active = get_ok(&c.host, c.nginx_status_port, "/stub_status")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Active connections:").map(|v| v.trim().to_owned())))
        .unwrap_or_else(|| "?".into());
    let text = fs::read_to_string(conf(c)).unwrap_or_default();
    extra.push_str(&format!(
        " connections={active} microcache={} rate_limit={}",
        conf_switch(&text, "microcache_skip"),
        conf_switch(&text, "ratelimit_key")
    ));
    ("running".into(), Some(pid), c.nginx_port, extra, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_are_read_from_the_rendered_maps() {
        let text = "http {\n    map \"on\" $microcache_skip {\n    }\n  map \"off\" $ratelimit_key {\n";
        assert_eq!(conf_switch(text, "microcache_skip"), "on");
        assert_eq!(conf_switch(text, "ratelimit_key"), "off");
        assert_eq!(conf_switch(text, "other"), "?");
    }

    /// render.sh runs where xtask does not (the compose and k8s images), so it keeps its own
    /// defaults: they must be the stack's.
    #[test]
    fn render_sh_defaults_are_the_stacks() {
        let script = include_str!("../../nginx/render.sh");
        for name in ["MICROCACHE", "RATE_LIMIT", "RATE", "CONN_LIMIT", "REAL_IP_FROM"] {
            let line = format!(": \"${{NGINX_{name}:=");
            let rendered = script
                .lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|rest| rest.strip_suffix("}\""))
                .unwrap_or_else(|| panic!("render.sh sets no default for NGINX_{name}"));
            assert_eq!(rendered, crate::facts::default_of(&format!("STACK_NGINX_{name}")), "NGINX_{name}");
        }
    }
}
