//! Test fixtures: seeded stores, the API spawned in-process on port 0, proxies in front of the
//! stores, and request helpers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use api::config::Settings;
use results_core::{DatasetSpec, KeyLayout};
use seeder::Stores;
use seeder::load::LoadSettings;
use seeder::progress::ProgressMode;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::chaos::ChaosProxy;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and Redis")
    })
}

fn random_word() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

/// Where a URL's `host:port` starts and ends.
fn authority_span(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    (start, end)
}

/// The server address of a URL.
pub fn server_addr(url: &str) -> SocketAddr {
    let (start, end) = authority_span(url);
    url[start..end].parse().expect("URL has a numeric host:port")
}

/// `url` pointing at `addr` instead.
pub fn with_addr(url: &str, addr: SocketAddr) -> String {
    let (start, end) = authority_span(url);
    format!("{}{addr}{}", &url[..start], &url[end..])
}

/// A data set loaded into a database and Redis prefix of its own.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub stores: Stores,
    pub spec: DatasetSpec,
}

impl Seeded {
    /// Seeds `students` students into a fresh database (named so scripts/test.sh sweeps it) and a
    /// fresh Redis prefix.
    pub async fn new(students: u32) -> Self {
        Self::generated(DatasetSpec::new(7, students).expect("spec")).await
    }

    /// A fresh database and Redis prefix, empty.
    async fn fresh_stores() -> Stores {
        let admin_url = required_env("DATABASE_URL");
        let word = random_word();
        let database = format!("seedtest_api_{word}");
        let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.expect("connect to PostgreSQL");
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create test database");
        let (_, end) = authority_span(&admin_url);
        let database_url = format!("{}/{database}", &admin_url[..end]);
        Stores {
            database_url,
            redis_url: required_env("REDIS_URL"),
            layout: KeyLayout::new(&format!("t-{word}")).expect("prefix"),
        }
    }

    /// Seeds the generated data set `spec` into fresh stores.
    pub async fn generated(spec: DatasetSpec) -> Self {
        let stores = Self::fresh_stores().await;
        let settings = LoadSettings {
            stores: stores.clone(),
            spec,
            force: false,
            pg_connections: 2,
            progress: ProgressMode::Quiet,
        };
        seeder::load::run(&settings).await.expect("seed the test data");
        Self { stores, spec }
    }

    /// Imports the results file `file` into fresh stores; `spec` is the generated data set the file
    /// was exported from (what the tests expect to find).
    pub async fn imported(file: &std::path::Path, spec: DatasetSpec) -> Self {
        let stores = Self::fresh_stores().await;
        let settings = seeder::import::ImportSettings {
            stores: stores.clone(),
            input: seeder::import::Input::Path(file.to_owned()),
            force: false,
            discard_corrections: false,
            pg_connections: 2,
            progress: ProgressMode::Quiet,
        };
        seeder::import::run(&settings).await.expect("import the test data");
        Self { stores, spec }
    }

    /// The data set shared by tests that only read (seeded once per test run).
    pub async fn shared() -> Seeded {
        static SHARED: OnceCell<Seeded> = OnceCell::const_new();
        SHARED.get_or_init(|| Seeded::new(10_000)).await.clone()
    }

    /// A direct Redis client of the test.
    pub async fn redis(&self) -> fred::prelude::Client {
        use fred::prelude::*;
        let client =
            Builder::from_config(Config::from_url(&self.stores.redis_url).expect("url")).build().expect("client");
        client.init().await.expect("connect to Redis");
        client
    }
}

/// A running API.
pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub redis_proxy: ChaosProxy,
    pub pg_proxy: ChaosProxy,
    /// The read replica's proxy, when spawned with one ([`TestApp::spawn_with_replica`]).
    pub replica_proxy: Option<ChaosProxy>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Spawns the API over `seeded`, with both stores behind proxies, after `tweak` adjusts the
    /// settings.
    pub async fn spawn(seeded: &Seeded, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_with_stores(seeded, true, tweak).await
    }

    /// Like [`TestApp::spawn`], with both proxies already cut when the API starts unless
    /// `stores_up`.
    pub async fn spawn_with_stores(seeded: &Seeded, stores_up: bool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let redis_proxy = ChaosProxy::start(server_addr(&seeded.stores.redis_url)).await;
        let pg_proxy = ChaosProxy::start(server_addr(&seeded.stores.database_url)).await;
        if !stores_up {
            redis_proxy.cut();
            pg_proxy.cut();
        }
        let mut settings = Settings::new(
            with_addr(&seeded.stores.database_url, pg_proxy.addr()),
            with_addr(&seeded.stores.redis_url, redis_proxy.addr()),
            seeded.stores.layout.clone(),
        );
        settings.refresh = Duration::from_millis(200);
        tweak(&mut settings);
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let base = format!("http://{}", public.local_addr().expect("addr"));
        let admin_base = format!("http://{}", admin.local_addr().expect("addr"));
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(api::startup::run(settings, public, admin, async move {
            let _ = signal.await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        Self {
            base,
            admin: admin_base,
            client,
            redis_proxy,
            pg_proxy,
            replica_proxy: None,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Like [`TestApp::spawn`], with one read replica in `DATABASE_REPLICA_URLS`: a second proxy
    /// in front of the same PostgreSQL. The proxies tell which URL the API read; that a real
    /// streaming standby serves these queries is scripts/tests/pg_replica_test.sh's part.
    pub async fn spawn_with_replica(seeded: &Seeded, tweak: impl FnOnce(&mut Settings)) -> Self {
        let replica = ChaosProxy::start(server_addr(&seeded.stores.database_url)).await;
        let url = with_addr(&seeded.stores.database_url, replica.addr());
        let mut app = Self::spawn(seeded, |s| {
            s.database_replica_urls.push(url);
            // A read slower than the replica timeout goes to the primary by design; a debug
            // build on a busy test host stalls past the default 250 ms now and then.
            s.pg_replica_timeout = Duration::from_millis(1_000);
            tweak(s);
        })
        .await;
        app.replica_proxy = Some(replica);
        app
    }

    /// The read replica's proxy.
    pub fn replica(&self) -> &ChaosProxy {
        self.replica_proxy.as_ref().expect("spawned with a replica")
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.admin)).send().await.expect("metrics");
        response.text().await.expect("metrics text")
    }

    /// GET a public path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("request")
    }

    /// Triggers a graceful shutdown and returns the server task.
    pub fn shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        self.task.take().expect("server task")
    }

    /// Waits until `condition` holds on `/readyz`'s JSON, up to `limit`.
    pub async fn wait_ready(
        &self,
        limit: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let body: serde_json::Value = self.get("/readyz").await.json().await.expect("readyz JSON");
            if condition(&body) || tokio::time::Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// The error envelope of a response, checked for shape.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "errors are JSON"
    );
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["status"], status, "envelope carries the status");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "envelope has a message");
    (status, body["error"]["code"].as_str().expect("code").to_owned())
}
