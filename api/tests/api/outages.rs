//! Stores going away under the API: Redis cut, PostgreSQL cut, both cut, and recovery.

use std::time::{Duration, Instant};

use test_support::{Seeded, TestApp};

use crate::helpers::{SHARED_STUDENTS, error_code};

#[tokio::test]
async fn redis_cut_is_served_from_postgres_and_redis_is_used_again_once_back() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.cache_ttl = Duration::from_millis(1)).await;
    assert_eq!(app.get("/v1/results/1000100").await.status(), 200);

    app.redis_proxy.cut();
    let pg_before = app.pg_proxy.bytes_to_server();
    for id in 1_000_101..1_000_111 {
        let response = app.get(&format!("/v1/results/{id}")).await;
        assert_eq!(response.status(), 200, "student {id} served without Redis");
    }
    assert!(app.pg_proxy.bytes_to_server() > pg_before, "PostgreSQL answered");
    let down = app.wait_ready(Duration::from_secs(5), |r| r["redis"] == "down").await;
    assert_eq!((down["redis"].as_str(), down["ready"].as_bool()), (Some("down"), Some(true)), "{down}");

    app.redis_proxy.restore();
    let up = app.wait_ready(Duration::from_secs(10), |r| r["redis"] == "up").await;
    assert_eq!(up["redis"], "up", "reconnected by itself: {up}");
    let redis_before = app.redis_proxy.bytes_to_server();
    let pg_before = app.pg_proxy.bytes_to_server();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(app.get("/v1/results/1000200").await.status(), 200);
    assert!(app.redis_proxy.bytes_to_server() > redis_before, "Redis answers again");
    // The refresh task pings PostgreSQL every 200 ms; a lookup would send far more than a ping.
    assert!(app.pg_proxy.bytes_to_server() - pg_before < 200, "the lookup did not go to PostgreSQL");
}

#[tokio::test]
async fn postgres_cut_is_served_from_redis() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    app.pg_proxy.cut();
    let down = app.wait_ready(Duration::from_secs(5), |r| r["postgres"] == "down").await;
    assert_eq!(down["postgres"], "down", "{down}");
    assert_eq!(down["ready"], true);
    for id in 1_003_000..1_003_020 {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "{id}");
    }
    let (status, code) = error_code(app.get("/v1/results/1200000").await).await;
    assert_eq!((status, code.as_str()), (404, "unknown_id"), "misses stay authoritative without PostgreSQL");
}

#[tokio::test]
async fn both_stores_cut_is_a_quick_503_with_retry_after() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.pg_timeout = Duration::from_millis(500)).await;
    app.redis_proxy.cut();
    app.pg_proxy.cut();
    let not_ready = app.wait_ready(Duration::from_secs(5), |r| r["ready"] == false).await;
    assert_eq!(not_ready["ready"], false, "{not_ready}");
    for id in [1_004_000, 1_004_001, 1_004_002] {
        let started = Instant::now();
        let response = app.get(&format!("/v1/results/{id}")).await;
        let elapsed = started.elapsed();
        assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().ok()), Some(Some("2")));
        assert_eq!(response.headers()["cache-control"], "no-store");
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"));
        // Stated bound: the PostgreSQL timeout plus a little; Redis fails at once when cut.
        assert!(elapsed < Duration::from_millis(1_500), "503 took {elapsed:?}");
    }
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);

    app.redis_proxy.restore();
    app.pg_proxy.restore();
    let back = app.wait_ready(Duration::from_secs(10), |r| r["redis"] == "up" && r["postgres"] == "up").await;
    assert_eq!(back["ready"], true, "{back}");
    assert_eq!(app.get("/v1/results/1004003").await.status(), 200);
}

#[tokio::test]
async fn without_the_completeness_marker_a_miss_asks_postgres() {
    use fred::prelude::*;
    let seeded = Seeded::new(300).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let redis = seeded.redis().await;
    let _: i64 = redis.del(seeded.stores.layout.marker_key()).await.expect("delete marker");
    let (key, field) = seeded.stores.layout.result_location(results_core::StudentId::new(1_000_010).expect("id"));
    let _: i64 = redis.hdel(key, field).await.expect("drop one result from Redis");
    let pg_before = app.pg_proxy.bytes_to_server();
    let response = app.get("/v1/results/1000010").await;
    assert_eq!(response.status(), 200, "PostgreSQL still has it");
    assert!(app.pg_proxy.bytes_to_server() > pg_before);
    let (status, _) = error_code(app.get("/v1/results/1000300").await).await;
    assert_eq!(status, 404, "PostgreSQL does not have it either");
    let ready = app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == false).await;
    assert_eq!(ready["complete_data_set"], false);
}

#[tokio::test]
async fn a_marker_field_that_is_not_utf8_is_no_marker_not_a_redis_outage() {
    use fred::prelude::*;
    let seeded = Seeded::new(300).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let redis = seeded.redis().await;
    let marker_key = seeded.stores.layout.marker_key();
    let _: i64 = redis.hset(&marker_key, ("count", vec![0xffu8, 0xfe])).await.expect("corrupt the marker");
    let ready = app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == false).await;
    assert_eq!(ready["redis"], "up", "a corrupt marker is not a Redis outage: {ready}");
    assert_eq!(ready["ready"], true, "{ready}");
    // Without a trusted marker a Redis miss asks PostgreSQL, which still answers.
    let (key, field) = seeded.stores.layout.result_location(results_core::StudentId::new(1_000_011).expect("id"));
    let _: i64 = redis.hdel(key, field).await.expect("drop one result from Redis");
    let pg_before = app.pg_proxy.bytes_to_server();
    assert_eq!(app.get("/v1/results/1000011").await.status(), 200);
    assert!(app.pg_proxy.bytes_to_server() > pg_before, "PostgreSQL answered the miss");
}

#[tokio::test]
async fn undecodable_redis_values_are_answered_from_postgres_and_counted() {
    use fred::prelude::*;
    use results_core::codec::encode_result;
    use results_core::{CODEC_VERSION, Dataset};
    let seeded = Seeded::new(300).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let records = Dataset::new(seeded.spec).generate();
    let good = |index: usize| encode_result(&records[index]);
    let mut old_version = good(20);
    old_version[0] = CODEC_VERSION - 1;
    let mut newer_version = good(21);
    newer_version[0] = CODEC_VERSION + 7;
    let truncated = good(22)[..10].to_vec();
    let mut out_of_range = records[23].clone();
    out_of_range.scores[0] = 101;
    let cases = [
        ("an older codec version", 20, old_version),
        ("a newer codec version", 21, newer_version),
        ("a truncated value", 22, truncated),
        ("a score above 100", 23, encode_result(&out_of_range)),
        ("an empty value", 24, Vec::new()),
        ("bytes that are not MessagePack", 25, vec![CODEC_VERSION, 0xc1, 0xff, 0x00]),
    ];
    let redis = seeded.redis().await;
    for (what, index, value) in cases {
        let record = &records[index];
        let (key, field) = seeded.stores.layout.result_location(record.id);
        let _: i64 = redis.hset(&key, (field, value)).await.expect("store the bad value");
        let decode_errors = lookups(&app, "redis", "decode_error").await;
        let db_hits = lookups(&app, "db", "hit").await;
        let pg_before = app.pg_proxy.bytes_to_server();
        let response = app.get(&format!("/v1/results/{}", record.id)).await;
        assert_eq!(response.status(), 200, "{what}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(
            (body["student_id"].as_u64(), body["name"].as_str()),
            (Some(u64::from(record.id.get())), Some(record.name.as_str())),
            "{what}: the stored result"
        );
        assert!(app.pg_proxy.bytes_to_server() > pg_before, "{what}: PostgreSQL answered");
        // The recorder is process-wide and tests run in parallel: other tests may only add.
        assert!(lookups(&app, "redis", "decode_error").await > decode_errors, "{what}: counted as decode_error");
        assert!(lookups(&app, "db", "hit").await > db_hits, "{what}: counted as a PostgreSQL hit");
    }
}

/// The value of `result_lookups_total{tier, outcome}` on the admin port's /metrics (0 if absent).
async fn lookups(app: &TestApp, tier: &str, outcome: &str) -> u64 {
    let text =
        app.client.get(format!("{}/metrics", app.admin)).send().await.expect("metrics").text().await.expect("text");
    // Summed over the other labels (tier `db` is also counted by `server`: replica or primary).
    let series = format!("result_lookups_total{{tier=\"{tier}\",outcome=\"{outcome}\"");
    text.lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next())
        .map(|v| v.parse::<u64>().expect("a count"))
        .sum()
}

#[tokio::test]
async fn a_slow_redis_is_treated_as_down_for_that_request() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| {
        s.redis_timeout = Duration::from_millis(150);
        s.cache_ttl = Duration::from_millis(1);
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["ready"] == true).await;
    app.redis_proxy.set_delay(Duration::from_millis(800));
    let pg_before = app.pg_proxy.bytes_to_server();
    let started = Instant::now();
    let response = app.get("/v1/results/1007000").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(app.pg_proxy.bytes_to_server() > pg_before, "PostgreSQL answered");
    // Redis timeout plus a PostgreSQL query; far below the 800 ms Redis would have taken.
    assert!(elapsed < Duration::from_millis(700), "took {elapsed:?}");
}

#[tokio::test]
async fn while_redis_reconnects_a_lookup_does_not_wait_for_the_redis_timeout() {
    // A long Redis timeout: a command queued behind the client's reconnection would wait all of
    // it (as it did, for every node of a cluster, while one master failed over).
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| {
        s.redis_timeout = Duration::from_secs(3);
        s.cache_ttl = Duration::from_millis(1);
    })
    .await;
    app.wait_ready(Duration::from_secs(5), |r| r["redis"] == "up").await;
    app.redis_proxy.cut();
    let down = app.wait_ready(Duration::from_secs(10), |r| r["redis"] == "down").await;
    assert_eq!(down["redis"], "down", "{down}");
    for id in [1_009_000, 1_009_001, 1_009_002] {
        let started = Instant::now();
        let response = app.get(&format!("/v1/results/{id}")).await;
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200, "student {id} served from PostgreSQL");
        // Stated bound: one PostgreSQL lookup on loopback, far below the 3 s Redis timeout.
        assert!(elapsed < Duration::from_millis(1_000), "student {id} took {elapsed:?}");
    }
}

#[tokio::test]
async fn the_api_starts_without_either_store_and_becomes_ready_when_they_come() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn_with_stores(&seeded, false, |s| s.pg_timeout = Duration::from_millis(300)).await;
    assert_eq!(app.get("/healthz").await.status(), 200, "alive without stores");
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503, "not ready without stores");
    assert_eq!(error_code(app.get("/v1/results/1000300").await).await.0, 503);

    app.redis_proxy.restore();
    app.pg_proxy.restore();
    // Returns as soon as it is ready; the long deadline is for a busy host.
    let ready = app.wait_ready(Duration::from_secs(30), |r| r["ready"] == true && r["complete_data_set"] == true).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(app.get("/v1/results/1000300").await.status(), 200);
}

#[tokio::test]
async fn while_redis_is_down_the_in_process_cache_spares_postgres_repeat_and_concurrent_queries() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.refresh = Duration::from_secs(3_600)).await;
    app.redis_proxy.cut();
    // Warm the pool's connection so the measured bytes are one lookup's, not a login's.
    assert_eq!(app.get("/v1/results/1007999").await.status(), 200);
    let before_first = app.pg_proxy.bytes_to_server();
    assert_eq!(app.get("/v1/results/1008000").await.status(), 200);
    let after_first = app.pg_proxy.bytes_to_server();
    let one_lookup = after_first - before_first;
    assert!(one_lookup > 0, "PostgreSQL answered the first request");
    for _ in 0..5 {
        assert_eq!(app.get("/v1/results/1008000").await.status(), 200);
    }
    assert_eq!(app.pg_proxy.bytes_to_server(), after_first, "repeats come from the in-process cache");

    // Twenty concurrent requests for a new ID make one PostgreSQL lookup, not twenty.
    app.pg_proxy.set_delay(Duration::from_millis(200));
    let before = app.pg_proxy.bytes_to_server();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (app.client.clone(), format!("{}/v1/results/1008001", app.base));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("task").expect("response"), 200);
    }
    let sent = app.pg_proxy.bytes_to_server() - before;
    assert!(sent > 0 && sent < 2 * one_lookup, "one lookup's worth of bytes ({one_lookup}), got {sent}");
}
