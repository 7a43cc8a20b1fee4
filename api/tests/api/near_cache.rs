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
async fn a_data_set_over_the_budget_is_kept_bounded_and_the_budget_holds_when_it_fits() {
    let seeded = Seeded::new(STUDENTS).await;
    let first = StudentId::new(seeded.spec.first_id()).expect("an ID");

    // Less than one bucket: bounded, and it keeps nothing.
    let budget = 4 << 10;
    let (small, stop_small) = near_cache(&seeded, budget).await;
    assert_eq!(small.state(), State::Bounded);
    assert!(small.bytes() <= budget, "holds {} bytes", small.bytes());
    let expected = encode_result(&record(&seeded, 0));
    assert_eq!(
        small.lookup(first).await.expect("no timeout"),
        Answer::Value(expected.clone().into()),
        "read through Redis"
    );
    assert_eq!(small.get(first), Answer::AskRedis, "a bucket bigger than the budget is not kept");
    // Not copied again while the data set is the same (each try would read it from Redis).
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(small.state(), State::Bounded, "stays bounded");
        assert!(small.bytes() <= budget, "holds {} bytes", small.bytes());
    }
    stop_small.cancel();

    let (fits, stop_fits) = near_cache(&seeded, 1 << 20).await;
    assert_eq!(fits.state(), State::Complete);
    let held = fits.bytes();
    // 300 values of ~40-60 bytes, and the buckets' bookkeeping.
    assert!((10_000..(1 << 20)).contains(&held), "holds {held} bytes");
    assert_eq!(fits.get(first), Answer::Value(expected.into()), "the value as Redis holds it");
    stop_fits.cancel();
}

/// Students of the data sets over the bounded tests' budget: 100 buckets, ~550 KB kept whole.
const BIG: u32 = 10_000;
/// The bounded tests' budget: some 30 of those buckets.
const BOUNDED_BUDGET: u64 = 192 << 10;

async fn spawn_bounded(seeded: &Seeded, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let app = TestApp::spawn(seeded, |s| {
        s.near_cache_budget = BOUNDED_BUDGET;
        tweak(s);
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(10), |r| r["near_cache"] == "bounded").await;
    assert_eq!(ready["near_cache"], "bounded", "{ready}");
    app
}

fn metric(metrics: &str, name: &str) -> f64 {
    let line = metrics.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no {name}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[tokio::test]
async fn a_bounded_near_cache_answers_every_id_right_within_its_budget_evicting_the_least_recently_used() {
    let seeded = Seeded::new(BIG).await;
    let records = Dataset::new(seeded.spec).generate();
    let (near, stop) = near_cache(&seeded, BOUNDED_BUDGET).await;
    assert_eq!(near.state(), State::Bounded);
    let value = |index: usize| Answer::Value(encode_result(&records[index]).into());
    // Every student in order, then every 7th backwards: each bucket is read more than once, after
    // it was evicted.
    let order = (0..records.len()).chain((0..records.len()).rev().step_by(7));
    let mut most = 0;
    for (n, index) in order.enumerate() {
        assert_eq!(
            near.lookup(records[index].id).await.expect("no timeout"),
            value(index),
            "student {}",
            records[index].id
        );
        most = most.max(near.bytes());
        assert!(near.bytes() <= BOUNDED_BUDGET, "{} bytes after {n} lookups", near.bytes());
        if n + 1 == records.len() {
            // The last bucket read is kept, the first was evicted long ago.
            assert_eq!(near.get(records[records.len() - 1].id), value(records.len() - 1), "kept");
            assert_eq!(near.get(records[0].id), Answer::AskRedis, "evicted");
        }
    }
    assert!(most > BOUNDED_BUDGET * 3 / 4, "used its budget: at most {most} bytes");
    assert_eq!(near.state(), State::Bounded);
    let first = seeded.spec.first_id();
    for unknown in [first - 1, first + BIG, 9_999_999] {
        let id = StudentId::new(unknown).expect("an ID");
        assert_eq!(near.lookup(id).await.expect("no timeout"), Answer::Unknown, "{unknown} is outside the data set");
    }
    stop.cancel();
}

#[tokio::test]
async fn a_bounded_near_cache_answers_a_kept_bucket_from_memory_and_reads_an_evicted_one_again() {
    let seeded = Seeded::new(BIG).await;
    let app = spawn_bounded(&seeded, |s| {
        s.refresh = Duration::from_secs(60);
        s.failed_lookups_per_client = 0;
    })
    .await;
    let first = seeded.spec.first_id();
    // One student of every bucket: far more than the budget holds.
    for bucket in 0..BIG / 100 {
        let id = first + bucket * 100 + 42;
        assert_eq!(app.get(&format!("/v1/results/{id}")).await.status(), 200, "student {id}");
    }
    let bytes = metric(&app.metrics().await, "near_cache_bytes");
    assert!(bytes > 0.0 && bytes <= BOUNDED_BUDGET as f64, "near_cache_bytes {bytes}");

    let redis_before = app.redis_proxy.bytes_to_server();
    let pg_before = app.pg_proxy.bytes_to_server();
    // Other students of the last buckets read: kept, so memory answers (ETags too).
    for id in [first + BIG - 100 + 7, first + BIG - 200 + 99, first + BIG - 300] {
        let response = app.get(&format!("/v1/results/{id}")).await;
        assert_eq!(response.status(), 200, "student {id}");
        let etag = response.headers()["etag"].clone();
        let again = app.client.get(format!("{}/v1/results/{id}", app.base)).header("if-none-match", etag).send().await;
        assert_eq!(again.expect("a response").status(), 304, "ETags still work from memory");
    }
    // Outside the marker's range: unknown, from memory.
    let (status, code) = crate::helpers::error_code(app.get(&format!("/v1/results/{}", first + BIG)).await).await;
    assert_eq!((status, code.as_str()), (404, "unknown_id"));
    assert_eq!(app.redis_proxy.bytes_to_server(), redis_before, "no lookup reached Redis");
    assert_eq!(app.pg_proxy.bytes_to_server(), pg_before, "no lookup reached PostgreSQL");

    // The first bucket read was evicted since: its bucket is read again.
    assert_eq!(app.get(&format!("/v1/results/{}", first + 3)).await.status(), 200);
    assert!(app.redis_proxy.bytes_to_server() > redis_before, "an evicted bucket is read from Redis");
    let metrics = app.metrics().await;
    assert!(metric(&metrics, "near_cache_bytes") <= BOUNDED_BUDGET as f64);
    for series in [
        "near_cache_hits_total{answer=\"result\"}",
        "near_cache_misses_total",
        "near_cache_resyncs_total{outcome=\"bounded\"}",
    ] {
        assert!(metrics.contains(series), "/metrics has {series}");
    }
}

#[tokio::test]
async fn a_correction_published_to_a_kept_bucket_is_served_within_the_bound() {
    let seeded = Seeded::new(BIG).await;
    // No marker check in the way of the byte counts.
    let app = spawn_bounded(&seeded, |s| s.refresh = Duration::from_secs(60)).await;
    let redis = seeded.redis().await;
    let mut corrected = record(&seeded, 4_242);
    let old_name = name_of(&app, corrected.id).await;
    let before = app.redis_proxy.bytes_to_server();
    assert_eq!(name_of(&app, corrected.id).await, old_name);
    assert_eq!(app.redis_proxy.bytes_to_server(), before, "kept after its first read");

    corrected.name = format!("{old_name} Corrected");
    publish(&seeded, &redis, &corrected).await;
    let published = Instant::now();
    while name_of(&app, corrected.id).await != corrected.name {
        assert!(published.elapsed() < CORRECTION_BOUND, "the correction was not served within {CORRECTION_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Read (and kept) again with the new value: memory answers once more.
    assert_eq!(name_of(&app, corrected.id).await, corrected.name);
    let before = app.redis_proxy.bytes_to_server();
    assert_eq!(name_of(&app, corrected.id).await, corrected.name);
    assert_eq!(app.redis_proxy.bytes_to_server(), before, "kept again, corrected");
}

#[tokio::test]
async fn a_correction_made_while_the_bounded_tracking_connection_is_cut_is_not_served_stale_after_the_cut_heals() {
    let seeded = Seeded::new(BIG).await;
    // One read connection: Redis counts as back for lookups as soon as /readyz says it is up.
    let app = spawn_bounded(&seeded, |s| s.redis_pool_size = 1).await;
    let redis = seeded.redis().await;
    let mut corrected = record(&seeded, 777);
    let old_name = name_of(&app, corrected.id).await;
    assert_eq!(name_of(&app, corrected.id).await, old_name);

    app.redis_proxy.cut();
    let down = app.wait_ready(Duration::from_secs(5), |r| r["redis"] == "down").await;
    assert_eq!(down["near_cache"], "resyncing", "the bounded cache is not trusted (and emptied): {down}");
    corrected.name = format!("{old_name} Corrected");
    publish(&seeded, &redis, &corrected).await;
    app.redis_proxy.restore();
    let up = app.wait_ready(Duration::from_secs(10), |r| r["redis"] == "up").await;
    assert_eq!(up["redis"], "up", "{up}");
    // From here until well after the resync, never the old value.
    let healed = Instant::now();
    let mut saw_bounded = false;
    while healed.elapsed() < Duration::from_secs(3) {
        assert_eq!(name_of(&app, corrected.id).await, corrected.name, "stale after the cut healed");
        let ready: serde_json::Value = app.get("/readyz").await.json().await.expect("JSON");
        saw_bounded |= ready["near_cache"] == "bounded";
        if saw_bounded && healed.elapsed() > Duration::from_millis(500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_bounded, "the bounded cache was trusted again after the cut");
    // Tracked again on the new connection: the next correction of the (kept) bucket arrives too.
    assert_eq!(name_of(&app, corrected.id).await, corrected.name);
    corrected.name = format!("{old_name} Corrected Twice");
    publish(&seeded, &redis, &corrected).await;
    let published = Instant::now();
    while name_of(&app, corrected.id).await != corrected.name {
        assert!(published.elapsed() < CORRECTION_BOUND, "the correction was not served within {CORRECTION_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_bounded_near_cache_is_emptied_when_the_marker_changes_or_goes() {
    let seeded = Seeded::new(BIG).await;
    let (near, stop) = near_cache(&seeded, BOUNDED_BUDGET).await;
    assert_eq!(near.state(), State::Bounded);
    let redis = seeded.redis().await;
    let index = 1_234;
    let id = record(&seeded, index).id;
    let expected = Answer::Value(encode_result(&record(&seeded, index)).into());
    assert_eq!(near.lookup(id).await.expect("no timeout"), expected);
    assert_eq!(near.get(id), expected, "kept");
    let held = near.bytes();

    let marker_key = seeded.stores.layout.marker_key();
    let _: i64 = redis
        .hset(&marker_key, (results_core::keys::MARKER_FINGERPRINT, "0123456789abcdef"))
        .await
        .expect("a new fingerprint, as a correction or a new data set writes");
    let deadline = Instant::now() + Duration::from_secs(5);
    while near.get(id) != Answer::AskRedis || near.state() != State::Bounded {
        assert!(Instant::now() < deadline, "not emptied and bounded again: {:?}", near.state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(near.bytes() < held, "emptied: {} bytes, {held} before", near.bytes());
    assert_eq!(near.lookup(id).await.expect("no timeout"), expected, "read again");
    assert_eq!(near.get(id), expected, "and kept");

    let _: i64 = redis.del(&marker_key).await.expect("delete the marker, as a reload does");
    let deadline = Instant::now() + Duration::from_secs(5);
    while near.state() != State::Warming {
        assert!(Instant::now() < deadline, "still {:?}", near.state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((near.bytes(), near.get(id)), (0, Answer::AskRedis), "nothing kept without a complete data set");
    assert_eq!(near.lookup(id).await.expect("no timeout"), Answer::AskRedis, "Redis answers, with its marker check");
    stop.cancel();
}

#[tokio::test]
async fn a_bounded_miss_on_a_slow_redis_waits_for_one_redis_timeout_not_two() {
    let seeded = Seeded::new(BIG).await;
    let timeout = Duration::from_millis(400);
    let app = spawn_bounded(&seeded, |s| s.redis_timeout = timeout).await;
    app.redis_proxy.set_delay(Duration::from_secs(2));
    let pg_before = app.pg_proxy.bytes_to_server();
    let started = Instant::now();
    let id = seeded.spec.first_id() + 5_555;
    let response = app.get(&format!("/v1/results/{id}")).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(app.pg_proxy.bytes_to_server() > pg_before, "PostgreSQL answered");
    // The bounded read's timeout and a PostgreSQL query; asking Redis again would add another.
    assert!(elapsed >= timeout && elapsed < timeout + Duration::from_millis(300), "took {elapsed:?}");
}
