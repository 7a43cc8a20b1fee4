//! The two stores as the read path sees them. Each call is bounded in time: a store that is
//! down or slow answers with an error quickly, never a hang, and the caller falls back.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::{Pipeline, WithOptions};
use fred::prelude::*;
use fred::types::ExpireOptions;
use results_core::generate::StreamSizes;
use results_core::record::{Region, ResultRecord, Stream};
use results_core::{FactorHash, FactorKind, KeyLayout, Marker, StudentId};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::config::Settings;
use crate::view::SchoolInfo;

/// The longest pause between two attempts to reconnect to Redis, in milliseconds.
const RECONNECT_MAX_DELAY_MS: u32 = 500;

/// Why a store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed, timed out or is disconnected.
    #[error("redis: {0}")]
    Redis(#[from] Error),
    /// PostgreSQL failed or timed out.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// PostgreSQL did not answer in time.
    #[error("postgres: timed out")]
    PostgresTimeout,
    /// PostgreSQL returned a row this build cannot represent.
    #[error("postgres: bad row: {0}")]
    BadRow(String),
}

/// Redis, through a small pool of pipelined connections that reconnect by themselves.
#[derive(Clone)]
pub struct RedisTier {
    pool: Pool,
    layout: KeyLayout,
    /// Request-path commands fail at once while their client is not connected (see
    /// [`RedisTier::fast`]).
    fast: Options,
}

impl RedisTier {
    /// Builds the pool and starts connecting in the background: the API starts whether or not
    /// Redis is up, and the reconnect policy keeps trying.
    pub fn connect(settings: &Settings) -> anyhow::Result<Self> {
        // rediss:// builds fred's rustls client on the process-wide crypto provider. rustls picks
        // one itself only when a single one is compiled in, and a workspace build also has
        // aws-lc-rs (goose's reqwest): choose ring here (an error means one is already chosen).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = Config::from_url(&settings.redis_url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {}", e.details()))?;
        // The first connection's failure is reported, not retried inside `connect_pool`; the
        // reconnect policy below takes over.
        config.fail_fast = true;
        let timeout = settings.redis_timeout;
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                // Each write is an attempt, and a cluster's MOVED or ASK redirection writes the
                // command again: with 1 every redirected lookup failed over to PostgreSQL during
                // a reshard. Outages do not retry: fail_fast (below) ends those commands at once.
                c.max_command_attempts = 3;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            // fred's default is to never reconnect: retry forever, 50 ms to 500 ms apart. A cluster
            // client reconnects only once every master in the slot map answers, so after a
            // failover the next attempt is the one that succeeds: a short cap keeps that wait
            // short (a refused loopback connect twice a second costs nothing).
            .set_policy(ReconnectPolicy::new_exponential(0, 50, RECONNECT_MAX_DELAY_MS, 2))
            .build_pool(settings.redis_pool_size.max(1))
            .map_err(|e| anyhow::anyhow!("cannot configure the Redis client: {}", e.details()))?;
        drop(pool.connect_pool());
        // `Config::fail_fast` only concerns the first connection. Per command, fred queues what
        // is sent while it reconnects until the command timeout; with this option it fails at
        // once, so the read path goes to PostgreSQL without waiting. A cluster client
        // reconnects all its nodes when one fails, so without it every lookup waited for the
        // timeout until a failed master's replica took over.
        let fast = Options { fail_fast: true, ..Options::default() };
        Ok(Self { pool, layout: settings.layout.clone(), fast })
    }

    /// A connection for the request path: its commands fail at once while it reconnects.
    fn fast(&self) -> WithOptions<Client> {
        self.pool.next().with_options(&self.fast)
    }

    /// A connection for the background refresh: its commands wait for a reconnection, up to the
    /// Redis timeout, so the refresh at start-up finds the pool connected rather than racing it.
    fn patient(&self) -> &Client {
        self.pool.next()
    }

    /// Whether at least one connection is up.
    pub fn is_connected(&self) -> bool {
        self.pool.clients().iter().any(|c| c.is_connected())
    }

    /// The stored value for `id`, if any.
    pub async fn get(&self, id: StudentId) -> Result<Option<Bytes>, StoreError> {
        let (key, field) = self.layout.result_location(id);
        Ok(self.fast().hget(key, field).await?)
    }

    /// Adds one to the counter `key`, whose window of length `window` starts at its first count;
    /// returns the count and the time left in the window. One pipelined round trip.
    pub async fn count_in_window(&self, key: &str, window: Duration) -> Result<(i64, Duration), StoreError> {
        let pipeline = Pipeline::from(self.fast());
        let () = pipeline.incr(key).await?;
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let () = pipeline.pexpire(key, window_ms, Some(ExpireOptions::NX)).await?;
        let () = pipeline.pttl(key).await?;
        let (count, _, left_ms): (i64, i64, i64) = pipeline.all().await?;
        // PTTL is negative only if the key vanished meanwhile: count the whole window then.
        let left = u64::try_from(left_ms).map_or(window, Duration::from_millis);
        Ok((count, left))
    }

    /// Whether the completeness marker exists right now.
    pub async fn marker_exists(&self) -> Result<bool, StoreError> {
        let n: u64 = self.fast().exists(self.layout.marker_key()).await?;
        Ok(n == 1)
    }

    /// The completeness marker (`None` when absent or malformed).
    pub async fn marker(&self) -> Result<Option<Marker>, StoreError> {
        // Read as bytes: a field that is not UTF-8 is a malformed marker (no marker, so misses
        // ask PostgreSQL), not a Redis failure that would mark Redis down (found by fuzzing).
        let raw: HashMap<Bytes, Bytes> = self.patient().hgetall(self.layout.marker_key()).await?;
        Ok(marker_from_fields(raw))
    }

    /// Every school stored by the seeder.
    pub async fn schools(&self) -> Result<HashMap<u32, SchoolInfo>, StoreError> {
        let fields: HashMap<String, Bytes> = self.patient().hgetall(self.layout.schools_key()).await?;
        let mut schools = HashMap::with_capacity(fields.len());
        for (field, value) in fields {
            let Ok(id) = field.parse::<u32>() else { continue };
            match results_core::codec::decode_school(id, &value) {
                Ok(school) => {
                    schools.insert(id, SchoolInfo { name: school.name, region: school.region.name });
                }
                Err(e) => tracing::warn!(school = id, error = %e, "skipping an undecodable school in Redis"),
            }
        }
        Ok(schools)
    }

    /// Closes the connections.
    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}

/// The marker from its hash fields as Redis returns them (`None`: absent or malformed; a field
/// that is not UTF-8 makes it malformed).
pub fn marker_from_fields(raw: HashMap<Bytes, Bytes>) -> Option<Marker> {
    if raw.is_empty() {
        return None;
    }
    let text = |b: Bytes| String::from_utf8(b.to_vec()).ok();
    let fields: HashMap<String, String> =
        raw.into_iter().filter_map(|(name, value)| Some((text(name)?, text(value)?))).collect();
    Marker::from_fields(&fields)
}

/// One result as read from PostgreSQL, with its school.
#[derive(Debug, Clone)]
pub struct PgResult {
    /// The record.
    pub record: ResultRecord,
    /// Its school.
    pub school: SchoolInfo,
}

/// PostgreSQL through a lazily connecting sqlx pool.
#[derive(Clone)]
pub struct PgTier {
    pool: PgPool,
    /// Bound of a read.
    timeout: Duration,
    /// Bound of a health check (the pool's acquire timeout: it may have to connect).
    check_timeout: Duration,
    /// Built once from the shared subject lists; only constants go into it.
    by_id: std::sync::Arc<str>,
}

impl PgTier {
    /// The primary's pool (`DATABASE_URL`), built without connecting: the API starts whether or
    /// not PostgreSQL is up.
    pub fn connect(settings: &Settings) -> anyhow::Result<Self> {
        Self::open(&settings.database_url, settings.pg_pool_size, settings.pg_timeout, settings.pg_timeout)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))
    }

    /// A pool of `size` connections to `url`, built without connecting: reads bounded by
    /// `timeout`, health checks (and connecting) by `check_timeout`. A new connection (TCP and
    /// SCRAM) costs more than a query on a warm one; a short read timeout on a replica must not
    /// keep its checks from ever connecting.
    pub fn open(url: &str, size: u32, timeout: Duration, check_timeout: Duration) -> Result<Self, sqlx::Error> {
        let check_timeout = check_timeout.max(timeout);
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .min_connections(0)
            .acquire_timeout(check_timeout)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy(url)?;
        let select = |stream: Stream| {
            let subjects: Vec<String> = stream.subjects().iter().map(|s| format!("r.{}", s.as_str())).collect();
            format!(
                "SELECT s.full_name, s.school_id, s.stream::text AS stream, sc.name AS school, sc.region_id, {}, \
                 r.rank_in_stream, s.factor_hash FROM students s JOIN schools sc ON sc.id = s.school_id \
                 JOIN {} r ON r.student_id = s.id WHERE s.id = $1",
                subjects.join(", "),
                match stream {
                    Stream::NaturalScience => "natural_science_results",
                    Stream::SocialScience => "social_science_results",
                }
            )
        };
        let by_id = format!("{} UNION ALL {}", select(Stream::NaturalScience), select(Stream::SocialScience)).into();
        Ok(Self { pool, timeout, check_timeout, by_id })
    }

    async fn bounded<T>(&self, work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
        Self::within(self.timeout, work).await
    }

    async fn within<T>(limit: Duration, work: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, work).await {
            Ok(outcome) => Ok(outcome?),
            Err(_) => Err(StoreError::PostgresTimeout),
        }
    }

    /// The result for `id`, if any.
    pub async fn get(&self, id: StudentId) -> Result<Option<PgResult>, StoreError> {
        let row = self
            .bounded(
                sqlx::query(sqlx::AssertSqlSafe(std::sync::Arc::clone(&self.by_id)))
                    .bind(id.get() as i32)
                    .fetch_optional(&self.pool),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bad = |e: &dyn std::fmt::Display| StoreError::BadRow(format!("student {id}: {e}"));
        let stream: String = row.try_get("stream").map_err(|e| bad(&e))?;
        let stream = Stream::from_name(&stream).ok_or_else(|| bad(&"unknown stream"))?;
        let mut scores = [0u8; 6];
        for (i, score) in scores.iter_mut().enumerate() {
            let value: i16 = row.try_get(5 + i).map_err(|e| bad(&e))?;
            *score = u8::try_from(value).map_err(|e| bad(&e))?;
        }
        let region_id: i16 = row.try_get("region_id").map_err(|e| bad(&e))?;
        let region = u8::try_from(region_id).ok().and_then(Region::by_id).ok_or_else(|| bad(&"unknown region"))?;
        let record = ResultRecord {
            id,
            name: row.try_get("full_name").map_err(|e| bad(&e))?,
            school_id: row.try_get::<i32, _>("school_id").map_err(|e| bad(&e))? as u32,
            stream,
            scores,
            rank: row.try_get::<i32, _>("rank_in_stream").map_err(|e| bad(&e))? as u32,
            factor: match row.try_get::<Option<Vec<u8>>, _>("factor_hash").map_err(|e| bad(&e))? {
                None => None,
                Some(bytes) => {
                    Some(FactorHash(bytes.try_into().map_err(|_| bad(&"a factor hash of the wrong length"))?))
                }
            },
        };
        let school = SchoolInfo { name: row.try_get("school").map_err(|e| bad(&e))?, region: region.name };
        Ok(Some(PgResult { record, school }))
    }

    /// The second factor the loaded data set requires (`dataset.factor`), if any; `None` also
    /// before any load.
    pub async fn factor(&self) -> Result<Option<FactorKind>, StoreError> {
        let row = self.bounded(sqlx::query("SELECT factor FROM dataset").fetch_optional(&self.pool)).await?;
        let Some(row) = row else { return Ok(None) };
        match row.try_get::<Option<String>, _>(0)? {
            None => Ok(None),
            Some(name) => FactorKind::from_name(&name)
                .map(Some)
                .ok_or_else(|| StoreError::BadRow(format!("dataset.factor {name:?} is not a factor this build knows"))),
        }
    }

    /// The fingerprint of the complete data set PostgreSQL holds (changed by every committed
    /// correction), if any.
    pub async fn dataset_fingerprint(&self) -> Result<Option<String>, StoreError> {
        let query = sqlx::query("SELECT fingerprint FROM dataset WHERE state = 'complete'");
        let row = self.bounded(query.fetch_optional(&self.pool)).await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }

    /// Students per stream.
    pub async fn stream_sizes(&self) -> Result<StreamSizes, StoreError> {
        let row = self
            .bounded(
                sqlx::query(
                    "SELECT (SELECT count(*) FROM natural_science_results), (SELECT count(*) FROM social_science_results)",
                )
                .fetch_one(&self.pool),
            )
            .await?;
        let count = |i: usize| row.try_get::<i64, _>(i).map(|n| n as u32).map_err(StoreError::from);
        Ok(StreamSizes { natural_science: count(0)?, social_science: count(1)? })
    }

    /// The position in the WAL that this server's data reflects, in bytes: what a standby has
    /// replayed, or what a primary has written. Also a ping.
    pub async fn wal_position(&self) -> Result<i64, StoreError> {
        let query = sqlx::query(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::int8",
        );
        let row = Self::within(self.check_timeout, query.fetch_one(&self.pool)).await?;
        // NULL: a standby that has replayed nothing yet.
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// Connections open and idle, for the pool gauges.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
