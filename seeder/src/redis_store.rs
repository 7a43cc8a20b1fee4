//! Redis: the read-optimised copy every replica serves from.
//!
//! A load deletes the completeness marker first, then every key of the layout, writes the schools
//! and the result buckets (many `HSET`s in flight at once, which fred pipelines on the
//! connection), and writes the marker last. A load killed at any point leaves no marker, so no
//! reader trusts a partial data set, and the next seeder run loads Redis again.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use fred::prelude::*;
use fred::types::scan::ScanType;
use futures_util::{StreamExt, TryStreamExt, stream};
use results_core::StudentId;
use results_core::codec;
use results_core::generate::StreamSizes;
use results_core::keys::{self, KeyLayout};
use results_core::record::{ResultRecord, School};

use crate::origin::Origin;
use crate::progress::Phase;

/// `HSET`s in flight at once while loading; enough to keep the connection's pipeline full.
const IN_FLIGHT: usize = 64;

pub use results_core::Marker;

/// A connected Redis client with the key layout.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    layout: KeyLayout,
    target: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("target", &self.target).field("layout", &self.layout).finish()
    }
}

/// Where a Redis URL points, without credentials.
pub fn describe_target(config: &Config) -> String {
    match &config.server {
        ServerConfig::Centralized { server } => format!("{}:{}", server.host, server.port),
        ServerConfig::Clustered { hosts, .. } => {
            hosts.first().map_or_else(|| "(cluster)".to_owned(), |h| format!("cluster via {}:{}", h.host, h.port))
        }
        other => format!("{other:?}"),
    }
}

/// URL schemes fred understands; anything else is refused before fred guesses at it.
const SCHEMES: [&str; 6] = ["redis", "rediss", "redis-cluster", "rediss-cluster", "redis-sentinel", "rediss-sentinel"];

/// One readable line for a Redis error. fred puts the `Debug` form of I/O errors in its details
/// (`Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }`); keep the message.
pub fn error_line(error: &Error) -> String {
    let details = error.details();
    for marker in ["message: \"", "error: \""] {
        if let Some(start) = details.find(marker) {
            let rest = &details[start + marker.len()..];
            if let Some(end) = rest.find('"') {
                return rest[..end].to_owned();
            }
        }
    }
    if details.is_empty() { error.to_string() } else { details.to_owned() }
}

impl RedisStore {
    /// Connects, failing within seconds when Redis is unreachable (fred's defaults would wait
    /// forever).
    pub async fn connect(url: &str, layout: KeyLayout) -> anyhow::Result<Self> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if !SCHEMES.contains(&scheme) {
            bail!("REDIS_URL is not a valid Redis URL: the scheme must be one of {}", SCHEMES.join(", "));
        }
        // rediss:// builds fred's rustls client on the process-wide crypto provider, which rustls
        // cannot choose itself when a workspace build also compiles aws-lc-rs: ring, as the API.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::from_url(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {}", error_line(&e)))?;
        let target = describe_target(&config);
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(10);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(60);
            })
            .build()
            .context("cannot configure the Redis client")?;
        client.init().await.map_err(|e| anyhow::anyhow!("cannot connect to Redis at {target}: {}", error_line(&e)))?;
        Ok(Self { client, layout, target })
    }

    /// Where this client points.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// Checks that Redis accepts writes (a read-only replica, a full memory or a user without
    /// write permission would refuse them), before any time is spent loading.
    pub async fn check_writable(&self) -> anyhow::Result<()> {
        let key = self.layout.probe_key();
        self.client
            .set::<(), _, _>(&key, "probe", Some(Expiration::PX(10_000)), None, false)
            .await
            .and(self.client.del::<i64, _>(&key).await.map(drop))
            .map_err(|e| anyhow::anyhow!("Redis at {} refuses writes: {}", self.target, error_line(&e)))
    }

    /// The completeness marker, if a complete load left one (a malformed marker counts as none).
    pub async fn marker(&self) -> anyhow::Result<Option<Marker>> {
        let fields: HashMap<String, String> = self
            .client
            .hgetall(self.layout.marker_key())
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the completeness marker: {}", error_line(&e)))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let marker = Marker::from_fields(&fields);
        if marker.is_none() {
            tracing::warn!(key = self.layout.marker_key(), "the completeness marker is malformed; ignoring it");
        }
        Ok(marker)
    }

    /// Every key of this layout (marker included), found with `SCAN` on every node.
    pub async fn layout_keys(&self) -> anyhow::Result<Vec<String>> {
        let pattern = self.layout.scan_pattern();
        let keys: Vec<Key> = if self.client.is_clustered() {
            self.client.scan_cluster_buffered(pattern, Some(1_000), Some(ScanType::Hash)).try_collect().await
        } else {
            self.client.scan_buffered(pattern, Some(1_000), Some(ScanType::Hash)).try_collect().await
        }
        .map_err(|e| anyhow::anyhow!("cannot list keys: {}", error_line(&e)))?;
        Ok(keys.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
    }

    /// Deletes the marker, then every other key of the layout. Returns the keys deleted.
    pub async fn clear(&self) -> anyhow::Result<u64> {
        let write_error = |e: Error| anyhow::anyhow!("Redis at {} refused a write: {}", self.target, error_line(&e));
        let mut deleted: u64 = self.client.del(self.layout.marker_key()).await.map_err(write_error)?;
        let keys = self.layout_keys().await?;
        // One key per UNLINK so a cluster never sees a cross-slot command.
        let counts: Vec<u64> = stream::iter(keys)
            .map(|key| self.client.unlink::<u64, _>(key))
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await
            .map_err(write_error)?;
        deleted += counts.into_iter().sum::<u64>();
        Ok(deleted)
    }

    /// Writes every school into the schools hash.
    pub async fn write_schools(&self, schools: &[School]) -> anyhow::Result<()> {
        let key = self.layout.schools_key();
        for chunk in schools.chunks(500) {
            let entries: Vec<(u32, Bytes)> =
                chunk.iter().map(|s| (s.id, Bytes::from(codec::encode_school(s)))).collect();
            self.client
                .hset::<u64, _, _>(&key, entries)
                .await
                .map_err(|e| anyhow::anyhow!("Redis at {} refused the schools: {}", self.target, error_line(&e)))?;
        }
        Ok(())
    }

    /// Writes every result, a bucket per `HSET`, [`IN_FLIGHT`] at once. `records` must be
    /// ordered by ID (as the generator and [`crate::pg::Pg::read_results`] return them).
    pub async fn write_results(&self, records: &[ResultRecord], phase: &Phase) -> anyhow::Result<u64> {
        let buckets = records.chunk_by(|a, b| KeyLayout::bucket_of(a.id) == KeyLayout::bucket_of(b.id));
        let writes = buckets.map(|bucket| {
            let key = self.layout.bucket_key(KeyLayout::bucket_of(bucket[0].id));
            let entries: Vec<(u32, Bytes)> =
                bucket.iter().map(|r| (r.id.get() % keys::BUCKET_SIZE, Bytes::from(codec::encode_result(r)))).collect();
            let len = entries.len() as u64;
            async move {
                self.client.hset::<u64, _, _>(key, entries).await?;
                phase.inc(len);
                Ok::<u64, Error>(len)
            }
        });
        let written: Vec<u64> = stream::iter(writes).buffer_unordered(IN_FLIGHT).try_collect().await.map_err(|e| {
            anyhow::anyhow!("Redis at {} refused a write while loading results: {}", self.target, error_line(&e))
        })?;
        Ok(written.into_iter().sum())
    }

    /// Writes the completeness marker (the last write of a load) for a data set from `origin`.
    pub async fn write_marker(
        &self,
        fingerprint: &str,
        count: u64,
        origin: &Origin,
        streams: StreamSizes,
    ) -> anyhow::Result<Marker> {
        let loaded_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (first_id, last_id) = origin.id_range();
        let marker = Marker {
            fingerprint: fingerprint.to_owned(),
            count,
            seed: origin.seed(),
            generator: origin.generator(),
            first_id,
            last_id,
            codec: origin.codec(),
            streams,
            loaded_at,
            factor: origin.factor(),
        };
        let fields = marker.to_fields();
        self.client.hset::<u64, _, _>(self.layout.marker_key(), fields).await.map_err(|e| {
            anyhow::anyhow!("Redis at {} refused the completeness marker: {}", self.target, error_line(&e))
        })?;
        Ok(marker)
    }

    /// Writes the results of `records` (ordered by ID), a bucket per `HSET`, [`IN_FLIGHT`] at once,
    /// and goes on past failures: returns the IDs written and the first error, if any, so a
    /// caller can say how far it got.
    pub async fn write_some_results(&self, records: &[ResultRecord]) -> (Vec<StudentId>, Option<String>) {
        let buckets = records.chunk_by(|a, b| KeyLayout::bucket_of(a.id) == KeyLayout::bucket_of(b.id));
        let writes = buckets.map(|bucket| {
            let key = self.layout.bucket_key(KeyLayout::bucket_of(bucket[0].id));
            let entries: Vec<(u32, Bytes)> =
                bucket.iter().map(|r| (r.id.get() % keys::BUCKET_SIZE, Bytes::from(codec::encode_result(r)))).collect();
            let ids: Vec<StudentId> = bucket.iter().map(|r| r.id).collect();
            async move { self.client.hset::<u64, _, _>(key, entries).await.map(|_| ids) }
        });
        let outcomes: Vec<Result<Vec<StudentId>, Error>> =
            stream::iter(writes).buffer_unordered(IN_FLIGHT).collect().await;
        let mut written = Vec::new();
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(ids) => written.extend(ids),
                Err(e) => {
                    first_error
                        .get_or_insert_with(|| format!("Redis at {} refused a write: {}", self.target, error_line(&e)));
                }
            }
        }
        written.sort_unstable();
        (written, first_error)
    }

    /// Sets the completeness marker's fingerprint (after a correction is published; the other
    /// fields describe the data set, which a correction does not change).
    pub async fn set_marker_fingerprint(&self, fingerprint: &str) -> anyhow::Result<()> {
        self.client
            .hset::<u64, _, _>(self.layout.marker_key(), (keys::MARKER_FINGERPRINT, fingerprint))
            .await
            .map(drop)
            .map_err(|e| {
                anyhow::anyhow!("Redis at {} refused the marker's new fingerprint: {}", self.target, error_line(&e))
            })
    }

    /// Every school as stored: `(id, encoded value)`, unordered. Fields that are not numbers
    /// are returned as `Err(field)`.
    pub async fn read_schools_raw(&self) -> anyhow::Result<Vec<Result<(u32, Bytes), String>>> {
        let fields: HashMap<String, Bytes> = self
            .client
            .hgetall(self.layout.schools_key())
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the schools hash: {}", error_line(&e)))?;
        Ok(fields.into_iter().map(|(field, value)| field.parse().map(|id| (id, value)).map_err(|_| field)).collect())
    }

    /// The numbers of every result bucket present, ascending.
    pub async fn bucket_numbers(&self) -> anyhow::Result<Vec<u32>> {
        let mut numbers: Vec<u32> =
            self.layout_keys().await?.iter().filter_map(|k| self.layout.bucket_of_key(k)).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// The fields of several buckets, in the order asked, [`IN_FLIGHT`] requests at once.
    pub fn read_buckets<'a>(
        &'a self,
        buckets: &'a [u32],
    ) -> impl futures_util::Stream<Item = anyhow::Result<(u32, HashMap<String, Bytes>)>> + 'a {
        stream::iter(buckets)
            .map(move |&bucket| async move {
                let fields: HashMap<String, Bytes> = self
                    .client
                    .hgetall(self.layout.bucket_key(bucket))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read bucket {bucket}: {}", error_line(&e)))?;
                Ok((bucket, fields))
            })
            .buffered(IN_FLIGHT)
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}
