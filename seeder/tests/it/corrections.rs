//! `seeder correct` and `seeder publish`, through the real binary: a valid file is applied in
//! one transaction with ranks recomputed exactly, an invalid one changes nothing and names every
//! bad line, a second application changes nothing, and Redis down or refusing writes midway
//! leaves PostgreSQL committed with the rest pending until a retry publishes it.

use std::collections::HashMap;
use std::io::Write as _;

use fred::prelude::*;
use results_core::generate::assign_ranks;
use results_core::record::Stream;
use results_core::{StudentId, codec};
use seeder::pg::{Pg, results_table};
use seeder::verify;

use test_support::{ChaosProxy, TestStores};

use crate::helpers::{RunSeeder as _, assert_one_clear_error, seeder_command, stderr, stdout};

const STUDENTS: &str = "3000";

/// A correction file with `rows` (student, subject, score) after the contract's header.
fn csv(rows: &[(u32, &str, i32)]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".csv").tempfile().expect("temp file");
    writeln!(file, "student_id,subject,score").expect("write");
    for (id, subject, score) in rows {
        writeln!(file, "{id},{subject},{score}").expect("write");
    }
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("UTF-8 temp path")
}

/// A student of `stream` whose total is near `total` and whose `subject` is at most `max`:
/// `(id, current score)`. Raising that subject moves them past other students.
async fn pick(pg: &tokio_postgres::Client, stream: Stream, subject: &str, max: i16, total: i16) -> (u32, i16) {
    let row = pg
        .query_one(
            &format!(
                "SELECT student_id, {subject} FROM {} WHERE {subject} <= $1 ORDER BY abs(total - $2), student_id LIMIT 1",
                results_table(stream)
            ),
            &[&max, &total],
        )
        .await
        .expect("a student to correct");
    (row.get::<_, i32>(0) as u32, row.get(1))
}

async fn score(pg: &tokio_postgres::Client, stream: Stream, id: u32, subject: &str) -> i16 {
    pg.query_one(&format!("SELECT {subject} FROM {} WHERE student_id = $1", results_table(stream)), &[&(id as i32)])
        .await
        .expect("score")
        .get(0)
}

async fn ranks(pg: &tokio_postgres::Client) -> HashMap<i32, i32> {
    let mut ranks = HashMap::new();
    for stream in Stream::ALL {
        for row in pg
            .query(&format!("SELECT student_id, rank_in_stream FROM {}", results_table(stream)), &[])
            .await
            .expect("ranks")
        {
            ranks.insert(row.get(0), row.get(1));
        }
    }
    ranks
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Every stored rank equals a fresh computation: SQL's RANK() and the generator's own ranking.
async fn assert_ranks_are_fresh(t: &TestStores) {
    let pg = t.pg().await;
    for stream in Stream::ALL {
        let wrong = count(
            &pg,
            &format!(
                "SELECT count(*) FROM (SELECT rank_in_stream, RANK() OVER (ORDER BY total DESC) AS fresh FROM {}) r \
                 WHERE rank_in_stream <> fresh",
                results_table(stream)
            ),
        )
        .await;
        assert_eq!(wrong, 0, "stored ranks of {stream:?} differ from RANK()");
    }
    let stored = Pg::connect(&t.stores.database_url, 1).await.expect("connect").read_results(None).await.expect("read");
    let mut fresh = stored.clone();
    assign_ranks(&mut fresh);
    let differing = stored.iter().zip(&fresh).filter(|(a, b)| a.rank != b.rank).count();
    assert_eq!(differing, 0, "stored ranks differ from the generator's ranking of the same scores");
}

/// The dataset row's fingerprint and last update.
async fn dataset_state(pg: &tokio_postgres::Client) -> (String, String) {
    let row = pg.query_one("SELECT fingerprint, updated_at::text FROM dataset", &[]).await.expect("dataset");
    (row.get(0), row.get(1))
}

async fn redis_record(t: &TestStores, id: u32) -> results_core::ResultRecord {
    let id = StudentId::new(id).expect("id");
    let (key, field) = t.stores.layout.result_location(id);
    let bytes: bytes::Bytes = t.redis().await.hget(key, field).await.expect("hget");
    codec::decode_result(id, &bytes).expect("decodes")
}

#[tokio::test]
async fn a_valid_file_is_applied_in_one_transaction_with_every_moved_rank_recomputed_and_published() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", STUDENTS]).await.status.success());
    let pg = t.pg().await;
    let (natural, english) = pick(&pg, Stream::NaturalScience, "english", 50, 300).await;
    let (social, history) = pick(&pg, Stream::SocialScience, "history", 55, 250).await;
    let before = ranks(&pg).await;

    let file = csv(&[(natural, "english", i32::from(english) + 40), (social, "history", i32::from(history) + 45)]);
    let out = t.seeder(&["correct", "--file", path(&file)]).await;
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("changed 2 of 2 score(s)"), "{}", stdout(&out));

    assert_eq!(score(&pg, Stream::NaturalScience, natural, "english").await, english + 40);
    assert_eq!(score(&pg, Stream::SocialScience, social, "history").await, history + 45);
    assert_ranks_are_fresh(&t).await;
    let after = ranks(&pg).await;
    let moved: Vec<i32> = after.iter().filter(|(id, rank)| before.get(id) != Some(rank)).map(|(id, _)| *id).collect();
    let others = moved.iter().filter(|id| ![natural as i32, social as i32].contains(id)).count();
    assert!(others > 10, "raising two mid-table totals by 40+ moves other students' ranks (moved {others})");

    // The journal: one correction, both changes with their old values, every affected student.
    let journal = pg
        .query_one("SELECT file_rows, changed_scores, affected_students, fingerprint FROM corrections", &[])
        .await
        .expect("one journal row");
    assert_eq!((journal.get::<_, i32>(0), journal.get::<_, i32>(1)), (2, 2));
    assert_eq!(journal.get::<_, i32>(2) as usize, 2 + others, "changed students plus every moved rank");
    let old: i16 = pg
        .query_one("SELECT old_score FROM correction_changes WHERE student_id = $1", &[&(natural as i32)])
        .await
        .expect("change row")
        .get(0);
    assert_eq!(old, english);
    let fingerprint: String = journal.get(3);
    let dataset: String = pg.query_one("SELECT fingerprint FROM dataset", &[]).await.expect("dataset").get(0);
    assert_eq!(fingerprint, dataset);

    // Published: nothing pending, Redis holds the new values, the marker the new fingerprint.
    assert_eq!(count(&pg, "SELECT count(*) FROM pending_publication").await, 0);
    assert_eq!(redis_record(&t, natural).await.scores[0], (english + 40) as u8);
    let moved_other = moved.iter().find(|id| ![natural as i32, social as i32].contains(id)).expect("a moved rank");
    assert_eq!(redis_record(&t, *moved_other as u32).await.rank, after[moved_other] as u32);
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    assert_eq!(report.redis.checksum, dataset);
    assert_eq!((report.corrections, report.pending), (1, 0));
    t.cleanup().await;
}

#[tokio::test]
async fn an_invalid_file_names_every_bad_line_and_changes_nothing() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", STUDENTS]).await.status.success());
    let pg = t.pg().await;
    let (natural, english) = pick(&pg, Stream::NaturalScience, "english", 90, 300).await;
    let fingerprint: String = pg.query_one("SELECT fingerprint FROM dataset", &[]).await.expect("dataset").get(0);

    let mut file = csv(&[
        (natural, "english", i32::from(english) + 5), // line 2: valid
        (1_003_005, "english", 50),                   // line 3: not in a data set of 3000
        (natural, "history", 50),                     // line 4: not a natural-science subject
        (natural, "physics", 101),                    // line 5: out of range
        (natural, "english", 60),                     // line 6: duplicate of line 2
    ]);
    writeln!(file, "{natural};english;5").expect("write"); // line 7: malformed
    writeln!(file, "abc,english,5").expect("write"); // line 8: not an ID
    let out = t.seeder(&["correct", "--file", path(&file)]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "stderr:\n{err}");
    assert!(err.contains("has 6 bad line(s); nothing was applied"), "{err}");
    for expected in [
        "line 3: unknown student 1003005".to_owned(),
        format!("line 4: subject history is not in student {natural}'s stream natural_science"),
        "line 5: score 101 is out of range 0..=100".to_owned(),
        format!("line 6: duplicate: student {natural} english is already on line 2"),
        "line 7: malformed: expected 3 fields".to_owned(),
        "line 8: student_id `abc` is not a registration number".to_owned(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("line 2:"), "the valid line is not reported: {err}");

    assert_eq!(score(&pg, Stream::NaturalScience, natural, "english").await, english, "nothing applied");
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections").await, 0);
    assert_eq!(count(&pg, "SELECT count(*) FROM pending_publication").await, 0);
    let unchanged: String = pg.query_one("SELECT fingerprint FROM dataset", &[]).await.expect("dataset").get(0);
    assert_eq!(unchanged, fingerprint);
    assert!(verify::run(&t.stores).await.expect("verify runs").agrees());

    // A file that is not there, and a wrong header: clear errors, nothing applied.
    let missing = t.seeder(&["correct", "--file", "/nonexistent/fix.csv"]).await;
    assert_one_clear_error(&missing, "cannot read the correction file /nonexistent/fix.csv");
    let mut header = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(header, "id,subject,score\n{natural},english,7").expect("write");
    let wrong = t.seeder(&["correct", "--file", header.path().to_str().expect("path")]).await;
    assert_eq!(wrong.status.code(), Some(4));
    assert!(stderr(&wrong).contains("line 1: the header must be `student_id,subject,score`"), "{}", stderr(&wrong));
    t.cleanup().await;
}

#[tokio::test]
async fn applying_the_same_file_twice_changes_nothing_the_second_time_and_says_so() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", STUDENTS]).await.status.success());
    let pg = t.pg().await;
    let (social, economics) = pick(&pg, Stream::SocialScience, "economics", 70, 260).await;
    let file = csv(&[(social, "economics", i32::from(economics) + 30)]);
    let before = dataset_state(&pg).await;
    let dry = t.seeder(&["correct", "--file", path(&file), "--dry-run"]).await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("dry run, rolled back: would change 1 of 1 score(s)"), "{}", stdout(&dry));
    assert_eq!(score(&pg, Stream::SocialScience, social, "economics").await, economics, "a dry run applies nothing");
    assert_eq!(dataset_state(&pg).await, before);
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections").await, 0);

    let first = t.seeder(&["correct", "--file", path(&file)]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let after_first = dataset_state(&pg).await;

    let second = t.seeder(&["correct", "--file", path(&file)]).await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("already have these values; nothing to change"), "{}", stdout(&second));
    assert!(stdout(&second).contains("nothing pending"), "{}", stdout(&second));
    assert_eq!(dataset_state(&pg).await, after_first, "nothing rewritten");
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections").await, 1, "journaled once");
    assert_eq!(score(&pg, Stream::SocialScience, social, "economics").await, economics + 30);
    assert!(verify::run(&t.stores).await.expect("verify runs").agrees());
    t.cleanup().await;
}

#[tokio::test]
async fn redis_down_keeps_the_correction_in_postgres_verify_names_it_and_the_retry_publishes_it() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", STUDENTS]).await.status.success());
    let pg = t.pg().await;
    let (natural, physics) = pick(&pg, Stream::NaturalScience, "physics", 50, 300).await;
    let proxy = ChaosProxy::start(&t.stores.redis_url).await;
    proxy.cut();
    let prefix = t.stores.layout.prefix().to_owned();
    let through_proxy = |args: &[&str]| seeder_command(&t.stores.database_url, &proxy.url(), &prefix, args).output();

    let file = csv(&[(natural, "physics", i32::from(physics) + 40)]);
    let out = through_proxy(&["correct", "--file", path(&file)]).await.expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "stdout:\n{}\nstderr:\n{err}", stdout(&out));
    assert!(stdout(&out).contains("PostgreSQL: changed 1 of 1 score(s)"), "{}", stdout(&out));
    assert!(err.contains("PostgreSQL holds the correction (committed)"), "{err}");
    assert!(err.contains("only 0 of"), "{err}");
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(err.contains("`seeder publish`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // PostgreSQL is committed and knows what Redis lacks.
    assert_eq!(score(&pg, Stream::NaturalScience, natural, "physics").await, physics + 40);
    let pending = count(&pg, "SELECT count(*) FROM pending_publication").await;
    let affected = count(&pg, "SELECT affected_students::bigint FROM corrections").await;
    assert!(pending > 1, "the student and the ranks they moved");
    assert_eq!(pending, affected);
    assert_eq!(redis_record(&t, natural).await.scores[2], physics as u8, "Redis still has the old value");

    // verify names the problem.
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(!report.agrees());
    assert_eq!(report.pending, pending as u64);
    let rendered = report.render();
    assert!(
        rendered.contains(&format!("{pending} corrected result(s) are committed in PostgreSQL but not yet published"))
    );
    assert!(rendered.contains("run `seeder publish`"), "{rendered}");
    assert!(rendered.contains(&format!("{pending} result(s) differ between PostgreSQL and Redis")), "{rendered}");
    let first_pending: i32 =
        pg.query_one("SELECT min(student_id) FROM pending_publication", &[]).await.expect("min").get(0);
    assert!(rendered.contains(&first_pending.to_string()), "the differing IDs are named: {rendered}");
    assert_eq!(t.seeder(&["verify"]).await.status.code(), Some(3));

    // Redis back: the same command again publishes what is pending, and changes nothing else.
    proxy.restore();
    let retry = through_proxy(&["correct", "--file", path(&file)]).await.expect("run");
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert!(stdout(&retry).contains("already have these values"), "{}", stdout(&retry));
    assert!(stdout(&retry).contains(&format!("published {pending} result(s)")), "{}", stdout(&retry));
    assert_eq!(count(&pg, "SELECT count(*) FROM pending_publication").await, 0);
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections").await, 1);
    assert_eq!(redis_record(&t, natural).await.scores[2], (physics + 40) as u8);
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    t.cleanup().await;
}

#[tokio::test]
async fn redis_refusing_writes_midway_publishes_part_and_seeder_publish_the_rest() {
    let t = TestStores::new().await;
    assert!(t.seeder(&["--students", STUDENTS]).await.status.success());
    let pg = t.pg().await;
    // A real refusal midway: a Redis user that may write the first bucket (IDs 1000000-1000099)
    // and nothing else.
    let first_bucket = t.stores.layout.bucket_key(10_000);
    let user = t.redis_user(&["+@all", "%R~*", &format!("%RW~{first_bucket}")]).await;
    let in_first: u32 = pg
        .query_one(
            "SELECT student_id FROM natural_science_results WHERE student_id < 1000100 AND english <= 50 \
             ORDER BY abs(total - 300) LIMIT 1",
            &[],
        )
        .await
        .expect("a student in the first bucket")
        .get::<_, i32>(0) as u32;
    let english = score(&pg, Stream::NaturalScience, in_first, "english").await;
    let file = csv(&[(in_first, "english", i32::from(english) + 40)]);
    let out = seeder_command(
        &t.stores.database_url,
        &user.url,
        t.stores.layout.prefix(),
        &["correct", "--file", path(&file)],
    )
    .output()
    .await
    .expect("run");
    t.delete_redis_user(user).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    let affected = count(&pg, "SELECT affected_students::bigint FROM corrections").await;
    let pending = count(&pg, "SELECT count(*) FROM pending_publication").await;
    let published = affected - pending;
    assert!(published > 0 && pending > 0, "part published ({published}), part pending ({pending})");
    assert!(err.contains(&format!("only {published} of {affected} corrected result(s) were published")), "{err}");
    assert!(err.contains("NOPERM") || err.contains("no permissions"), "the cause is Redis' refusal: {err}");
    assert_eq!(redis_record(&t, in_first).await.scores[0], (english + 40) as u8, "its bucket was writable");
    let in_first_pending = count(&pg, "SELECT count(*) FROM pending_publication WHERE student_id < 1000100").await;
    assert_eq!(in_first_pending, 0, "what reached Redis is no longer pending");
    assert!(!verify::run(&t.stores).await.expect("verify runs").agrees());

    let publish = t.seeder(&["publish"]).await;
    assert!(publish.status.success(), "{}", stderr(&publish));
    assert!(stdout(&publish).contains(&format!("published {pending} result(s)")), "{}", stdout(&publish));
    let again = t.seeder(&["publish"]).await;
    assert!(stdout(&again).contains("nothing pending"), "{}", stdout(&again));
    let report = verify::run(&t.stores).await.expect("verify runs");
    assert!(report.agrees(), "{}", report.render());
    t.cleanup().await;
}

#[tokio::test]
async fn load_keeps_corrections_and_force_drops_them_only_when_told() {
    let t = TestStores::new().await;
    let load = ["--students", STUDENTS];
    assert!(t.seeder(&load).await.status.success());
    let pg = t.pg().await;
    let (social, geography) = pick(&pg, Stream::SocialScience, "geography", 60, 250).await;
    let corrected = geography + 35;
    let file = csv(&[(social, "geography", i32::from(corrected))]);
    assert!(t.seeder(&["correct", "--file", path(&file)]).await.status.success());

    // A plain load finds both stores at the corrected fingerprint and keeps the correction.
    let plain = t.seeder(&load).await;
    assert!(stdout(&plain).contains("already seeded"), "{}", stdout(&plain));
    assert_eq!(score(&pg, Stream::SocialScience, social, "geography").await, corrected);

    // A correction Redis never got (Redis down): a plain load reloads Redis from PostgreSQL,
    // correction included, and nothing is left pending.
    let proxy = ChaosProxy::start(&t.stores.redis_url).await;
    proxy.cut();
    let second = csv(&[(social, "geography", i32::from(corrected) - 1)]);
    let down = seeder_command(
        &t.stores.database_url,
        &proxy.url(),
        t.stores.layout.prefix(),
        &["correct", "--file", path(&second)],
    )
    .output()
    .await
    .expect("run");
    assert_eq!(down.status.code(), Some(5), "{}", stderr(&down));
    let reload = t.seeder(&load).await;
    assert!(stdout(&reload).contains("into Redis (from PostgreSQL)"), "{}", stdout(&reload));
    assert_eq!(count(&pg, "SELECT count(*) FROM pending_publication").await, 0);
    assert_eq!(redis_record(&t, social).await.scores[2], (corrected - 1) as u8);
    assert!(verify::run(&t.stores).await.expect("verify runs").agrees());

    // --force would regenerate the data set: refused while corrections exist.
    let mut force = load.to_vec();
    force.push("--force");
    let refused = t.seeder(&force).await;
    assert_one_clear_error(&refused, "holds 2 correction(s) applied since the data set was loaded");
    assert!(stderr(&refused).contains("--discard-corrections"), "{}", stderr(&refused));
    assert_eq!(score(&pg, Stream::SocialScience, social, "geography").await, corrected - 1);

    force.push("--discard-corrections");
    let dropped = t.seeder(&force).await;
    assert!(dropped.status.success(), "{}", stderr(&dropped));
    assert_eq!(score(&pg, Stream::SocialScience, social, "geography").await, geography, "regenerated");
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections WHERE discarded_at IS NULL").await, 0);
    assert_eq!(count(&pg, "SELECT count(*) FROM corrections").await, 2, "the journal keeps them");
    assert!(verify::run(&t.stores).await.expect("verify runs").agrees());
    let plain = t.seeder(&force[..2]).await;
    assert!(stdout(&plain).contains("already seeded"), "{}", stdout(&plain));
    t.cleanup().await;
}
