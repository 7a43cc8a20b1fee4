//! Publishing corrections: what PostgreSQL's `pending_publication` lists goes to Redis.
//!
//! Order: every pending result is re-read from PostgreSQL and written to its Redis bucket
//! (pipelined), then the completeness marker gets the data set's new fingerprint, and only then
//! are the pending rows deleted. A Redis that is down or fails midway leaves rows behind, and
//! the retry (`seeder publish`, or `seeder correct` with any file, the same one included) writes
//! them again: writing a current value twice changes nothing, so the retry is idempotent.
//! The marker is only ever updated, never deleted: the API keeps treating a Redis miss as an
//! unknown ID throughout (corrections never add or remove students).
//!
//! Callers hold the seeder's lock ([`Pg::lock_for_load`]) so no correction or load runs between
//! reading the pending rows and deleting them.

use std::fmt;

use crate::Stores;
use crate::pg::Pg;
use crate::redis_store::RedisStore;

/// What a publication wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Results written to Redis (0: nothing was pending).
    pub published: u64,
    /// The fingerprint written to the completeness marker, when something was published.
    pub fingerprint: Option<String>,
}

/// A publication that did not finish: PostgreSQL holds corrections Redis lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublished {
    /// Results that were pending (`None`: PostgreSQL could not even say).
    pub pending: Option<u64>,
    /// Of those, results written to Redis (and no longer pending).
    pub published: u64,
    /// What went wrong.
    pub cause: String,
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fingerprint {
            None => writeln!(f, "Redis: nothing pending; it holds every corrected result"),
            Some(fingerprint) => writeln!(
                f,
                "Redis: published {} result(s); completeness marker fingerprint {fingerprint}; PostgreSQL and \
                 Redis agree",
                self.published
            ),
        }
    }
}

impl fmt::Display for Unpublished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pending {
            Some(pending) => write!(
                f,
                "PostgreSQL holds the correction (committed), but only {} of {pending} corrected result(s) were \
                 published to Redis: {}. Until they are, Redis serves the previous values of the {} student(s) still \
                 pending (and so does the API while Redis is up). Retry once Redis is back: `seeder publish` (or the same \
                 `seeder correct` command again) publishes whatever is pending",
                self.published,
                self.cause,
                pending - self.published
            ),
            None => write!(
                f,
                "PostgreSQL holds the correction (committed), but its publication to Redis could not start: {}. \
                 Until it is published, Redis serves the previous values. Retry: `seeder publish` (or the same \
                 `seeder correct` command again) publishes whatever is pending",
                self.cause
            ),
        }
    }
}

fn not_started(cause: impl fmt::Display) -> Unpublished {
    Unpublished { pending: None, published: 0, cause: format!("{cause:#}") }
}

/// Publishes every pending result. The caller holds the seeder's lock.
pub async fn run(pg: &Pg, stores: &Stores) -> Result<Published, Unpublished> {
    let pending = pg.pending_publication().await.map_err(not_started)?;
    if pending.is_empty() {
        return Ok(Published { published: 0, fingerprint: None });
    }
    let total = pending.len() as u64;
    let failed = |published: u64, cause: String| Unpublished { pending: Some(total), published, cause };
    let dataset = pg
        .dataset()
        .await
        .map_err(|e| failed(0, format!("{e:#}")))?
        .filter(|d| d.complete)
        .ok_or_else(|| failed(0, "PostgreSQL holds no complete data set".to_owned()))?;
    let Some(fingerprint) = dataset.fingerprint.clone() else {
        return Err(failed(0, "PostgreSQL's data set has no fingerprint".to_owned()));
    };
    let redis =
        RedisStore::connect(&stores.redis_url, stores.layout.clone()).await.map_err(|e| failed(0, format!("{e:#}")))?;
    let outcome = publish_to(pg, &redis, &pending, &fingerprint, &dataset).await;
    redis.quit().await;
    outcome.map_err(|(published, cause)| failed(published, cause))
}

async fn publish_to(
    pg: &Pg,
    redis: &RedisStore,
    pending: &[results_core::StudentId],
    fingerprint: &str,
    dataset: &crate::pg::DatasetRow,
) -> Result<Published, (u64, String)> {
    // Writing results into a Redis that does not hold the data set would not make it whole.
    match redis.marker().await.map_err(|e| (0, format!("{e:#}")))? {
        None => {
            return Err((
                0,
                format!(
                    "Redis at {} holds no completeness marker (never loaded, or restarted empty); load it from \
                     PostgreSQL with `seeder load` instead, which publishes the corrections too",
                    redis.target()
                ),
            ));
        }
        Some(marker) if marker.count != u64::from(dataset.students) || marker.seed != dataset.seed => {
            return Err((
                0,
                format!(
                    "Redis at {} holds another data set ({} students, seed {}; PostgreSQL: {}, seed {}); load it \
                     from PostgreSQL with `seeder load` instead",
                    redis.target(),
                    marker.count,
                    marker.seed,
                    dataset.students,
                    dataset.seed
                ),
            ));
        }
        Some(_) => {}
    }
    let records = pg.read_results_of(pending).await.map_err(|e| (0, format!("{e:#}")))?;
    let (written, error) = redis.write_some_results(&records).await;
    if let Some(error) = error {
        // What did reach Redis is current there: only the rest stays pending. Should this fail
        // too, those rows stay pending and the retry writes the same values again: harmless.
        if let Err(e) = pg.clear_pending(&written).await {
            tracing::warn!("{e:#}");
        }
        return Err((written.len() as u64, error));
    }
    redis.set_marker_fingerprint(fingerprint).await.map_err(|e| (written.len() as u64, format!("{e:#}")))?;
    // A pending ID without a result row (never expected) has nothing to publish: clear it too.
    pg.clear_pending(pending).await.map_err(|e| (written.len() as u64, format!("{e:#}")))?;
    Ok(Published { published: written.len() as u64, fingerprint: Some(fingerprint.to_owned()) })
}

/// `seeder publish`: takes the seeder's lock and publishes whatever is pending.
pub async fn run_command(stores: &Stores) -> anyhow::Result<Result<Published, Unpublished>> {
    let pg = Pg::connect(&stores.database_url, 2).await?;
    pg.migrate(&stores.database_url).await?;
    let _lock = pg.lock_for_load().await?;
    Ok(run(&pg, stores).await)
}
