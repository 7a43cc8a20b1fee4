//! PostgreSQL as the read path sees it: the primary and its read replicas (streaming standbys),
//! one pool each. Reads go to a replica marked up, round robin, each bounded by the short replica
//! timeout; the primary answers only when no replica does.
//!
//! Health marks keep a dead replica cheap: a replica that fails a read is marked down at once
//! and skipped until the directory refresh finds it answering again, so it costs a request its
//! timeout once (more only for requests already on their way to it), not on every request.
//!
//! Lag: a replica serves what it has replayed. At every refresh the primary's WAL position is
//! noted; at the next refresh a replica that has not replayed up to it is marked lagging and
//! skipped like a down one, so a read from a replica is at most about one refresh interval
//! behind the primary (while the primary answers its pings; without the primary there is nothing
//! to compare with, and replicas keep serving).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::Settings;
use crate::stores::{PgTier, StoreError};
use crate::telemetry::{DB_REPLICA_ERRORS, RateLimitedWarning};

/// Which kind of server answered: the `server` label of the PostgreSQL lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// A read replica.
    Replica,
    /// The primary.
    Primary,
}

impl Server {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Server::Replica => "replica",
            Server::Primary => "primary",
        }
    }
}

/// A replica's health mark, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// Answering and caught up: reads go to it.
    Up = 0,
    /// Failed a read or a ping: skipped until it answers a ping.
    Down = 1,
    /// Answering, but behind the primary's WAL position of the previous refresh: skipped.
    Lagging = 2,
}

impl ReplicaState {
    /// The `/readyz` word.
    pub fn label(self) -> &'static str {
        match self {
            ReplicaState::Up => "up",
            ReplicaState::Down => "down",
            ReplicaState::Lagging => "lagging",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => ReplicaState::Up,
            2 => ReplicaState::Lagging,
            _ => ReplicaState::Down,
        }
    }
}

struct Replica {
    tier: PgTier,
    /// A [`ReplicaState`] as u8; starts down until the first refresh pings it.
    state: AtomicU8,
}

impl Replica {
    fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn mark(&self, state: ReplicaState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

struct Inner {
    primary: PgTier,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    /// The primary's WAL position at the previous refresh (-1: unknown).
    primary_wal: AtomicI64,
    warning: RateLimitedWarning,
}

/// The primary and its read replicas.
#[derive(Clone)]
pub struct PgServers(Arc<Inner>);

impl PgServers {
    /// One pool for the primary and one per replica, none connected yet.
    pub fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let primary = PgTier::connect(settings)?;
        let replicas = settings
            .database_replica_urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let tier = PgTier::open(url, settings.pg_pool_size, settings.pg_replica_timeout, settings.pg_timeout)
                    .map_err(|e| {
                    anyhow::anyhow!("DATABASE_REPLICA_URLS: entry {} is not a valid PostgreSQL URL: {e}", i + 1)
                })?;
                Ok(Replica { tier, state: AtomicU8::new(ReplicaState::Down as u8) })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self(Arc::new(Inner {
            primary,
            replicas,
            next: AtomicUsize::new(0),
            primary_wal: AtomicI64::new(-1),
            warning: RateLimitedWarning::new(Duration::from_secs(10)),
        })))
    }

    /// The primary.
    pub fn primary(&self) -> &PgTier {
        &self.0.primary
    }

    /// Runs `work` on the next replica marked up (round robin), then on the others marked up,
    /// then on the primary; returns the first answer and who gave it, or the primary's error. A
    /// replica that fails is marked down and counted.
    pub async fn read<T, F, Fut>(&self, work: F) -> Result<(T, Server), StoreError>
    where
        F: Fn(PgTier) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let replicas = &self.0.replicas;
        if !replicas.is_empty() {
            let start = self.0.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..replicas.len() {
                let replica = &replicas[(start + i) % replicas.len()];
                if replica.state() != ReplicaState::Up {
                    continue;
                }
                match work(replica.tier.clone()).await {
                    Ok(answer) => return Ok((answer, Server::Replica)),
                    Err(e) => {
                        replica.mark(ReplicaState::Down);
                        metrics::counter!(DB_REPLICA_ERRORS).increment(1);
                        self.0
                            .warning
                            .warn("a PostgreSQL read replica cannot answer; marked down, asking the next", &e);
                    }
                }
            }
        }
        work(self.0.primary.clone()).await.map(|answer| (answer, Server::Primary))
    }

    /// Pings the primary and every replica at once and updates the replicas' marks (up, down,
    /// or lagging behind the primary's position of the previous call). Returns whether the
    /// primary answered. Takes at most the longer of the two timeouts: a check may have to open
    /// a connection, which the short replica read timeout would not always allow.
    pub async fn check(&self) -> bool {
        let inner = &self.0;
        let primary = inner.primary.wal_position();
        let replicas = join_all(inner.replicas.iter().map(|r| r.tier.wal_position()));
        let (primary, replicas) = tokio::join!(primary, replicas);
        let behind_of = inner.primary_wal.load(Ordering::Relaxed);
        for (i, (replica, position)) in inner.replicas.iter().zip(replicas).enumerate() {
            let state = match position {
                Ok(position) if behind_of >= 0 && position < behind_of => ReplicaState::Lagging,
                Ok(_) => ReplicaState::Up,
                Err(_) => ReplicaState::Down,
            };
            let before = replica.state();
            if state != before {
                let replica = i + 1;
                match state {
                    ReplicaState::Up => tracing::info!(replica, "PostgreSQL read replica is up"),
                    ReplicaState::Down => tracing::warn!(replica, "PostgreSQL read replica does not answer"),
                    ReplicaState::Lagging => tracing::warn!(
                        replica,
                        behind_bytes = behind_of.saturating_sub(position.as_ref().copied().unwrap_or(0)),
                        "PostgreSQL read replica lags behind the primary; reading elsewhere until it catches up"
                    ),
                }
            }
            replica.mark(state);
        }
        match primary {
            Ok(position) => {
                inner.primary_wal.store(position, Ordering::Relaxed);
                true
            }
            Err(_) => {
                inner.primary_wal.store(-1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Every replica's mark, in the order of `DATABASE_REPLICA_URLS`.
    pub fn replica_states(&self) -> Vec<ReplicaState> {
        self.0.replicas.iter().map(Replica::state).collect()
    }

    /// Connections open and idle: the primary's, and all replicas' together.
    pub fn pool_usage(&self) -> [(Server, u32, usize); 2] {
        let (mut open, mut idle) = (0, 0);
        for replica in &self.0.replicas {
            let (o, i) = replica.tier.pool_usage();
            open += o;
            idle += i;
        }
        let (primary_open, primary_idle) = self.0.primary.pool_usage();
        [(Server::Primary, primary_open, primary_idle), (Server::Replica, open, idle)]
    }

    /// Closes every pool.
    pub async fn close(&self) {
        join_all(self.0.replicas.iter().map(|r| r.tier.close())).await;
        self.0.primary.close().await;
    }
}
