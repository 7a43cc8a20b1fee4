//! Data sets other than the default layout: an exported then imported data set answers exactly as
//! the original, and a generated data set laid out from ID 1 serves the reference design's load
//! pattern.

use std::time::Duration;

use rand::Rng;
use results_core::{DEFAULT_SEED, DEFAULT_STUDENTS, DatasetSpec};

use test_support::{Seeded, TestApp};

use crate::helpers::error_code;

#[tokio::test]
async fn an_exported_then_imported_data_set_serves_identical_json() {
    let spec = DatasetSpec::with_first_id(11, 3_000, 500).expect("spec");
    let original = Seeded::generated(spec).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("results.csv");
    seeder::export::results(&original.stores, Some(&file), None).await.expect("export");
    let imported = Seeded::imported(&file, spec).await;
    let a = TestApp::spawn(&original, |_| {}).await;
    let b = TestApp::spawn(&imported, |_| {}).await;
    for app in [&a, &b] {
        app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    }
    let mut rng = rand::rng();
    let sampled = (0..200).map(|_| rng.random_range(spec.ids())).chain([500, 3_499]);
    for id in sampled {
        let (x, y) = (a.get(&format!("/v1/results/{id}")).await, b.get(&format!("/v1/results/{id}")).await);
        assert_eq!((x.status(), y.status()), (reqwest::StatusCode::OK, reqwest::StatusCode::OK), "{id}");
        assert_eq!(x.headers()["etag"], y.headers()["etag"], "{id}");
        assert_eq!(x.bytes().await.expect("body"), y.bytes().await.expect("body"), "{id}");
    }
    for id in [499, 3_500] {
        assert_eq!(error_code(b.get(&format!("/v1/results/{id}")).await).await.0, 404, "{id}");
    }
}

#[tokio::test]
async fn first_id_1_serves_the_reference_load_pattern_with_200s() {
    // The reference design's load scripts ask for GET /student/{random 10,000..674,823}.
    let spec = DatasetSpec::with_first_id(DEFAULT_SEED, DEFAULT_STUDENTS, 1).expect("spec");
    let seeded = Seeded::generated(spec).await;
    let app = TestApp::spawn(&seeded, |s| s.refresh = Duration::from_secs(3_600)).await;
    app.wait_ready(Duration::from_secs(5), |r| r["complete_data_set"] == true).await;
    let mut rng = rand::rng();
    let pattern = (0..2_000).map(|_| rng.random_range(10_000..=674_823u32)).chain([10_000, 674_823, 1]);
    for id in pattern {
        let response = app.get(&format!("/student/{id}")).await;
        assert_eq!(response.status(), 200, "/student/{id}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(body["student_id"], id);
    }
    let before = app.pg_proxy.bytes_to_server();
    assert_eq!(error_code(app.get("/student/674824").await).await, (404, "unknown_id".to_owned()));
    assert_eq!(app.pg_proxy.bytes_to_server(), before, "an unknown ID does not reach PostgreSQL");
    assert_eq!(error_code(app.get("/student/0").await).await, (400, "invalid_id".to_owned()));
}
