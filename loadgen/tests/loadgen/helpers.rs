//! Test fixtures: the API spawned in-process over a seeded data set (the workspace's
//! `test-support` crate), a server with wrong answers, and the command line of a short load test.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use loadgen::config::{Cli, RunArgs};
pub use test_support::SEED;
use test_support::{Seeded, TestApp};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard, oneshot};

/// Students in the test data set (seeded once for the test binary): small, so seeding takes a
/// moment.
pub const STUDENTS: u32 = 2_000;

/// One goose run at a time: goose keeps a little global state (its Ctrl-C flag, its logger),
/// and two loads at once would measure each other on two cores.
pub async fn one_load_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The real API over the shared seeded stores, ready and knowing Redis complete (unknown IDs
/// answer 404 from Redis alone).
pub async fn spawn_api() -> TestApp {
    let seeded = Seeded::shared(STUDENTS).await;
    // The API's failed-lookup limits off (0): these runs send thousands of unknown numbers and
    // wrong PINs a second from a few addresses, to test the load generator; the API's own tests
    // test the limits.
    let app = TestApp::spawn(&seeded, |s| {
        s.refresh = Duration::from_millis(100);
        s.failed_lookups_per_client = 0;
        s.factor_tries_per_number = 0;
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(20), |r| r["ready"] == true && r["complete_data_set"] == true).await;
    assert!(ready["ready"] == true && ready["complete_data_set"] == true, "the API did not become ready: {ready}");
    app
}

/// The server with wrong answers, running in this test's runtime until dropped.
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
