//! The read path: the near cache, then Redis, then the in-process cache, then PostgreSQL. (Before
//! it, the route refuses a client or number past its failed lookups: `failed_lookups`.)
//!
//! - Near cache (`near_cache`): while its copy is complete and coherent it answers every lookup
//!   from memory, an unknown ID included, with no I/O. A data set over its budget is kept
//!   bounded: a kept bucket answers from memory, another is read whole through the near cache's
//!   tracking connection and answers (the second factor checked as on a hit); if that read
//!   times out, Redis counts as failed for the lookup (below), not asked again. Otherwise
//!   (warming, resynchronising, off, or that read failed otherwise) Redis is asked as below.
//!
//! Behind it, order by measurement (`cargo xtask bench api`, uniform random IDs over the full
//! data set): with the in-process cache in front of Redis, 8.6% of lookups hit it (few students
//! ask twice within the TTL), and it cost ~14% of throughput, 80 MB of RSS and 100 ms stalls from
//! cache housekeeping, against a Redis round trip of well under a millisecond on loopback.
//! Repeated requests for one hot ID are NGINX's micro-cache's job. So Redis answers first and the
//! in-process cache guards PostgreSQL instead: it holds what PostgreSQL served (while Redis is
//! down or incomplete) for a short TTL, and concurrent misses for one ID collapse into one query
//! (moka `try_get_with`).
//!
//! - Redis hit: decoded and rendered, always the current value. A value that does not decode
//!   (corrupt, another codec version) is counted and PostgreSQL answers instead.
//! - Redis miss while the completeness marker is present: the ID is unknown. PostgreSQL is not
//!   asked, so an ID-enumeration flood never becomes database load. The marker's presence is
//!   re-checked on each miss, because the seeder deletes it before reloading.
//! - Redis error, timeout or disconnection: counted, warned about once per interval; the near
//!   cache's copy answers if it holds one, its own connection is down too and PostgreSQL holds
//!   no newer correction (tier `near_while_redis_down`), else the in-process cache or
//!   PostgreSQL. PostgreSQL down while
//!   Redis answers: nothing changes for hits.
//! - PostgreSQL is a read replica when one answers, else the primary (`pg_servers`); the
//!   lookup is counted with the `server` that answered (`replica` or `primary`; an error is the
//!   primary's, asked last). A replica's miss is final: asking the primary too would send an
//!   ID-enumeration flood to it.
//! - Neither can answer: 503.
//! - A result that carries a second-factor hash is only answered to a lookup that presents the
//!   same hash (compared in constant time); otherwise it is an unknown ID, counted
//!   `wrong_factor`. On Redis that path also makes the miss path's marker check, so a wrong factor
//!   and an unknown number cost the same round trips: the answer's timing is no oracle either.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use results_core::{FactorHash, FactorKey, StudentId, codec};

use crate::config::Settings;
use crate::directory::{Directory, Snapshot};
use crate::near_cache::{Answer, NearCache};
use crate::pg_servers::{PgServers, Server};
use crate::stores::{RedisTier, StoreError};
use crate::telemetry::{LOOKUPS, RateLimitedWarning};
use crate::view::{RenderedResult, render};

/// Why no result can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such student.
    #[error("unknown registration number")]
    NotFound,
    /// No store could answer.
    #[error("no store could answer")]
    Unavailable,
}

/// What a stored value (from Redis or the near cache) gives a lookup.
enum Stored {
    /// The rendered result.
    Answer(Arc<RenderedResult>),
    /// A result the presented second factor does not admit: answered as an unknown ID.
    WrongFactor,
    /// Undecodable, or the directory is not loaded yet: the next tier answers.
    Unusable,
}

/// Whether a lookup presenting `presented` may see a result guarded by `stored`.
fn admits(stored: Option<&FactorHash>, presented: Option<&FactorHash>) -> bool {
    match (stored, presented) {
        (None, _) => true,
        (Some(stored), Some(presented)) => FactorKey::matches(stored, presented),
        (Some(_), None) => false,
    }
}

fn count(tier: &'static str, outcome: &'static str) {
    metrics::counter!(LOOKUPS, "tier" => tier, "outcome" => outcome).increment(1);
}

fn count_db(server: Server, outcome: &'static str) {
    metrics::counter!(LOOKUPS, "tier" => "db", "outcome" => outcome, "server" => server.label()).increment(1);
}

/// The tiered reader.
pub struct Lookup {
    cache: Cache<StudentId, Arc<RenderedResult>>,
    redis: RedisTier,
    pg: PgServers,
    directory: Arc<Directory>,
    near: Arc<NearCache>,
    redis_warning: RateLimitedWarning,
    pg_warning: RateLimitedWarning,
}

impl Lookup {
    /// A reader over the given stores.
    pub fn new(
        settings: &Settings,
        redis: RedisTier,
        pg: PgServers,
        directory: Arc<Directory>,
        near: Arc<NearCache>,
    ) -> Self {
        let cache = Cache::builder().max_capacity(settings.cache_capacity).time_to_live(settings.cache_ttl).build();
        Self {
            cache,
            redis,
            pg,
            directory,
            near,
            redis_warning: RateLimitedWarning::new(Duration::from_secs(10)),
            pg_warning: RateLimitedWarning::new(Duration::from_secs(10)),
        }
    }

    /// The rendered result for `id`, if `presented` (the keyed hash of the second factor the
    /// request carries) admits it.
    pub async fn find(
        &self,
        id: StudentId,
        presented: Option<&FactorHash>,
    ) -> Result<Arc<RenderedResult>, LookupError> {
        let snapshot = self.directory.snapshot();
        let near = match self.near.lookup(id).await {
            Ok(answer) => answer,
            // A bounded miss's read timed out: Redis is slow, do not wait for it twice.
            Err(e) => return self.redis_failed(id, &StoreError::Redis(e), &snapshot, presented).await,
        };
        if let Some(answered) = self.answer_from_copy(near, id, &snapshot, "near", presented) {
            return answered;
        }
        match self.redis.get(id).await {
            Ok(Some(bytes)) => match self.render_stored(id, &bytes, &snapshot, "redis", presented) {
                Stored::Answer(rendered) => return Ok(rendered),
                Stored::WrongFactor => {
                    // What the miss path below does, so that both take one more round trip.
                    drop(self.redis.marker_exists().await);
                    return Err(LookupError::NotFound);
                }
                Stored::Unusable => {}
            },
            Ok(None) if snapshot.marker.is_some() => match self.redis.marker_exists().await {
                Ok(true) => {
                    count("redis", "miss");
                    return Err(LookupError::NotFound);
                }
                Ok(false) => {
                    count("redis", "miss_incomplete");
                    self.directory.forget_marker();
                }
                Err(e) => return self.redis_failed(id, &e, &snapshot, presented).await,
            },
            Ok(None) => count("redis", "miss_incomplete"),
            Err(e) => return self.redis_failed(id, &e, &snapshot, presented).await,
        }
        self.cached_or_postgres(id, &snapshot, presented).await
    }

    /// The near cache's answer as the lookup's, or `None` when the next tier must answer. A
    /// wrong factor costs no I/O either, as an unknown ID: the same answer in the same time.
    fn answer_from_copy(
        &self,
        answer: Answer,
        id: StudentId,
        snapshot: &Snapshot,
        tier: &'static str,
        presented: Option<&FactorHash>,
    ) -> Option<Result<Arc<RenderedResult>, LookupError>> {
        match answer {
            Answer::Value(bytes) => match self.render_stored(id, &bytes, snapshot, tier, presented) {
                Stored::Answer(rendered) => Some(Ok(rendered)),
                Stored::WrongFactor => Some(Err(LookupError::NotFound)),
                Stored::Unusable => None,
            },
            Answer::Unknown => {
                count(tier, "miss");
                Some(Err(LookupError::NotFound))
            }
            Answer::AskRedis => None,
        }
    }

    /// A value as Redis stores it (from Redis or the near cache), rendered if `presented`
    /// admits it; unusable when it does not decode or the directory is not loaded yet
    /// (PostgreSQL answers then).
    fn render_stored(
        &self,
        id: StudentId,
        bytes: &[u8],
        snapshot: &Snapshot,
        tier: &'static str,
        presented: Option<&FactorHash>,
    ) -> Stored {
        match codec::decode_result(id, bytes) {
            Ok(record) if !admits(record.factor.as_ref(), presented) => {
                count(tier, "wrong_factor");
                return Stored::WrongFactor;
            }
            Ok(record) => {
                let school = snapshot.schools.get(&record.school_id);
                let size = snapshot.streams.map(|s| s.of(record.stream));
                if let (Some(school), Some(size)) = (school, size) {
                    count(tier, "hit");
                    return Stored::Answer(Arc::new(render(&record, school, size)));
                }
                // The directory is not loaded yet: PostgreSQL has the school.
                count(tier, "incomplete");
            }
            Err(e) => {
                count(tier, "decode_error");
                self.redis_warning.warn("a Redis value does not decode; answering from PostgreSQL", &e);
            }
        }
        Stored::Unusable
    }

    /// Redis failed: the near cache's copy answers if it can (see `near_cache`), else the
    /// in-process cache or PostgreSQL.
    async fn redis_failed(
        &self,
        id: StudentId,
        error: &StoreError,
        snapshot: &Snapshot,
        presented: Option<&FactorHash>,
    ) -> Result<Arc<RenderedResult>, LookupError> {
        count("redis", "error");
        self.redis_warning.warn("Redis cannot answer; reading PostgreSQL instead", error);
        let answer = self.near.get_while_redis_down(id, snapshot.pg_fingerprint.as_deref());
        if let Some(answered) = self.answer_from_copy(answer, id, snapshot, "near_while_redis_down", presented) {
            return answered;
        }
        self.cached_or_postgres(id, snapshot, presented).await
    }

    /// The in-process cache, else PostgreSQL (concurrent misses for one ID collapse into one
    /// query).
    async fn cached_or_postgres(
        &self,
        id: StudentId,
        snapshot: &Snapshot,
        presented: Option<&FactorHash>,
    ) -> Result<Arc<RenderedResult>, LookupError> {
        if let Some(hit) = self.cache.get(&id).await {
            if !admits(hit.factor.as_ref(), presented) {
                count("memory", "wrong_factor");
                return Err(LookupError::NotFound);
            }
            count("memory", "hit");
            return Ok(hit);
        }
        let streams = snapshot.streams;
        let found = self.cache.try_get_with(id, self.load_from_postgres(id, streams)).await.map_err(|e| *e)?;
        if !admits(found.factor.as_ref(), presented) {
            count("db", "wrong_factor");
            return Err(LookupError::NotFound);
        }
        Ok(found)
    }

    async fn load_from_postgres(
        &self,
        id: StudentId,
        streams: Option<results_core::generate::StreamSizes>,
    ) -> Result<Arc<RenderedResult>, LookupError> {
        match self.pg.read(|pg| async move { pg.get(id).await }).await {
            Ok((Some(found), server)) => {
                let size = match streams {
                    Some(s) => s.of(found.record.stream),
                    None => match self.pg.read(|pg| async move { pg.stream_sizes().await }).await {
                        Ok((s, _)) => s.of(found.record.stream),
                        Err(e) => {
                            count_db(Server::Primary, "error");
                            self.pg_warning.warn("PostgreSQL cannot count the streams", &e);
                            return Err(LookupError::Unavailable);
                        }
                    },
                };
                count_db(server, "hit");
                Ok(Arc::new(render(&found.record, &found.school, size)))
            }
            Ok((None, server)) => {
                count_db(server, "miss");
                Err(LookupError::NotFound)
            }
            Err(e) => {
                count_db(Server::Primary, "error");
                self.pg_warning.warn("PostgreSQL cannot answer", &e);
                Err(LookupError::Unavailable)
            }
        }
    }

    /// Drops every result cached from PostgreSQL (after a correction).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}
