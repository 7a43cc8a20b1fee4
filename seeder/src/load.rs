//! The load plan: look at what both stores hold, then do only what is missing.
//!
//! | PostgreSQL holds            | Redis marker          | without `--force`                     |
//! |-----------------------------|-----------------------|---------------------------------------|
//! | this data set, complete     | matches               | nothing ("already seeded")            |
//! | this data set, complete     | missing or different  | load Redis from PostgreSQL            |
//! | nothing, or a killed load   | anything              | generate, load PostgreSQL, then Redis |
//! | another data set, complete  | anything              | refuse: replacing needs `--force`     |
//!
//! `--force` always generates and loads both stores. Redis is only written after PostgreSQL has
//! committed, and its marker is written last.
//!
//! Corrections (`seeder correct`) change PostgreSQL's content and its recorded fingerprint, and,
//! once published, the Redis marker's: a plain run keeps them (it finds the two fingerprints
//! equal, or reloads Redis from PostgreSQL, corrections included, and clears what was pending).
//! `--force` regenerates the data set, which would silently undo them: it is refused while
//! corrections exist unless `--discard-corrections` is given too.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::bail;
use results_core::generate::StreamSizes;
use results_core::record::{ResultRecord, School};
use results_core::{CODEC_VERSION, ContentChecksum, Dataset, DatasetSpec, GENERATOR_VERSION};

use crate::Stores;
use crate::pg::Pg;
use crate::progress::{PhaseReport, Progress, ProgressMode};
use crate::redis_store::{Marker, RedisStore};

/// Everything a load needs.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// The stores to load.
    pub stores: Stores,
    /// The data set to load.
    pub spec: DatasetSpec,
    /// Reload both stores even if they already hold the data set, and allow replacing another.
    pub force: bool,
    /// PostgreSQL connections used in parallel for COPY and index builds.
    pub pg_connections: usize,
    /// How to show progress.
    pub progress: ProgressMode,
}

/// What a load did.
#[derive(Debug, Clone)]
pub enum LoadOutcome {
    /// Both stores already held the data set; nothing was written.
    AlreadySeeded {
        /// The marker found in Redis.
        marker: Marker,
    },
    /// Something was loaded.
    Loaded {
        /// Whether PostgreSQL was loaded (otherwise only Redis, from PostgreSQL).
        postgres: bool,
        /// The marker written to Redis.
        marker: Marker,
        /// Per-phase rows and times.
        phases: Vec<PhaseReport>,
        /// Wall-clock time of the whole run, connections included.
        total: Duration,
    },
}

fn fingerprint(schools: &[School], records: &[ResultRecord]) -> String {
    let mut sum = ContentChecksum::new();
    schools.iter().for_each(|s| sum.add_school(s));
    records.iter().for_each(|r| sum.add_result(r));
    sum.finish()
}

/// Runs the load plan (refusing `--force` while corrections exist).
pub async fn run(settings: &LoadSettings) -> anyhow::Result<LoadOutcome> {
    run_with(settings, false).await
}

/// Runs the load plan; with `discard_corrections`, `--force` may drop corrections.
pub async fn run_with(settings: &LoadSettings, discard_corrections: bool) -> anyhow::Result<LoadOutcome> {
    let started = Instant::now();
    let spec = settings.spec;
    let pg = Pg::connect(&settings.stores.database_url, settings.pg_connections).await?;
    let redis = RedisStore::connect(&settings.stores.redis_url, settings.stores.layout.clone()).await?;
    // Fail before spending minutes on PostgreSQL if Redis will refuse the results anyway.
    redis.check_writable().await?;
    pg.migrate(&settings.stores.database_url).await?;
    let _lock = pg.lock_for_load().await?;

    let row = pg.dataset().await?;
    if let Some(row) = &row
        && row.complete
        && !row.describes(spec)
        && !settings.force
    {
        bail!(
            "PostgreSQL at {} already holds another data set (seed {}, {} students, generator v{}); \
             pass --force to replace it with seed {}, {} students",
            pg.target(),
            row.seed,
            row.students,
            row.generator_version,
            spec.seed(),
            spec.students()
        );
    }
    let (corrections, last_correction) = pg.live_corrections().await?;
    if settings.force && corrections > 0 && !discard_corrections {
        bail!(
            "PostgreSQL at {} holds {corrections} correction(s) applied since the data set was loaded (the last at {}); \
             --force would regenerate the data set and drop them. Run without --force to keep them (it reloads \
             whatever Redis lacks from PostgreSQL), or add --discard-corrections to drop them",
            pg.target(),
            last_correction.as_deref().unwrap_or("an unknown time")
        );
    }
    if corrections > 0 && !settings.force {
        tracing::info!(corrections, "the data set carries corrections; they are kept");
    }
    let pg_fingerprint = row.as_ref().filter(|r| r.complete && r.describes(spec)).and_then(|r| r.fingerprint.clone());
    let marker = redis.marker().await?;
    if let (Some(fingerprint), Some(marker)) = (&pg_fingerprint, &marker)
        && !settings.force
        && marker.fingerprint == *fingerprint
        && marker.count == u64::from(spec.students())
        && marker.codec == CODEC_VERSION
        && marker.generator == GENERATOR_VERSION
    {
        redis.quit().await;
        return Ok(LoadOutcome::AlreadySeeded { marker: marker.clone() });
    }

    let progress = Progress::new(settings.progress);
    let mut phases = Vec::new();
    let load_postgres = settings.force || pg_fingerprint.is_none();
    let (schools, records, fingerprint) = if load_postgres {
        let phase = progress.phase("generate", u64::from(spec.students()));
        let (schools, records, fingerprint) = tokio::task::spawn_blocking(move || {
            let dataset = Dataset::new(spec);
            let records = dataset.generate();
            let fingerprint = fingerprint(dataset.schools(), &records);
            (dataset.schools().to_vec(), records, fingerprint)
        })
        .await?;
        phase.inc(records.len() as u64);
        phases.push(phase.finish(records.len() as u64));

        let rows = (schools.len() + 2 * records.len()) as u64;
        let phase = progress.phase("postgres", rows);
        pg.begin_load(spec).await?;
        let copied = pg.copy_all(&schools, &records, &phase).await?;
        tracing::info!("postgres: rows copied; building keys and indexes");
        pg.restore_constraints().await?;
        pg.finish_load(&fingerprint).await?;
        phases.push(phase.finish(copied));
        (schools, records, fingerprint)
    } else {
        tracing::info!("PostgreSQL at {} already holds this data set; loading Redis from it", pg.target());
        let phase = progress.phase("read pg", u64::from(spec.students()));
        let schools = pg.read_schools().await?;
        let records = pg.read_results(Some(&phase)).await?;
        let fingerprint = fingerprint(&schools, &records);
        if pg_fingerprint.as_deref() != Some(fingerprint.as_str()) {
            tracing::warn!(
                "PostgreSQL content differs from the fingerprint recorded at load time; Redis gets what PostgreSQL holds now"
            );
        }
        phases.push(phase.finish(records.len() as u64));
        (schools, records, fingerprint)
    };

    let phase = progress.phase("redis", records.len() as u64);
    let cleared = redis.clear().await?;
    if cleared > 0 {
        tracing::info!(keys = cleared, "redis: removed the previous keys of this prefix");
    }
    redis.write_schools(&schools).await?;
    let written = redis.write_results(&records, &phase).await?;
    let marker = redis.write_marker(&fingerprint, written, spec.seed(), StreamSizes::count(&records)).await?;
    // Redis now holds every result as PostgreSQL has it: no correction is left to publish.
    pg.clear_all_pending().await?;
    phases.push(phase.finish(written));
    redis.quit().await;
    Ok(LoadOutcome::Loaded { postgres: load_postgres, marker, phases, total: started.elapsed() })
}

impl LoadOutcome {
    /// A short human-readable report for standard output.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            LoadOutcome::AlreadySeeded { marker } => {
                let _ = writeln!(
                    out,
                    "already seeded: PostgreSQL and Redis hold this data set ({} students, seed {}, fingerprint {}); \
                     nothing to do (--force reloads)",
                    marker.count, marker.seed, marker.fingerprint
                );
            }
            LoadOutcome::Loaded { postgres, marker, phases, total } => {
                let stores = if *postgres { "PostgreSQL and Redis" } else { "Redis (from PostgreSQL)" };
                let _ = writeln!(
                    out,
                    "seeded {} students (seed {}) into {stores}; fingerprint {}",
                    marker.count, marker.seed, marker.fingerprint
                );
                let _ = writeln!(out, "{:<10} {:>12} {:>10} {:>14}", "phase", "rows", "seconds", "rows/s");
                for p in phases {
                    let _ = writeln!(
                        out,
                        "{:<10} {:>12} {:>10.2} {:>14.0}",
                        p.name,
                        p.rows,
                        p.elapsed.as_secs_f64(),
                        p.rate()
                    );
                }
                let _ = writeln!(out, "{:<10} {:>12} {:>10.2}", "total", "", total.as_secs_f64());
            }
        }
        out
    }
}
