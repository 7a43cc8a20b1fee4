//! Configuration: command-line flags, each also read from the environment variable named in
//! `--help`. Tests build [`Settings`] directly and never touch the process environment.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use results_core::env::{SHARED_KEY_PREFIX, shared_or};
use results_core::keys::DEFAULT_PREFIX;
use results_core::{FactorKey, KeyLayout};

/// Failed lookups a client may make a minute (the per-client limit's default).
pub const DEFAULT_FAILED_LOOKUPS_PER_CLIENT: u32 = 120;
/// Failed tries at one number's second factor an hour (the per-number limit's default).
pub const DEFAULT_FACTOR_TRIES_PER_NUMBER: u32 = 10;
/// Whose X-Real-IP is trusted by default: loopback and the private networks NGINX runs in
/// (compose's bridge, a cluster's pod network).
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// A list of networks parsed from one comma-separated value (an alias, so clap parses the
/// whole value at once rather than taking `Vec` as repeated flags: an empty value is no network).
pub type Networks = Vec<ipnet::IpNet>;

/// The variable of the log filter (tracing's EnvFilter directives); `RUST_LOG` when it is unset.
pub const LOG_VAR: &str = "API_LOG";

/// Serves exam results: `GET /v1/results/{id}` (and the reference design's `/student/{id}`) on
/// the public port; `/metrics` (and `/debug/pprof/profile` when API_PPROF is on) on the admin
/// port, which must never be exposed publicly.
///
/// Answers from the near cache (a copy of every result in memory, kept coherent by Redis client
/// tracking) once it is complete; reads Redis (loaded by the seeder) until then, and PostgreSQL
/// when Redis is down or does not hold the complete data set (a read replica when one answers,
/// else the primary), with a short-lived in-process cache in front of PostgreSQL. Starts without either store being up and becomes
/// ready (`/readyz`) when one is.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    after_help = "Logging: API_LOG, else RUST_LOG, holds the log filter (tracing's directives, e.g. \
                  debug or info,api=debug) [default: info,sqlx=warn]. A flag wins over its variable; \
                  --key-prefix's variable over the shared RESULTS_KEY_PREFIX, which the seeder reads too."
)]
pub struct Args {
    /// Public address (results, health).
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Admin address (/metrics, pprof): keep it private.
    #[arg(long, env = "API_ADMIN_LISTEN", default_value = "127.0.0.1:9081")]
    pub admin_listen: SocketAddr,
    /// Serve the CPU profiler at /debug/pprof/profile on the admin port. Off by default: it is
    /// unauthenticated, a profile is itself CPU load (up to 60 s), and its SIGPROF handler is
    /// not async-signal-safe; turn it on for a profiling session (cargo xtask bench api does).
    #[arg(long, env = "API_PPROF", default_value = "off", value_parser = on_off)]
    pub pprof: bool,
    /// PostgreSQL URL (the source of truth, read when Redis cannot answer and no read replica
    /// can). TLS: ?sslmode=verify-full&sslrootcert=CA.pem (certificate and host name verified).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL read replica URL (streaming standbys of DATABASE_URL): repeat the flag, or
    /// separate URLs with commas in the variable. PostgreSQL reads go to a replica that answers
    /// (round robin), to the primary only when none does.
    #[arg(
        long = "database-replica-url",
        env = "DATABASE_REPLICA_URLS",
        value_name = "URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub database_replica_urls: Vec<String>,
    /// Redis URL (redis://host:port, or redis-cluster://host:port for a cluster; rediss:// and
    /// rediss-cluster:// for TLS, verified against the system's roots, or SSL_CERT_FILE's).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (as given to the seeder). Unset: the shared RESULTS_KEY_PREFIX,
    /// else the default
    #[arg(long, env = "API_KEY_PREFIX", default_value = shared_or(SHARED_KEY_PREFIX, DEFAULT_PREFIX))]
    pub key_prefix: String,
    /// PostgreSQL connections per replica; three replicas must stay under max_connections (200).
    #[arg(long, env = "API_PG_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pg_pool_size: u32,
    /// Redis connections per replica (commands are pipelined on each).
    #[arg(long, env = "API_REDIS_POOL_SIZE", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub redis_pool_size: u64,
    /// Memory budget of the near cache, in MiB: a copy of every published result, kept coherent
    /// by Redis (client tracking), that answers lookups without I/O. A data set whose copy does
    /// not fit is kept bounded: the results lookups read (whole buckets of 100), least recently
    /// used evicted first, within the budget; a lookup of another reads Redis. 0 turns it off.
    /// On a Redis Cluster every master tracks (a topology change means a resync).
    #[arg(long, env = "API_NEAR_CACHE_MB", default_value_t = 128, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub near_cache_mb: u64,
    /// Results kept in the in-process cache.
    #[arg(long, env = "API_CACHE_CAPACITY", default_value_t = 200_000)]
    pub cache_capacity: u64,
    /// How long a result stays in the in-process cache, in milliseconds (part of the staleness
    /// bound of a corrected result).
    #[arg(long, env = "API_CACHE_TTL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub cache_ttl_ms: u64,
    /// `Cache-Control: max-age` of result responses, in seconds (the rest of the staleness bound).
    #[arg(long, env = "API_HTTP_MAX_AGE_S", default_value_t = 5)]
    pub http_max_age_s: u32,
    /// Redis command timeout in milliseconds: a slower Redis is treated as down for that request.
    #[arg(long, env = "API_REDIS_TIMEOUT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
    /// PostgreSQL timeout (connection acquisition and query) in milliseconds.
    #[arg(long, env = "API_PG_TIMEOUT_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub pg_timeout_ms: u64,
    /// PostgreSQL read replica timeout (connection acquisition and query) in milliseconds: a
    /// replica slower than this is marked down until it answers a ping, and the next server is
    /// asked, so a dead replica costs a request at most this once.
    #[arg(long, env = "API_PG_REPLICA_TIMEOUT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub pg_replica_timeout_ms: u64,
    /// Whole-request timeout in milliseconds.
    #[arg(long, env = "API_REQUEST_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,
    /// How often the completeness marker and school directory are re-read, in milliseconds.
    #[arg(long, env = "API_REFRESH_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub refresh_ms: u64,
    /// On SIGTERM, report not-ready for this long before closing the listener (lets a load
    /// balancer notice), in milliseconds.
    #[arg(long, env = "API_DRAIN_DELAY_MS", default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// Longest wait for in-flight requests after the listener closed, in milliseconds.
    #[arg(long, env = "API_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// The secret the stores' second-factor hashes are keyed with (the seeder's FACTOR_KEY, at
    /// least 32 bytes). Needed only to serve a data set that requires a second factor: without
    /// it such a data set answers 503.
    #[arg(long, env = "FACTOR_KEY", hide_env_values = true)]
    pub factor_key: Option<String>,
    /// Failed lookups (404: an unknown number or a wrong second factor) one client may make a
    /// minute; the next are answered 429 until the minute is over. 0 turns the limit off.
    #[arg(long, env = "API_FAILED_LOOKUPS_PER_CLIENT", default_value_t = DEFAULT_FAILED_LOOKUPS_PER_CLIENT)]
    pub failed_lookups_per_client: u32,
    /// Failed tries one registration number may take an hour while the data set requires a
    /// second factor, from any client (guesses at one student's factor); the next are answered
    /// 429 until the hour is over. 0 turns the limit off.
    #[arg(long, env = "API_FACTOR_TRIES_PER_NUMBER", default_value_t = DEFAULT_FACTOR_TRIES_PER_NUMBER)]
    pub factor_tries_per_number: u32,
    /// Proxies whose X-Real-IP header names the client (addresses or networks, comma-separated):
    /// NGINX's. Replicas are reached only through NGINX; from any other address the connection's
    /// own address is the client.
    #[arg(long, env = "API_TRUSTED_PROXIES", default_value = DEFAULT_TRUSTED_PROXIES, value_parser = parse_networks)]
    pub trusted_proxies: Networks,
    /// Runtime worker threads (default: one per core). Several replicas on one host share its
    /// cores: fewer threads each avoid waking and stealing across replicas (cargo xtask bench stack).
    #[arg(long, env = "API_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL URL (the primary).
    pub database_url: String,
    /// PostgreSQL read replica URLs, asked before the primary (may be empty).
    pub database_replica_urls: Vec<String>,
    /// Redis URL.
    pub redis_url: String,
    /// Redis key layout.
    pub layout: KeyLayout,
    /// PostgreSQL pool size.
    pub pg_pool_size: u32,
    /// Redis pool size.
    pub redis_pool_size: usize,
    /// Near cache budget in bytes (0: off).
    pub near_cache_budget: u64,
    /// In-process cache capacity (entries).
    pub cache_capacity: u64,
    /// In-process cache time to live.
    pub cache_ttl: Duration,
    /// `Cache-Control: max-age` in seconds.
    pub http_max_age_s: u32,
    /// Redis command timeout.
    pub redis_timeout: Duration,
    /// PostgreSQL timeout (the primary).
    pub pg_timeout: Duration,
    /// PostgreSQL read replica timeout.
    pub pg_replica_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Marker and directory refresh interval.
    pub refresh: Duration,
    /// Not-ready period before the listener closes on shutdown.
    pub drain_delay: Duration,
    /// Longest wait for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// The key of the second-factor hashes, if given.
    pub factor_key: Option<FactorKey>,
    /// Whether the admin port serves the CPU profiler.
    pub pprof: bool,
    /// Failed lookups a client may make a minute (0: no limit).
    pub failed_lookups_per_client: u32,
    /// Failed tries at one number's second factor an hour (0: no limit).
    pub factor_tries_per_number: u32,
    /// Proxies whose X-Real-IP names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Settings {
    /// Defaults for `database_url` and `redis_url` (what tests start from).
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>, layout: KeyLayout) -> Self {
        Self {
            database_url: database_url.into(),
            database_replica_urls: Vec::new(),
            redis_url: redis_url.into(),
            layout,
            pg_pool_size: 8,
            redis_pool_size: 2,
            near_cache_budget: 128 << 20,
            cache_capacity: 200_000,
            cache_ttl: Duration::from_millis(2_000),
            http_max_age_s: 5,
            redis_timeout: Duration::from_millis(250),
            pg_timeout: Duration::from_millis(1_000),
            pg_replica_timeout: Duration::from_millis(250),
            request_timeout: Duration::from_millis(5_000),
            refresh: Duration::from_millis(1_000),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_millis(10_000),
            factor_key: None,
            pprof: false,
            failed_lookups_per_client: DEFAULT_FAILED_LOOKUPS_PER_CLIENT,
            factor_tries_per_number: DEFAULT_FACTOR_TRIES_PER_NUMBER,
            trusted_proxies: parse_networks(DEFAULT_TRUSTED_PROXIES).unwrap_or_default(),
        }
    }
}

impl Args {
    /// The settings, or an error naming the variable at fault.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let database_url = self
            .database_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL URL: set DATABASE_URL or pass --database-url"))?;
        if !is_postgres_url(&database_url) {
            anyhow::bail!("DATABASE_URL must start with postgres:// or postgresql://");
        }
        let database_replica_urls = replica_urls(&self.database_replica_urls)?;
        let redis_url =
            self.redis_url.clone().ok_or_else(|| anyhow::anyhow!("no Redis URL: set REDIS_URL or pass --redis-url"))?;
        let layout = KeyLayout::new(&self.key_prefix)
            .map_err(|e| anyhow::anyhow!("API_KEY_PREFIX (or {SHARED_KEY_PREFIX}): {e}"))?;
        Ok(Settings {
            database_url,
            database_replica_urls,
            redis_url,
            layout,
            pg_pool_size: self.pg_pool_size,
            redis_pool_size: self.redis_pool_size as usize,
            near_cache_budget: self.near_cache_mb << 20,
            cache_capacity: self.cache_capacity,
            cache_ttl: Duration::from_millis(self.cache_ttl_ms),
            http_max_age_s: self.http_max_age_s,
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            pg_timeout: Duration::from_millis(self.pg_timeout_ms),
            pg_replica_timeout: Duration::from_millis(self.pg_replica_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            refresh: Duration::from_millis(self.refresh_ms),
            drain_delay: Duration::from_millis(self.drain_delay_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            factor_key: self.factor_key.as_deref().map(FactorKey::new).transpose()?,
            pprof: self.pprof,
            failed_lookups_per_client: self.failed_lookups_per_client,
            factor_tries_per_number: self.factor_tries_per_number,
            trusted_proxies: self.trusted_proxies.clone(),
        })
    }
}

/// `on` or `off`, as the project's other switches (STACK_NGINX_MICROCACHE, ...) are written.
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("'{other}' must be on or off")),
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The replica URLs, checked one by one; an empty `DATABASE_REPLICA_URLS` means none. Errors
/// name the entry by position, never by value: a URL carries a password.
pub fn replica_urls(given: &[String]) -> anyhow::Result<Vec<String>> {
    if let [only] = given
        && only.trim().is_empty()
    {
        return Ok(Vec::new());
    }
    let mut urls: Vec<String> = Vec::with_capacity(given.len());
    for (i, url) in given.iter().enumerate() {
        let n = i + 1;
        let url = url.trim();
        if url.is_empty() {
            anyhow::bail!(
                "DATABASE_REPLICA_URLS: entry {n} is empty (separate URLs with single commas, no trailing comma)"
            );
        }
        if !is_postgres_url(url) {
            anyhow::bail!("DATABASE_REPLICA_URLS: entry {n} must start with postgres:// or postgresql://");
        }
        if let Some(first) = urls.iter().position(|u| u == url) {
            anyhow::bail!("DATABASE_REPLICA_URLS: entry {n} repeats entry {}", first + 1);
        }
        urls.push(url.to_owned());
    }
    Ok(urls)
}

/// `API_TRUSTED_PROXIES`: addresses or networks (`10.0.0.0/8`, `::1`), comma-separated.
pub fn parse_networks(text: &str) -> Result<Networks, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("'{part}' is not an address or a network (e.g. 10.0.0.0/8, ::1)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn networks_parse_and_a_bad_entry_is_named() {
        let nets = parse_networks("127.0.0.0/8, ::1,10.1.2.3").expect("valid");
        assert_eq!(nets.len(), 3);
        assert!(nets[2].contains(&"10.1.2.3".parse::<IpAddr>().expect("address")));
        assert!(!nets[2].contains(&"10.1.2.4".parse::<IpAddr>().expect("address")));
        let e = parse_networks("127.0.0.0/8,localhost").expect_err("a name is not an address");
        assert!(e.contains("'localhost'"), "{e}");
        assert_eq!(parse_networks("").expect("empty"), Networks::new());
    }

    #[test]
    fn the_flags_take_one_list_and_an_empty_one_trusts_nobody() {
        let parse = |value: &str| Args::try_parse_from(["api", "--trusted-proxies", value]);
        assert_eq!(parse("").expect("valid").trusted_proxies, Networks::new());
        assert_eq!(parse("10.0.0.0/8,::1").expect("valid").trusted_proxies.len(), 2);
        let e = parse("10.0.0.0/33").expect_err("no /33").to_string();
        assert!(e.contains("'10.0.0.0/33' is not an address or a network"), "{e}");
        let defaults = Args::try_parse_from(["api"]).expect("defaults");
        assert_eq!(defaults.trusted_proxies, parse_networks(DEFAULT_TRUSTED_PROXIES).expect("valid"));
    }
}
