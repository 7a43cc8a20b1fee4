//! Whole load tests: verdicts, exit statuses, reports, the capacity CSV and PNG, live metrics.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use loadgen::config::{CapacityArgs, Listen};
use loadgen::live::Live;
use loadgen::request::Request;
use loadgen_report::summary::{RequestRow, RunSummary};
use tokio_util::sync::CancellationToken;

use crate::helpers::{cli, one_load_at_a_time, run_args, spawn_api, spawn_liar};

fn row(summary: &RunSummary, request: Request) -> &RequestRow {
    let name = format!("GET {}", request.name());
    summary.stats.by_request.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no row {name}: {summary:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_run_against_the_api_passes_its_slo_gates() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let args = run_args(&api.base, &out.path().join("run"), 8, &[]);
    let live = Live::new().expect("live");
    let summary = loadgen::attack::run(&args, &live, None).await.expect("the run happens");
    assert!(summary.verdict.passed(), "{}", summary.render());
    assert!(summary.stats.requests > 20, "a second of 8 users without pauses: {}", summary.render());
    assert_eq!(summary.stats.failures, 0, "{}", summary.render());
    assert!(row(&summary, Request::Result).requests > 0);
    assert_eq!(summary.co_mitigation, "average", "coordinated-omission mitigation is on by default");
    // Either a stall was corrected, or none needed it: the summary says which.
    let text = summary.render();
    assert!(
        text.contains("corrected for coordinated omission") || text.contains("coordinated-omission mitigation on"),
        "the summary says so: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_404_and_400_count_as_successes() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let only_wrong_ids =
        ["--weight-student", "0", "--weight-hot-spot", "0", "--weight-alias", "0", "--weight-wrong-id", "1"];
    let args = run_args(&api.base, &out.path().join("run"), 4, &only_wrong_ids);
    let live = Live::new().expect("live");
    let summary = loadgen::attack::run(&args, &live, None).await.expect("the run happens");
    for request in [Request::Unknown, Request::Malformed] {
        let row = row(&summary, request);
        assert!(row.requests > 0, "{}", summary.render());
        assert_eq!(row.failures, 0, "{}", summary.render());
    }
    assert!(summary.verdict.passed(), "{}", summary.render());
}

/// The harvest scenario walks the seeded IDs in order, each once, shared by its users; a limit's
/// 429 (NGINX's or the API's) is a failure unless --rate-limited-ok (the drill's flood) says it is
/// expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harvest_walks_the_ids_in_order_and_429s_count_as_expected_only_when_told() {
    let _one = one_load_at_a_time().await;
    let asked = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let record = Arc::clone(&asked);
    let app = axum::Router::new().route(
        "/v1/results/{id}",
        axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<u32>| {
            record.lock().expect("ids").push(id);
            // NGINX's refusal and the API's two failed-lookup ones, in turn.
            let code = ["rate_limited", "too_many_failed_lookups", "too_many_tries"][id as usize % 3];
            async move {
                let body = format!(r#"{{"error":{{"status":429,"code":"{code}","message":"refused"}}}}"#);
                (axum::http::StatusCode::TOO_MANY_REQUESTS, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = tempfile::tempdir().expect("tempdir");
    let live = Live::new().expect("live");
    let only_harvest = [
        "--weight-student",
        "0",
        "--weight-hot-spot",
        "0",
        "--weight-wrong-id",
        "0",
        "--weight-alias",
        "0",
        "--weight-harvest",
        "1",
    ];
    for refused_ok in [true, false] {
        asked.lock().expect("ids").clear();
        let mut extra = only_harvest.to_vec();
        if refused_ok {
            extra.push("--rate-limited-ok");
        }
        let args = run_args(&base, &out.path().join(refused_ok.to_string()), 2, &extra);
        let summary = loadgen::attack::run(&args, &live, None).await.expect("the run happens");
        let requests = summary.stats.requests;
        assert!(requests > 0, "{}", summary.render());
        let expected_failures = if refused_ok { 0 } else { requests };
        assert_eq!(summary.stats.failures, expected_failures, "--rate-limited-ok {refused_ok}: {}", summary.render());
    }
    let mut ids = asked.lock().expect("ids").clone();
    ids.sort_unstable();
    ids.dedup();
    let first = results_core::DEFAULT_FIRST_ID;
    assert!(!ids.is_empty() && ids.len() <= crate::helpers::STUDENTS as usize, "{} ids", ids.len());
    assert!(ids.iter().zip(first..).all(|(id, want)| *id == want), "consecutive from the first: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bodies_fail_validation_and_exit_non_zero() {
    let liar = spawn_liar().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let run = out.path().join("run");
    let live = Live::new().expect("live");
    let summary =
        loadgen::attack::run(&run_args(&liar.base, &run, 4, &[]), &live, None).await.expect("the run happens");
    assert!(!summary.verdict.passed(), "{}", summary.render());
    // Student 1000000's body is right for that one ID only: nearly every result request fails.
    let results = row(&summary, Request::Result);
    assert!(results.failures * 10 >= results.requests * 9, "{}", summary.render());
    let kinds: Vec<&str> = summary.stats.errors.iter().map(|e| e.error.as_str()).collect();
    assert!(kinds.iter().any(|k| k.contains("wrong student in body")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.contains("body is not a result")), "{kinds:?}");
    // The failed requests, with their URLs, are in goose's error log.
    let errors = std::fs::read_to_string(run.join("errors.json")).expect("error log");
    assert!(errors.contains("/v1/results/") && errors.contains("wrong student in body"), "{errors}");

    let code = loadgen::run(cli(&liar.base, &out.path().join("again"), 4, &[])).await.expect("the run happens");
    assert_eq!(code, ExitCode::from(loadgen::EXIT_SLO_MISSED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_thresholds_exit_non_zero_unless_told_otherwise() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let impossible = ["--slo-p99-ms", "0.001"];
    let code = loadgen::run(cli(&api.base, &out.path().join("strict"), 4, &impossible)).await.expect("the run happens");
    assert_eq!(code, ExitCode::from(loadgen::EXIT_SLO_MISSED));
    let goose_rule = ["--threshold", "p50<1us", "--no-threshold-abort"];
    let code = loadgen::run(cli(&api.base, &out.path().join("goose"), 4, &goose_rule)).await.expect("the run happens");
    assert_eq!(code, ExitCode::from(loadgen::EXIT_SLO_MISSED), "goose's own --threshold counts too");
    let lenient = ["--slo-p99-ms", "0.001", "--no-slo-exit"];
    let code = loadgen::run(cli(&api.base, &out.path().join("lenient"), 4, &lenient)).await.expect("the run happens");
    assert_eq!(code, ExitCode::SUCCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_the_capacity_csv_exist_and_parse_and_the_png_is_drawn() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("curve");
    let args = CapacityArgs {
        steps: vec![2, 4],
        step_secs: 1,
        ramp_rate: 1000,
        stop_at_knee: false,
        run: run_args(&api.base, &dir, 1, &["--slo-p99-ms", "0.001"]),
    };
    let live = Live::new().expect("live");
    let curve = loadgen::capacity::run(&args, &live).await.expect("the curve is drawn");
    assert_eq!(curve.dir, dir);
    assert_eq!(curve.knee, Some(0), "an impossible p99 is missed at the first step");

    let csv = std::fs::read_to_string(&curve.csv).expect("capacity.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header, loadgen_report::capacity::CSV_HEADER.split(',').collect::<Vec<_>>());
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for (row, users) in rows.iter().zip(["2", "4"]) {
        assert_eq!(row.len(), header.len(), "{csv}");
        assert_eq!(row[0], users);
        for value in &row[1..10] {
            value.parse::<f64>().unwrap_or_else(|_| panic!("{value} is a number: {csv}"));
        }
        assert!(row[2].parse::<u64>().expect("requests") > 0, "{csv}");
        assert_eq!(row[11], "false", "{csv}");
    }

    let png = std::fs::read(&curve.png).expect("capacity.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a PNG of {} bytes", png.len());

    for step in &curve.steps {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(step.run_dir.join("report.json")).expect("report.json"))
                .expect("JSON");
        assert!(report.is_object(), "{report}");
        let html = std::fs::read_to_string(step.run_dir.join("report.html")).expect("report.html");
        assert!(html.contains("/v1/results/{id}"), "the HTML report groups by route template");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(step.run_dir.join("summary.json")).expect("summary.json"))
                .expect("JSON");
        assert_eq!(summary["verdict"]["gates"][1]["name"], "p99");
        assert!(std::fs::read_to_string(step.run_dir.join("summary.txt")).expect("summary.txt").contains("SLO gates"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_are_served_while_a_run_goes() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let mut args = run_args(&api.base, &out.path().join("run"), 4, &[]);
    args.options.metrics_listen = Listen::At("127.0.0.1:0".parse().expect("addr"));
    let live = Live::new().expect("live");
    let stop = CancellationToken::new();
    let addr = loadgen::start_metrics(&args.options, &live, &stop).await.expect("metrics endpoint");
    let run = tokio::spawn({
        let live = Arc::clone(&live);
        async move { loadgen::attack::run(&args, &live, None).await }
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut seen = String::new();
    for _ in 0..40 {
        seen = client.get(&url).send().await.expect("scrape").text().await.expect("text");
        if seen.contains("loadgen_users 4") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains("loadgen_users 4"), "the users gauge while running: {seen}");
    let summary = run.await.expect("join").expect("the run happens");
    let text = client.get(&url).send().await.expect("scrape").text().await.expect("text");
    let count: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("loadgen_request_duration_seconds_count{request=\"/v1/results/{id}\",outcome=\"ok\"}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(count >= 1.0, "{text}");
    assert!(count as usize >= row(&summary, Request::Result).requests, "client counts cover the measured requests");
    assert!(text.contains("# TYPE loadgen_request_duration_seconds histogram"), "{text}");
    assert!(text.contains("loadgen_requests_total{"), "{text}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goose_load_shapes_replace_the_default_shape() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let live = Live::new().expect("live");
    // Each conflicts with one of the defaults (users, increase rate, run time) goose is given.
    let shapes: [&[&str]; 3] = [
        &["--test-plan", "2,1s;0,0s"],
        &["--increase-time", "1", "--users", "2"],
        &["--iterations", "3", "--users", "2"],
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        let mut line = crate::helpers::command_line(&api.base, &out.path().join(i.to_string()), 2, &[]);
        // Drop the helper's --users/--increase-rate/--run-time: the shape says how long.
        for flag in ["--users", "--increase-rate", "--run-time"] {
            if let Some(at) = line.iter().position(|a| a == flag) {
                line.drain(at..at + 2);
            }
        }
        line.extend(shape.iter().map(|s| (*s).to_owned()));
        let cli = <loadgen::config::Cli as clap::Parser>::try_parse_from(&line).expect("parses");
        let summary = loadgen::attack::run(&cli.run, &live, None).await.unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        assert!(summary.stats.requests > 0 && summary.stats.failures == 0, "{shape:?}: {}", summary.render());
    }
}

/// The client addresses a relay saw.
type Peers = Arc<std::sync::Mutex<std::collections::BTreeSet<std::net::IpAddr>>>;

/// A TCP relay to `target` that counts the connections clients open through it, and the
/// addresses they come from.
async fn counting_relay(target: &str) -> (String, Arc<std::sync::atomic::AtomicUsize>, Peers) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let base = format!("http://{}", listener.local_addr().expect("relay addr"));
    let target = target.trim_start_matches("http://").to_owned();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let peers = Peers::default();
    let seen = Arc::clone(&peers);
    tokio::spawn(async move {
        while let Ok((mut client, peer)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(peer.ip());
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (base, accepted, peers)
}

/// NGINX limits each client address (docs/edge.md): the users come from --source-addresses
/// loopback addresses of their own, 127.1.0.1 upwards, in turn; 0 leaves it to the system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_come_from_their_own_source_addresses() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let live = Live::new().expect("live");
    for (count, per_user) in [("3", false), ("3", true), ("0", false)] {
        let (relay, _, peers) = counting_relay(&api.base).await;
        let mut extra = vec!["--source-addresses", count, "--increase-rate", "100"];
        if per_user {
            extra.push("--client-per-user");
        }
        let args = run_args(&relay, &out.path().join(format!("{count}-{per_user}")), 6, &extra);
        let summary = loadgen::attack::run(&args, &live, None).await.expect("the run happens");
        assert!(summary.stats.requests > 0 && summary.stats.failures == 0, "{}", summary.render());
        let seen: Vec<String> = peers.lock().expect("peers").iter().map(ToString::to_string).collect();
        let expected: &[&str] = if count == "3" { &["127.1.0.1", "127.1.0.2", "127.1.0.3"] } else { &["127.0.0.1"] };
        assert_eq!(seen, expected, "--source-addresses {count}, client per user {per_user}");
    }
}

/// A pooled connection idle longer than --pool-idle-secs is closed by the client, not reused: a
/// server closing its idle keep-alive connections (NGINX's keepalive_timeout) must never be the
/// first to do so, or a request sent at that moment is reset (one did, in a full drill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_are_closed_by_the_client_after_pool_idle_secs() {
    let api = spawn_api().await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let live = Live::new().expect("live");
    // One user, 600 ms between lookups, for 3 s: about five requests, each after 600 ms idle.
    for (pool_idle, shared) in [("0.2", true), ("20", true), ("0.2", false)] {
        let (relay, accepted, _) = counting_relay(&api.base).await;
        let mut extra = vec!["--think-min-ms", "600", "--think-max-ms", "600", "--run-time", "3"];
        extra.extend(["--pool-idle-secs", pool_idle]);
        if !shared {
            extra.push("--client-per-user");
        }
        let args = run_args(&relay, &out.path().join(format!("{pool_idle}-{shared}")), 1, &extra);
        let summary = loadgen::attack::run(&args, &live, None).await.expect("the run happens");
        let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
        let requests = summary.stats.requests;
        assert_eq!(summary.stats.failures, 0, "{}", summary.render());
        assert!(requests >= 3, "pool idle {pool_idle}: {}", summary.render());
        if pool_idle == "20" {
            assert_eq!(connections, 1, "idle 600 ms < 20 s: one connection reused for {requests} requests");
        } else {
            assert!(
                connections >= requests,
                "idle 600 ms > 0.2 s (shared pool {shared}): a new connection per request, got {connections} for {requests}"
            );
        }
    }
}

#[test]
fn pool_idle_secs_out_of_range_is_refused() {
    for bad in ["0", "-1", "nan", "3601", "soon"] {
        let line = crate::helpers::command_line(
            "http://127.0.0.1:1",
            std::path::Path::new("/tmp/x"),
            1,
            &["--pool-idle-secs", bad],
        );
        let refused = <loadgen::config::Cli as clap::Parser>::try_parse_from(&line);
        assert!(refused.is_err(), "--pool-idle-secs {bad} is refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pins_every_lookup_sends_the_students_pin_and_without_them_results_are_refused() {
    let spec = results_core::DatasetSpec::new(crate::helpers::SEED, crate::helpers::STUDENTS).expect("spec");
    let seeded = test_support::Seeded::generated_with_pins(spec).await;
    let api = test_support::TestApp::spawn(&seeded, |s| {
        s.factor_key = Some(results_core::FactorKey::new(test_support::FACTOR_KEY).expect("key"));
        // The failed-lookup limits off, as in helpers::spawn_api (the unknown numbers of the mix).
        s.failed_lookups_per_client = 0;
        s.factor_tries_per_number = 0;
    })
    .await;
    api.wait_ready(Duration::from_secs(20), |r| r["complete_data_set"] == true).await;
    let _one = one_load_at_a_time().await;
    let out = tempfile::tempdir().expect("tempdir");
    let live = Live::new().expect("live");
    let with_pins = run_args(&api.base, &out.path().join("pins"), 4, &["--pins"]);
    let summary = loadgen::attack::run(&with_pins, &live, None).await.expect("the run happens");
    assert!(row(&summary, Request::Result).requests > 0, "{}", summary.render());
    assert!(row(&summary, Request::Unknown).requests > 0, "{}", summary.render());
    assert_eq!(summary.stats.failures, 0, "{}", summary.render());
    // The same load without the PINs: the data set refuses every result lookup (400).
    let without = run_args(&api.base, &out.path().join("open"), 4, &[]);
    let summary = loadgen::attack::run(&without, &live, None).await.expect("the run happens");
    let results = row(&summary, Request::Result);
    assert!(results.requests > 0 && results.failures == results.requests, "{}", summary.render());
}

/// The binary as `cargo run -p loadgen` builds it (a debug build when the tests are).
fn loadgen_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("LOADGEN_ALLOW_DEBUG_BUILD")
        .output()
        .expect("run the loadgen binary")
}

#[test]
fn a_debug_build_refuses_a_real_load_and_says_what_to_type() {
    if !cfg!(debug_assertions) {
        return; // a release build (cargo test --release) has nothing to refuse
    }
    // Port 1 of loopback: were the load not refused, it would run (and fail) for its whole second.
    let common = ["--host", "http://127.0.0.1:1", "--metrics-listen", "off", "--run-time", "1"];
    let run = loadgen_binary(&[&common[..], &["--users", "3000"]].concat());
    let capacity = loadgen_binary(&[&["capacity", "--steps", "10,500"], &common[..]].concat());
    for (what, out) in [("a 3,000-user run", run), ("a capacity curve up to 500 users", capacity)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(loadgen::EXIT_FAILED)), "{what}: {stderr}");
        assert!(
            stderr.contains("debug build") && stderr.contains("cargo run --release -p loadgen --"),
            "{what}: {stderr}"
        );
        assert!(stderr.contains("--allow-debug-build"), "{what}: {stderr}");
    }
}

#[test]
fn version_is_loadgens_not_gooses() {
    for flag in ["--version", "-V"] {
        let out = loadgen_binary(&[flag]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("loadgen {}", env!("CARGO_PKG_VERSION")));
    }
}
