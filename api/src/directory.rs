//! What every request needs besides the result itself, kept in memory and refreshed in the
//! background: whether Redis holds the complete data set (the completeness marker), the schools,
//! the stream sizes, which stores are reachable, and while Redis is down the fingerprint of
//! PostgreSQL's data set (so the near cache does not answer over a correction committed meanwhile).
//!
//! Each refresh pings the PostgreSQL primary and every read replica (that is what marks a replica
//! up, down or lagging again, see `pg_servers`). The stream sizes come from the primary, a
//! replica only while the primary is down: they are read once and kept, so they must not come
//! from a replica still replaying a load; and one query per interval per API replica is no load
//! worth moving off the primary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use results_core::generate::StreamSizes;
use results_core::{FactorKind, Marker, READABLE_CODEC_VERSIONS};
use tokio_util::sync::CancellationToken;

use crate::pg_servers::{PgServers, ReplicaState};
use crate::stores::RedisTier;
use crate::view::SchoolInfo;

/// Whether lookups must present a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FactorMode {
    /// Neither store has said yet (both down since start-up): a result that carries a factor
    /// hash is then refused, never served open.
    #[default]
    Unknown,
    /// The data set is open: the registration number is enough.
    Open,
    /// Every lookup must present this factor.
    Required(FactorKind),
}

impl FactorMode {
    fn from(factor: Option<FactorKind>) -> Self {
        factor.map_or(FactorMode::Open, FactorMode::Required)
    }
}

/// The in-memory snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Whether lookups need a second factor (from the marker, else PostgreSQL's `dataset` row).
    pub factor: FactorMode,
    /// The trusted completeness marker: while present, a Redis miss is an unknown ID.
    pub marker: Option<Marker>,
    /// Schools by ID (from Redis).
    pub schools: HashMap<u32, SchoolInfo>,
    /// Students per stream (from the marker, else PostgreSQL).
    pub streams: Option<StreamSizes>,
    /// While Redis is down: the fingerprint of PostgreSQL's data set. The near cache's copy
    /// answers for Redis only while it is the same (a correction committed meanwhile changes it).
    pub pg_fingerprint: Option<String>,
}

/// Reachability of the stores and the drain flag.
#[derive(Debug, Default)]
pub struct Health {
    /// Redis answered the last refresh.
    pub redis_up: AtomicBool,
    /// The PostgreSQL primary answered the last refresh (the read replicas' marks are in
    /// [`PgServers::replica_states`]).
    pub postgres_up: AtomicBool,
    /// Shutting down: not ready for new traffic.
    pub draining: AtomicBool,
}

/// The shared directory.
#[derive(Debug, Default)]
pub struct Directory {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Store reachability.
    pub health: Health,
}

impl Directory {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().map(|s| Arc::clone(&s)).unwrap_or_default()
    }

    fn replace(&self, snapshot: Snapshot) {
        if let Ok(mut current) = self.snapshot.write() {
            *current = Arc::new(snapshot);
        }
    }

    /// Forgets the marker at once (a Redis miss found it gone).
    pub fn forget_marker(&self) {
        let current = self.snapshot();
        self.replace(Snapshot {
            factor: current.factor,
            marker: None,
            schools: current.schools.clone(),
            streams: current.streams,
            pg_fingerprint: current.pg_fingerprint.clone(),
        });
    }

    /// Re-reads the marker, schools and stream sizes, and checks both stores.
    pub async fn refresh(&self, redis: &RedisTier, pg: &PgServers) {
        let current = self.snapshot();
        let marker = redis.marker().await;
        self.health.redis_up.store(marker.is_ok(), Ordering::Relaxed);
        let postgres_up = pg.check().await;
        self.health.postgres_up.store(postgres_up, Ordering::Relaxed);
        let pg_fingerprint = match (&marker, postgres_up) {
            (Err(_), true) => pg.primary().dataset_fingerprint().await.ok().flatten(),
            _ => None,
        };

        // A marker written by another codec version describes values this build cannot read.
        let marker = marker.ok().flatten().filter(|m| READABLE_CODEC_VERSIONS.contains(&m.codec));
        let schools = match &marker {
            Some(m) if current.marker.as_ref().map(|c| &c.fingerprint) != Some(&m.fingerprint) => {
                match redis.schools().await {
                    Ok(schools) => schools,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the schools from Redis");
                        current.schools.clone()
                    }
                }
            }
            _ => current.schools.clone(),
        };
        let streams = match (&marker, current.streams) {
            (Some(m), _) => Some(m.streams),
            (None, Some(known)) => Some(known),
            (None, None) if postgres_up => pg.primary().stream_sizes().await.ok(),
            (None, None) if pg.replica_states().contains(&ReplicaState::Up) => {
                pg.read(|pg| async move { pg.stream_sizes().await }).await.ok().map(|(sizes, _)| sizes)
            }
            (None, None) => None,
        };
        if marker.is_some() != current.marker.is_some() {
            tracing::info!(complete = marker.is_some(), "Redis completeness marker changed");
        }
        // The marker says it; without one (a load under way, Redis down) PostgreSQL's dataset row.
        let factor = match &marker {
            Some(m) => FactorMode::from(m.factor),
            None if postgres_up => match pg.primary().factor().await {
                Ok(factor) => FactorMode::from(factor),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the data set's second factor from PostgreSQL");
                    current.factor
                }
            },
            None => current.factor,
        };
        if factor != current.factor {
            tracing::info!(?factor, "second-factor mode changed");
        }
        self.replace(Snapshot { factor, marker, schools, streams, pg_fingerprint });
    }

    /// Refreshes every `interval` until `stop` is cancelled.
    pub async fn keep_fresh(
        self: Arc<Self>,
        redis: RedisTier,
        pg: PgServers,
        interval: Duration,
        stop: CancellationToken,
    ) {
        // Start-up already refreshed once: wait an interval first.
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            self.refresh(&redis, &pg).await;
        }
    }
}
