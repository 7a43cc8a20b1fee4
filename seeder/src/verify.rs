//! `seeder verify`: reads both stores in full and compares them.
//!
//! Each side computes the content checksum of [`results_core::checksum`] independently:
//! PostgreSQL from its rows (re-encoded with the shared codec), Redis from the stored bytes.
//! Any difference in counts, checksums, markers or undecodable values is reported, and so are
//! corrected results PostgreSQL holds but has not yet published to Redis (`pending_publication`)
//! and the first few IDs whose values differ.

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use results_core::keys::KeyLayout;
use results_core::{ContentChecksum, StudentId, codec};

use crate::Stores;
use crate::pg::Pg;
use crate::redis_store::RedisStore;

/// What one store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSummary {
    /// Results (students with their stream's result row, or Redis hash fields).
    pub results: u64,
    /// Schools.
    pub schools: u64,
    /// Content checksum.
    pub checksum: String,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// PostgreSQL's side.
    pub postgres: StoreSummary,
    /// Redis' side.
    pub redis: StoreSummary,
    /// Corrections applied since the data set was loaded.
    pub corrections: u64,
    /// Corrected results committed in PostgreSQL and not yet published to Redis.
    pub pending: u64,
    /// Every difference found; empty when the stores agree.
    pub differences: Vec<String>,
}

/// IDs named in the report when results differ.
const SHOW_IDS: usize = 10;

impl VerifyReport {
    /// Whether the stores agree.
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }

    /// A short human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<10} {:>10} {:>8}  checksum", "store", "results", "schools");
        for (name, s) in [("postgres", &self.postgres), ("redis", &self.redis)] {
            let _ = writeln!(out, "{name:<10} {:>10} {:>8}  {}", s.results, s.schools, s.checksum);
        }
        if self.corrections > 0 || self.pending > 0 {
            let _ = writeln!(
                out,
                "corrections: {} applied since the load; {} result(s) pending publication to Redis",
                self.corrections, self.pending
            );
        }
        if self.agrees() {
            let _ = writeln!(out, "OK: PostgreSQL and Redis hold the same data set");
        } else {
            let _ = writeln!(out, "DIFFERENT: {} problem(s)", self.differences.len());
            for d in &self.differences {
                let _ = writeln!(out, "  - {d}");
            }
        }
        out
    }
}

/// Compares PostgreSQL and Redis.
pub async fn run(stores: &Stores) -> anyhow::Result<VerifyReport> {
    let pg = Pg::connect(&stores.database_url, 2).await?;
    let redis = RedisStore::connect(&stores.redis_url, stores.layout.clone()).await?;
    let mut report = VerifyReport::default();
    let differences = &mut report.differences;

    // PostgreSQL.
    let dataset = pg.dataset().await?;
    match &dataset {
        None => differences.push("PostgreSQL holds no data set (never seeded)".to_owned()),
        Some(row) if !row.complete => {
            differences.push("PostgreSQL holds an unfinished load; run the seeder again".to_owned())
        }
        Some(_) => {}
    }
    let (corrections, pending, pending_since, pending_ids) = pg.corrections_summary().await?;
    report.corrections = corrections;
    report.pending = pending;
    if pending > 0 {
        let ids: Vec<String> = pending_ids.iter().map(i32::to_string).collect();
        differences.push(format!(
            "{pending} corrected result(s) are committed in PostgreSQL but not yet published to Redis (pending since \
             {}; e.g. {}): Redis serves their previous values; run `seeder publish`",
            pending_since.as_deref().unwrap_or("?"),
            ids.join(", ")
        ));
    }
    let counts = pg.counts().await?;
    let mut pg_sum = ContentChecksum::new();
    for school in pg.read_schools().await? {
        pg_sum.add_school(&school);
    }
    let pg_records = pg.read_results(None).await?;
    for record in &pg_records {
        pg_sum.add_result(record);
    }
    if counts.students != pg_sum.results() {
        differences.push(format!(
            "PostgreSQL has {} students but {} with a result in their stream's table",
            counts.students,
            pg_sum.results()
        ));
    }
    let result_rows = counts.natural_science + counts.social_science;
    if result_rows != pg_sum.results() {
        differences.push(format!("PostgreSQL has {result_rows} result rows but {} match a student", pg_sum.results()));
    }
    report.postgres = StoreSummary { results: pg_sum.results(), schools: pg_sum.schools(), checksum: pg_sum.finish() };
    // The data set records its ID range: it must be the range PostgreSQL holds.
    let held = pg_records.first().zip(pg_records.last()).map(|(first, last)| (first.id.get(), last.id.get()));
    if let Some(row) = dataset.as_ref().filter(|row| row.complete)
        && held.is_some_and(|held| held != (row.first_id, row.last_id))
    {
        let (first, last) = held.unwrap_or_default();
        differences.push(format!(
            "PostgreSQL holds IDs {first}..{last} but its data set records {}..{}",
            row.first_id, row.last_id
        ));
    }
    if let Some(recorded) = dataset.as_ref().and_then(|d| d.fingerprint.as_deref())
        && recorded != report.postgres.checksum
    {
        differences.push(format!(
            "PostgreSQL content checksum {} differs from the fingerprint recorded at its last load or correction \
             {recorded} (changed outside the seeder?)",
            report.postgres.checksum
        ));
    }

    // Redis.
    let mut redis_sum = ContentChecksum::new();
    let mut schools = Vec::new();
    for entry in redis.read_schools_raw().await? {
        match entry {
            Ok(school) => schools.push(school),
            Err(field) => differences.push(format!("Redis schools hash has a non-numeric field {field:?}")),
        }
    }
    schools.sort_unstable_by_key(|(id, _)| *id);
    for (id, value) in &schools {
        if let Err(e) = codec::decode_school(*id, value) {
            differences.push(format!("Redis school {id} does not decode: {e}"));
        }
        redis_sum.add_encoded_school(*id, value);
    }
    let buckets = redis.bucket_numbers().await?;
    let mut undecodable = 0u64;
    let mut differing: Vec<u32> = Vec::new();
    let mut scratch = Vec::new();
    let mut reads = std::pin::pin!(redis.read_buckets(&buckets));
    while let Some((bucket, fields)) = reads.try_next().await? {
        let mut entries = Vec::with_capacity(fields.len());
        for (field, value) in fields {
            match field.parse::<u32>().ok().and_then(|f| KeyLayout::id_at(bucket, f)) {
                Some(id) => entries.push((id, value)),
                None => differences.push(format!("Redis bucket {bucket} has an invalid field {field:?}")),
            }
        }
        entries.sort_unstable_by_key(|(id, _)| *id);
        for (id, value) in entries {
            if codec::decode_result(id, &value).is_err() {
                undecodable += 1;
            }
            // Name the results that differ, not only the checksum: PostgreSQL's are in ID order.
            if let Ok(at) = pg_records.binary_search_by_key(&id, |r| r.id) {
                scratch.clear();
                codec::encode_result_into(&pg_records[at], &mut scratch);
                if scratch != value {
                    differing.push(id.get());
                }
            }
            redis_sum.add_encoded_result(StudentId::get(id), &value);
        }
    }
    if !differing.is_empty() {
        differing.sort_unstable();
        let ids: Vec<String> = differing.iter().take(SHOW_IDS).map(u32::to_string).collect();
        differences.push(format!(
            "{} result(s) differ between PostgreSQL and Redis: {}{}",
            differing.len(),
            ids.join(", "),
            if differing.len() > SHOW_IDS { ", …" } else { "" }
        ));
    }
    if undecodable > 0 {
        differences.push(format!(
            "{undecodable} Redis value(s) do not decode with codec versions {:?}",
            results_core::READABLE_CODEC_VERSIONS
        ));
    }
    report.redis =
        StoreSummary { results: redis_sum.results(), schools: redis_sum.schools(), checksum: redis_sum.finish() };

    // Markers.
    match redis.marker().await? {
        None => differences.push("Redis has no completeness marker (the API cannot trust a miss)".to_owned()),
        Some(marker) => {
            if marker.count != report.redis.results {
                differences.push(format!(
                    "Redis marker says {} results but Redis holds {}",
                    marker.count, report.redis.results
                ));
            }
            if let Some(row) = &dataset
                && (marker.first_id, marker.last_id) != (row.first_id, row.last_id)
            {
                differences.push(format!(
                    "Redis marker says IDs {}..{}, PostgreSQL's data set {}..{}",
                    marker.first_id, marker.last_id, row.first_id, row.last_id
                ));
            }
            if marker.fingerprint != report.redis.checksum {
                differences.push(format!(
                    "Redis marker fingerprint {} differs from the content checksum {}",
                    marker.fingerprint, report.redis.checksum
                ));
            }
        }
    }
    if report.postgres.results != report.redis.results {
        differences.push(format!("PostgreSQL has {} results, Redis {}", report.postgres.results, report.redis.results));
    }
    if report.postgres.schools != report.redis.schools {
        differences.push(format!("PostgreSQL has {} schools, Redis {}", report.postgres.schools, report.redis.schools));
    }
    if report.postgres.checksum != report.redis.checksum {
        differences.push("content checksums differ: some results differ between PostgreSQL and Redis".to_owned());
    }
    redis.quit().await;
    Ok(report)
}
