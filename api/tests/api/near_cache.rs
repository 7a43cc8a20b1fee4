//! The near cache against real Redis: each coherence rule of `api/src/near_cache.rs`, with the
//! chaos proxy for the outages. The directory refresh (also the near cache's marker check) is
//! slowed to a minute where a test counts the bytes that reach Redis, so only lookups would send
//! any.

use std::time::{Duration, Instant};

use api::config::Settings;
use api::near_cache::{Answer, NearCache, State};
use fred::prelude::*;
use results_core::codec::encode_result;
use results_core::record::ResultRecord;
use results_core::{Dataset, StudentId};
use test_support::{Seeded, TestApp};
use tokio_util::sync::CancellationToken;

/// Students in each test's own data set: four buckets.
const STUDENTS: u32 = 300;
/// The bound the product states for a correction to reach every replica.
const CORRECTION_BOUND: Duration = Duration::from_secs(1);

fn near_on(s: &mut Settings) {
    s.near_cache_budget = 64 << 20;
}

async fn spawn_complete(seeded: &Seeded, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let app = TestApp::spawn(seeded, |s| {
        near_on(s);
        tweak(s);
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "complete").await;
    assert_eq!(ready["near_cache"], "complete", "{ready}");
    app
}

fn record(seeded: &Seeded, index: usize) -> ResultRecord {
    Dataset::new(seeded.spec).generate().swap_remove(index)
}

/// Writes `record` to Redis as the seeder's publish does (one bucket field).
async fn publish(seeded: &Seeded, redis: &Client, record: &ResultRecord) {
    let (key, field) = seeded.stores.layout.result_location(record.id);
    let _: i64 = redis.hset(key, (field, encode_result(record))).await.expect("publish a corrected result");
}

async fn name_of(app: &TestApp, id: StudentId) -> String {
    let response = app.get(&format!("/v1/results/{id}")).await;
    assert_eq!(response.status(), 200, "student {id}");
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["name"].as_str().expect("a name").to_owned()
}

#[tokio::test]
async fn a_complete_near_cache_answers_results_and_unknown_ids_without_touching_redis() {
    let seeded = Seeded::new(STUDENTS).await;
    // The failed-lookup limits off: they count a 404 in Redis (tests/api/limits.rs); the read
    // path itself touches no store.
    let app = spawn_complete(&seeded, |s| {
        s.refresh = Duration::from_secs(60);
        s.failed_lookups_per_client = 0;
    })
    .await;
    let first = seeded.spec.first_id();
    let redis_before = app.redis_proxy.bytes_to_server();
    let pg_before = app.pg_proxy.bytes_to_server();
    for id in first..first + 20 {
        let response = app.get(&format!("/v1/results/{id}")).await;
        assert_eq!(response.status(), 200, "student {id}");
        let etag = response.headers()["etag"].clone();
        let again = app.client.get(format!("{}/v1/results/{id}", app.base)).header("if-none-match", etag).send().await;
        assert_eq!(again.expect("a response").status(), 304, "ETags still work from memory");
    }
    for unknown in [first + STUDENTS, first + 5_000, 9_999_999] {
        let (status, code) = crate::helpers::error_code(app.get(&format!("/v1/results/{unknown}")).await).await;
        assert_eq!((status, code.as_str()), (404, "unknown_id"), "{unknown}");
    }
    assert_eq!(app.redis_proxy.bytes_to_server(), redis_before, "no lookup reached Redis");
    assert_eq!(app.pg_proxy.bytes_to_server(), pg_before, "no lookup reached PostgreSQL");
    let metrics = app.metrics().await;
    for series in [
        "near_cache_hits_total{answer=\"result\"}",
        "near_cache_hits_total{answer=\"unknown\"}",
        "# HELP near_cache_bytes",
        "# HELP near_cache_resyncs_total",
    ] {
        assert!(metrics.contains(series), "/metrics has {series}");
    }
}

#[tokio::test]
async fn a_correction_published_to_redis_is_served_within_the_bound() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = spawn_complete(&seeded, |_| {}).await;
    let redis = seeded.redis().await;
    let mut corrected = record(&seeded, 42);
    let old_name = name_of(&app, corrected.id).await;
    corrected.name = format!("{old_name} Corrected");
    publish(&seeded, &redis, &corrected).await;
    let published = Instant::now();
    loop {
        if name_of(&app, corrected.id).await == corrected.name {
            break;
        }
        assert!(published.elapsed() < CORRECTION_BOUND, "the correction was not served within {CORRECTION_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The invalidated bucket is fetched again: memory answers once more, with the new value.
    let back = app.wait_ready(Duration::from_secs(5), |r| r["near_cache"] == "complete").await;
    assert_eq!(back["near_cache"], "complete", "{back}");
    assert_eq!(name_of(&app, corrected.id).await, corrected.name);
}

#[tokio::test]
async fn a_correction_made_while_the_tracking_connection_is_cut_is_not_served_stale_after_the_cut_heals() {
    let seeded = Seeded::new(STUDENTS).await;
    // One read connection: Redis counts as back for lookups as soon as /readyz says it is up.
    let app = spawn_complete(&seeded, |s| s.redis_pool_size = 1).await;
    let redis = seeded.redis().await;
    let mut corrected = record(&seeded, 7);
    let old_name = name_of(&app, corrected.id).await;

    app.redis_proxy.cut();
    app.pg_proxy.cut();
    let down = app.wait_ready(Duration::from_secs(5), |r| r["redis"] == "down").await;
    assert_eq!(
        (down["ready"].as_bool(), down["serving_from_near_cache"].as_bool(), down["near_cache"].as_str()),
        (Some(true), Some(true), Some("resyncing")),
        "both stores down, the copy answers and /readyz says so: {down}"
    );
    assert_eq!(name_of(&app, corrected.id).await, old_name, "the copy answers while Redis cannot");
    let (status, _) = crate::helpers::error_code(app.get("/v1/results/9999999").await).await;
    assert_eq!(status, 404, "an unknown ID too");

    corrected.name = format!("{old_name} Corrected");
    publish(&seeded, &redis, &corrected).await;
    app.pg_proxy.restore();
    app.redis_proxy.restore();
    let up = app.wait_ready(Duration::from_secs(10), |r| r["redis"] == "up").await;
    assert_eq!(up["redis"], "up", "{up}");
    // From here until well after the resync, never the old value.
    let healed = Instant::now();
    let mut saw_complete = false;
    while healed.elapsed() < Duration::from_secs(3) {
        assert_eq!(name_of(&app, corrected.id).await, corrected.name, "stale after the cut healed");
        let ready: serde_json::Value = app.get("/readyz").await.json().await.expect("JSON");
        saw_complete |= ready["near_cache"] == "complete";
        if saw_complete && healed.elapsed() > Duration::from_millis(500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_complete, "the near cache resynchronised after the cut");
    assert_eq!(name_of(&app, corrected.id).await, corrected.name);
}

#[tokio::test]
async fn a_correction_committed_to_postgres_while_redis_is_down_is_served_from_postgres_not_the_copy() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = spawn_complete(&seeded, |_| {}).await;
    let id = StudentId::new(seeded.spec.first_id() + 9).expect("an ID");
    let old_name = name_of(&app, id).await;
    app.redis_proxy.cut();
    let down = app.wait_ready(Duration::from_secs(5), |r| r["redis"] == "down").await;
    assert_eq!(down["serving_from_near_cache"], true, "{down}");
    assert_eq!(name_of(&app, id).await, old_name, "the copy answers: PostgreSQL holds the same data set");

    // What `seeder correct` commits when it cannot publish: the row, and a new fingerprint.
    let new_name = format!("{old_name} Corrected");
    let pg = seeded.pg().await;
    pg.execute("UPDATE students SET full_name = $1 WHERE id = $2", &[&new_name, &(id.get() as i32)])
        .await
        .expect("correct the name");
    pg.execute("UPDATE dataset SET fingerprint = 'corrected-meanwhile' WHERE state = 'complete'", &[])
        .await
        .expect("a new fingerprint");
    let committed = Instant::now();
    // The bound stated for a correction while Redis is down: the in-process cache's TTL.
    let bound = Settings::new("", "", seeded.stores.layout.clone()).cache_ttl;
    while name_of(&app, id).await != new_name {
        assert!(committed.elapsed() < bound, "PostgreSQL's correction not served within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_marker_deleted_drops_the_copy_and_a_new_fingerprint_rebuilds_it() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = spawn_complete(&seeded, |_| {}).await;
    let redis = seeded.redis().await;
    let marker_key = seeded.stores.layout.marker_key();
    let marker: std::collections::HashMap<String, String> = redis.hgetall(&marker_key).await.expect("the marker");

    let _: i64 = redis.del(&marker_key).await.expect("delete the marker, as a reload does");
    let warming = app.wait_ready(Duration::from_secs(5), |r| r["near_cache"] == "warming").await;
    assert_eq!(warming["near_cache"], "warming", "no complete data set, no copy: {warming}");
    // Meanwhile a value changes, as a reload rewrites them.
    let mut reloaded = record(&seeded, 120);
    reloaded.name = format!("{} Reloaded", reloaded.name);
    publish(&seeded, &redis, &reloaded).await;
    assert_eq!(name_of(&app, reloaded.id).await, reloaded.name, "Redis answers while there is no copy");

    let mut fields: Vec<(String, String)> = marker.into_iter().collect();
    for (name, value) in &mut fields {
        if name == results_core::keys::MARKER_FINGERPRINT {
            *value = "0123456789abcdef".to_owned();
        }
    }
    let before = app.redis_proxy.bytes_to_server();
    let _: i64 = redis.hset(&marker_key, fields).await.expect("write the new data set's marker");
    let complete = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "complete").await;
    assert_eq!(complete["near_cache"], "complete", "rebuilt: {complete}");
    // Four bucket reads at least (HGETALL and the key, each): the copy was read again.
    assert!(app.redis_proxy.bytes_to_server() - before > 4 * 30, "the buckets were read again");
    assert_eq!(name_of(&app, reloaded.id).await, reloaded.name);
}

#[tokio::test]
async fn a_warming_replica_answers_from_redis_and_never_a_wrong_404() {
    let seeded = Seeded::new(STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| {
        near_on(s);
        s.redis_timeout = Duration::from_secs(2);
    })
    .await;
    // Every chunk towards Redis waits: the preload (tracking, marker, buckets) takes seconds.
    app.redis_proxy.set_delay(Duration::from_millis(250));
    let warming: serde_json::Value = app.get("/readyz").await.json().await.expect("JSON");
    assert_eq!(warming["near_cache"], "warming", "{warming}");
    let first = seeded.spec.first_id();
    for id in [first, first + 150, first + STUDENTS - 1] {
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "student {id} while warming");
    }
    assert_eq!(app.get(&format!("/v1/results/{}", first + STUDENTS)).await.status(), 404);
    app.redis_proxy.set_delay(Duration::ZERO);
    let complete = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "complete").await;
    assert_eq!(complete["near_cache"], "complete", "{complete}");
}

/// A near cache of its own over `seeded`, kept until the returned token is cancelled.
async fn near_cache(seeded: &Seeded, budget: u64) -> (std::sync::Arc<NearCache>, CancellationToken) {
    let mut settings =
        Settings::new(&seeded.stores.database_url, &seeded.stores.redis_url, seeded.stores.layout.clone());
    settings.near_cache_budget = budget;
    let near = std::sync::Arc::new(NearCache::new(&settings).expect("a near cache"));
    let stop = CancellationToken::new();
    tokio::spawn(std::sync::Arc::clone(&near).keep(Duration::from_millis(100), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(near.state(), State::Warming) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (near, stop)
}

#[tokio::test]
async fn a_data_set_over_the_budget_is_not_copied_and_the_budget_holds_when_it_fits() {
    let seeded = Seeded::new(STUDENTS).await;
    let first = StudentId::new(seeded.spec.first_id()).expect("an ID");

    let (small, stop_small) = near_cache(&seeded, 4 << 10).await;
    assert_eq!(small.state(), State::OverBudget);
    assert_eq!(small.bytes(), 0, "nothing kept");
    assert_eq!(small.get(first), Answer::AskRedis, "lookups go to Redis");
    // Not tried again while the data set is the same (each try would read it from Redis).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!((small.state(), small.bytes()), (State::OverBudget, 0), "stays over budget, holding nothing");
    }
    stop_small.cancel();

    let (fits, stop_fits) = near_cache(&seeded, 1 << 20).await;
    assert_eq!(fits.state(), State::Complete);
    let held = fits.bytes();
    // 300 values of ~40-60 bytes, and the buckets' bookkeeping.
    assert!((10_000..(1 << 20)).contains(&held), "holds {held} bytes");
    let expected = encode_result(&record(&seeded, 0));
    assert_eq!(fits.get(first), Answer::Value(expected.into()), "the value as Redis holds it");
    stop_fits.cancel();
}
