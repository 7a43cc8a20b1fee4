//! Every public route and status, the JSON shape, HTTP caching, and bad input that must never
//! reach a store.

use std::time::Duration;

use results_core::Dataset;
use results_core::record::PASS_MARK;

use test_support::{Seeded, TestApp};

use crate::helpers::{SHARED_STUDENTS, error_code};

#[tokio::test]
async fn a_result_has_every_field_the_student_needs() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let dataset = Dataset::new(seeded.spec);
    let records = dataset.generate();
    let record = &records[4_321];
    let school = dataset.schools().iter().find(|s| s.id == record.school_id).expect("school");
    let response = app.get(&format!("/v1/results/{}", record.id)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["student_id"], record.id.get());
    assert_eq!(body["name"], record.name.as_str());
    assert_eq!(body["school"]["id"], school.id);
    assert_eq!(body["school"]["name"], school.name.as_str());
    assert_eq!(body["school"]["region"], school.region.name);
    assert_eq!(body["stream"], record.stream.as_str());
    let subjects = body["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 6);
    for ((json, subject), score) in subjects.iter().zip(record.stream.subjects()).zip(record.scores) {
        assert_eq!(json["subject"], subject.as_str());
        assert_eq!(json["score"], score);
    }
    assert_eq!(body["total"], record.total());
    assert_eq!(body["max_total"], 600);
    assert_eq!(body["pass_mark"], PASS_MARK);
    assert_eq!(body["passed"], record.passed());
    assert_eq!(body["rank"]["in_stream"], record.rank);
    let stream_size = records.iter().filter(|r| r.stream == record.stream).count();
    assert_eq!(body["rank"]["stream_size"], stream_size);
    assert_eq!(body.as_object().map(|o| o.len()), Some(10), "no unexpected fields: {body}");
}

#[tokio::test]
async fn the_alias_path_answers_exactly_like_the_main_path_and_head_works() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    for id in [1_000_000, 1_005_555, 1_009_999] {
        let main = app.get(&format!("/v1/results/{id}")).await;
        let alias = app.get(&format!("/student/{id}")).await;
        assert_eq!(main.status(), 200);
        assert_eq!(alias.status(), 200);
        assert_eq!(main.headers()["etag"], alias.headers()["etag"]);
        assert_eq!(main.bytes().await.expect("body"), alias.bytes().await.expect("body"));
    }
    let head = app.client.head(format!("{}/v1/results/1000001", app.base)).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
    assert!(head.bytes().await.expect("body").is_empty());
    for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let response =
            app.client.request(method.clone(), format!("{}/v1/results/1000001", app.base)).send().await.expect("send");
        assert_eq!(error_code(response).await, (405, "method_not_allowed".to_owned()), "{method}");
    }
    assert_eq!(error_code(app.get("/nope").await).await, (404, "not_found".to_owned()));
}

#[tokio::test]
async fn an_unknown_id_is_a_404_and_never_reaches_postgres() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    // Refresh rarely, so the only PostgreSQL traffic would come from the requests themselves.
    // Without the per-client failed-lookup limit, which would refuse this one client's 206
    // unknown numbers past 120 (tests/api/limits.rs).
    let app = TestApp::spawn(&seeded, |s| {
        s.refresh = Duration::from_secs(3_600);
        s.failed_lookups_per_client = 0;
    })
    .await;
    let ready = app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    assert_eq!(ready["complete_data_set"], true, "{ready}");
    let before = app.pg_proxy.bytes_to_server();
    // Well-formed numbers of any length up to nine digits are unknown, not malformed.
    for id in (1_010_000..1_010_200).chain([9_999_999, 5_000_000, 1, 42, 10_000_000, 999_999_999]) {
        let (status, code) = error_code(app.get(&format!("/v1/results/{id}")).await).await;
        assert_eq!((status, code.as_str()), (404, "unknown_id"), "{id}");
    }
    assert_eq!(app.pg_proxy.bytes_to_server(), before, "not one byte went to PostgreSQL");
}

#[tokio::test]
async fn malformed_ids_are_400s_that_touch_no_store() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.refresh = Duration::from_secs(3_600)).await;
    app.wait_ready(Duration::from_secs(5), |r| r["ready"] == true).await;
    let (redis_before, pg_before) = (app.redis_proxy.bytes_to_server(), app.pg_proxy.bytes_to_server());
    let long = "1".repeat(5_000);
    let bad = [
        "abc",
        "-1000000",
        "%2B1000000",
        "%31000000",
        "0999999",
        "0",
        "1000000000",
        "1e6",
        "1000000%20",
        "%00",
        "１２３",
        "1000000.0",
        "0x10",
        "%27%20OR%201=1",
        long.as_str(),
    ];
    for id in bad {
        let response = app.get(&format!("/v1/results/{id}")).await;
        let (status, code) = error_code(response).await;
        assert_eq!((status, code.as_str()), (400, "invalid_id"), "{id:?}");
    }
    assert_eq!(app.redis_proxy.bytes_to_server(), redis_before, "no byte went to Redis");
    assert_eq!(app.pg_proxy.bytes_to_server(), pg_before, "no byte went to PostgreSQL");
}

#[tokio::test]
async fn a_matching_etag_gets_304_and_cache_headers_are_sent() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |s| s.http_max_age_s = 7).await;
    let first = app.get("/v1/results/1002000").await;
    assert_eq!(first.headers()["cache-control"], "public, max-age=7");
    let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"), "strong ETag {etag}");
    let again = app
        .client
        .get(format!("{}/v1/results/1002000", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());
    let other = app
        .client
        .get(format!("{}/v1/results/1002001", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 200, "another student's ETag does not match");
}

/// Polls `path` until its first subject score is `expected`, up to `limit`; returns the time it took.
async fn time_until_score(app: &TestApp, path: &str, expected: u8, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    while started.elapsed() <= limit {
        let body: serde_json::Value = app.get(path).await.json().await.expect("JSON");
        if body["subjects"][0]["score"] == expected {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn a_corrected_value_is_served_at_once_from_redis_and_within_the_ttl_from_postgres() {
    use fred::prelude::*;
    let seeded = Seeded::new(500).await;
    let ttl = Duration::from_millis(400);
    let app = TestApp::spawn(&seeded, |s| s.cache_ttl = ttl).await;
    let mut record = Dataset::new(seeded.spec).generate()[42].clone();
    let path = format!("/v1/results/{}", record.id);
    let original = record.scores[0];
    let shifted = |score: u8| if score >= 50 { score - 10 } else { score + 10 };

    // Through Redis: the next request sees the correction.
    record.scores[0] = shifted(original);
    let (key, field) = seeded.stores.layout.result_location(record.id);
    let redis = seeded.redis().await;
    let _: i64 = redis.hset(key, (field, results_core::codec::encode_result(&record))).await.expect("correct");
    let first: serde_json::Value = app.get(&path).await.json().await.expect("JSON");
    assert_eq!(first["subjects"][0]["score"], record.scores[0], "served at once from Redis");

    // Redis down: PostgreSQL answers and its answer is cached for at most the TTL.
    app.redis_proxy.cut();
    let pg_value: serde_json::Value = app.get(&path).await.json().await.expect("JSON");
    assert_eq!(pg_value["subjects"][0]["score"], original, "PostgreSQL still has the original");
    let pg = seeded.pg().await;
    let corrected = shifted(original);
    let updated = pg
        .execute(
            "UPDATE social_science_results SET english = $1 WHERE student_id = $2",
            &[&i16::from(corrected), &(record.id.get() as i32)],
        )
        .await
        .expect("update")
        + pg.execute(
            "UPDATE natural_science_results SET english = $1 WHERE student_id = $2",
            &[&i16::from(corrected), &(record.id.get() as i32)],
        )
        .await
        .expect("update");
    assert_eq!(updated, 1, "one result row corrected");
    let took = time_until_score(&app, &path, corrected, ttl * 4).await.expect("the correction becomes visible");
    assert!(took <= ttl + Duration::from_millis(300), "visible within the TTL: {took:?}");
}

#[tokio::test]
async fn a_request_body_is_refused_and_an_oversized_head_is_rejected() {
    let seeded = Seeded::shared(SHARED_STUDENTS).await;
    let app = TestApp::spawn(&seeded, |_| {}).await;
    let big =
        app.client.get(format!("{}/v1/results/1000001", app.base)).body(vec![b'x'; 4_096]).send().await.expect("send");
    assert_eq!(error_code(big).await, (413, "body_too_large".to_owned()));
    let huge_header = "y".repeat(32 * 1024);
    let response = app.client.get(format!("{}/v1/results/1000001", app.base)).header("x-big", huge_header).send().await;
    match response {
        Ok(r) => assert_eq!(r.status(), 431, "header too large"),
        Err(e) => assert!(e.is_request() || e.is_connect(), "connection dropped: {e}"),
    }
    assert_eq!(app.get("/healthz").await.status(), 200, "the replica is unharmed");
}
