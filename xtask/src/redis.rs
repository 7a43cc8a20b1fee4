//! Redis: our single redis-server (redis/redis.conf, data in `$STACK_DIR/redis`), and the
//! opt-in Redis Cluster: six nodes, three masters with a replica each, created once with
//! `redis-cli --cluster create` and restarted from their nodes.conf afterwards.

use std::fs;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::config::Config;
use crate::config::url_encode;
use crate::facts::{
    REDIS_API_PASSWORD, REDIS_API_USER, REDIS_CLUSTER_NODES, REDIS_CLUSTER_SLOTS, REDIS_SEEDER_PASSWORD,
    REDIS_SEEDER_USER,
};
use crate::net::{Reply, info_field, port_in_use, redis, redis_text};
use crate::service::Service;
use crate::supervise::{
    await_pidfile, cmd, output, pid_alive, pid_gone, proc_comm, proc_cwd_is, read_pid, remove_quietly, show_log_tail,
    signal, wait_for,
};
use crate::{pg::Status, say};

/// One redis-server of ours: the single Redis or a cluster node.
struct Node {
    port: u16,
    dir: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
}

fn single(c: &Config) -> Node {
    Node {
        port: c.redis_port,
        dir: c.dir.join("redis"),
        pidfile: c.run_dir().join("redis.pid"),
        log: c.log_dir().join("redis.log"),
    }
}

fn cluster_node(c: &Config, port: u16) -> Node {
    Node {
        port,
        dir: c.dir.join("redis-cluster").join(port.to_string()),
        pidfile: c.run_dir().join(format!("redis-cluster-{port}.pid")),
        log: c.log_dir().join(format!("redis-cluster-{port}.log")),
    }
}

impl Node {
    /// Our redis-server: the pid file's process, alive, a redis-server, working in our folder
    /// (it chdirs to --dir).
    fn pid(&self) -> Option<u32> {
        let pid = read_pid(&self.pidfile)?;
        (pid_alive(pid) && proc_comm(pid).starts_with("redis-server") && proc_cwd_is(pid, &self.dir)).then_some(pid)
    }

    /// It answers on its port as the process of its pid file (not some other Redis).
    fn ours_ready(&self, c: &Config, pid: u32) -> bool {
        redis_text(&c.host, self.port, &["PING"]).as_deref() == Some("PONG")
            && redis_text(&c.host, self.port, &["INFO", "server"])
                .and_then(|info| info_field(&info, "process_id"))
                .is_some_and(|p| p == pid.to_string())
    }

    /// redis-server with the project's settings, daemonised (it writes its own pid file).
    fn start(&self, c: &Config, extra: &[String]) -> Result<()> {
        remove_quietly(&self.pidfile);
        fs::create_dir_all(&self.dir)?;
        let out = output(
            cmd("redis-server")
                .arg(c.repo.join("redis/redis.conf"))
                .args(["--port", &self.port.to_string(), "--bind", &c.host, "--dir"])
                .arg(&self.dir)
                .arg("--pidfile")
                .arg(&self.pidfile)
                .arg("--logfile")
                .arg(&self.log)
                .args(["--daemonize", "yes"])
                .args(extra),
        )?;
        if !out.status.success() {
            eprint!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            show_log_tail(&self.log);
            bail!(
                "redis-server on port {} failed to start (see above). Read {} and check redis/redis.conf.",
                self.port,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SHUTDOWN (it saves its snapshot) when it answers, else SIGTERM (which saves too); waits.
    fn stop(&self, c: &Config, pid: u32, answering: bool) -> Result<()> {
        let asked = answering && !matches!(redis(&c.host, self.port, &["SHUTDOWN"]), Ok(Reply::Error(_)));
        if !asked {
            signal(pid, rustix::process::Signal::TERM);
        }
        // Reaped, as callers checking with kill -0 expect; a zombie nobody reaps by the deadline
        // is dead all the same.
        if !wait_for(c.timeout, || pid_gone(pid)) && pid_alive(pid) {
            show_log_tail(&self.log);
            bail!(
                "Redis on port {} (pid {pid}) did not stop within {}s. Read {}; if the snapshot \
                 cannot be saved, stop it without saving: redis-cli -h {} -p {} shutdown nosave",
                self.port,
                c.timeout.as_secs(),
                self.log.display(),
                c.host,
                self.port
            );
        }
        remove_quietly(&self.pidfile);
        Ok(())
    }
}

// --- the single Redis ----------------------------------------------------------------------------

/// Checks before anything starts: the port.
pub fn preflight(c: &Config) -> Result<()> {
    let node = single(c);
    if node.pid().is_none() && port_in_use(&c.host, node.port) {
        bail!(
            "port {} on {} is already in use by another process (not this stack's Redis). Set \
             STACK_REDIS_PORT to a free port.",
            node.port,
            c.host
        );
    }
    Ok(())
}

/// Starts our Redis unless it runs; waits until it answers.
pub fn up(c: &Config) -> Result<()> {
    let node = single(c);
    if let Some(pid) = node.pid() {
        if !node.ours_ready(c, pid) {
            bail!(
                "our Redis (pid {pid}, {}) runs but does not answer on {}; was it started with \
                 another STACK_REDIS_PORT/STACK_HOST? Run 'cargo xtask stack down' and 'up' again \
                 (read {}).",
                node.dir.display(),
                c.addr(node.port),
                node.log.display()
            );
        }
        say!("redis: already running (pid {pid}, {})", c.addr(node.port));
        return ensure_api_user(c, node.port);
    }
    preflight(c)?;
    say!("redis: starting on {} with redis/redis.conf (log: {})", c.addr(node.port), node.log.display());
    node.start(c, &[])?;
    let answered = wait_for(c.timeout, || redis_text(&c.host, node.port, &["PING"]).as_deref() == Some("PONG"));
    if !answered || await_pidfile(&node.pidfile).is_none() || !wait_for(c.timeout, || node.pid().is_some()) {
        show_log_tail(&node.log);
        bail!(
            "Redis did not answer on {} within {}s. Read {}.",
            c.addr(node.port),
            c.timeout.as_secs(),
            node.log.display()
        );
    }
    ensure_api_user(c, node.port)
}

/// Stops our Redis (it saves its snapshot).
pub fn down(c: &Config) -> Result<()> {
    let node = single(c);
    let Some(pid) = node.pid() else {
        remove_quietly(&node.pidfile);
        say!("redis: already stopped");
        return Ok(());
    };
    say!("redis: stopping (pid {pid}; saving snapshot to {}/dump.rdb)", node.dir.display());
    node.stop(c, pid, node.ours_ready(c, pid))?;
    say!("redis: stopped");
    Ok(())
}

/// Our single Redis runs.
pub fn running(c: &Config) -> bool {
    single(c).pid().is_some()
}

/// The single Redis' status.
pub fn status(c: &Config) -> Status {
    let node = single(c);
    match node.pid() {
        None => ("stopped".into(), None, node.port, String::new(), false),
        Some(pid) if node.ours_ready(c, pid) => {
            let mem = redis_text(&c.host, node.port, &["INFO", "memory"])
                .and_then(|i| info_field(&i, "used_memory_human"))
                .unwrap_or_default();
            ("running".into(), Some(pid), node.port, format!("used_memory={mem}"), true)
        }
        Some(pid) => (
            "not-ready".into(),
            Some(pid),
            node.port,
            "(not answering on this port: started with another STACK_HOST/STACK_REDIS_PORT?)".into(),
            false,
        ),
    }
}

// --- the Redis Cluster ---------------------------------------------------------------------------

fn cluster_dir(c: &Config) -> PathBuf {
    c.dir.join("redis-cluster")
}

/// How many of our cluster nodes run.
pub fn cluster_running_count(c: &Config) -> usize {
    c.cluster_ports().filter(|p| cluster_node(c, *p).pid().is_some()).count()
}

/// The stack's clients use the cluster: STACK_SERVICES names it, or names no Redis while our
/// cluster runs and our single Redis does not (e.g. STACK_SERVICES=api2 on a cluster stack).
pub fn cluster_in_use(c: &Config) -> bool {
    if c.is_selected(Service::RedisCluster) {
        return true;
    }
    if c.is_selected(Service::Redis) {
        return false;
    }
    !running(c) && cluster_running_count(c) > 0
}

/// REDIS_URL for the stack's clients (the replicas, `env`).
pub fn clients_url(c: &Config) -> String {
    if cluster_in_use(c) { format!("redis-cluster://{}", c.addr(c.cluster_port)) } else { c.redis_url() }
}

/// REDIS_URL for the API replicas: [`clients_url`] as the read-only ACL user.
pub fn api_url(c: &Config) -> String {
    let (scheme, port) = if cluster_in_use(c) { ("redis-cluster", c.cluster_port) } else { ("redis", c.redis_port) };
    format!("{scheme}://{}:{}@{}", url_encode(REDIS_API_USER), url_encode(REDIS_API_PASSWORD), c.addr(port))
}

/// The handshake fred sends on every connection (HELLO/AUTH, CLIENT SETNAME/ID, INFO, ROLE,
/// PING, a cluster's slot map, READONLY and ASKING): what a client user needs besides its data.
const HANDSHAKE: &[&str] = &[
    "+@connection",
    "-@dangerous",
    "+info",
    "+role",
    "+readonly",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|info",
];

/// The ACL rules (after `on` and the password) of the API's user: reads of keys under `prefix`
/// (`%R~`: read access only), and of writes only the failed-lookup counters' (`INCR`, `PEXPIRE`
/// on `{prefix}:limits:*`, api/src/failed_lookups.rs): nothing that writes a result, flushes or
/// reconfigures. docker-compose.yml and the k8s local overlay give their Redis the same rules
/// (xtask/tests/deploy checks).
pub fn api_acl_rules(prefix: &str) -> Vec<String> {
    let mut rules = vec![
        format!("%R~{prefix}*"),
        format!("%RW~{prefix}:limits:*"),
        "resetchannels".into(),
        "-@all".into(),
        "+@read".into(),
        "+incr".into(),
        "+pexpire".into(),
    ];
    rules.extend(HANDSHAKE.iter().map(|r| (*r).to_owned()));
    rules
}

/// The seeder's rules: reads and writes (SET, HSET, DEL, SCAN, transactions) of keys under
/// `prefix`, nothing dangerous (no FLUSHALL, CONFIG, KEYS).
pub fn seeder_acl_rules(prefix: &str) -> Vec<String> {
    let mut rules = vec![
        format!("~{prefix}*"),
        "resetchannels".into(),
        "-@all".into(),
        "+@read".into(),
        "+@write".into(),
        "+@transaction".into(),
    ];
    rules.extend(HANDSHAKE.iter().map(|r| (*r).to_owned()));
    rules
}

/// Creates (or resets) the API's and the seeder's users on the node at `port`. Redis keeps ACL
/// users in memory only, so this runs on every `up`, whether the node was running or not.
fn ensure_api_user(c: &Config, port: u16) -> Result<()> {
    for (user, password, rules) in [
        (REDIS_API_USER, REDIS_API_PASSWORD, api_acl_rules(&c.key_prefix)),
        (REDIS_SEEDER_USER, REDIS_SEEDER_PASSWORD, seeder_acl_rules(&c.key_prefix)),
    ] {
        let secret = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", user, "reset", "on", &secret];
        args.extend(rules.iter().map(String::as_str));
        match redis(&c.host, port, &args) {
            Ok(Reply::Simple(ok)) if ok == "OK" => {}
            other => bail!("ACL SETUSER {user} on {} failed: {other:?}", c.addr(port)),
        }
    }
    Ok(())
}

/// The one node the exporter reads: the cluster's first, else the single Redis.
pub fn exporter_url(c: &Config) -> String {
    if cluster_in_use(c) { format!("redis://{}", c.addr(c.cluster_port)) } else { c.redis_url() }
}

fn cluster_info(c: &Config, port: u16, field: &str) -> Option<String> {
    redis_text(&c.host, port, &["CLUSTER", "INFO"]).and_then(|i| info_field(&i, field))
}

fn cluster_nodes(c: &Config, port: u16) -> Option<String> {
    redis_text(&c.host, port, &["CLUSTER", "NODES"]).filter(|n| !n.trim().is_empty())
}

/// Masters, replicas and failing nodes in a CLUSTER NODES text (flags are field 3).
fn roles(nodes: &str) -> (usize, usize, usize) {
    let (mut masters, mut replicas, mut failing) = (0, 0, 0);
    for flags in nodes.lines().filter_map(|l| l.split_whitespace().nth(2)) {
        if flags.contains("fail") {
            failing += 1;
        } else if flags.contains("master") {
            masters += 1;
        } else if flags.contains("slave") {
            replicas += 1;
        }
    }
    (masters, replicas, failing)
}

/// Every node sees every slot served and the whole topology: as many masters as replicas, none
/// failing. Right after `--cluster create` a node can still see a replica as a master without
/// slots (a test once read four masters there).
fn cluster_healthy(c: &Config) -> bool {
    let half = usize::from(REDIS_CLUSTER_NODES / 2);
    c.cluster_ports().all(|port| {
        cluster_info(c, port, "cluster_state").as_deref() == Some("ok")
            && cluster_info(c, port, "cluster_slots_assigned") == Some(REDIS_CLUSTER_SLOTS.to_string())
            && cluster_nodes(c, port).is_some_and(|n| roles(&n) == (half, half, 0))
    })
}

/// `masters=3 replicas=3 state=ok` as the first node that answers sees it (connected, not failing).
fn cluster_summary(c: &Config) -> String {
    for port in c.cluster_ports() {
        let Some(nodes) = cluster_nodes(c, port) else { continue };
        let (mut m, mut r) = (0, 0);
        for fields in nodes.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            let (Some(flags), Some(link)) = (fields.get(2), fields.get(7)) else { continue };
            if flags.contains("fail") || *link != "connected" {
                continue;
            }
            if flags.contains("master") {
                m += 1;
            } else if flags.contains("slave") {
                r += 1;
            }
        }
        let state = cluster_info(c, port, "cluster_state").unwrap_or_default();
        return format!("masters={m} replicas={r} state={state}");
    }
    "no node answers".into()
}

fn layout(c: &Config) -> String {
    format!("{} {} {}", c.host, c.cluster_port, c.cluster_bus_port)
}

/// A cluster once created keeps its nodes' addresses in their nodes.conf: refuse other ports.
fn check_layout(c: &Config) -> Result<()> {
    let file = cluster_dir(c).join("layout");
    if let Ok(have) = fs::read_to_string(&file) {
        let (have, want) = (have.trim(), layout(c));
        if have != want {
            bail!(
                "the Redis Cluster in {} was created as '{have}' (STACK_HOST, \
                 STACK_REDIS_CLUSTER_PORT, STACK_REDIS_CLUSTER_BUS_PORT), not '{want}'. Set them \
                 back, or 'cargo xtask stack down --purge' to start afresh.",
                cluster_dir(c).display()
            );
        }
    }
    Ok(())
}

fn check_cluster_ports(c: &Config) -> Result<()> {
    let last = REDIS_CLUSTER_NODES - 1;
    for port in c.cluster_ports() {
        if cluster_node(c, port).pid().is_some() {
            continue;
        }
        if port_in_use(&c.host, port) {
            bail!(
                "port {port} on {} (a Redis Cluster node, STACK_REDIS_CLUSTER_PORT..+{last}) is \
                 already in use by another process. Set STACK_REDIS_CLUSTER_PORT to the first of \
                 {REDIS_CLUSTER_NODES} free ports.",
                c.host
            );
        }
        let bus = c.cluster_bus_port(port);
        if port_in_use(&c.host, bus) {
            bail!(
                "port {bus} on {} (a Redis Cluster bus port, STACK_REDIS_CLUSTER_BUS_PORT..+{last}) \
                 is already in use by another process. Set STACK_REDIS_CLUSTER_BUS_PORT to the \
                 first of {REDIS_CLUSTER_NODES} free ports.",
                c.host
            );
        }
    }
    Ok(())
}

/// Checks before anything starts: the node and bus ports, the layout.
pub fn cluster_preflight(c: &Config) -> Result<()> {
    check_cluster_ports(c)?;
    check_layout(c)
}

/// Starts the nodes that do not run, creates the cluster on first use, waits until it is healthy.
pub fn cluster_up(c: &Config) -> Result<()> {
    check_layout(c)?;
    check_cluster_ports(c)?;
    let mut started = Vec::new();
    for port in c.cluster_ports() {
        let node = cluster_node(c, port);
        if node.pid().is_some() {
            continue;
        }
        node.start(
            c,
            &[
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-port".into(),
                c.cluster_bus_port(port).to_string(),
                "--cluster-node-timeout".into(),
                c.cluster_node_timeout_ms.to_string(),
            ],
        )?;
        started.push(port.to_string());
    }
    let mut addrs = Vec::new();
    for port in c.cluster_ports() {
        let node = cluster_node(c, port);
        if !wait_for(c.timeout, || node.pid().is_some_and(|pid| node.ours_ready(c, pid))) {
            show_log_tail(&node.log);
            bail!(
                "Redis Cluster node {port} did not answer on {} within {}s. Read {}.",
                c.addr(port),
                c.timeout.as_secs(),
                node.log.display()
            );
        }
        addrs.push(c.addr(port));
    }
    if !started.is_empty() {
        say!(
            "redis_cluster: started node(s) {} (node timeout {} ms; logs: {}/redis-cluster-PORT.log)",
            started.join(" "),
            c.cluster_node_timeout_ms,
            c.log_dir().display()
        );
    }
    let layout_file = cluster_dir(c).join("layout");
    if !layout_file.exists() {
        let assigned = cluster_info(c, c.cluster_port, "cluster_slots_assigned");
        let known = cluster_info(c, c.cluster_port, "cluster_known_nodes");
        if assigned.as_deref() != Some("0") || known.as_deref() != Some("1") {
            bail!(
                "the Redis Cluster nodes in {} hold a cluster this tool did not finish creating \
                 (slots assigned: {}, nodes known: {}). 'cargo xtask stack down --purge' and 'up' again.",
                cluster_dir(c).display(),
                assigned.as_deref().unwrap_or("?"),
                known.as_deref().unwrap_or("?")
            );
        }
        say!("redis_cluster: creating the cluster: three masters with a replica each (redis-cli --cluster create)");
        let out = output(cmd("redis-cli").args(["--cluster", "create"]).args(&addrs).args([
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
            bail!("redis-cli --cluster create failed (see above).");
        }
        fs::write(&layout_file, format!("{}\n", layout(c)))?;
    }
    if !wait_for(c.timeout, || cluster_healthy(c)) {
        if let Some(nodes) = cluster_nodes(c, c.cluster_port) {
            eprintln!("{nodes}");
        }
        bail!(
            "the Redis Cluster is not cluster_state:ok with all 16384 slots and 3 masters + 3 \
             replicas on every node after {}s (CLUSTER NODES above). Read {}/redis-cluster-*.log.",
            c.timeout.as_secs(),
            c.log_dir().display()
        );
    }
    for port in c.cluster_ports() {
        ensure_api_user(c, port)?;
    }
    say!("redis_cluster: up ({}); clients use {}", cluster_summary(c), clients_url(c));
    Ok(())
}

/// Stops the nodes: replicas first, as a master stopped while its replica runs would be failed
/// over to it.
pub fn cluster_down(c: &Config) -> Result<()> {
    let (mut replicas, mut masters) = (Vec::new(), Vec::new());
    for port in c.cluster_ports() {
        let node = cluster_node(c, port);
        let Some(pid) = node.pid() else {
            remove_quietly(&node.pidfile);
            continue;
        };
        let role = match redis(&c.host, port, &["ROLE"]) {
            Ok(Reply::Array(Some(items))) => items.first().and_then(|r| r.text().map(str::to_owned)),
            _ => None,
        };
        if role.as_deref() == Some("slave") { replicas.push((node, pid)) } else { masters.push((node, pid)) }
    }
    if replicas.is_empty() && masters.is_empty() {
        say!("redis_cluster: already stopped");
        return Ok(());
    }
    let (r, m) = (replicas.len(), masters.len());
    for (node, pid) in replicas.iter().chain(&masters) {
        node.stop(c, *pid, true)?;
    }
    say!("redis_cluster: stopped {r} replica(s), then {m} master(s)");
    Ok(())
}

/// The cluster's status: running (all six, healthy), degraded (some), stopped.
pub fn cluster_status(c: &Config) -> Status {
    let running = cluster_running_count(c);
    let nodes = usize::from(REDIS_CLUSTER_NODES);
    let (state, ok) = if running == nodes && cluster_healthy(c) {
        ("running", true)
    } else if running > 0 {
        ("degraded", false)
    } else {
        ("stopped", false)
    };
    let extra = if running == 0 { String::new() } else { format!("nodes={running}/{nodes} {}", cluster_summary(c)) };
    (state.into(), None, c.cluster_port, extra, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_count_failing_nodes_apart() {
        let nodes = "a 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460\n\
                     b 127.0.0.1:3@4 slave a 0 0 1 connected\n\
                     c 127.0.0.1:5@6 master,fail - 0 0 2 disconnected\n\
                     d 127.0.0.1:7@8 master - 0 0 3 connected 5461-10922\n";
        assert_eq!(roles(nodes), (2, 1, 1));
    }
}
