//! Running the API: graceful shutdown, readiness while draining, metrics, profiling, and
//! configuration errors.

use std::time::Duration;

use test_support::{Seeded, TestApp};

use crate::helpers::{SHARED_STUDENTS, error_code};

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight_and_reports_draining() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let mut app = TestApp::spawn(&seeded, |s| {
        s.drain_delay = Duration::from_millis(600);
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["ready"] == true).await;
    // Make the next lookup slow: Redis cut, PostgreSQL behind a 700 ms delay.
    app.redis_proxy.cut();
    app.pg_proxy.set_delay(Duration::from_millis(700));
    let client = app.client.clone();
    let url = format!("{}/v1/results/1006000", app.base);
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = app.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503, "not ready while draining");
    assert_eq!(readyz.headers()["connection"], "close", "keep-alive connections retire while draining");
    let body: serde_json::Value = readyz.json().await.expect("JSON");
    assert_eq!(body["draining"], true);

    let response = in_flight.await.expect("task").expect("the in-flight request completed");
    assert_eq!(response.status(), 200);
    let outcome = tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stopped in time");
    outcome.expect("task").expect("clean exit");
    assert!(app.client.get(format!("{}/healthz", app.base)).send().await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_latency_buckets() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    assert_eq!(app.get("/v1/results/1000007").await.status(), 200);
    assert_eq!(app.get("/v1/results/1000007").await.status(), 200);
    let response = app.client.get(format!("{}/metrics", app.admin)).send().await.expect("metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], api::admin::EXPOSITION_CONTENT_TYPE);
    assert!(api::admin::EXPOSITION_CONTENT_TYPE.ends_with("; charset=utf-8"));
    let text = response.text().await.expect("text");
    // Every series has its # HELP line (a histogram's _bucket, _sum, _count share its family's).
    let helped: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next()).collect();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(helped.contains(&name) || helped.contains(&family), "no # HELP for {name}: {text}");
    }
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        assert!(value.parse::<f64>().is_ok(), "value of {line:?}");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line:?}"
        );
    }
    for le in api::telemetry::LATENCY_BUCKETS {
        let bucket = format!("http_request_duration_seconds_bucket{{route=\"/v1/results/{{id}}\",le=\"{le}\"}}");
        assert!(text.contains(&bucket), "missing {bucket}");
    }
    for needle in [
        "http_requests_total{route=\"/v1/results/{id}\",method=\"GET\",status=\"200\"}",
        "result_lookups_total{tier=\"redis\",outcome=\"hit\"}",
        "http_requests_in_flight",
        "db_pool_connections{state=\"open\",server=\"primary\"}",
        "api_build_info{version=",
        "api_redis_connected 1",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains("redis_connections_up"), "the 0/1 flag left redis_exporter's namespace");
    // The admin routes are not on the public port.
    assert_eq!(error_code(app.get("/metrics").await).await.0, 404);
    assert_eq!(error_code(app.get("/debug/pprof/profile?seconds=1").await).await.0, 404);
}

#[tokio::test]
async fn the_profiler_returns_a_flamegraph_and_one_profile_runs_at_a_time() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let off = TestApp::spawn(&seeded, |_| {}).await;
    let refused = off.client.get(format!("{}/debug/pprof/profile?seconds=1", off.admin)).send().await.expect("send");
    assert_eq!(error_code(refused).await, (404, "not_found".to_owned()), "pprof is off unless API_PPROF is on");
    let app = TestApp::spawn(&seeded, |s| s.pprof = true).await;
    let url = format!("{}/debug/pprof/profile?seconds=2", app.admin);
    let client = app.client.clone();
    let first = tokio::spawn({
        let url = url.clone();
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = app.client.get(&url).send().await.expect("second");
    assert_eq!(error_code(second).await, (409, "profile_running".to_owned()));
    let first = first.await.expect("task").expect("first");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "image/svg+xml");
    let svg = first.text().await.expect("svg");
    assert!(svg.contains("<svg"), "an SVG");
    let protobuf =
        app.client.get(format!("{}/debug/pprof/profile?seconds=1&format=pb", app.admin)).send().await.expect("pb");
    assert_eq!(protobuf.status(), 200);
    assert_eq!(protobuf.headers()["content-type"], "application/octet-stream");
    assert!(!protobuf.bytes().await.expect("body").is_empty(), "a pprof protobuf");
    let bad = app.client.get(format!("{}/debug/pprof/profile?seconds=0", app.admin)).send().await.expect("send");
    assert_eq!(error_code(bad).await.0, 400);
}

#[tokio::test]
async fn bad_configuration_is_one_clear_error_naming_the_variable() {
    let run = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_api"));
        command.env_clear().env("API_LISTEN", "127.0.0.1:0").env("API_ADMIN_LISTEN", "127.0.0.1:0");
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().expect("run api")
    };
    let missing = run(&[("REDIS_URL", "redis://127.0.0.1:1")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("set DATABASE_URL"));
    let bad_prefix = run(&[
        ("DATABASE_URL", "postgres://a@127.0.0.1:1/x"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("API_KEY_PREFIX", "a:b"),
    ]);
    assert!(String::from_utf8_lossy(&bad_prefix.stderr).contains("API_KEY_PREFIX"));
    // The shared RESULTS_KEY_PREFIX is read when API_KEY_PREFIX is unset, and loses to it.
    let stores = [("DATABASE_URL", "postgres://a@127.0.0.1:1/x"), ("REDIS_URL", "redis://127.0.0.1:1")];
    let shared = run(&[stores[0], stores[1], ("RESULTS_KEY_PREFIX", "shared:bad")]);
    let shared = String::from_utf8_lossy(&shared.stderr);
    assert!(shared.contains("\"shared:bad\"") && shared.contains("RESULTS_KEY_PREFIX"), "{shared}");
    let both = run(&[stores[0], stores[1], ("RESULTS_KEY_PREFIX", "shared:bad"), ("API_KEY_PREFIX", "own:bad")]);
    let both = String::from_utf8_lossy(&both.stderr);
    assert!(both.contains("\"own:bad\"") && !both.contains("shared:bad"), "{both}");
    let bad_number = run(&[("API_PG_POOL_SIZE", "lots")]);
    assert_eq!(bad_number.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&bad_number.stderr).contains("lots"));
    let no_threads = run(&[("API_WORKER_THREADS", "0")]);
    assert_eq!(no_threads.status.code(), Some(2), "zero worker threads is a usage error");
    assert!(String::from_utf8_lossy(&no_threads.stderr).contains("worker-threads"));
}
