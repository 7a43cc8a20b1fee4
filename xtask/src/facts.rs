//! The native stack's facts, written once: every `STACK_*` variable with its default and its
//! help line, the fixed values (service names, the replication role, the API's drain delay) and
//! the repository paths the stack reads. `config` parses from here, `cli` prints `help` from here.

use std::path::{Path, PathBuf};

/// One `STACK_*` environment variable: its name, its default as the user would type it, and one
/// paragraph of help.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// The variable's name, e.g. `STACK_PG_PORT`.
    pub name: &'static str,
    /// Its default as text; empty when the default is computed (named in `help`).
    pub default: &'static str,
    /// What it sets.
    pub help: &'static str,
}

const fn var(name: &'static str, default: &'static str, help: &'static str) -> Variable {
    Variable { name, default, help }
}

/// Every variable the stack reads, in the order `help` lists them.
pub const VARIABLES: &[Variable] = &[
    var(
        "STACK_DIR",
        "",
        "[<repo>/.stack] Data ($STACK_DIR/postgres/data, $STACK_DIR/redis), logs ($STACK_DIR/log) \
         and sockets/pid files ($STACK_DIR/run). Git-ignored.",
    ),
    var(
        "STACK_HOST",
        "127.0.0.1",
        "Address every service listens on. Must be a loopback address (127.0.0.0/8 or ::1): \
         the stack has no real passwords.",
    ),
    var("STACK_PG_PORT", "55432", "PostgreSQL TCP port (not 5432, so a system PostgreSQL can run beside it)."),
    var("STACK_REDIS_PORT", "56379", "Redis TCP port (not 6379, likewise)."),
    var(
        "STACK_PG_REPLICA_PORT",
        "55433",
        "Port of the opt-in PostgreSQL read replica (pg_replica): a streaming standby cloned \
         from the primary with pg_basebackup -R into $STACK_DIR/postgres/replica. 'up' waits \
         until it is in recovery and streaming; the API replicas started with it read it first \
         (DATABASE_REPLICA_URLS).",
    ),
    var(
        "STACK_REDIS_CLUSTER_PORT",
        "56401",
        "Service redis_cluster (opt-in): six nodes, three masters with a replica each, on this \
         port and the five after it.",
    ),
    var(
        "STACK_REDIS_CLUSTER_BUS_PORT",
        "56411",
        "Their cluster bus ports (this one and the five after it; Redis' default, port+10000, \
         would be past 65535 or in the ephemeral range).",
    ),
    var(
        "STACK_REDIS_CLUSTER_NODE_TIMEOUT",
        "2000",
        "cluster-node-timeout in ms: a master unreachable this long is failed over to its replica.",
    ),
    var("STACK_PG_USER", "results", "Application role (LOGIN CREATEDB; tests create and drop their own databases)."),
    var(
        "STACK_PG_PASSWORD",
        "results-local-only",
        "Its password: a LOCAL-ONLY default, not a secret (loopback only). Re-applied on every 'up'.",
    ),
    var("STACK_PG_DB", "results", "Application database, owned by STACK_PG_USER."),
    var("STACK_TIMEOUT", "30", "Seconds to wait for a service to start or stop."),
    var(
        "STACK_PG_BIN",
        "",
        "[highest /usr/lib/postgresql/*/bin] PostgreSQL server binaries; an existing cluster \
         always uses the binaries of its own major version.",
    ),
    var(
        "STACK_SERVICES",
        "pg redis api nginx exporters prometheus",
        "Services 'up' starts, separated by spaces or commas, always in the order pg, \
         pg_replica, redis, redis_cluster, api1..apiN, nginx, the exporters, prometheus: pg, \
         pg_replica (opt-in), redis, redis_cluster (opt-in, instead of redis: the replicas, \
         'env' and the redis exporter then use REDIS_URL=redis-cluster://...; also when \
         STACK_SERVICES names no Redis and only the cluster runs), api (all STACK_API_REPLICAS \
         replicas), apiN (one replica), nginx, exporters (all four) or one of node_exporter, \
         nginx_exporter, redis_exporter, pg_exporter, and prometheus. E.g. \
         STACK_SERVICES=\"pg redis\" for the stores only.",
    ),
    var(
        "STACK_API_BIN",
        "",
        "[<repo>/target/release/api] The API binary. Build it first: cargo build --release -p \
         api (scripts/up.sh does this).",
    ),
    var("STACK_API_REPLICAS", "3", "Number of API replicas, 1-9."),
    var("STACK_API_PORT", "8081", "Public port of replica 1; replica N listens on STACK_API_PORT+N-1."),
    var(
        "STACK_API_ADMIN_PORT",
        "8181",
        "Admin port (/metrics, /debug/pprof) of replica 1; replica N uses STACK_API_ADMIN_PORT+N-1.",
    ),
    var(
        "STACK_KEY_PREFIX",
        results_core::keys::DEFAULT_PREFIX,
        "Redis key prefix the replicas read (their API_KEY_PREFIX): the seeder's SEEDER_KEY_PREFIX.",
    ),
    var(
        "STACK_NGINX_PORT",
        "8080",
        "NGINX's public port (the edge): /v1/results/{id}, /student/{id}, /readyz proxied to the \
         replicas, /healthz, the students' page; everything else (admin routes too) a JSON 404.",
    ),
    var("STACK_NGINX_STATUS_PORT", "8089", "NGINX's internal-only listener: /stub_status (for the exporter)."),
    var(
        "STACK_NGINX_MICROCACHE",
        "off",
        "on|off: 1 s micro-cache of results (X-Cache-Status). Off by default: it rarely hits on \
         result-day traffic and costs throughput on a small host (nginx.conf.template).",
    ),
    var(
        "STACK_NGINX_CACHE_DIR",
        "",
        "[$STACK_DIR/nginx/cache] Where the micro-cache keeps its files; a tmpfs folder (e.g. \
         under /dev/shm) is far cheaper.",
    ),
    var(
        "STACK_NGINX_RATE_LIMIT",
        "on",
        "on|off: per-client-address rate limit; beyond it a JSON 429 with Retry-After: 1. Sizes: \
         docs/edge.md (failed lookups are limited in the API).",
    ),
    var(
        "STACK_NGINX_RATE",
        "50",
        "Lookups per second per client address (when the rate limit is on): a school's NAT of \
         ~100 students at result-day think time.",
    ),
    var(
        "STACK_NGINX_BURST",
        "",
        "[2 x STACK_NGINX_RATE] Requests above the rate let through at once before the 429s start.",
    ),
    var(
        "STACK_NGINX_CONN_LIMIT",
        "100",
        "Requests in progress at once per client address (when the rate limit is on); beyond it a 429.",
    ),
    var(
        "STACK_NGINX_REAL_IP_FROM",
        "",
        "[none] Load balancer addresses or CIDR ranges (space separated) trusted to name the client \
         in X-Forwarded-For; the limits then key on that client. Empty: the connection's address.",
    ),
    var("STACK_PROMETHEUS_PORT", "9090", "Prometheus: web UI and query API."),
    var("STACK_NODE_EXPORTER_PORT", "9100", "The node exporter (Debian's prometheus-node-exporter)."),
    var("STACK_NGINX_EXPORTER_PORT", "9113", "The NGINX exporter (prometheus-nginx-exporter)."),
    var("STACK_REDIS_EXPORTER_PORT", "9121", "The Redis exporter (prometheus-redis-exporter)."),
    var("STACK_PG_EXPORTER_PORT", "9187", "The PostgreSQL exporter (prometheus-postgres-exporter)."),
    var(
        "STACK_LOADGEN_METRICS_PORT",
        "9400",
        "Where Prometheus scrapes the load generator's /metrics while a load test runs.",
    ),
    var("STACK_PROMETHEUS_INTERVAL", "5s", "Scrape and rule evaluation interval (tests use 1s)."),
];

/// The default of variable `name` as written in [`VARIABLES`] (empty for computed defaults and
/// unknown names).
pub fn default_of(name: &str) -> &'static str {
    VARIABLES.iter().find(|v| v.name == name).map_or("", |v| v.default)
}

/// PostgreSQL's superuser inside our cluster, and the system user that owns the cluster when
/// we run as root (initdb and pg_ctl refuse root).
pub const PG_SUPERUSER: &str = "postgres";
/// The read replica's replication role.
pub const PG_REPLICATION_USER: &str = "results_replicator";
/// Its password: a LOCAL-ONLY default, not a secret (the servers listen on loopback only).
pub const PG_REPLICATION_PASSWORD: &str = "replication-local-only";
/// The API replicas' PostgreSQL role: LOGIN, SELECT on the application database's tables and
/// nothing else, so a compromised replica cannot change a result (the seeder and migrations use
/// STACK_PG_USER).
pub const PG_API_USER: &str = "results_api";
/// Its password: a LOCAL-ONLY default, not a secret.
pub const PG_API_PASSWORD: &str = "api-local-only";
/// The postgres exporter's role: pg_monitor (statistics), no table access.
pub const PG_EXPORTER_USER: &str = "results_exporter";
/// Its password: a LOCAL-ONLY default, not a secret.
pub const PG_EXPORTER_PASSWORD: &str = "exporter-local-only";
/// The API replicas' Redis ACL user: reads keys under STACK_KEY_PREFIX, writes only the
/// failed-lookup counters under it, runs no dangerous command (the default user, for the seeder
/// and the tests, keeps every right).
pub const REDIS_API_USER: &str = "results-api";
/// Its password: a LOCAL-ONLY default, not a secret.
pub const REDIS_API_PASSWORD: &str = "api-local-only";
/// The seeder's Redis ACL user (compose, k8s; in the native stack for tests): reads and writes
/// keys under the prefix, nothing dangerous.
pub const REDIS_SEEDER_USER: &str = "results-seeder";
/// Its password: a LOCAL-ONLY default, not a secret.
pub const REDIS_SEEDER_PASSWORD: &str = "seeder-local-only";
/// Nodes of the opt-in Redis Cluster: three masters, a replica each.
pub const REDIS_CLUSTER_NODES: u16 = 6;
/// Redis Cluster's slot count: a healthy cluster has every one assigned.
pub const REDIS_CLUSTER_SLOTS: u32 = 16384;
/// Most API replicas a stack runs (apiN takes one digit).
pub const MAX_API_REPLICAS: u8 = 9;
/// On SIGTERM a replica reports not-ready this long before closing its listener, so NGINX
/// notices it is draining (API_DRAIN_DELAY_MS).
pub const API_DRAIN_DELAY_MS: u32 = 1000;
/// One runtime worker thread per replica unless API_WORKER_THREADS says otherwise: the replicas
/// share the host's cores, and one thread each spent ~20% less CPU per request than one per
/// core (`cargo xtask bench stack`, BENCH_API_THREADS).
pub const API_WORKER_THREADS: &str = "1";
/// Lines of a log shown when a service fails.
pub const LOG_TAIL_LINES: usize = 15;
/// How long a launched process has to appear before we give up on it.
pub const LAUNCH_GRACE_SECS: u64 = 10;
/// How long a process may take to die after SIGKILL (or nginx after SIGTERM).
pub const KILL_GRACE_SECS: u64 = 5;
/// The marker file that says a folder was made by this tool (so `down --purge` may delete it).
pub const MARKER: &str = ".results-stack";
/// Debian's file that, when it exits 101, stops package scripts from starting services.
pub const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// The repository this xtask was built from: the parent of `xtask/`.
pub fn repo_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
