//! Test fixtures: a seeded data set, the API spawned in-process, a server with wrong answers,
//! and the command line of a short load test.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::Duration;

use api::config::Settings;
use clap::Parser;
use loadgen::config::{Cli, RunArgs};
use results_core::{DatasetSpec, KeyLayout};
use seeder::Stores;
use seeder::load::LoadSettings;
use seeder::progress::ProgressMode;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard, OnceCell, oneshot};
use tokio_postgres::NoTls;

/// Students in the test data set: small, so seeding takes a moment.
pub const STUDENTS: u32 = 2_000;
/// Seed of the test data set.
pub const SEED: u64 = 7;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and Redis")
    })
}

fn random_word() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

/// One goose run at a time: goose keeps a little global state (its Ctrl-C flag, its logger),
/// and two loads at once would measure each other on two cores.
pub async fn one_load_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The stores seeded once for the whole test binary (a fresh database named so scripts/test.sh
/// sweeps it, a fresh Redis prefix).
pub async fn seeded() -> Stores {
    static SEEDED: OnceCell<Stores> = OnceCell::const_new();
    SEEDED
        .get_or_init(|| async {
            let admin_url = required_env("DATABASE_URL");
            let word = random_word();
            let database = format!("seedtest_loadgen_{word}");
            let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.expect("connect to PostgreSQL");
            let connection = tokio::spawn(connection);
            client.batch_execute(&format!("CREATE DATABASE {database}")).await.expect("create test database");
            drop(client);
            let _ = connection.await;
            let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
            let stores = Stores {
                database_url: format!("{base}/{database}"),
                redis_url: required_env("REDIS_URL"),
                layout: KeyLayout::new(&format!("t-{word}")).expect("prefix"),
            };
            let settings = LoadSettings {
                stores: stores.clone(),
                spec: DatasetSpec::new(SEED, STUDENTS).expect("spec"),
                force: false,
                pg_connections: 2,
                progress: ProgressMode::Quiet,
            };
            seeder::load::run(&settings).await.expect("seed the test data");
            stores
        })
        .await
        .clone()
}

/// A server running in this test's runtime until dropped.
pub struct Server {
    /// `http://127.0.0.1:port`.
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// The real API over the seeded stores, ready (Redis holds the complete data set).
pub async fn spawn_api() -> Server {
    let stores = seeded().await;
    let mut settings = Settings::new(&stores.database_url, &stores.redis_url, stores.layout.clone());
    settings.refresh = Duration::from_millis(100);
    let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let base = format!("http://{}", public.local_addr().expect("addr"));
    let (shutdown, signal) = oneshot::channel::<()>();
    tokio::spawn(api::startup::run(settings, public, admin, async move {
        let _ = signal.await;
    }));
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Ready, and Redis known complete: unknown IDs answer 404 from Redis alone.
        let ready = client.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status().is_success());
        let known = client.get(format!("{base}/v1/results/1000000")).send().await.ok().filter(|r| r.status() == 200);
        if ready.is_some() && known.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the API did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { base, shutdown: Some(shutdown) }
}

/// A server that answers every result route with 200 and a body that is not the requested
/// student's result, and everything else with 404 and a body that is not the error envelope.
pub async fn spawn_liar() -> Server {
    let app = axum::Router::new()
        .route(
            "/v1/results/{id}",
            axum::routing::get(|| async { r#"{"student_id":1000000,"name":"always the same"}"# }),
        )
        .route("/student/{id}", axum::routing::get(|| async { "<html>a result page</html>" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found") });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, signal) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = signal.await;
            })
            .await;
    });
    Server { base, shutdown: Some(shutdown) }
}

/// The command line of a one-second load test of `users` users against `host`, writing into
/// `out`, with no think time and the metrics endpoint off; `extra` is appended.
pub fn command_line(host: &str, out: &Path, users: usize, extra: &[&str]) -> Vec<String> {
    let students = STUDENTS.to_string();
    let seed = SEED.to_string();
    let users = users.to_string();
    let out = out.to_string_lossy();
    let mut args: Vec<String> = [
        "loadgen",
        "--host",
        host,
        "--users",
        &users,
        "--increase-rate",
        "1000",
        "--run-time",
        "1",
        "--students",
        &students,
        "--seed",
        &seed,
        "--think-min-ms",
        "0",
        "--think-max-ms",
        "0",
        "--metrics-listen",
        "off",
        "--progress-secs",
        "0",
        // Tests measure correctness, not speed: a debug build shares two cores with the API.
        "--slo-p95-ms",
        "2000",
        "--slo-p99-ms",
        "4000",
        "--output-dir",
        &out,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// [`command_line`] parsed.
pub fn cli(host: &str, out: &Path, users: usize, extra: &[&str]) -> Cli {
    Cli::try_parse_from(command_line(host, out, users, extra)).expect("the test command line parses")
}

/// The options of one run, as [`cli`] parses them.
pub fn run_args(host: &str, out: &Path, users: usize, extra: &[&str]) -> RunArgs {
    cli(host, out, users, extra).run
}
