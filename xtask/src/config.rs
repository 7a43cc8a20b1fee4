//! The stack's settings: the `STACK_*` variables read (defaults from `facts`), validated, and
//! turned into typed values, paths and URLs. Nothing here touches a process or the network.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::facts::{self, MAX_API_REPLICAS, REDIS_CLUSTER_NODES};
use crate::service::{self, Monitor, Service};

/// Every setting of one stack.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository: templates (postgres/, redis/, nginx/, prometheus/, web/) come from here.
    pub repo: PathBuf,
    /// STACK_DIR, absolute, without trailing slashes.
    pub dir: PathBuf,
    /// STACK_HOST, a loopback address.
    pub host: String,
    /// STACK_PG_PORT.
    pub pg_port: u16,
    /// STACK_REDIS_PORT.
    pub redis_port: u16,
    /// STACK_PG_REPLICA_PORT.
    pub pg_replica_port: u16,
    /// STACK_REDIS_CLUSTER_PORT: the first of six node ports.
    pub cluster_port: u16,
    /// STACK_REDIS_CLUSTER_BUS_PORT: the first of six bus ports.
    pub cluster_bus_port: u16,
    /// STACK_REDIS_CLUSTER_NODE_TIMEOUT, ms.
    pub cluster_node_timeout_ms: u32,
    /// STACK_PG_USER.
    pub pg_user: String,
    /// STACK_PG_PASSWORD.
    pub pg_password: String,
    /// STACK_PG_DB.
    pub pg_db: String,
    /// STACK_TIMEOUT.
    pub timeout: Duration,
    /// STACK_PG_BIN, when set.
    pub pg_bin: Option<PathBuf>,
    /// STACK_SERVICES as given.
    pub services_spec: String,
    /// The services STACK_SERVICES names, in start order.
    pub selected: Vec<Service>,
    /// STACK_API_BIN, absolute.
    pub api_bin: PathBuf,
    /// STACK_API_REPLICAS.
    pub api_replicas: u8,
    /// STACK_API_PORT.
    pub api_port: u16,
    /// STACK_API_ADMIN_PORT.
    pub api_admin_port: u16,
    /// STACK_KEY_PREFIX.
    pub key_prefix: String,
    /// STACK_NGINX_PORT.
    pub nginx_port: u16,
    /// STACK_NGINX_STATUS_PORT.
    pub nginx_status_port: u16,
    /// STACK_NGINX_MICROCACHE (on/off).
    pub nginx_microcache: bool,
    /// STACK_NGINX_CACHE_DIR, or $STACK_DIR/nginx/cache.
    pub nginx_cache_dir: PathBuf,
    /// STACK_NGINX_RATE_LIMIT (on/off).
    pub nginx_rate_limit: bool,
    /// STACK_NGINX_RATE.
    pub nginx_rate: u32,
    /// STACK_NGINX_BURST.
    pub nginx_burst: u32,
    /// STACK_NGINX_CONN_LIMIT.
    pub nginx_conn_limit: u32,
    /// STACK_NGINX_REAL_IP_FROM (checked by nginx/render.sh).
    pub nginx_real_ip_from: String,
    /// The monitors' ports, by `Monitor`.
    pub monitor_ports: HashMap<Monitor, u16>,
    /// STACK_LOADGEN_METRICS_PORT.
    pub loadgen_metrics_port: u16,
    /// STACK_PROMETHEUS_INTERVAL, e.g. `5s`.
    pub prometheus_interval: String,
    /// API_WORKER_THREADS for the replicas.
    pub api_worker_threads: String,
}

/// Where a variable's value comes from: the process environment, or a map in tests.
pub trait Source {
    /// The value of `name`, if set (an empty value counts as unset, as `${VAR:-default}` does).
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The process environment with STACK_SERVICES replaced: `stack stop SERVICE...`, and the test
/// command's stores.
pub struct EnvironmentWithServices(pub String);

impl Source for EnvironmentWithServices {
    fn get(&self, name: &str) -> Option<String> {
        if name == "STACK_SERVICES" { Some(self.0.clone()) } else { Environment.get(name) }
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).filter(|v| !v.is_empty()).cloned()
    }
}

/// Tracks which variable owns which port, so two services never share one.
struct Owners(HashMap<u16, String>);

impl Owners {
    fn claim(&mut self, port: u16, owner: String, hint: &str) -> Result<()> {
        if let Some(previous) = self.0.get(&port) {
            bail!("port {port} is wanted by both {previous} and {owner}. {hint}");
        }
        self.0.insert(port, owner);
        Ok(())
    }
}

const OWN_PORT: &str = "Give every service its own port.";

impl Config {
    /// Reads and validates every setting; `cwd` anchors relative paths.
    pub fn load(src: &impl Source, cwd: &Path) -> Result<Config> {
        let repo = facts::repo_dir();
        let get = |name: &str| src.get(name).unwrap_or_else(|| facts::default_of(name).to_owned());

        let mut dir = src.get("STACK_DIR").map_or_else(|| repo.join(".stack"), PathBuf::from);
        if dir.is_relative() {
            dir = cwd.join(dir);
        }
        let dir = strip_trailing_slashes(&dir);
        if dir == Path::new("/") {
            bail!("STACK_DIR must not be /. Set STACK_DIR to a dedicated directory.");
        }

        let host = get("STACK_HOST");
        if !is_loopback(&host) {
            bail!(
                "STACK_HOST='{host}' is not a loopback address. The stack has no real passwords \
                 and must only listen on loopback: set STACK_HOST to 127.0.0.1 (or another \
                 127.x.y.z, or ::1)."
            );
        }
        let pg_port = port(&get, "STACK_PG_PORT")?;
        let redis_port = port(&get, "STACK_REDIS_PORT")?;
        let pg_replica_port = port(&get, "STACK_PG_REPLICA_PORT")?;
        if pg_port == redis_port {
            bail!("STACK_PG_PORT and STACK_REDIS_PORT are both {pg_port}. Give them different values.");
        }
        let timeout = get("STACK_TIMEOUT");
        let timeout_secs = positive(&timeout)
            .ok_or_else(|| anyhow::anyhow!("STACK_TIMEOUT='{timeout}' must be a positive number of seconds."))?;
        let pg_user = get("STACK_PG_USER");
        let pg_db = get("STACK_PG_DB");
        if pg_user.is_empty() || pg_db.is_empty() {
            bail!("STACK_PG_USER and STACK_PG_DB must not be empty.");
        }

        // The API replicas, NGINX and the monitors: every port distinct.
        let replicas_text = get("STACK_API_REPLICAS");
        let api_replicas = match replicas_text.parse::<u8>() {
            Ok(n) if (1..=MAX_API_REPLICAS).contains(&n) && replicas_text.len() == 1 => n,
            _ => bail!("STACK_API_REPLICAS='{replicas_text}' must be a number of replicas from 1 to 9."),
        };
        let mut owners = Owners(HashMap::new());
        owners.claim(pg_port, "STACK_PG_PORT".into(), OWN_PORT)?;
        owners.claim(redis_port, "STACK_REDIS_PORT".into(), OWN_PORT)?;
        owners.claim(pg_replica_port, "STACK_PG_REPLICA_PORT".into(), OWN_PORT)?;
        let nginx_port = port(&get, "STACK_NGINX_PORT")?;
        let nginx_status_port = port(&get, "STACK_NGINX_STATUS_PORT")?;
        let prometheus_interval = get("STACK_PROMETHEUS_INTERVAL");
        if !is_duration(&prometheus_interval) {
            bail!(
                "STACK_PROMETHEUS_INTERVAL='{prometheus_interval}' must be a duration such as \
                 1s, 5s or 1m."
            );
        }
        let mut monitor_ports = HashMap::new();
        for m in Monitor::ALL {
            monitor_ports.insert(m, port(&get, m.port_var())?);
        }
        let loadgen_metrics_port = port(&get, "STACK_LOADGEN_METRICS_PORT")?;
        owners.claim(nginx_port, "STACK_NGINX_PORT".into(), OWN_PORT)?;
        owners.claim(nginx_status_port, "STACK_NGINX_STATUS_PORT".into(), OWN_PORT)?;
        for m in [
            Monitor::Prometheus,
            Monitor::NodeExporter,
            Monitor::NginxExporter,
            Monitor::RedisExporter,
            Monitor::PgExporter,
        ] {
            owners.claim(monitor_ports[&m], m.port_var().into(), OWN_PORT)?;
        }
        owners.claim(loadgen_metrics_port, "STACK_LOADGEN_METRICS_PORT".into(), OWN_PORT)?;
        let api_port = port(&get, "STACK_API_PORT")?;
        let api_admin_port = port(&get, "STACK_API_ADMIN_PORT")?;
        for (var, first) in [("STACK_API_PORT", api_port), ("STACK_API_ADMIN_PORT", api_admin_port)] {
            for n in 1..=api_replicas {
                let Some(p) = first.checked_add(u16::from(n - 1)) else {
                    bail!(
                        "{var}={first} with STACK_API_REPLICAS={api_replicas} needs ports up to {}, \
                         beyond 65535. Lower {var}.",
                        u32::from(first) + u32::from(api_replicas) - 1
                    );
                };
                owners.claim(
                    p,
                    format!("{var} (api{n})"),
                    "Choose STACK_PG_PORT, STACK_REDIS_PORT, STACK_API_PORT and \
                     STACK_API_ADMIN_PORT so that no ports overlap (each API variable takes \
                     STACK_API_REPLICAS consecutive ports).",
                )?;
            }
        }
        let key_prefix = get("STACK_KEY_PREFIX");
        if key_prefix.is_empty() {
            bail!("STACK_KEY_PREFIX must not be empty.");
        }
        let services_spec = get("STACK_SERVICES");
        let selected = service::select(&services_spec, api_replicas).map_err(anyhow::Error::msg)?;

        // NGINX's options.
        let on_off = |var: &str| -> Result<bool> {
            match get(var).as_str() {
                "on" => Ok(true),
                "off" => Ok(false),
                other => bail!("{var}='{other}' must be on or off."),
            }
        };
        let nginx_microcache = on_off("STACK_NGINX_MICROCACHE")?;
        let nginx_rate_limit = on_off("STACK_NGINX_RATE_LIMIT")?;
        let rate_text = get("STACK_NGINX_RATE");
        let nginx_rate = positive(&rate_text).and_then(|r| u32::try_from(r).ok()).ok_or_else(|| {
            anyhow::anyhow!("STACK_NGINX_RATE='{rate_text}' must be a positive number of requests per second.")
        })?;
        let nginx_burst = match src.get("STACK_NGINX_BURST") {
            None => nginx_rate.saturating_mul(2),
            Some(b) => match b.parse::<u32>() {
                Ok(v) if b.bytes().all(|c| c.is_ascii_digit()) => v,
                _ => bail!("STACK_NGINX_BURST='{b}' must be a number of requests (0 or more)."),
            },
        };
        let conn_text = get("STACK_NGINX_CONN_LIMIT");
        let nginx_conn_limit = positive(&conn_text).and_then(|r| u32::try_from(r).ok()).ok_or_else(|| {
            anyhow::anyhow!("STACK_NGINX_CONN_LIMIT='{conn_text}' must be a positive number of requests.")
        })?;
        let nginx_real_ip_from = get("STACK_NGINX_REAL_IP_FROM");

        // The Redis Cluster's node and bus ports: six each, clear of each other and the stores.
        let nodes = REDIS_CLUSTER_NODES;
        let cluster_first = |var: &str| -> Result<u16> {
            match get(var).parse::<u16>() {
                Ok(p) if p >= 1 && u32::from(p) + u32::from(nodes) - 1 <= 65535 => Ok(p),
                _ => bail!(
                    "{var}='{}' must be a TCP port number with the {} after it free for the other \
                     nodes (at most {}).",
                    get(var),
                    nodes - 1,
                    65536 - u32::from(nodes)
                ),
            }
        };
        let cluster_port = cluster_first("STACK_REDIS_CLUSTER_PORT")?;
        let cluster_bus_port = cluster_first("STACK_REDIS_CLUSTER_BUS_PORT")?;
        let node_timeout = get("STACK_REDIS_CLUSTER_NODE_TIMEOUT");
        let cluster_node_timeout_ms = match node_timeout.parse::<u32>() {
            Ok(ms) if ms >= 100 && !node_timeout.starts_with('0') => ms,
            _ => bail!(
                "STACK_REDIS_CLUSTER_NODE_TIMEOUT='{node_timeout}' must be a number of \
                 milliseconds, at least 100."
            ),
        };
        let mut cluster_owners = Owners(HashMap::new());
        cluster_owners.claim(pg_port, "STACK_PG_PORT".into(), "")?;
        cluster_owners.claim(redis_port, "STACK_REDIS_PORT".into(), "")?;
        for (var, first) in
            [("STACK_REDIS_CLUSTER_PORT", cluster_port), ("STACK_REDIS_CLUSTER_BUS_PORT", cluster_bus_port)]
        {
            for i in 0..nodes {
                cluster_owners.claim(
                    first + i,
                    format!("{var} (+{i})"),
                    "Choose STACK_REDIS_CLUSTER_PORT and STACK_REDIS_CLUSTER_BUS_PORT so that \
                     each has 6 free ports of its own.",
                )?;
            }
        }
        if selected.contains(&Service::Redis) && selected.contains(&Service::RedisCluster) {
            bail!(
                "STACK_SERVICES names both redis and redis_cluster, but the API replicas use one \
                 Redis. Name one of them."
            );
        }

        let api_bin = src.get("STACK_API_BIN").map_or_else(
            || repo.join("target/release/api"),
            |p| if Path::new(&p).is_relative() { cwd.join(p) } else { PathBuf::from(p) },
        );
        let nginx_cache_dir = src.get("STACK_NGINX_CACHE_DIR").map_or_else(|| dir.join("nginx/cache"), PathBuf::from);
        let api_worker_threads = src.get("API_WORKER_THREADS").unwrap_or_else(|| facts::API_WORKER_THREADS.into());
        let config = Config {
            repo,
            pg_password: get("STACK_PG_PASSWORD"),
            pg_bin: src.get("STACK_PG_BIN").map(PathBuf::from),
            dir,
            host,
            pg_port,
            redis_port,
            pg_replica_port,
            cluster_port,
            cluster_bus_port,
            cluster_node_timeout_ms,
            pg_user,
            pg_db,
            timeout: Duration::from_secs(timeout_secs),
            services_spec,
            selected,
            api_bin,
            api_replicas,
            api_port,
            api_admin_port,
            key_prefix,
            nginx_port,
            nginx_status_port,
            nginx_microcache,
            nginx_cache_dir,
            nginx_rate_limit,
            nginx_rate,
            nginx_burst,
            nginx_conn_limit,
            nginx_real_ip_from,
            monitor_ports,
            loadgen_metrics_port,
            prometheus_interval,
            api_worker_threads,
        };
        let socket = config.run_dir().join(format!(".s.PGSQL.{}", config.pg_port));
        if socket.as_os_str().len() > 107 {
            bail!(
                "STACK_DIR is too long for a unix socket path ({}, max 107 bytes). Set STACK_DIR \
                 to a shorter path.",
                socket.display()
            );
        }
        Ok(config)
    }

    /// `$STACK_DIR/log`.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// `$STACK_DIR/run`: pid files and PostgreSQL's unix sockets.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// STACK_HOST as it goes into a URL or `host:port` (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        url_host(&self.host)
    }
    /// `host:port` on STACK_HOST.
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.url_host())
    }
    /// Whether STACK_SERVICES names `svc`.
    pub fn is_selected(&self, svc: Service) -> bool {
        self.selected.contains(&svc)
    }
    /// A PostgreSQL URL for the application role on `port`.
    pub fn pg_url(&self, port: u16) -> String {
        self.pg_url_as(&self.pg_user, &self.pg_password, port)
    }
    /// A PostgreSQL URL for role `user` on `port`, database STACK_PG_DB.
    pub fn pg_url_as(&self, user: &str, password: &str, port: u16) -> String {
        format!(
            "postgres://{}:{}@{}/{}",
            url_encode(user),
            url_encode(password),
            self.addr(port),
            url_encode(&self.pg_db)
        )
    }
    /// DATABASE_URL: the primary.
    pub fn database_url(&self) -> String {
        self.pg_url(self.pg_port)
    }
    /// The single Redis' URL.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr(self.redis_port))
    }
    /// Replica N's public port.
    pub fn api_port(&self, n: u8) -> u16 {
        self.api_port + u16::from(n - 1)
    }
    /// Replica N's admin port.
    pub fn api_admin_port(&self, n: u8) -> u16 {
        self.api_admin_port + u16::from(n - 1)
    }
    /// API_URLS: every replica's base URL, comma-separated.
    pub fn api_urls(&self) -> String {
        (1..=self.api_replicas).map(|n| format!("http://{}", self.addr(self.api_port(n)))).collect::<Vec<_>>().join(",")
    }
    /// PUBLIC_URL: NGINX.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.addr(self.nginx_port))
    }
    /// A monitor's port.
    pub fn monitor_port(&self, m: Monitor) -> u16 {
        self.monitor_ports.get(&m).copied().unwrap_or_default()
    }
    /// PROMETHEUS_URL.
    pub fn prometheus_url(&self) -> String {
        format!("http://{}", self.addr(self.monitor_port(Monitor::Prometheus)))
    }
    /// The Redis Cluster's node ports.
    pub fn cluster_ports(&self) -> impl Iterator<Item = u16> + use<> {
        let first = self.cluster_port;
        (0..REDIS_CLUSTER_NODES).map(move |i| first + i)
    }
    /// The bus port of the node on `port`.
    pub fn cluster_bus_port(&self, port: u16) -> u16 {
        self.cluster_bus_port + (port - self.cluster_port)
    }
}

fn strip_trailing_slashes(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    let trimmed = s.trim_end_matches('/');
    PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed })
}

fn port(get: &impl Fn(&str) -> String, var: &str) -> Result<u16> {
    let text = get(var);
    match text.parse::<u16>() {
        Ok(p) if p >= 1 && text.len() <= 5 && text.bytes().all(|c| c.is_ascii_digit()) => Ok(p),
        _ => bail!("{var}='{text}' is not a TCP port number (1-65535)."),
    }
}

fn positive(text: &str) -> Option<u64> {
    (!text.starts_with('0') && text.bytes().all(|c| c.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
        .filter(|n| *n > 0)
}

fn is_duration(text: &str) -> bool {
    let number = text.strip_suffix("ms").or_else(|| text.strip_suffix('s')).or_else(|| text.strip_suffix('m'));
    number.is_some_and(|n| positive(n).is_some())
}

/// 127.0.0.0/8 in dotted-quad form, or `::1`.
pub fn is_loopback(addr: &str) -> bool {
    if addr == "::1" {
        return true;
    }
    let parts: Vec<&str> = addr.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
        && addr.parse::<Ipv4Addr>().map(|ip| IpAddr::V4(ip).is_loopback()).unwrap_or_else(|_| {
            // Leading zeros (127.000.0.1) do not parse as Ipv4Addr but are loopback to bash's check.
            parts[0].parse::<u16>() == Ok(127) && parts.iter().all(|p| p.parse::<u16>().is_ok_and(|o| o <= 255))
        })
}

/// `addr`, or `[addr]` for an IPv6 literal.
pub fn url_host(addr: &str) -> String {
    if addr.contains(':') { format!("[{addr}]") } else { addr.to_owned() }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._~-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::load(&map, Path::new("/work"))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = load(&[("STACK_DIR", "/tmp/s")]).expect("defaults are valid");
        assert_eq!(c.database_url(), "postgres://results:results-local-only@127.0.0.1:55432/results");
        assert_eq!(c.redis_url(), "redis://127.0.0.1:56379");
        assert_eq!(c.api_urls(), "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083");
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert_eq!(c.prometheus_url(), "http://127.0.0.1:9090");
        assert_eq!((c.nginx_rate, c.nginx_burst), (50, 100));
        assert!(c.nginx_rate_limit, "the per-client limit is on by default");
        assert_eq!(c.selected.len(), 1 + 1 + 3 + 1 + 5);
    }

    #[test]
    fn relative_stack_dir_is_anchored_and_trailing_slashes_dropped() {
        let c = load(&[("STACK_DIR", "rel/dir//")]).expect("valid");
        assert_eq!(c.dir, Path::new("/work/rel/dir"));
        assert!(load(&[("STACK_DIR", "///")]).is_err());
    }

    #[test]
    fn non_loopback_hosts_are_refused() {
        for host in ["0.0.0.0", "10.0.0.1", "localhost", "127.0.0.256", "::"] {
            let err = load(&[("STACK_HOST", host)]).expect_err(host).to_string();
            assert!(err.contains("is not a loopback address"), "{host}: {err}");
        }
        let c = load(&[("STACK_HOST", "::1")]).expect("::1 is loopback");
        assert_eq!(c.redis_url(), "redis://[::1]:56379");
    }

    #[test]
    fn overlapping_ports_name_both_owners() {
        let err = load(&[("STACK_API_PORT", "9089"), ("STACK_NGINX_PORT", "9090"), ("STACK_PROMETHEUS_PORT", "9091")])
            .expect_err("9090 taken twice")
            .to_string();
        assert!(err.contains("port 9090 is wanted by both STACK_NGINX_PORT and STACK_API_PORT (api2)"), "{err}");
        let err = load(&[("STACK_REDIS_CLUSTER_BUS_PORT", "56404")]).expect_err("bus overlaps nodes").to_string();
        assert!(err.contains("port 56404"), "{err}");
    }

    #[test]
    fn redis_and_redis_cluster_together_are_refused() {
        let err = load(&[("STACK_SERVICES", "redis redis_cluster")]).expect_err("both").to_string();
        assert!(err.contains("names both redis and redis_cluster"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("STACK_PG_PORT", "0"),
            ("STACK_PG_PORT", "65536"),
            ("STACK_TIMEOUT", "0"),
            ("STACK_API_REPLICAS", "10"),
            ("STACK_NGINX_MICROCACHE", "yes"),
            ("STACK_NGINX_RATE", "0"),
            ("STACK_NGINX_BURST", "-1"),
            ("STACK_PROMETHEUS_INTERVAL", "5"),
            ("STACK_REDIS_CLUSTER_NODE_TIMEOUT", "99"),
            ("STACK_REDIS_CLUSTER_PORT", "65531"),
        ] {
            let err = load(&[(var, value)]).expect_err(var).to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn credentials_are_percent_encoded_in_urls() {
        let c = load(&[("STACK_PG_PASSWORD", "p@ss w'rd"), ("STACK_PG_DB", "r/db")]).expect("valid");
        assert_eq!(c.database_url(), "postgres://results:p%40ss%20w%27rd@127.0.0.1:55432/r%2Fdb");
    }

    #[test]
    fn api_worker_threads_default_to_one_per_replica() {
        assert_eq!(load(&[]).expect("valid").api_worker_threads, "1");
        assert_eq!(load(&[("API_WORKER_THREADS", "2")]).expect("valid").api_worker_threads, "2");
    }
}
