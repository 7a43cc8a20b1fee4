//! PostgreSQL read replicas: reads go to a replica, the primary answers when none can, a dead
//! replica is skipped after one failure, and the replica list is validated.

use std::time::{Duration, Instant};

use api::config::Args;
use clap::Parser;

use test_support::{Seeded, TestApp};

use crate::helpers::SHARED_STUDENTS;

/// The value of the first series of `/metrics` starting with `series` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

const REPLICA_HITS: &str = "result_lookups_total{tier=\"db\",outcome=\"hit\",server=\"replica\"}";

#[tokio::test]
async fn postgres_reads_go_to_the_replica_and_never_to_the_primary_while_it_answers() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    // No refresh after start-up: the primary gets no pings, so any byte it receives is a read.
    // The one check at start-up gets time to connect on a busy host.
    let app = TestApp::spawn_with_replica(&seeded, |s| {
        s.refresh = Duration::from_secs(3_600);
        s.cache_ttl = Duration::from_millis(1);
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(5), |r| r["postgres_replicas"][0] == "up").await;
    assert_eq!(ready["postgres_replicas"], serde_json::json!(["up"]), "{ready}");
    assert_eq!(ready["postgres"], "up", "{ready}");
    app.redis_proxy.cut();
    let hits_before = metric(&app.metrics().await, REPLICA_HITS);
    let (primary_before, replica_before) = (app.pg_proxy.bytes_to_server(), app.replica().bytes_to_server());
    for id in 1_002_000..1_002_010 {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id}");
    }
    let (status, _) = crate::helpers::error_code(app.get("/v1/results/1200000").await).await;
    assert_eq!(status, 404, "a replica's miss is final");
    assert!(app.replica().bytes_to_server() > replica_before, "the replica answered");
    assert_eq!(app.pg_proxy.bytes_to_server(), primary_before, "the primary was not asked");
    let text = app.metrics().await;
    assert!(metric(&text, REPLICA_HITS) >= hits_before + 10.0, "counted as served by a replica");
    assert!(text.contains("result_lookups_total{tier=\"db\",outcome=\"miss\",server=\"replica\"}"), "miss counted");
    assert!(text.contains("db_pool_connections{state=\"open\",server=\"replica\"}"), "replica pool gauge");
    assert!(text.contains("db_replicas{state=\"up\"}"), "replica state gauge");
}

#[tokio::test]
async fn a_replica_that_fails_a_read_is_skipped_at_once_and_used_again_when_it_answers() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn_with_replica(&seeded, |s| {
        s.refresh = Duration::from_millis(200);
        s.cache_ttl = Duration::from_millis(1);
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["postgres_replicas"][0] == "up").await;
    app.redis_proxy.cut();
    assert_eq!(app.get("/v1/results/1003500").await.status(), 200);

    app.replica().cut();
    let primary_before = app.pg_proxy.bytes_to_server();
    // The first read after the cut fails on the replica and the primary answers it: no error.
    for id in 1_003_501..1_003_511 {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id} served without the replica");
    }
    assert!(app.pg_proxy.bytes_to_server() > primary_before, "the primary answered");
    let down = app.wait_ready(Duration::from_secs(5), |r| r["postgres_replicas"][0] == "down").await;
    assert_eq!(down["postgres_replicas"], serde_json::json!(["down"]), "{down}");
    assert_eq!(down["ready"], true, "the primary still serves");

    app.replica().restore();
    let up = app.wait_ready(Duration::from_secs(5), |r| r["postgres_replicas"][0] == "up").await;
    assert_eq!(up["postgres_replicas"], serde_json::json!(["up"]), "re-admitted by the refresh's ping: {up}");
    let replica_before = app.replica().bytes_to_server();
    for id in 1_003_600..1_003_610 {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id}");
    }
    assert!(app.replica().bytes_to_server() > replica_before, "reads are back on the replica");
}

#[tokio::test]
async fn a_replica_on_a_closed_port_is_marked_down_and_costs_requests_nothing() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let dead = test_support::urls::with_addr(&seeded.stores.database_url, closed);
    // A connection refused is retried until the timeout: every request that still tried this
    // replica would take at least 1.5 s.
    let replica_timeout = Duration::from_millis(1_500);
    let app = TestApp::spawn(&seeded, |s| {
        s.database_replica_urls.push(dead);
        s.pg_replica_timeout = replica_timeout;
        s.cache_ttl = Duration::from_millis(1);
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(10), |r| r["ready"] == true).await;
    assert_eq!(ready["postgres_replicas"], serde_json::json!(["down"]), "{ready}");
    app.redis_proxy.cut();
    let primary_before = app.pg_proxy.bytes_to_server();
    let mut slowest = Duration::ZERO;
    for id in 1_005_000..1_005_010 {
        let started = Instant::now();
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id} served by the primary");
        slowest = slowest.max(started.elapsed());
    }
    assert!(app.pg_proxy.bytes_to_server() > primary_before, "the primary answered");
    assert!(slowest < replica_timeout, "no request waited for the dead replica: slowest {slowest:?}");
}

#[tokio::test]
async fn without_the_primary_a_replica_alone_keeps_the_api_ready_and_serving() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn_with_replica(&seeded, |s| s.cache_ttl = Duration::from_millis(1)).await;
    app.wait_ready(Duration::from_secs(5), |r| r["postgres_replicas"][0] == "up").await;
    app.redis_proxy.cut();
    app.pg_proxy.cut();
    let ready = app
        .wait_ready(Duration::from_secs(5), |r| {
            r["postgres"] == "down" && r["redis"] == "down" && r["postgres_replicas"][0] == "up"
        })
        .await;
    assert_eq!((ready["postgres"].as_str(), ready["redis"].as_str()), (Some("down"), Some("down")), "{ready}");
    assert_eq!(ready["ready"], true, "a replica can answer: {ready}");
    assert_eq!(ready["postgres_replicas"], serde_json::json!(["up"]), "{ready}");
    for id in 1_006_500..1_006_505 {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id} served by the replica");
    }
}

#[test]
fn replica_urls_come_from_repeated_flags_or_one_comma_separated_variable() {
    let parse = |extra: &[&str]| {
        let mut argv =
            vec!["api", "--database-url", "postgres://a@127.0.0.1:1/x", "--redis-url", "redis://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("parses").settings()
    };
    let two = parse(&[
        "--database-replica-url",
        "postgres://a@127.0.0.1:2/x",
        "--database-replica-url",
        "postgresql://a@127.0.0.1:3/x",
    ])
    .expect("valid");
    assert_eq!(two.database_replica_urls, ["postgres://a@127.0.0.1:2/x", "postgresql://a@127.0.0.1:3/x"]);
    let listed = parse(&["--database-replica-url", "postgres://a@127.0.0.1:2/x, postgres://a@127.0.0.1:3/x"])
        .expect("comma-separated");
    assert_eq!(listed.database_replica_urls, ["postgres://a@127.0.0.1:2/x", "postgres://a@127.0.0.1:3/x"]);
    assert!(parse(&["--database-replica-url", ""]).expect("empty").database_replica_urls.is_empty());

    let error = |extra: &[&str]| parse(extra).expect_err("invalid").to_string();
    let bad_scheme = error(&["--database-replica-url", "postgres://a@h:2/x,mysql://secret@h:3/x"]);
    assert!(bad_scheme.contains("DATABASE_REPLICA_URLS") && bad_scheme.contains("entry 2"), "{bad_scheme}");
    assert!(!bad_scheme.contains("secret"), "the URL is not echoed: {bad_scheme}");
    let trailing = error(&["--database-replica-url", "postgres://a@h:2/x,"]);
    assert!(trailing.contains("entry 2 is empty"), "{trailing}");
    let repeated = error(&["--database-replica-url", "postgres://a@h:2/x,postgres://a@h:2/x"]);
    assert!(repeated.contains("entry 2 repeats entry 1"), "{repeated}");
}

#[test]
fn the_binary_names_the_variable_and_help_hides_the_replica_urls() {
    let run = |args: &[&str], replicas: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .args(args)
            .env_clear()
            .env("API_LISTEN", "127.0.0.1:0")
            .env("API_ADMIN_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", "postgres://a@127.0.0.1:1/x")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("DATABASE_REPLICA_URLS", replicas)
            .output()
            .expect("run api")
    };
    let bad = run(&[], "postgres://a@127.0.0.1:2/x,http://replica-secret@127.0.0.1:3/x");
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("DATABASE_REPLICA_URLS: entry 2"), "{stderr}");
    assert!(!stderr.contains("replica-secret"), "{stderr}");
    let help = run(&["--help"], "postgres://a:replica-secret@127.0.0.1:2/x");
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--database-replica-url") && text.contains("DATABASE_REPLICA_URLS"), "{text}");
    assert!(!text.contains("replica-secret"), "help hides the value");
}
