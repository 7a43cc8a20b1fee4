//! `seeder import` of an authority's results file: the sample, export -> import, every class of
//! bad file refused with both stores untouched, kills, reruns, --force, corrections.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use results_core::{Dataset, DatasetSpec};
use seeder::results_file::{COLUMNS, write_row};
use seeder::verify;
use tokio::io::AsyncWriteExt;

use test_support::{FACTOR_KEY, TestStores};

use crate::helpers::{RunSeeder as _, assert_one_clear_error, kill_when, spawn_piped, stderr, stdout};

/// The sample file shipped in the repository.
fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results-sample.csv")
}

fn sample_text() -> String {
    std::fs::read_to_string(sample()).expect("read the sample")
}

/// Writes the generated data set `spec` as a results file (what `seeder export` would write of it).
fn write_generated(path: &Path, spec: DatasetSpec) {
    let dataset = Dataset::new(spec);
    let schools: std::collections::HashMap<u32, &results_core::School> =
        dataset.schools().iter().map(|s| (s.id, s)).collect();
    let mut out = csv::Writer::from_path(path).expect("create the file");
    out.write_record(COLUMNS).expect("header");
    for record in dataset.generate() {
        write_row(&mut out, &record, schools[&record.school_id]).expect("row");
    }
    out.flush().expect("flush");
}

/// Everything an import could change: the dataset row, the counts, both checksums, the marker.
async fn snapshot(t: &TestStores) -> String {
    let pg = t.pg().await;
    let row: String = pg
        .query_one("SELECT coalesce((SELECT row_to_json(d)::text FROM dataset d), 'none')", &[])
        .await
        .expect("dataset row")
        .get(0);
    let report = verify::run(&t.stores).await.expect("verify runs");
    let marker: std::collections::HashMap<String, String> =
        fred::prelude::HashesInterface::hgetall(&t.redis().await, t.stores.layout.marker_key()).await.expect("marker");
    let mut marker: Vec<_> = marker.into_iter().collect();
    marker.sort();
    format!("{row}\n{:?}\n{:?}\n{marker:?}", report.postgres, report.redis)
}

async fn import(t: &TestStores, file: &Path, extra: &[&str]) -> std::process::Output {
    let path = file.to_str().expect("UTF-8 path");
    let mut args = vec!["import", "--file", path];
    args.extend_from_slice(extra);
    t.seeder(&args).await
}

async fn imported_sample() -> TestStores {
    let t = TestStores::new().await;
    let out = import(&t, &sample(), &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    t
}

#[tokio::test]
async fn the_sample_file_imports_verifies_and_a_second_import_is_a_no_op() {
    let t = imported_sample().await;
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    assert_eq!((report.postgres.results, report.postgres.schools), (12, 5));
    let pg = t.pg().await;
    let row = pg.query_one("SELECT first_id, last_id, seed, source_digest IS NOT NULL FROM dataset", &[]).await;
    let row = row.expect("dataset row");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (10_001, 10_012), "the data set records its ID range");
    assert_eq!(row.get::<_, i64>(2), 0);
    assert!(row.get::<_, bool>(3));
    // Competition ranks by total within the stream: 10001 and 10006 tie (402) for the second place
    // of natural science behind 10005 (533), so the next student (313) is fourth.
    let ranks: Vec<(i32, i32)> = pg
        .query("SELECT student_id, rank_in_stream FROM natural_science_results ORDER BY student_id", &[])
        .await
        .expect("ranks")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ranks, [(10_001, 2), (10_003, 6), (10_005, 1), (10_006, 2), (10_008, 4), (10_010, 5), (10_012, 7)]);
    // The school with a comma and the name with quotes came through the CSV quoting intact.
    let school: String = pg.query_one("SELECT name FROM schools WHERE id = 2", &[]).await.expect("school").get(0);
    assert_eq!(school, "Bahir Dar, Tana Preparatory School");
    let name: String = pg.query_one("SELECT full_name FROM students WHERE id = 10003", &[]).await.expect("name").get(0);
    assert_eq!(name, "Dawit \"Dave\" Haile Mariam");

    let before = snapshot(&t).await;
    let again = import(&t, &sample(), &[]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("already seeded"), "{}", stdout(&again));
    assert_eq!(snapshot(&t).await, before, "nothing was rewritten");
    // The same bytes on standard input are the same file.
    let mut child = spawn_piped(t.seeder_command(&["import", "--file", "-"]));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(sample_text().as_bytes()).await.expect("write stdin");
    drop(stdin);
    let piped = child.wait_with_output().await.expect("wait");
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(stdout(&piped).contains("already seeded"), "{}", stdout(&piped));
    t.cleanup().await;
}

/// The sample with a `date_of_birth` column: 2008-01-DD for the student on line DD+1.
fn sample_with_birth_dates() -> String {
    let mut out = String::new();
    for (i, line) in sample_text().lines().enumerate() {
        let extra = if i == 0 { "date_of_birth".to_owned() } else { format!("2008-01-{i:02}") };
        out.push_str(&format!("{line},{extra}\n"));
    }
    out
}

#[tokio::test]
async fn a_second_factor_is_stored_only_as_a_keyed_hash_in_both_stores() {
    let t = TestStores::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("with-dob.csv");
    std::fs::write(&file, sample_with_birth_dates()).expect("write the file");
    // Without the key nothing is written: the stores must never hold the factor in clear.
    let refused = import(&t, &file, &[]).await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("FACTOR_KEY"), "{}", stderr(&refused));
    let pg = t.pg().await;
    let table: Option<String> = pg.query_one("SELECT to_regclass('students')::text", &[]).await.expect("look").get(0);
    assert_eq!(table, None, "the refusal came before PostgreSQL was touched at all");

    let out = import(&t, &file, &["--factor-key", FACTOR_KEY]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    let factor: Option<String> = pg.query_one("SELECT factor FROM dataset", &[]).await.expect("dataset").get(0);
    assert_eq!(factor.as_deref(), Some("date_of_birth"));
    let key = results_core::FactorKey::new(FACTOR_KEY).expect("key");
    let stored: Vec<u8> =
        pg.query_one("SELECT factor_hash FROM students WHERE id = 10003", &[]).await.expect("hash").get(0);
    let expected = key.hash(results_core::FactorKind::DateOfBirth, "2008-01-03");
    assert_eq!(stored, expected.0, "the keyed hash of the student's own date, nothing else");
    let anywhere: i64 = pg
        .query_one("SELECT count(*) FROM students WHERE position('2008-01'::bytea in factor_hash) > 0", &[])
        .await
        .expect("search")
        .get(0);
    assert_eq!(anywhere, 0, "no date in clear");
    // Redis: the value is codec version 2 with the same hash, the marker names the factor.
    let redis = t.redis().await;
    let id = results_core::StudentId::new(10_003).expect("id");
    let bytes: Vec<u8> = fred::prelude::HashesInterface::hget(
        &redis,
        t.stores.layout.bucket_key(results_core::KeyLayout::bucket_of(id)),
        id.get() % results_core::keys::BUCKET_SIZE,
    )
    .await
    .expect("value");
    assert_eq!(bytes[0], results_core::FACTOR_CODEC_VERSION);
    assert!(!bytes.windows(10).any(|w| w == b"2008-01-03"), "no date in clear in Redis");
    assert_eq!(results_core::codec::decode_result(id, &bytes).expect("decodes").factor, Some(expected));
    let marker: std::collections::HashMap<String, String> =
        fred::prelude::HashesInterface::hgetall(&redis, t.stores.layout.marker_key()).await.expect("marker");
    assert_eq!(marker.get("factor").map(String::as_str), Some("date_of_birth"));
    // A results file cannot be exported from hashes (a re-import would be open); the IDs can.
    let export = t.seeder(&["export", "--file", dir.path().join("out.csv").to_str().expect("path")]).await;
    assert!(!export.status.success());
    assert!(stderr(&export).contains("second factor"), "{}", stderr(&export));
    t.cleanup().await;
}

#[tokio::test]
async fn bom_crlf_and_row_order_give_the_same_data_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let windows = dir.path().join("windows.csv");
    std::fs::write(&windows, format!("\u{feff}{}", sample_text().replace('\n', "\r\n"))).expect("write");
    // Rows out of ID order: the fingerprint is then read back from PostgreSQL, not computed on
    // the way; both must be the content's.
    let reversed = dir.path().join("reversed.csv");
    let text = sample_text();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].reverse();
    std::fs::write(&reversed, lines.join("\n") + "\n").expect("write");
    let sorted = imported_sample().await;
    let expected = verify::run(&sorted.stores).await.expect("verify");
    assert!(expected.agrees(), "{}", expected.render());
    for file in [windows, reversed] {
        let t = TestStores::new().await;
        let out = import(&t, &file, &[]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let report = verify::run(&t.stores).await.expect("verify");
        assert!(report.agrees(), "{}: {}", file.display(), report.render());
        assert_eq!(report.postgres.checksum, expected.postgres.checksum, "{}: same content", file.display());
        t.cleanup().await;
    }
    sorted.cleanup().await;
}

#[tokio::test]
async fn export_then_import_reproduces_the_fingerprint() {
    let source = TestStores::new().await;
    assert!(source.seeder(&["--students", "3000", "--seed", "5", "--first-id", "1"]).await.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("results.csv");
    let ids = dir.path().join("ids.txt");
    let export = source
        .seeder(&["export", "--file", file.to_str().expect("path"), "--ids-file", ids.to_str().expect("path")])
        .await;
    assert!(export.status.success(), "{}", stderr(&export));
    let listed: Vec<u32> =
        std::fs::read_to_string(&ids).expect("ids").lines().map(|l| l.parse().expect("a number")).collect();
    assert_eq!(listed, (1..=3_000).collect::<Vec<u32>>());
    // The generator's own export of the same data set is the same file, byte for byte.
    let generated = dir.path().join("generated.csv");
    let args = ["--students", "3000", "--seed", "5", "--first-id", "1"];
    let out = source
        .seeder(&[&["export", "--generated", "--file", generated.to_str().expect("path")][..], &args].concat())
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&generated).expect("read"), std::fs::read(&file).expect("read"));

    let target = TestStores::new().await;
    let out = import(&target, &file, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let a = verify::run(&source.stores).await.expect("verify");
    let b = verify::run(&target.stores).await.expect("verify");
    assert!(b.agrees(), "{}", b.render());
    assert_eq!(a.postgres.checksum, b.postgres.checksum, "export -> import keeps the fingerprint");
    assert_eq!(a.redis.checksum, b.redis.checksum);
    source.cleanup().await;
    target.cleanup().await;
}

#[tokio::test]
async fn a_changed_file_needs_force_and_replaces_everything() {
    let t = imported_sample().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("changed.csv");
    std::fs::write(&changed, sample_text().replace("10012,Biruk Abate Kassa", "10099,Biruk Abate Kassa")).expect("w");
    let before = snapshot(&t).await;
    let refused = import(&t, &changed, &[]).await;
    assert_one_clear_error(&refused, "already holds another data set");
    assert_eq!(snapshot(&t).await, before);
    let forced = import(&t, &changed, &["--force"]).await;
    assert!(forced.status.success(), "{}", stderr(&forced));
    let report = verify::run(&t.stores).await.expect("verify");
    assert!(report.agrees(), "{}", report.render());
    let pg = t.pg().await;
    let last: i32 = pg.query_one("SELECT last_id FROM dataset", &[]).await.expect("row").get(0);
    assert_eq!(last, 10_099);
    // A generated data set is another data set too.
    let generated = t.seeder(&["--students", "100"]).await;
    assert_one_clear_error(&generated, "already holds another data set");
    t.cleanup().await;
}

#[tokio::test]
async fn corrections_apply_on_top_of_an_import_and_are_kept_by_a_rerun() {
    let t = imported_sample().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fix = dir.path().join("fix.csv");
    std::fs::write(&fix, "student_id,subject,score\n10012,mathematics,99\n").expect("write");
    let corrected = t.seeder(&["correct", "--file", fix.to_str().expect("path")]).await;
    assert!(corrected.status.success(), "{}", stderr(&corrected));
    let report = verify::run(&t.stores).await.expect("verify");
    assert!(report.agrees(), "{}", report.render());
    let pg = t.pg().await;
    let score: i16 = pg
        .query_one("SELECT mathematics FROM natural_science_results WHERE student_id = 10012", &[])
        .await
        .expect("score")
        .get(0);
    assert_eq!(score, 99);
    let again = import(&t, &sample(), &[]).await;
    assert!(stdout(&again).contains("already seeded"), "the same file keeps the corrections: {}", stdout(&again));
    let refused = import(&t, &sample(), &["--force"]).await;
    assert_one_clear_error(&refused, "--discard-corrections");
    let discarded = import(&t, &sample(), &["--force", "--discard-corrections"]).await;
    assert!(discarded.status.success(), "{}", stderr(&discarded));
    let score: i16 = pg
        .query_one("SELECT mathematics FROM natural_science_results WHERE student_id = 10012", &[])
        .await
        .expect("score")
        .get(0);
    assert_eq!(score, 28, "the file's value again");
    t.cleanup().await;
}

/// Imports `text` over the imported sample and checks it is refused with exit 4, the expected
/// `FILE:LINE: problem`, and both stores exactly as they were.
async fn refused_untouched(text: &[u8], line: u64, problem: &str) {
    let t = imported_sample().await;
    let before = snapshot(&t).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, text).expect("write");
    let out = import(&t, &file, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "exit 4; stderr:\n{err}");
    let expected = format!("{}:{line}: ", file.display());
    assert!(
        err.lines().any(|l| l.starts_with(&expected) && l.contains(problem)),
        "expected {expected}…{problem}; stderr:\n{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(snapshot(&t).await, before, "both stores untouched");
    t.cleanup().await;
}

/// The sample with its line `line` (1-based, the header is line 1) replaced by `replacement`.
fn with_line(line: usize, replacement: &str) -> Vec<u8> {
    let mut lines: Vec<String> = sample_text().lines().map(str::to_owned).collect();
    lines[line - 1] = replacement.to_owned();
    (lines.join("\n") + "\n").into_bytes()
}

/// One test per class of bad row: the row replaces line 5 of the sample.
macro_rules! bad_row {
    ($name:ident, $row:expr, $problem:expr) => {
        #[tokio::test]
        async fn $name() {
            refused_untouched(&with_line(5, $row), 5, $problem).await;
        }
    };
}

const NS: &str = "Bole Secondary School,Addis Ababa,natural_science";
bad_row!(a_row_with_too_few_fields_is_refused, "10004,Hirut,1", "3 fields, but the header has 15");
bad_row!(
    a_registration_number_with_letters_is_refused,
    &format!("1000A,Hirut Alemu,1,{NS},1,2,3,4,5,,,,6"),
    "only the digits 0-9"
);
bad_row!(
    a_registration_number_of_zero_is_refused,
    &format!("0,Hirut Alemu,1,{NS},1,2,3,4,5,,,,6"),
    "must not be zero or start with 0"
);
bad_row!(
    a_registration_number_too_long_is_refused,
    &format!("1234567890,Hirut Alemu,1,{NS},1,2,3,4,5,,,,6"),
    "too long"
);
bad_row!(
    a_duplicate_registration_number_is_refused,
    &format!("10002,Hirut Alemu,1,{NS},1,2,3,4,5,,,,6"),
    "registration_number 10002 is already on line 3"
);
bad_row!(an_empty_name_is_refused, &format!("10004,,1,{NS},1,2,3,4,5,,,,6"), "full_name is empty");
bad_row!(an_overlong_name_is_refused, &format!("10004,{},1,{NS},1,2,3,4,5,,,,6", "N".repeat(201)), "at most 200");
bad_row!(
    an_unknown_stream_is_refused,
    "10004,Hirut Alemu,1,Bole Secondary School,Addis Ababa,arts,1,2,3,4,5,,,,6",
    "unknown stream \"arts\""
);
bad_row!(
    an_unknown_region_is_refused_with_the_accepted_names,
    "10004,Hirut Alemu,9,Some School,Atlantis,natural_science,1,2,3,4,5,,,,6",
    "unknown region \"Atlantis\"; the regions are: Addis Ababa, Afar"
);
bad_row!(a_missing_subject_is_refused, &format!("10004,Hirut Alemu,1,{NS},1,2,,4,5,,,,6"), "physics is missing");
bad_row!(
    a_subject_of_the_other_stream_is_refused,
    &format!("10004,Hirut Alemu,1,{NS},1,2,3,4,5,7,,,6"),
    "geography is not a subject of natural_science"
);
bad_row!(
    a_score_above_100_is_refused,
    &format!("10004,Hirut Alemu,1,{NS},1,2,3,4,101,,,,6"),
    "biology score \"101\" is not a whole number 0-100"
);
bad_row!(
    a_fractional_score_is_refused,
    &format!("10004,Hirut Alemu,1,{NS},1,2.5,3,4,5,,,,6"),
    "mathematics score \"2.5\" is not a whole number"
);
bad_row!(
    a_control_character_is_refused,
    &format!("10004,Hirut\u{1b}Alemu,1,{NS},1,2,3,4,5,,,,6"),
    "full_name contains a control character"
);
bad_row!(
    a_school_code_given_to_two_schools_is_refused,
    "10004,Hirut Alemu,1,Another School,Addis Ababa,natural_science,1,2,3,4,5,,,,6",
    "school_code 1 was given before with another school name or region"
);

#[tokio::test]
async fn invalid_utf8_is_refused() {
    let mut text =
        with_line(5, "10004,Hirut XX Alemu,1,Bole Secondary School,Addis Ababa,natural_science,1,2,3,4,5,,,,6");
    let at = text.windows(2).position(|w| w == b"XX").expect("marker");
    text[at] = 0xff;
    text[at + 1] = 0xfe;
    refused_untouched(&text, 5, "full_name is not valid UTF-8").await;
}

#[tokio::test]
async fn a_wrong_header_names_the_expected_columns() {
    let text = sample_text().replacen("full_name", "name", 1);
    refused_untouched(text.as_bytes(), 1, "unknown column \"name\"; missing column(s) full_name; expected the columns registration_number,full_name,school").await;
}

#[tokio::test]
async fn an_empty_file_is_refused() {
    refused_untouched(b"", 1, "the file is empty; expected a header with the columns registration_number").await;
}

#[tokio::test]
async fn a_file_with_only_a_header_is_refused() {
    let header = sample_text().lines().next().expect("header").to_owned() + "\n";
    refused_untouched(header.as_bytes(), 2, "no students after the header").await;
}

#[tokio::test]
async fn binary_garbage_is_refused_at_the_header() {
    let garbage: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    refused_untouched(&garbage, 1, "wrong header").await;
}

#[tokio::test]
async fn every_bad_line_is_counted_and_the_first_50_shown() {
    let t = TestStores::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("many.csv");
    let mut text = sample_text();
    for i in 0..120 {
        text.push_str(&format!("{},Name,1,{NS},1,2,3,4,500,,,,6\n", 20_000 + i));
    }
    std::fs::write(&file, text).expect("write");
    let out = import(&t, &file, &[]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let shown = err.lines().filter(|l| l.starts_with(&format!("{}:", file.display()))).count();
    assert_eq!(shown, 50, "{err}");
    assert!(err.contains("… and 70 more problem(s)"), "{err}");
    assert!(err.contains("the file has 120 problem(s)"), "{err}");
    t.cleanup().await;
}

#[tokio::test]
async fn a_2_gb_line_on_stdin_is_refused_quickly_without_reading_it_all() {
    let t = imported_sample().await;
    let before = snapshot(&t).await;
    let mut child = spawn_piped(t.seeder_command(&["import", "--file", "-"]));
    let mut stdin = child.stdin.take().expect("stdin");
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        // 2 GiB with no line end, until the seeder stops reading (broken pipe).
        while sent < 2 << 30 {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("in time");
    let out = out.expect("wait");
    let sent = writer.await.expect("writer");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("stdin:1: line 1 is longer than 4096 bytes"), "{err}");
    assert!(sent < 1 << 30, "stopped reading early: {sent} bytes sent");
    assert!(started.elapsed() < Duration::from_secs(30), "quickly: {:?}", started.elapsed());
    assert_eq!(snapshot(&t).await, before);
    t.cleanup().await;
}

#[tokio::test]
async fn a_full_size_file_whose_last_line_is_bad_leaves_both_stores_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("full.csv");
    write_generated(&file, DatasetSpec::default());
    let mut text = std::fs::read(&file).expect("read");
    text.extend_from_slice(b"1674823,Last Student,1,Bad,Addis Ababa,natural_science,1,2,3,4,5,,,,600\n");
    refused_untouched(&text, 674_825, "aptitude score \"600\"").await;
}

#[tokio::test]
async fn an_import_killed_mid_copy_or_mid_redis_then_rerun_ends_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.csv");
    write_generated(&file, DatasetSpec::new(3, 300_000).expect("spec"));
    for (phase, expected) in
        [("postgres: 10%", "into PostgreSQL and Redis"), ("redis: 10%", "into Redis (from PostgreSQL)")]
    {
        let t = TestStores::new().await;
        kill_when(t.seeder_command(&["import", "--file", file.to_str().expect("path")]), phase).await;
        let report = verify::run(&t.stores).await.expect("verify");
        assert!(!report.agrees(), "a killed import is not complete");
        let rerun = import(&t, &file, &[]).await;
        assert!(rerun.status.success(), "{}", stderr(&rerun));
        assert!(stdout(&rerun).contains(expected), "{}", stdout(&rerun));
        let report = verify::run(&t.stores).await.expect("verify");
        assert!(report.agrees(), "{}", report.render());
        let pg = t.pg().await;
        let row = pg.query_one("SELECT count(*), count(DISTINCT id) FROM students", &[]).await.expect("count");
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (300_000, 300_000));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn verify_checks_the_recorded_id_range_against_both_stores() {
    let t = imported_sample().await;
    let pg = t.pg().await;
    pg.execute("UPDATE dataset SET last_id = 10013", &[]).await.expect("tamper");
    let report = verify::run(&t.stores).await.expect("verify");
    assert!(
        report
            .differences
            .iter()
            .any(|d| d.contains("PostgreSQL holds IDs 10001..10012 but its data set records 10001..10013")),
        "{}",
        report.render()
    );
    assert!(report.differences.iter().any(|d| d.contains("Redis marker says IDs 10001..10012")), "{}", report.render());
    t.cleanup().await;
}
