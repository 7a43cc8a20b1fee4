//! The real API spawned in-process on 127.0.0.1:0 (public and admin ports) over test stores, each
//! store behind its own [`ChaosProxy`] so a test can cut, slow down or watch it; request helpers
//! beside it (zero-to-production's `TestApp`).

use std::time::Duration;

use api::config::Settings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::chaos::ChaosProxy;
use crate::stores::TestStores;

/// A client address of its own for each app of this process: `2001:db8:PID:N::1`.
fn next_client_address() -> std::net::IpAddr {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = (std::process::id() & 0xffff) as u16;
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, pid, n, 0, 0, 0, 1))
}

/// A running API; dropping it starts its graceful shutdown.
pub struct TestApp {
    /// The public port's base URL, `http://127.0.0.1:port`.
    pub base: String,
    /// The admin port's base URL (`/metrics`, pprof).
    pub admin: String,
    /// A client with a 20 s timeout, so a hanging API fails the test instead of stalling it. It
    /// sends `X-Real-IP: client_address`, as NGINX would.
    pub client: reqwest::Client,
    /// The client address this app's requests come from (a documentation /64 of its own): tests
    /// running side by side share a data set's failed-lookup counters in Redis, and the API
    /// counts per client, so one test's unknown numbers do not count against another's.
    pub client_address: std::net::IpAddr,
    /// The proxy in front of Redis.
    pub redis_proxy: ChaosProxy,
    /// The proxy in front of the PostgreSQL primary.
    pub pg_proxy: ChaosProxy,
    /// The read replica's proxy, when spawned with one ([`TestApp::spawn_with_replica`]).
    pub replica_proxy: Option<ChaosProxy>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Spawns the API over `stores`, with both stores behind proxies, after `tweak` adjusts the
    /// settings (unless tweaked: the directory refresh is 200 ms, the PostgreSQL bound 5 s, the
    /// near cache off).
    pub async fn spawn(stores: &TestStores, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_with_stores(stores, true, tweak).await
    }

    /// Like [`TestApp::spawn`], with both proxies already cut when the API starts unless
    /// `stores_up`.
    pub async fn spawn_with_stores(stores: &TestStores, stores_up: bool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let redis_proxy = ChaosProxy::start(&stores.stores.redis_url).await;
        let pg_proxy = ChaosProxy::start(&stores.stores.database_url).await;
        if !stores_up {
            redis_proxy.cut();
            pg_proxy.cut();
        }
        let mut settings = Settings::new(pg_proxy.url(), redis_proxy.url(), stores.stores.layout.clone());
        settings.refresh = Duration::from_millis(200);
        // The default 1 s PostgreSQL bound is for production; a debug build's SCRAM login or a
        // lookup on a busy test host (the suites run side by side) took longer now and then and
        // answered 503 in tests about something else. Tests of the bound set their own.
        settings.pg_timeout = Duration::from_secs(5);
        // Off unless a test turns it on: most tests exercise the tiers behind it (Redis,
        // PostgreSQL), which a complete near cache would answer for.
        settings.near_cache_budget = 0;
        tweak(&mut settings);
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind the public port");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind the admin port");
        let base = format!("http://{}", public.local_addr().expect("the public address"));
        let admin_base = format!("http://{}", admin.local_addr().expect("the admin address"));
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(api::startup::run(settings, public, admin, async move {
            let _ = signal.await;
        }));
        let client_address = next_client_address();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-real-ip", client_address.to_string().parse().expect("an address is a header value"));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .default_headers(headers)
            .build()
            .expect("an HTTP client");
        Self {
            base,
            admin: admin_base,
            client,
            client_address,
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
    pub async fn spawn_with_replica(stores: &TestStores, tweak: impl FnOnce(&mut Settings)) -> Self {
        let replica = ChaosProxy::start(&stores.stores.database_url).await;
        let url = replica.url();
        let mut app = Self::spawn(stores, |s| {
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

    /// The read replica's proxy; panics unless spawned with [`TestApp::spawn_with_replica`].
    pub fn replica(&self) -> &ChaosProxy {
        self.replica_proxy.as_ref().expect("spawned with a replica")
    }

    /// The admin port's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.admin)).send().await.expect("GET /metrics");
        response.text().await.expect("the metrics text")
    }

    /// GET a public path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.expect("a response")
    }

    /// Triggers a graceful shutdown and returns the server task.
    pub fn shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        self.task.take().expect("the server task (shut down once)")
    }

    /// Waits until `condition` holds on `/readyz`'s JSON, up to `limit`; returns the last body
    /// either way, for the test to assert on.
    pub async fn wait_ready(
        &self,
        limit: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let body: serde_json::Value = self.get("/readyz").await.json().await.expect("/readyz JSON");
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
