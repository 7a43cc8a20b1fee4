//! `cargo xtask stack` against the real servers: each test stands up its own throw-away stack in
//! a temporary folder on free loopback ports (never the developer's stack), drives the built
//! `xtask` binary as a user would, and takes the stack down again.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

/// The next port to try. Below Linux's ephemeral range (32768-60999), where an outgoing
/// connection could take a port between our check and the server's bind; 26000-26999 is this
/// suite's (scripts/tests/lib.sh gives each script test its own hundred from 27100).
static NEXT_PORT: Mutex<u16> = Mutex::new(26000);

/// `count` consecutive ports nothing listens on, never handed out twice in this process.
fn free_ports(count: u16) -> u16 {
    let mut next = NEXT_PORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    'search: loop {
        let first = *next;
        assert!(first < 27000, "no free ports left in this suite's range");
        for p in first..first + count {
            if std::net::TcpStream::connect(("127.0.0.1", p)).is_ok() {
                *next = p + 1;
                continue 'search;
            }
        }
        *next = first + count;
        return first;
    }
}

fn repo() -> PathBuf {
    xtask::facts::repo_dir()
}

/// target/debug/PACKAGE, the package's binary, built when missing (`cargo test --workspace`
/// builds it anyway).
fn workspace_bin(package: &str) -> PathBuf {
    // The test binary's own target folder (target/debug/deps/stack-HASH -> target/debug), so
    // CARGO_TARGET_DIR is honoured.
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe.parent().and_then(Path::parent).expect("target/debug/deps/...").join(package);
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-p", package])
            .current_dir(repo())
            .status()
            .expect("cargo runs")
            .success();
        assert!(ok, "cargo build -p {package} failed");
    }
    bin
}

/// A throw-away stack: its own folder and ports; `down --purge` when dropped.
struct TestStack {
    #[expect(dead_code, reason = "held so the folder is deleted when the test ends")]
    dir: tempfile::TempDir,
    vars: HashMap<String, String>,
}

impl TestStack {
    fn new(services: &str) -> TestStack {
        let dir = tempfile::Builder::new().prefix("xt-").tempdir_in("/tmp").expect("temp dir");
        // The postgres system user (and NGINX's workers) must reach it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut vars = HashMap::new();
        let mut set = |k: &str, v: String| vars.insert(k.to_owned(), v);
        set("STACK_DIR", dir.path().join("stack").display().to_string());
        for var in [
            "STACK_PG_PORT",
            "STACK_REDIS_PORT",
            "STACK_PG_REPLICA_PORT",
            "STACK_NGINX_PORT",
            "STACK_NGINX_STATUS_PORT",
            "STACK_PROMETHEUS_PORT",
            "STACK_NODE_EXPORTER_PORT",
            "STACK_NGINX_EXPORTER_PORT",
            "STACK_REDIS_EXPORTER_PORT",
            "STACK_PG_EXPORTER_PORT",
            "STACK_LOADGEN_METRICS_PORT",
        ] {
            set(var, free_ports(1).to_string());
        }
        set("STACK_API_PORT", free_ports(3).to_string());
        set("STACK_API_ADMIN_PORT", free_ports(3).to_string());
        set("STACK_REDIS_CLUSTER_PORT", free_ports(6).to_string());
        set("STACK_REDIS_CLUSTER_BUS_PORT", free_ports(6).to_string());
        set("STACK_API_BIN", workspace_bin("api").display().to_string());
        set("STACK_SERVICES", services.to_owned());
        set("STACK_TIMEOUT", "30".to_owned());
        TestStack { dir, vars }
    }

    fn folder(&self) -> PathBuf {
        PathBuf::from(&self.vars["STACK_DIR"])
    }

    fn port(&self, var: &str) -> u16 {
        self.vars[var].parse().expect("a port")
    }

    /// `xtask ARGS` with this stack's variables (and none of the caller's STACK_*), plus `extra`.
    fn xtask(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("STACK_")) {
            c.env_remove(k);
        }
        c.args(args).envs(&self.vars).envs(extra.iter().copied());
        c.output().expect("xtask runs")
    }

    /// Runs `xtask ARGS`, asserting it succeeds; its stdout and stderr.
    fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> (String, String) {
        let out = self.xtask(args, extra);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "xtask {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
        (stdout, stderr)
    }

    /// The stores up with `students` generated students, seeded as the seeder's own Redis user
    /// (xtask::redis::seeder_acl_rules, compose's and k8s' too: its whole load must work within
    /// those rights).
    fn seeded(&self, students: u32) {
        self.ok(&["stack", "up"], &[]);
        let (env, _) = self.ok(&["stack", "env"], &[]);
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='"))?.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name} in {env}"))
                .to_owned()
        };
        use xtask::facts::{REDIS_SEEDER_PASSWORD, REDIS_SEEDER_USER};
        let seeder_redis =
            var("REDIS_URL").replace("redis://", &format!("redis://{REDIS_SEEDER_USER}:{REDIS_SEEDER_PASSWORD}@"));
        let seeded = Command::new(workspace_bin("seeder"))
            .args(["--students", &students.to_string()])
            .env("DATABASE_URL", var("DATABASE_URL"))
            .env("REDIS_URL", &seeder_redis)
            .env("SEEDER_PROGRESS", "quiet")
            .output()
            .expect("the seeder runs");
        assert!(seeded.status.success(), "seeding failed: {:?}", texts(&seeded));
    }

    fn pid(&self, file: &str) -> u32 {
        let text = std::fs::read_to_string(self.folder().join(file)).unwrap_or_default();
        text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no pid in {file}"))
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        let _ = self.xtask(&["stack", "down", "--purge"], &[]);
    }
}

fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Alive and not a zombie (this container's init may never reap a daemon).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        .is_some_and(|state| state != 'Z')
}

fn gone_soon(pid: u32) -> bool {
    (0..50).any(|_| {
        if alive(pid) {
            std::thread::sleep(Duration::from_millis(100));
            false
        } else {
            true
        }
    })
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let r = xtask::net::http("GET", "127.0.0.1", port, path, Duration::from_secs(5)).expect("HTTP answers");
    (r.status, r.body)
}

fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql").args([url, "-X", "-At", "-c", sql]).output().expect("psql runs")
}

#[test]
fn stores_come_up_idempotently_keep_their_data_and_go_down_without_a_trace() {
    let s = TestStack::new("pg redis");
    let (_, first) = s.ok(&["stack", "up"], &[]);
    assert!(first.contains("postgres: created role 'results'"), "{first}");
    let pg_pid = s.pid("postgres/data/postmaster.pid");
    let redis_pid = s.pid("run/redis.pid");

    let (_, again) = s.ok(&["stack", "up"], &[]);
    assert!(again.contains("postgres: already running") && again.contains("redis: already running"), "{again}");
    assert_eq!((s.pid("postgres/data/postmaster.pid"), s.pid("run/redis.pid")), (pg_pid, redis_pid));

    let status = s.xtask(&["stack", "status"], &[]);
    assert_eq!(status.status.code(), Some(0), "{:?}", texts(&status));
    let (status_text, _) = texts(&status);
    assert!(status_text.lines().any(|l| l.starts_with("postgres ") && l.contains(" running ")), "{status_text}");

    // env: eval-able lines, exactly as callers parse them.
    let (env, _) = s.ok(&["stack", "env"], &[]);
    let (pg, redis) = (s.port("STACK_PG_PORT"), s.port("STACK_REDIS_PORT"));
    let database_url = format!("postgres://results:results-local-only@127.0.0.1:{pg}/results");
    assert!(env.lines().any(|l| l == format!("export DATABASE_URL='{database_url}'")), "{env}");
    assert!(env.lines().any(|l| l == format!("export REDIS_URL='redis://127.0.0.1:{redis}'")), "{env}");
    assert!(env.lines().all(|l| l.starts_with("export ") && l.ends_with('\'')), "{env}");
    assert!(!env.contains("DATABASE_REPLICA_URLS"), "no replica runs: {env}");

    assert!(psql(&database_url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)").status.success());
    let wrong = database_url.replace("results-local-only", "wrong");
    assert!(!psql(&wrong, "SELECT 1").status.success(), "a wrong password must be refused");
    let set = xtask::net::redis("127.0.0.1", redis, &["SET", "kept", "1"]).expect("redis answers");
    assert_eq!(set, xtask::net::Reply::Simple("OK".into()));
    let listpack = xtask::net::redis("127.0.0.1", redis, &["CONFIG", "GET", "hash-max-listpack-value"]);
    assert!(format!("{listpack:?}").contains("\"128\""), "redis/redis.conf applies: {listpack:?}");

    let (logs, _) = s.ok(&["stack", "logs", "-n", "5", "redis"], &[]);
    assert!(
        logs.starts_with("==> ") && logs.lines().next().is_some_and(|l| l.ends_with("redis.log (redis) <==")),
        "{logs}"
    );
    assert!(logs.lines().count() <= 6 && !logs.contains("postgres.log"), "five lines of redis.log only: {logs}");

    s.ok(&["stack", "down"], &[]);
    assert!(gone_soon(pg_pid) && gone_soon(redis_pid), "down stops both");
    assert_eq!(s.xtask(&["stack", "status"], &[]).status.code(), Some(3), "status says stopped");
    let (_, idle) = s.ok(&["stack", "down"], &[]);
    assert!(idle.contains("redis: already stopped"), "down again is idempotent: {idle}");

    s.ok(&["stack", "up"], &[]);
    let kept = psql(&database_url, "SELECT x FROM kept");
    assert_eq!(String::from_utf8_lossy(&kept.stdout).trim(), "42", "PostgreSQL data survives a restart");
    let get = xtask::net::redis_text("127.0.0.1", redis, &["GET", "kept"]);
    assert_eq!(get.as_deref(), Some("1"), "Redis data survives a restart");

    let (pg_pid, redis_pid) = (s.pid("postgres/data/postmaster.pid"), s.pid("run/redis.pid"));
    s.ok(&["stack", "down", "--purge"], &[]);
    assert!(!s.folder().exists(), "down --purge removes the folder");
    assert!(gone_soon(pg_pid) && gone_soon(redis_pid), "nothing of ours runs after down --purge");
}

#[test]
fn replicas_and_nginx_come_up_and_one_replica_stops_and_comes_back() {
    let s = TestStack::new("pg redis api nginx");
    s.ok(&["stack", "up"], &[]);
    let (api, admin, edge) = (s.port("STACK_API_PORT"), s.port("STACK_API_ADMIN_PORT"), s.port("STACK_NGINX_PORT"));
    for n in 0..3 {
        let (code, body) = http_get(api + n, "/readyz");
        assert_eq!(code, 200, "api{} ready: {body}", n + 1);
        assert!(body.contains("\"postgres\":\"up\"") && body.contains("\"redis\":\"up\""), "{body}");
        let (code, metrics) = http_get(admin + n, "/metrics");
        assert!(code == 200 && metrics.contains("http_requests_total"), "admin port serves /metrics");
    }
    assert_eq!(http_get(edge, "/healthz").0, 200, "NGINX answers");
    assert_eq!(http_get(edge, "/metrics").0, 404, "the admin routes are not public");
    least_privilege_of_the_replicas(&s);

    let pids: Vec<u32> = (1..=3).map(|n| s.pid(&format!("run/api{n}.pid"))).collect();
    let (_, again) = s.ok(&["stack", "up"], &[]);
    assert_eq!(again.matches(": already running").count(), 6, "{again}");
    assert_eq!((1..=3).map(|n| s.pid(&format!("run/api{n}.pid"))).collect::<Vec<_>>(), pids);

    let (env, _) = s.ok(&["stack", "env"], &[]);
    let urls: Vec<String> = (0..3).map(|n| format!("http://127.0.0.1:{}", api + n)).collect();
    assert!(env.lines().any(|l| l == format!("export API_URLS='{}'", urls.join(","))), "{env}");
    assert!(env.lines().any(|l| l == format!("export PUBLIC_URL='http://127.0.0.1:{edge}'")), "{env}");

    // The drill's step: stop one replica, the rest keeps serving, up brings it back.
    s.ok(&["stack", "stop", "api2"], &[]);
    assert!(gone_soon(pids[1]), "api2 stopped");
    assert!(alive(pids[0]) && alive(pids[2]), "the others keep running");
    let status = s.xtask(&["stack", "status"], &[]);
    let (text, _) = texts(&status);
    assert_eq!(status.status.code(), Some(3), "a chosen service is down: {text}");
    assert!(text.lines().any(|l| l.starts_with("api2 ") && l.contains(" stopped ")), "{text}");
    assert_eq!(http_get(edge, "/readyz").0, 200, "NGINX still has ready replicas");
    s.ok(&["stack", "up"], &[("STACK_SERVICES", "api2")]);
    let new_pid = s.pid("run/api2.pid");
    assert!(new_pid != pids[1] && alive(new_pid), "api2 runs again as a new process");
    let (text, _) = s.ok(&["stack", "status"], &[]);
    assert_eq!(text.lines().filter(|l| l.starts_with("api") && l.ends_with(" ready")).count(), 3, "{text}");

    // A changed NGINX setting reloads the running master instead of restarting it.
    let nginx_pid = s.pid("nginx/nginx.pid");
    let (_, reload) = s.ok(&["stack", "up"], &[("STACK_SERVICES", "nginx"), ("STACK_NGINX_RATE_LIMIT", "off")]);
    assert!(reload.contains("nginx: settings changed; reloading"), "{reload}");
    assert_eq!(s.pid("nginx/nginx.pid"), nginx_pid);
    let (text, _) = s.ok(&["stack", "status"], &[]);
    assert!(text.lines().any(|l| l.starts_with("nginx ") && l.contains("rate_limit=off")), "{text}");

    let all: Vec<u32> = [pids[0], new_pid, pids[2], nginx_pid, s.pid("run/redis.pid")].into();
    s.ok(&["stack", "down"], &[]);
    for pid in all {
        assert!(gone_soon(pid), "pid {pid} still runs after down");
    }
    assert!(
        std::fs::read_dir(s.folder().join("run"))
            .expect("run/")
            .flatten()
            .all(|e| { !e.file_name().to_string_lossy().ends_with(".pid") })
    );
}

/// Redis as `user` (redis-cli): the reply's text, errors included.
fn redis_as(port: u16, user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--user", user, "--pass", password, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The replicas (ready, so they read both stores) connect as the SELECT-only role and the
/// read-only Redis user, and those refuse every write.
fn least_privilege_of_the_replicas(s: &TestStack) {
    use xtask::facts::{PG_API_PASSWORD, PG_API_USER, REDIS_API_PASSWORD, REDIS_API_USER};
    let environ = std::fs::read(format!("/proc/{}/environ", s.pid("run/api1.pid"))).expect("api1's environment");
    let environ = String::from_utf8_lossy(&environ);
    let var = |name: &str| environ.split('\0').find_map(|v| v.strip_prefix(&format!("{name}="))).unwrap_or_default();
    let (pg, redis) = (s.port("STACK_PG_PORT"), s.port("STACK_REDIS_PORT"));
    let api_pg = format!("postgres://{PG_API_USER}:{PG_API_PASSWORD}@127.0.0.1:{pg}/results");
    assert_eq!(var("DATABASE_URL"), api_pg);
    assert_eq!(var("REDIS_URL"), format!("redis://{REDIS_API_USER}:{REDIS_API_PASSWORD}@127.0.0.1:{redis}"));

    // A table the seeder's role creates later is readable (default privileges), not writable.
    let owner = format!("postgres://results:results-local-only@127.0.0.1:{pg}/results");
    assert!(psql(&owner, "CREATE TABLE graded (score int); INSERT INTO graded VALUES (40)").status.success());
    let read = psql(&api_pg, "SELECT score FROM graded");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "40", "{read:?}");
    for write in
        ["UPDATE graded SET score = 100", "DELETE FROM graded", "CREATE TABLE mine (x int)", "DROP TABLE graded"]
    {
        let out = psql(&api_pg, write);
        assert!(!out.status.success(), "the API's role ran {write:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("permission denied") || err.contains("must be owner"), "{write:?}: {err}");
    }
    let kept = psql(&owner, "SELECT score FROM graded");
    assert_eq!(String::from_utf8_lossy(&kept.stdout).trim(), "40");

    let prefix = xtask::facts::default_of("STACK_KEY_PREFIX");
    let key = format!("{prefix}probe");
    assert_eq!(xtask::net::redis_text("127.0.0.1", redis, &["SET", &key, "40"]).as_deref(), Some("OK"));
    let as_api = |args: &[&str]| redis_as(redis, REDIS_API_USER, REDIS_API_PASSWORD, args);
    assert_eq!(as_api(&["GET", &key]), "40", "the API's user reads its prefix");
    for write in [&["SET", key.as_str(), "100"][..], &["DEL", &key], &["FLUSHALL"], &["CONFIG", "SET", "save", ""]] {
        let reply = as_api(write);
        assert!(reply.contains("NOPERM"), "the API's user ran {write:?}: {reply}");
    }
    assert!(as_api(&["GET", "elsewhere"]).contains("NOPERM"), "no key outside the prefix");
    // Its one write: the failed-lookup counters, and only theirs.
    let counter = format!("{prefix}:limits:client:192.0.2.1");
    assert_eq!(as_api(&["INCR", &counter]), "1", "the API's user counts failed lookups");
    assert_eq!(as_api(&["PEXPIRE", &counter, "60000", "NX"]), "1");
    for refused in [&["INCR", key.as_str()][..], &["PEXPIRE", &key, "1"], &["SET", &counter, "0"], &["DEL", &counter]] {
        let reply = as_api(refused);
        assert!(reply.contains("NOPERM"), "the API's user ran {refused:?}: {reply}");
    }
    use xtask::facts::{REDIS_SEEDER_PASSWORD, REDIS_SEEDER_USER};
    let as_seeder = |args: &[&str]| redis_as(redis, REDIS_SEEDER_USER, REDIS_SEEDER_PASSWORD, args);
    assert_eq!(as_seeder(&["SET", &key, "41"]), "OK", "the seeder writes its prefix");
    for refused in [&["SET", "elsewhere", "1"][..], &["FLUSHALL"], &["KEYS", "*"], &["CONFIG", "GET", "dir"]] {
        let reply = as_seeder(refused);
        assert!(reply.contains("NOPERM"), "the seeder's user ran {refused:?}: {reply}");
    }
    assert_eq!(xtask::net::redis_text("127.0.0.1", redis, &["GET", &key]).as_deref(), Some("41"));
    assert!(redis_as(redis, REDIS_API_USER, "wrong", &["GET", &key]).contains("WRONGPASS"));
}

/// `GET path` on 127.0.0.1:`port` from source address `from` (curl --interface), with an
/// X-Forwarded-For header when given: the status and body.
fn get_from(from: &str, port: u16, path: &str, forwarded_for: Option<&str>) -> (u16, String) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "--max-time", "5", "--interface", from, "-w", "\n%{http_code}"]);
    if let Some(xff) = forwarded_for {
        curl.args(["-H", &format!("X-Forwarded-For: {xff}")]);
    }
    let out = curl.arg(format!("http://127.0.0.1:{port}{path}")).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or_default();
    (code.parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_edge_believes_x_forwarded_for_only_from_its_balancer_and_tells_the_public_only_ready_or_not() {
    let s = TestStack::new("pg redis api nginx");
    // One request per second per client and a burst of one: a client's third request within
    // the second is a 429; another client's first is not.
    let limit = [
        ("STACK_NGINX_RATE_LIMIT", "on"),
        ("STACK_NGINX_RATE", "1"),
        ("STACK_NGINX_BURST", "1"),
        ("STACK_NGINX_REAL_IP_FROM", "127.0.0.2/32"),
    ];
    s.ok(&["stack", "up"], &limit);
    let edge = s.port("STACK_NGINX_PORT");
    let path = "/v1/results/1000001";
    let limited = |from: &str, xff: &str| get_from(from, edge, path, Some(xff)).0 == 429;

    // From the balancer (trusted): the header names the client, two clients are two budgets.
    assert!(!limited("127.0.0.2", "10.0.0.1") && !limited("127.0.0.2", "10.0.0.1"), "within rate + burst");
    assert!(!limited("127.0.0.2", "10.0.0.2"), "another client behind the balancer is not limited");
    assert!(limited("127.0.0.2", "10.0.0.1"), "the same client behind the balancer is");
    // A client cannot pick its address by writing the header itself: through the balancer only
    // the rightmost untrusted address counts (10.0.0.5 each time) ...
    assert!(!limited("127.0.0.2", "10.0.0.9, 10.0.0.5") && !limited("127.0.0.2", "10.0.0.7, 10.0.0.5"));
    assert!(limited("127.0.0.2", "10.0.0.8, 10.0.0.5"), "the client-written part of the chain is ignored");
    // ... and straight from an untrusted address the header is ignored altogether.
    assert!(!limited("127.0.0.1", "10.0.0.3") && !limited("127.0.0.1", "10.0.0.3"));
    assert!(limited("127.0.0.1", "10.0.0.4"), "an untrusted peer's X-Forwarded-For was believed");

    // /readyz at the edge: ready or not, nothing about the stores (the replicas still tell).
    let (api, off) = (s.port("STACK_API_PORT"), [("STACK_NGINX_RATE_LIMIT", "off")]);
    s.ok(&["stack", "up"], &off);
    assert_eq!(get_from("127.0.0.1", edge, "/readyz", None), (200, "{\"ready\":true}\n".to_owned()));
    assert!(http_get(api, "/readyz").1.contains("\"redis\":\"up\""), "the replica's own /readyz keeps the detail");
    for n in 1..=3 {
        s.ok(&["stack", "stop", &format!("api{n}")], &off);
    }
    assert_eq!(get_from("127.0.0.1", edge, "/readyz", None), (503, "{\"ready\":false}\n".to_owned()));
    assert_eq!(get_from("127.0.0.1", edge, "/_replicas_readyz", None).0, 404, "the subrequest's location is internal");
}

/// A CA, a certificate it signs for 127.0.0.1 and localhost with its key, and a stranger CA (PEM).
fn certificates() -> (String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a CA");
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("results test CA");
    let server_key = KeyPair::generate().expect("a key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    let server = params.signed_by(&server_key, &ca_cert, &ca_key).expect("a server certificate");
    (ca_cert.pem(), server.pem(), server_key.serialize_pem(), ca("a stranger CA").0.pem())
}

/// An API replica on `port`/`port`+1 with these stores and `SSL_CERT_FILE` (the roots rustls
/// trusts for rediss://); its /readyz once both stores are up, or the last one after `wait`.
/// Its log (with fred's TLS errors) goes to `log`.
fn api_readiness(port: u16, database_url: &str, redis_url: &str, roots: &Path, wait: Duration, log: &Path) -> String {
    let mut api = Command::new(workspace_bin("api"))
        .env_clear()
        .env("API_LISTEN", format!("127.0.0.1:{port}"))
        .env("API_ADMIN_LISTEN", format!("127.0.0.1:{}", port + 1))
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("SSL_CERT_FILE", roots)
        .env("API_LOG", "warn,fred=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("the API's log"))
        .spawn()
        .expect("the API starts");
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < wait {
        if let Ok(r) = xtask::net::http("GET", "127.0.0.1", port, "/readyz", Duration::from_secs(2)) {
            last = r.body;
            if last.contains("\"postgres\":\"up\"") && last.contains("\"redis\":\"up\"") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = api.kill();
    let _ = api.wait();
    last
}

#[test]
fn the_api_reaches_postgresql_and_redis_over_verified_tls_and_refuses_a_server_its_ca_did_not_sign() {
    let s = TestStack::new("pg redis");
    s.ok(&["stack", "up"], &[]);
    let dir = s.folder().join("tls");
    std::fs::create_dir_all(&dir).expect("tls/");
    let (ca, cert, key, stranger) = certificates();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let (ca_file, stranger_file) = (write("ca.pem", &ca), write("stranger.pem", &stranger));
    let (cert_file, key_file) = (write("server.pem", &cert), write("server.key", &key));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // PostgreSQL reads its key as the cluster's owner (postgres when we are root).
    let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();

    // PostgreSQL: ssl on, reloaded (as the superuser, over the stack's Unix socket).
    let pg = s.port("STACK_PG_PORT");
    let superuser = |sql: &str| {
        Command::new("psql")
            .args(["-X", "-At", "-h"])
            .arg(s.folder().join("run"))
            .args(["-p", &pg.to_string(), "-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .expect("psql runs")
    };
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_file.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_file.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        let out = superuser(&sql);
        assert!(out.status.success(), "{sql}: {out:?}");
    }
    // Redis: a second server that speaks TLS only (port 0: no plain listener).
    let tls_port = free_ports(1);
    let redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &tls_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .args(["--tls-auth-clients", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    // Stopped however the test ends (a panic must not leave it running).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let redis = KillOnDrop(redis);

    let listening = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    assert!(listening, "the TLS Redis listens on {tls_port}");
    use xtask::facts::{PG_API_PASSWORD, PG_API_USER};
    let database_url = |root: &Path| {
        format!(
            "postgres://{PG_API_USER}:{PG_API_PASSWORD}@127.0.0.1:{pg}/results?sslmode=verify-full&sslrootcert={}",
            root.display()
        )
    };
    let redis_url = format!("rediss://127.0.0.1:{tls_port}");
    let api = free_ports(2);
    let trusted = api_readiness(
        api,
        &database_url(&ca_file),
        &redis_url,
        &ca_file,
        Duration::from_secs(20),
        &dir.join("api.log"),
    );
    assert!(
        trusted.contains("\"postgres\":\"up\"") && trusted.contains("\"redis\":\"up\""),
        "verified TLS to both stores: {trusted}"
    );
    let stranger_api = free_ports(2);
    let log = dir.join("stranger-api.log");
    let refused = api_readiness(
        stranger_api,
        &database_url(&stranger_file),
        &redis_url,
        &stranger_file,
        Duration::from_secs(4),
        &log,
    );
    drop(redis);
    assert!(
        refused.contains("\"postgres\":\"down\"") && refused.contains("\"redis\":\"down\""),
        "a server the trusted CA did not sign is refused: {refused}"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("UnknownIssuer"), "refused for its certificate, not for anything else: {log}");
}

#[test]
fn a_port_taken_by_a_foreign_process_is_refused_before_anything_starts() {
    let s = TestStack::new("pg redis");
    let foreign = TcpListener::bind(("127.0.0.1", s.port("STACK_REDIS_PORT"))).expect("bind");
    let out = s.xtask(&["stack", "up"], &[]);
    let (_, err) = texts(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("port {} on 127.0.0.1 is already in use by another process", s.port("STACK_REDIS_PORT"))),
        "{err}"
    );
    assert!(err.contains("Set STACK_REDIS_PORT to a free port"), "{err}");
    assert!(!s.folder().exists(), "nothing was created or started");
    drop(foreign);
}

#[test]
fn a_non_loopback_host_is_refused() {
    let s = TestStack::new("pg redis");
    for host in ["0.0.0.0", "192.168.1.10"] {
        let out = s.xtask(&["stack", "env"], &[("STACK_HOST", host)]);
        let (stdout, err) = texts(&out);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout.is_empty(), "nothing to eval: {stdout}");
        assert!(err.contains(&format!("STACK_HOST='{host}' is not a loopback address")), "{err}");
    }
}

#[test]
fn wrong_settings_are_refused_with_what_to_do() {
    let s = TestStack::new("pg redis");
    let out = s.xtask(&["stack", "env"], &[("STACK_SERVICES", "pg bogus")]);
    assert!(!out.status.success() && texts(&out).1.contains("unknown service 'bogus'"));
    let missing = s.folder().join("no-api");
    let out = s.xtask(&["stack", "up"], &[("STACK_SERVICES", "api"), ("STACK_API_BIN", &missing.to_string_lossy())]);
    assert!(!out.status.success());
    assert!(texts(&out).1.contains("build it first: cargo build --release -p api"), "{:?}", texts(&out));
    let out = s.xtask(&["stack", "stop"], &[]);
    assert_eq!(out.status.code(), Some(2), "stop needs a service");
    let out = s.xtask(&["stack", "stop", "redis"], &[]);
    assert!(texts(&out).1.contains("does not exist; nothing is running from it"), "{:?}", texts(&out));
}

/// Every way NGINX normalises a request URI before it matches a location and computes `$uri`
/// (merged slashes, `/./`, `/../`, percent-decoded digits, slashes and dots, a query, a fragment),
/// each aimed at `route/id` (`route` is `/v1/results` or `/student`).
fn normalisations_of(route: &str, id: &str) -> Vec<String> {
    let (parent, last) = route.rsplit_once('/').expect("/a or /a/b");
    let other_route = if route == "/student" { "/v1/results" } else { "/student" };
    vec![
        format!("{route}//{id}"),
        format!("/{route}/{id}"),
        format!("{}/{id}", route.replace('/', "//")),
        format!("{route}/./{id}"),
        format!("/.{route}/{id}"),
        format!("{route}/x/../{id}"),
        format!("{route}/9/../{id}"),
        format!("{route}/../{last}/{id}"),
        format!("{other_route}/..{route}/{id}"),
        format!("{route}/%{:02X}{}", id.as_bytes()[0], &id[1..]),
        format!("{route}/{}", id.bytes().map(|b| format!("%{b:02X}")).collect::<String>()),
        format!("{route}%2F{id}"),
        format!("{route}%2f{id}"),
        format!("{parent}/%2E/{last}/{id}"),
        format!("{route}/%2e%2e/{last}/{id}"),
        format!("{route}/{id}?poison=1"),
        format!("{route}/{id}#x"),
    ]
}

#[test]
fn no_request_uri_nginx_normalises_changes_what_the_micro_cache_answers_for_another() {
    let s = TestStack::new("pg redis");
    s.seeded(100);
    // The limit off: the attack below makes ~100 requests from one address in about a second,
    // right at the default burst, and what is tested is the cache.
    let edge_settings =
        [("STACK_SERVICES", "pg redis api nginx"), ("STACK_NGINX_MICROCACHE", "on"), ("STACK_NGINX_RATE_LIMIT", "off")];
    s.ok(&["stack", "up"], &edge_settings);
    let (edge, api) = (s.port("STACK_NGINX_PORT"), s.port("STACK_API_PORT"));
    let get = |port: u16, path: &str| {
        let r = xtask::net::http("GET", "127.0.0.1", port, path, Duration::from_secs(5)).expect("HTTP answers");
        let cache = r.header("X-Cache-Status").unwrap_or_default().to_owned();
        (r.status, r.body, cache)
    };
    let (_, _, first) = get(edge, "/v1/results/1000099");
    let (_, _, second) = get(edge, "/v1/results/1000099");
    let (status, _, third) = get(edge, "/v1/results/1000099");
    assert_eq!((status, [first, second, third]), (200, ["MISS", "MISS", "HIT"].map(String::from)), "the cache is on");

    // The attacker asks first, twice (proxy_cache_min_uses 2 stores the second answer), for a
    // key nobody has asked yet: every victim is a fresh student (and every fifth an unknown ID,
    // whose 404 is cached too), so the attack never finds the victim's own entry there.
    let mut poisoned = Vec::new();
    let mut next_id = 1_000_000;
    for route in ["/v1/results", "/student"] {
        for which in 0..normalisations_of(route, "1").len() {
            next_id += 1;
            let id = if next_id % 5 == 0 { next_id + 900_000 } else { next_id };
            let attack = normalisations_of(route, &id.to_string()).swap_remove(which);
            let victim = format!("{route}/{id}");
            let (attack_status, _, _) = get(edge, &attack);
            let _ = get(edge, &attack);
            let (truth_status, truth_body, _) = get(api, &victim);
            let (status, body, cache) = get(edge, &victim);
            if (status, &body) != (truth_status, &truth_body) {
                poisoned.push(format!("{attack} ({attack_status}) -> {victim}: {status} {cache} {body}"));
            }
        }
    }
    assert!(poisoned.is_empty(), "victims answered what an attack stored:\n{}", poisoned.join("\n"));

    // The replicas' read-only Redis user reads the results (a refused read would fall back to
    // PostgreSQL and answer the same): hits are counted from Redis or from the near cache's copy,
    // which that user read too.
    let admin = s.port("STACK_API_ADMIN_PORT");
    let redis_hits = (0..3).map(|n| get(admin + n, "/metrics").1).any(|metrics| {
        metrics.lines().any(|l| {
            l.starts_with("result_lookups_total{")
                && (l.contains("tier=\"redis\"") || l.contains("tier=\"near\""))
                && l.contains("outcome=\"hit\"")
        })
    });
    assert!(redis_hits, "no lookup was answered by Redis");
}

/// The per-client limit, on by default (docs/edge.md: 50 lookups/s per client address, burst
/// 100): a school's 40 students behind one NAT address, at the load generator's think time
/// (1-3 s), are all answered, typos included; a harvester walking the IDs from one address as
/// fast as it can is refused with 429s beyond that budget. Each client is its own loopback
/// address (Linux routes all of 127.0.0.0/8 to lo). Failed lookups are limited by the API, whose
/// own tests cover that.
#[test]
fn the_default_per_client_limit_admits_a_school_behind_one_address_and_refuses_a_harvester() {
    let s = TestStack::new("pg redis");
    s.seeded(600);
    // No STACK_NGINX_RATE_LIMIT: the default is what is tested.
    s.ok(&["stack", "up"], &[("STACK_SERVICES", "pg redis api nginx")]);
    let edge = s.port("STACK_NGINX_PORT");
    let (first, unknown) = (1_000_000_u32, 900_000_000_u32);

    // The school: every student looks up their own number at once (results are out), then,
    // after 1-3 s, a friend's (every tenth mistypes it), then their own again.
    let school = "127.16.0.1";
    let answers: Vec<Vec<u16>> = std::thread::scope(|scope| {
        let users: Vec<_> = (0..40_u32)
            .map(|i| {
                scope.spawn(move || {
                    let think = |k: u32| Duration::from_millis(1000 + u64::from((i * 53 + k * 700) % 2000));
                    let friend = if i % 10 == 0 { unknown + i } else { first + 100 + i };
                    let mut got = vec![get_from(school, edge, &format!("/v1/results/{}", first + i), None).0];
                    std::thread::sleep(think(1));
                    got.push(get_from(school, edge, &format!("/v1/results/{friend}"), None).0);
                    std::thread::sleep(think(2));
                    got.push(get_from(school, edge, &format!("/v1/results/{}", first + i), None).0);
                    got
                })
            })
            .collect();
        users.into_iter().map(|u| u.join().expect("a student")).collect()
    });
    for (i, got) in answers.iter().enumerate() {
        let typo = if i % 10 == 0 { 404 } else { 200 };
        assert_eq!(got, &[200, typo, 200], "student {i} behind the school's NAT");
    }

    // The harvester: 8 connections at a time walk the 600 numbers from one address.
    let harvester = "127.16.0.2";
    let started = std::time::Instant::now();
    let walked: Vec<(u16, String)> = std::thread::scope(|scope| {
        let walkers: Vec<_> = (0..8_u32)
            .map(|w| {
                scope.spawn(move || {
                    (0..75)
                        .map(|k| get_from(harvester, edge, &format!("/v1/results/{}", first + k * 8 + w), None))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        walkers.into_iter().flat_map(|w| w.join().expect("a walker")).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let served = walked.iter().filter(|(status, _)| *status == 200).count();
    let refused = walked.iter().filter(|(status, body)| *status == 429 && body.contains("\"rate_limited\"")).count();
    assert_eq!(
        served + refused,
        walked.len(),
        "only 200s and 429s: {:?}",
        walked.iter().find(|(status, _)| ![200, 429].contains(status))
    );
    // The burst, the rate over the walk's time, and the 8 in flight when it was measured.
    let rate: f64 = xtask::facts::default_of("STACK_NGINX_RATE").parse().expect("a rate");
    let allowed = 2.0 * rate + rate * secs + 8.0;
    assert!(refused > 0 && (served as f64) <= allowed, "harvester: {served} served, {refused} refused in {secs:.2} s");

    // A prober of unknown numbers, each request claiming another X-Real-IP: NGINX sets the
    // header from the connection, so the API's per-client failed-lookup limit (120 a minute)
    // still counts one client and refuses it, where believing the header would never refuse.
    let prober = "127.16.0.3";
    let refusal = (0..200_u32).find(|n| {
        std::thread::sleep(Duration::from_millis(10)); // under NGINX's rate: only the API refuses
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--interface", prober, "-H", &format!("X-Real-IP: 198.18.0.{}", n % 250)])
            .arg(format!("http://127.0.0.1:{edge}/v1/results/{}", unknown + n))
            .output()
            .expect("curl runs");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains("\"too_many_failed_lookups\"")
    });
    assert!(refusal.is_some_and(|n| n >= 100), "the prober was refused after {refusal:?} unknown numbers");
}
