//! The load plan: look at what both stores hold, then do only what is missing.
//!
//! | PostgreSQL holds            | Redis marker          | without `--force`                     |
//! |-----------------------------|-----------------------|---------------------------------------|
//! | this data set, complete     | matches               | nothing ("already seeded")            |
//! | this data set, complete     | missing or different  | load Redis from PostgreSQL            |
//! | nothing, or a killed load   | anything              | generate, load PostgreSQL, then Redis |
//! | another data set, complete  | anything              | refuse: replacing needs `--force`     |
//!
//! `seeder import` follows the same plan for a results file (`crate::import`): "this data set"
//! is then the same file, byte for byte.
//!
//! `--force` always generates (or reads the file) and loads both stores. Redis is only written after PostgreSQL has
//! committed, and its marker is written last.
//!
//! Corrections (`seeder correct`) change PostgreSQL's content and its recorded fingerprint, and,
//! once published, the Redis marker's: a plain run keeps them (it finds the two fingerprints
//! equal, or reloads Redis from PostgreSQL, corrections included, and clears what was pending).
//! `--force` regenerates the data set, which would silently undo them: it is refused while
//! corrections exist unless `--discard-corrections` is given too.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use results_core::factor::generated_pin;
use results_core::generate::StreamSizes;
use results_core::record::{ResultRecord, School};
use results_core::{ContentChecksum, Dataset, DatasetSpec, FactorKey, FactorKind};

use crate::Stores;
use crate::origin::Origin;
use crate::pg::Pg;
use crate::progress::{Phase, PhaseReport, Progress, ProgressMode};
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
    /// Give every student a PIN (derived from the seed and the ID, see
    /// [`results_core::factor::generated_pin`]) and require it, hashed with this key.
    pub pins: Option<FactorKey>,
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
    let plan = Plan {
        stores: &settings.stores,
        force: settings.force,
        discard_corrections,
        pg_connections: settings.pg_connections,
        progress: settings.progress,
    };
    let factor = settings.pins.as_ref().map(|_| FactorKind::Pin);
    plan.execute(&Generated(Origin::Generated(settings.spec, factor), settings.pins.clone())).await
}

/// A data set held in memory, with its fingerprint.
pub(crate) struct InMemory {
    schools: Vec<School>,
    records: Vec<ResultRecord>,
    fingerprint: String,
}

/// What [`Rows::copy`] did.
pub(crate) struct Copied {
    /// Rows copied.
    pub rows: u64,
    /// The data set's fingerprint, when the source computed it.
    pub fingerprint: Option<String>,
}

/// Where the rows of a load come from: the plan below is the same for every origin.
pub(crate) trait Rows {
    /// What is being loaded.
    fn origin(&self) -> &Origin;

    /// Whatever must happen before PostgreSQL is touched; a source that holds every row in
    /// memory anyway returns them, so Redis is loaded from them rather than read back.
    async fn prepare(&self, progress: &Progress, phases: &mut Vec<PhaseReport>) -> anyhow::Result<Option<InMemory>>;

    /// Copies every row into PostgreSQL's emptied tables (inside a started load); returns the
    /// rows copied and, when the source could compute it on the way, the fingerprint (else it is
    /// read back from PostgreSQL).
    async fn copy(&self, pg: &Pg, prepared: Option<&InMemory>, phase: &Phase) -> anyhow::Result<Copied>;
}

/// The generated data set, and the key of its PINs when it has them.
struct Generated(Origin, Option<FactorKey>);

impl Rows for Generated {
    fn origin(&self) -> &Origin {
        &self.0
    }

    async fn prepare(&self, progress: &Progress, phases: &mut Vec<PhaseReport>) -> anyhow::Result<Option<InMemory>> {
        let Origin::Generated(spec, _) = self.0 else { bail!("a generated load needs a generated origin") };
        let phase = progress.phase("generate", u64::from(spec.students()));
        let key = self.1.clone();
        let generated = tokio::task::spawn_blocking(move || {
            let dataset = Dataset::new(spec);
            let mut records = dataset.generate();
            if let Some(key) = key {
                for record in &mut records {
                    let pin = generated_pin(spec.seed(), record.id.get());
                    record.factor = Some(key.hash(FactorKind::Pin, &pin));
                }
            }
            let fingerprint = fingerprint(dataset.schools(), &records);
            InMemory { schools: dataset.schools().to_vec(), records, fingerprint }
        })
        .await?;
        phase.inc(generated.records.len() as u64);
        phases.push(phase.finish(generated.records.len() as u64));
        Ok(Some(generated))
    }

    async fn copy(&self, pg: &Pg, prepared: Option<&InMemory>, phase: &Phase) -> anyhow::Result<Copied> {
        let data = prepared.context("the generated rows were not prepared")?;
        let rows = pg.copy_all(&data.schools, &data.records, phase).await?;
        Ok(Copied { rows, fingerprint: Some(data.fingerprint.clone()) })
    }
}

/// How a load runs, whatever its rows' origin.
pub(crate) struct Plan<'a> {
    /// The stores to load.
    pub stores: &'a Stores,
    /// Reload both stores even if they already hold the data set, and allow replacing another.
    pub force: bool,
    /// With `force`: drop corrections applied since the data set was loaded.
    pub discard_corrections: bool,
    /// PostgreSQL connections used in parallel for COPY and index builds.
    pub pg_connections: usize,
    /// How to show progress.
    pub progress: ProgressMode,
}

/// Results per batch when Redis is loaded from PostgreSQL: bounds memory whatever the data set's
/// size, and keeps the pipeline of `HSET`s full.
const REDIS_BATCH: usize = 20_000;

impl Plan<'_> {
    /// Looks at both stores, then loads what is missing (see the module documentation).
    pub(crate) async fn execute(&self, rows: &impl Rows) -> anyhow::Result<LoadOutcome> {
        let started = Instant::now();
        let origin = rows.origin();
        let pg = Pg::connect(&self.stores.database_url, self.pg_connections).await?;
        let redis = RedisStore::connect(&self.stores.redis_url, self.stores.layout.clone()).await?;
        // Fail before spending minutes on PostgreSQL if Redis will refuse the results anyway.
        redis.check_writable().await?;
        pg.migrate(&self.stores.database_url).await?;
        let _lock = pg.lock_for_load().await?;

        let row = pg.dataset().await?;
        if let Some(row) = &row
            && row.complete
            && !row.describes(origin)
            && !self.force
        {
            bail!(
                "PostgreSQL at {} already holds another data set ({}); pass --force to replace it with {}",
                pg.target(),
                row.describe(),
                origin.describe()
            );
        }
        let (corrections, last_correction) = pg.live_corrections().await?;
        if self.force && corrections > 0 && !self.discard_corrections {
            bail!(
                "PostgreSQL at {} holds {corrections} correction(s) applied since the data set was loaded (the last at {}); \
                 --force would reload the data set and drop them. Run without --force to keep them (it reloads \
                 whatever Redis lacks from PostgreSQL), or add --discard-corrections to drop them",
                pg.target(),
                last_correction.as_deref().unwrap_or("an unknown time")
            );
        }
        if corrections > 0 && !self.force {
            tracing::info!(corrections, "the data set carries corrections; they are kept");
        }
        let pg_fingerprint =
            row.as_ref().filter(|r| r.complete && r.describes(origin)).and_then(|r| r.fingerprint.clone());
        let marker = redis.marker().await?;
        if let (Some(fingerprint), Some(marker)) = (&pg_fingerprint, &marker)
            && !self.force
            && marker.fingerprint == *fingerprint
            && marker.count == u64::from(origin.students())
            && marker.codec == origin.codec()
            && marker.factor == origin.factor()
            && marker.generator == origin.generator()
            && (marker.first_id, marker.last_id) == origin.id_range()
        {
            redis.quit().await;
            return Ok(LoadOutcome::AlreadySeeded { marker: marker.clone() });
        }

        let progress = Progress::new(self.progress);
        let mut phases = Vec::new();
        let load_postgres = self.force || pg_fingerprint.is_none();
        let marker = if load_postgres {
            let prepared = rows.prepare(&progress, &mut phases).await?;
            let phase = progress.phase("postgres", u64::from(origin.students()) * 2);
            pg.begin_load(origin).await?;
            let copied = rows.copy(&pg, prepared.as_ref(), &phase).await?;
            tracing::info!("postgres: rows copied; building keys and indexes");
            pg.restore_constraints().await?;
            let fingerprint = match copied.fingerprint {
                Some(fingerprint) => fingerprint,
                // Rows that arrived out of ID order: PostgreSQL hands them back in ID order.
                None => pg.checksum().await?.finish(),
            };
            pg.finish_load(&fingerprint).await?;
            phases.push(phase.finish(copied.rows));
            match prepared {
                Some(data) => {
                    let phase = progress.phase("redis", data.records.len() as u64);
                    clear(&redis).await?;
                    redis.write_schools(&data.schools).await?;
                    let written = redis.write_results(&data.records, &phase).await?;
                    let streams = StreamSizes::count(&data.records);
                    let marker = redis.write_marker(&data.fingerprint, written, origin, streams).await?;
                    phases.push(phase.finish(written));
                    marker
                }
                None => redis_from_pg(&pg, &redis, origin, Some(&fingerprint), &progress, &mut phases).await?,
            }
        } else {
            tracing::info!("PostgreSQL at {} already holds this data set; loading Redis from it", pg.target());
            redis_from_pg(&pg, &redis, origin, pg_fingerprint.as_deref(), &progress, &mut phases).await?
        };
        // Redis now holds every result as PostgreSQL has it: no correction is left to publish.
        pg.clear_all_pending().await?;
        redis.quit().await;
        Ok(LoadOutcome::Loaded { postgres: load_postgres, marker, phases, total: started.elapsed() })
    }
}

/// Deletes the marker, then every key of the layout.
async fn clear(redis: &RedisStore) -> anyhow::Result<()> {
    let cleared = redis.clear().await?;
    if cleared > 0 {
        tracing::info!(keys = cleared, "redis: removed the previous keys of this prefix");
    }
    Ok(())
}

/// Loads Redis from what PostgreSQL holds, streamed in batches (memory bounded by a batch), and
/// writes the marker with the checksum of what was written.
async fn redis_from_pg(
    pg: &Pg,
    redis: &RedisStore,
    origin: &Origin,
    recorded: Option<&str>,
    progress: &Progress,
    phases: &mut Vec<PhaseReport>,
) -> anyhow::Result<Marker> {
    let phase = progress.phase("redis", u64::from(origin.students()));
    clear(redis).await?;
    let schools = pg.read_schools().await?;
    redis.write_schools(&schools).await?;
    let mut sum = ContentChecksum::new();
    schools.iter().for_each(|s| sum.add_school(s));
    let mut streams = StreamSizes::default();
    let mut written = 0u64;
    pg.for_each_batch(REDIS_BATCH, |records| {
        records.iter().for_each(|r| sum.add_result(r));
        let batch = StreamSizes::count(&records);
        streams.natural_science += batch.natural_science;
        streams.social_science += batch.social_science;
        // A batch is written whole or the load fails.
        written += records.len() as u64;
        let phase = &phase;
        async move { redis.write_results(&records, phase).await.map(drop) }
    })
    .await?;
    let fingerprint = sum.finish();
    if recorded != Some(fingerprint.as_str()) {
        tracing::warn!(
            "PostgreSQL content differs from the fingerprint recorded at load time; Redis gets what PostgreSQL holds now"
        );
    }
    let marker = redis.write_marker(&fingerprint, written, origin, streams).await?;
    phases.push(phase.finish(written));
    Ok(marker)
}

/// Where the data set a marker describes came from, and its IDs, for reports.
fn source(marker: &Marker) -> String {
    // Generator version 0 is an imported file (see `Origin::generator`).
    match marker.generator {
        0 => format!("imported file, IDs {}..{}", marker.first_id, marker.last_id),
        _ => format!("seed {}, IDs {}..{}", marker.seed, marker.first_id, marker.last_id),
    }
}

impl LoadOutcome {
    /// A short human-readable report for standard output.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            LoadOutcome::AlreadySeeded { marker } => {
                let _ = writeln!(
                    out,
                    "already seeded: PostgreSQL and Redis hold this data set ({} students, {}, fingerprint {}); \
                     nothing to do (--force reloads)",
                    marker.count,
                    source(marker),
                    marker.fingerprint
                );
            }
            LoadOutcome::Loaded { postgres, marker, phases, total } => {
                let stores = if *postgres { "PostgreSQL and Redis" } else { "Redis (from PostgreSQL)" };
                let _ = writeln!(
                    out,
                    "seeded {} students ({}) into {stores}; fingerprint {}",
                    marker.count,
                    source(marker),
                    marker.fingerprint
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
