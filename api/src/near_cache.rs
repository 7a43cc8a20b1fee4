//! The near cache: a copy of every published result in this replica's memory, kept coherent by
//! Redis itself (server-assisted client-side caching: RESP3 `CLIENT TRACKING` in broadcast mode
//! on the layout's key prefix, on a connection of its own).
//!
//! Why: a Redis round trip per lookup (a socket write, a read, a wake-up and Redis' own work) was
//! most of a replica's CPU per request, for data that does not change on result day except for
//! the rare correction. The copy holds each bucket hash as Redis holds it (the encoded values,
//! opaque here), so a hit does no I/O at all.
//!
//! Coherence rules, each tested in `api/tests/api/near_cache.rs`:
//! - **Bulk preload**: tracking is switched on first, then every bucket of the marker's ID range
//!   is read, pipelined. A write that lands while a bucket is in flight bumps that bucket's epoch
//!   and the reply is dropped (the bucket is fetched again), so no stale value survives the race.
//! - **Invalidation**: Redis pushes the key of every written bucket; its slot empties at once
//!   (lookups for it go to Redis) and it is fetched again in the background.
//! - **Complete copy**: only while every bucket is loaded, tracking has been live since the
//!   preload began and the marker's fingerprint is the one loaded does the copy answer, unknown
//!   IDs included (404 from memory: an ID-enumeration flood touches no store but the
//!   failed-lookup counter, `failed_lookups`, which refuses the flood's client from memory).
//! - **Lost invalidations**: a tracking connection error, a lagging invalidation channel, a
//!   flush, or a failed marker check: the copy is not trusted (reads go to Redis) until a full
//!   resync has finished on a live connection.
//! - **Reload**: the marker deleted (the seeder is reloading) drops the copy; its fingerprint
//!   changed (a correction or a new data set) rebuilds it.
//! - **Redis down**: an untrusted copy answers only when Redis cannot, only while this tracking
//!   connection is down too (once any connection is back, Redis answers), and only while
//!   PostgreSQL's data set has the copy's fingerprint: a correction committed while Redis is down
//!   (it cannot be published) changes it, and PostgreSQL answers from the next directory refresh.
//! - **Budget**: a data set whose copy would exceed the memory budget is not copied (the
//!   replica reads Redis as without the near cache), until the marker changes.
//!
//! Redis Cluster is not covered: fred switches broadcast tracking on for one node only, so the
//! near cache stays off for a `redis-cluster://` URL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::RespVersion;
use futures_util::StreamExt;
use metrics::{Counter, Gauge};
use results_core::keys::BUCKET_SIZE;
use results_core::{KeyLayout, Marker, READABLE_CODEC_VERSIONS, StudentId};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::stores::marker_from_fields;
use crate::telemetry::{NEAR_BYTES, NEAR_HITS, NEAR_INVALIDATIONS, NEAR_MISSES, NEAR_RESYNCS};

/// Buckets read at once during a preload: enough to keep one connection's pipeline full.
const PRELOAD_IN_FLIGHT: usize = 256;
/// Invalidation messages queued before the channel lags (a lag forces a resync). A correction
/// writes a few buckets; a reload deletes the marker first, which drops the copy anyway.
const INVALIDATION_QUEUE: usize = 8_192;

// A bucket's fields fit in one presence mask.
const _: () = assert!(BUCKET_SIZE <= 128);

/// One bucket hash as Redis holds it: the values back to back, opaque.
#[derive(Debug)]
pub struct Bucket {
    /// Bit `f` set: field `f` is present.
    present: u128,
    /// End offset of field `f` in `data` (its start is the previous field's end).
    ends: [u32; BUCKET_SIZE as usize],
    data: Bytes,
}

impl Bucket {
    /// A bucket from `HGETALL`'s fields; fields that are not a valid position are ignored (the
    /// seeder never writes them, and no lookup could reach them).
    pub fn from_fields(fields: impl IntoIterator<Item = (String, Bytes)>) -> Self {
        let mut values: Vec<(u32, Bytes)> = fields
            .into_iter()
            .filter_map(|(field, value)| field.parse::<u32>().ok().filter(|f| *f < BUCKET_SIZE).map(|f| (f, value)))
            .collect();
        values.sort_unstable_by_key(|(field, _)| *field);
        let mut data = Vec::with_capacity(values.iter().map(|(_, v)| v.len()).sum());
        let mut present = 0u128;
        let mut ends = [0u32; BUCKET_SIZE as usize];
        let mut next = values.iter().peekable();
        for (field, end) in ends.iter_mut().enumerate() {
            if let Some((_, value)) = next.next_if(|(f, _)| *f as usize == field) {
                data.extend_from_slice(value);
                present |= 1 << field;
            }
            *end = data.len() as u32;
        }
        Self { present, ends, data: data.into() }
    }

    /// The value of `field`, if present.
    pub fn value(&self, field: u32) -> Option<Bytes> {
        let f = field as usize;
        if f >= self.ends.len() || self.present & (1 << f) == 0 {
            return None;
        }
        let start = if f == 0 { 0 } else { self.ends[f - 1] as usize };
        Some(self.data.slice(start..self.ends[f] as usize))
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> u64 {
        (size_of::<Self>() + self.data.len()) as u64
    }
}

/// One bucket's place in the copy.
#[derive(Default)]
struct Slot {
    bucket: ArcSwapOption<Bucket>,
    /// Bumped by every invalidation: a fetch that started before it is not stored.
    epoch: AtomicU64,
}

/// The copy of one data set (one marker fingerprint).
struct DataCopy {
    fingerprint: String,
    first_bucket: u32,
    slots: Box<[Slot]>,
    /// Serialises stores and invalidations of slots (rare), so an invalidation cannot fall
    /// between a fetch's epoch check and its store. Lookups never take it.
    writes: Mutex<()>,
    /// Every bucket was loaded once (a resync finished): its misses were unknown IDs then.
    whole: AtomicBool,
}

impl DataCopy {
    fn new(marker: &Marker) -> Self {
        let buckets = KeyLayout::buckets_for(marker.first_id..=marker.last_id);
        let slots = (0..buckets.clone().count()).map(|_| Slot::default()).collect();
        Self {
            fingerprint: marker.fingerprint.clone(),
            first_bucket: *buckets.start(),
            slots,
            writes: Mutex::new(()),
            whole: AtomicBool::new(false),
        }
    }

    fn slot(&self, bucket: u32) -> Option<&Slot> {
        self.slots.get(bucket.checked_sub(self.first_bucket)? as usize)
    }

    fn overhead(&self) -> u64 {
        (size_of::<Self>() + self.slots.len() * size_of::<Slot>()) as u64
    }

    /// Stores a fetched bucket unless an invalidation came after `epoch` was read; returns the
    /// memory added (`None`: not stored).
    fn fill(&self, bucket: u32, epoch: u64, value: Bucket) -> Option<u64> {
        let slot = self.slot(bucket)?;
        let _writing = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.epoch.load(Ordering::SeqCst) != epoch {
            return None;
        }
        let added = value.bytes();
        let old = slot.bucket.swap(Some(Arc::new(value)));
        Some(added.saturating_sub(old.map_or(0, |b| b.bytes())))
    }

    /// Empties a slot; returns the memory freed (`None`: the bucket is outside the copy).
    fn invalidate(&self, bucket: u32) -> Option<u64> {
        let slot = self.slot(bucket)?;
        let _writing = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        slot.epoch.fetch_add(1, Ordering::SeqCst);
        Some(slot.bucket.swap(None).map_or(0, |b| b.bytes()))
    }
}

/// What the copy says about an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The value as Redis holds it.
    Value(Bytes),
    /// No such student in the data set.
    Unknown,
    /// The copy cannot say: ask Redis.
    AskRedis,
}

/// Where the near cache stands, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Disabled (a budget of 0, or Redis Cluster).
    Off = 0,
    /// No copy yet (starting, or no complete data set in Redis): reads go to Redis.
    Warming = 1,
    /// The copy is complete and coherent: it answers every lookup.
    Complete = 2,
    /// A copy exists but is not trusted (tracking dropped, marker changed): reads go to Redis;
    /// the copy answers only while Redis cannot.
    Resyncing = 3,
    /// The data set does not fit the memory budget: reads go to Redis.
    OverBudget = 4,
}

impl State {
    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::Warming,
            2 => Self::Complete,
            3 => Self::Resyncing,
            4 => Self::OverBudget,
            _ => Self::Off,
        }
    }

    /// The label in `/readyz`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warming => "warming",
            Self::Complete => "complete",
            Self::Resyncing => "resyncing",
            Self::OverBudget => "over_budget",
        }
    }
}

/// The metrics' handles, registered once (a lookup must not hash a metric name).
struct Meters {
    hit_result: Counter,
    hit_unknown: Counter,
    hit_while_redis_down: Counter,
    misses: Counter,
    invalidations: Counter,
    bytes: Gauge,
}

impl Meters {
    fn new() -> Self {
        Self {
            hit_result: metrics::counter!(NEAR_HITS, "answer" => "result"),
            hit_unknown: metrics::counter!(NEAR_HITS, "answer" => "unknown"),
            hit_while_redis_down: metrics::counter!(NEAR_HITS, "answer" => "while_redis_down"),
            misses: metrics::counter!(NEAR_MISSES),
            invalidations: metrics::counter!(NEAR_INVALIDATIONS),
            bytes: metrics::gauge!(NEAR_BYTES),
        }
    }
}

fn count_resync(outcome: &'static str) {
    metrics::counter!(NEAR_RESYNCS, "outcome" => outcome).increment(1);
}

/// The near cache of one replica.
pub struct NearCache {
    copy: ArcSwapOption<DataCopy>,
    state: AtomicU8,
    /// Bumped by every event that may have lost an invalidation: a resync that began before
    /// the last bump does not make the copy trusted.
    generation: AtomicU64,
    /// Memory held by the copy, bytes.
    bytes: AtomicU64,
    budget: u64,
    layout: KeyLayout,
    /// The tracking connection (also what the preload and refetches read through).
    client: Option<Client>,
    /// The fingerprint of the data set found over budget: not tried again until it changes.
    refused: Mutex<Option<String>>,
    /// The marker key was written or deleted: the keeper checks it now.
    marker_touched: Notify,
    meters: Meters,
}

impl NearCache {
    /// A near cache for `settings`, connecting in the background; off (every lookup asks Redis)
    /// for a budget of 0 or a Redis Cluster URL.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut config = Config::from_url(&settings.redis_url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {}", e.details()))?;
        let off = settings.near_cache_budget == 0 || config.server.is_clustered();
        let client = if off {
            None
        } else {
            config.version = RespVersion::RESP3;
            config.fail_fast = true;
            let timeout = settings.redis_timeout;
            let client = Builder::from_config(config)
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(2);
                    c.internal_command_timeout = Duration::from_secs(2);
                })
                .with_performance_config(|p| {
                    // A preload reads whole buckets: allow more than a lookup's timeout.
                    p.default_command_timeout = timeout.max(Duration::from_secs(2));
                    p.broadcast_channel_capacity = INVALIDATION_QUEUE;
                })
                .set_policy(ReconnectPolicy::new_exponential(0, 50, 500, 2))
                .build()
                .map_err(|e| anyhow::anyhow!("cannot configure the near cache's Redis client: {}", e.details()))?;
            Some(client)
        };
        if off && settings.near_cache_budget > 0 {
            tracing::info!("near cache off: Redis Cluster tracking is not supported yet");
        }
        Ok(Self {
            copy: ArcSwapOption::empty(),
            state: AtomicU8::new(if off { State::Off } else { State::Warming } as u8),
            generation: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            budget: settings.near_cache_budget,
            layout: settings.layout.clone(),
            client,
            refused: Mutex::new(None),
            marker_touched: Notify::new(),
            meters: Meters::new(),
        })
    }

    /// Where the near cache stands.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::SeqCst))
    }

    fn set_state(&self, state: State) {
        let old = State::from_u8(self.state.swap(state as u8, Ordering::SeqCst));
        if old != state {
            tracing::info!(from = old.label(), to = state.label(), "near cache state changed");
        }
    }

    /// Whether a copy is held (complete or not): `/readyz` is ready on it while both stores are
    /// down.
    pub fn has_copy(&self) -> bool {
        self.copy.load().as_ref().is_some_and(|c| c.whole.load(Ordering::SeqCst))
    }

    /// Memory held by the copy, bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The copy's answer for `id` while it is complete and coherent; [`Answer::AskRedis`]
    /// otherwise. Does no I/O.
    pub fn get(&self, id: StudentId) -> Answer {
        if self.state() != State::Complete {
            if self.client.is_some() {
                self.meters.misses.increment(1);
            }
            return Answer::AskRedis;
        }
        let answer = self.read(id);
        match answer {
            Answer::Value(_) => self.meters.hit_result.increment(1),
            Answer::Unknown => self.meters.hit_unknown.increment(1),
            Answer::AskRedis => self.meters.misses.increment(1),
        }
        answer
    }

    /// The copy's answer for `id` after Redis failed: from an untrusted copy too, but only
    /// while the tracking connection is down as well, and only if PostgreSQL's data set
    /// (`pg_fingerprint`, when it is known) is still the one copied (see the module's rules).
    pub fn get_while_redis_down(&self, id: StudentId, pg_fingerprint: Option<&str>) -> Answer {
        let Some(client) = &self.client else { return Answer::AskRedis };
        if client.is_connected() {
            return Answer::AskRedis;
        }
        let copied = self.copy.load().as_ref().map(|c| c.fingerprint.clone());
        if pg_fingerprint.is_some_and(|pg| copied.as_deref() != Some(pg)) {
            return Answer::AskRedis;
        }
        let answer = match self.read(id) {
            // An unknown ID is final only if the copy was ever whole.
            Answer::Unknown if !self.has_copy() => Answer::AskRedis,
            other => other,
        };
        if answer != Answer::AskRedis {
            self.meters.hit_while_redis_down.increment(1);
        }
        answer
    }

    fn read(&self, id: StudentId) -> Answer {
        let guard = self.copy.load();
        let Some(copy) = guard.as_ref() else { return Answer::AskRedis };
        let (bucket, field) = (KeyLayout::bucket_of(id), id.get() % BUCKET_SIZE);
        let Some(slot) = copy.slot(bucket) else { return Answer::Unknown };
        match slot.bucket.load().as_ref() {
            Some(b) => b.value(field).map_or(Answer::Unknown, Answer::Value),
            None => Answer::AskRedis,
        }
    }

    /// Everything Redis pushed may have been missed: stop trusting the copy until a resync.
    fn lose_trust(&self, why: &'static str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.state() == State::Complete {
            tracing::warn!(why, "near cache not trusted until it resynchronises");
            self.set_state(State::Resyncing);
        }
    }

    fn add_bytes(&self, added: u64) {
        let now = self.bytes.fetch_add(added, Ordering::Relaxed) + added;
        self.meters.bytes.set(now as f64);
    }

    fn sub_bytes(&self, freed: u64) {
        let now = self.bytes.fetch_sub(freed.min(self.bytes()), Ordering::Relaxed).saturating_sub(freed);
        self.meters.bytes.set(now as f64);
    }

    fn drop_copy(&self) {
        self.copy.store(None);
        self.bytes.store(0, Ordering::Relaxed);
        self.meters.bytes.set(0.0);
    }

    /// Applies one invalidation message: empties the written buckets' slots and queues them to
    /// be fetched again.
    fn invalidate(&self, keys: &[Key], refetch: &mpsc::UnboundedSender<u32>) {
        if keys.is_empty() {
            // A flush (or tracking switched off): every key may have changed.
            self.lose_trust("Redis flushed or stopped tracking");
            return;
        }
        let marker_key = self.layout.marker_key();
        let copy = self.copy.load_full();
        for key in keys {
            let Some(key) = key.as_str() else { continue };
            if key == marker_key {
                self.marker_touched.notify_one();
                continue;
            }
            let Some(bucket) = self.layout.bucket_of_key(key) else { continue };
            self.meters.invalidations.increment(1);
            let Some(copy) = &copy else { continue };
            match copy.invalidate(bucket) {
                Some(freed) => {
                    self.sub_bytes(freed);
                    let _ = refetch.send(bucket);
                }
                // A bucket outside the marker's range: a new data set is being written.
                None => self.lose_trust("a bucket outside the copied range was written"),
            }
        }
    }

    /// Keeps the copy coherent until `stop`: applies invalidations, refetches invalidated
    /// buckets, resynchronises after anything that may have lost an invalidation, and checks
    /// the marker every `interval`.
    pub async fn keep(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let Some(client) = self.client.clone() else { return };
        let (refetch_tx, mut refetch_rx) = mpsc::unbounded_channel::<u32>();
        // A (re)connection wakes the loop at once: a resync need not wait for the interval.
        let mut reconnects = client.reconnect_rx();
        let listener = tokio::spawn(Arc::clone(&self).listen(client.clone(), refetch_tx, stop.clone()));
        // As the read path's pool: the reconnect policy keeps trying if Redis is not up yet.
        drop(client.connect());
        enum Wake {
            Check,
            Refetch(u32),
            Stop,
        }
        loop {
            match self.state() {
                State::Warming | State::Resyncing => self.resync(&client, &mut refetch_rx).await,
                State::Off | State::Complete | State::OverBudget => {}
            }
            let wake = tokio::select! {
                () = tokio::time::sleep(interval) => Wake::Check,
                () = self.marker_touched.notified() => Wake::Check,
                Some(bucket) = refetch_rx.recv() => Wake::Refetch(bucket),
                _ = reconnects.recv() => Wake::Check,
                () = stop.cancelled() => Wake::Stop,
            };
            match wake {
                Wake::Check => self.check_marker(&client).await,
                Wake::Refetch(bucket) => self.refetch(&client, bucket, &mut refetch_rx).await,
                Wake::Stop => break,
            }
        }
        let _ = listener.await;
        let _ = client.quit().await;
    }

    /// Applies invalidations and connection errors as they come, without any I/O in the way.
    async fn listen(self: Arc<Self>, client: Client, refetch: mpsc::UnboundedSender<u32>, stop: CancellationToken) {
        use tokio::sync::broadcast::error::RecvError;
        let mut invalidations = client.invalidation_rx();
        let mut errors = client.error_rx();
        loop {
            tokio::select! {
                message = invalidations.recv() => match message {
                    Ok(message) => self.invalidate(&message.keys, &refetch),
                    Err(RecvError::Lagged(_)) => self.lose_trust("invalidations lagged"),
                    Err(RecvError::Closed) => return,
                },
                error = errors.recv() => match error {
                    Ok(_) | Err(RecvError::Lagged(_)) => self.lose_trust("the tracking connection failed"),
                    Err(RecvError::Closed) => return,
                },
                () = stop.cancelled() => return,
            }
        }
    }

    /// The marker as the tracking connection reads it (`None`: absent, malformed or a codec
    /// version this build cannot read: the directory trusts the same ones).
    async fn marker(&self, client: &Client) -> Result<Option<Marker>, Error> {
        let raw: HashMap<Bytes, Bytes> = client.hgetall(self.layout.marker_key()).await?;
        Ok(marker_from_fields(raw).filter(|m| READABLE_CODEC_VERSIONS.contains(&m.codec)))
    }

    /// Drops or rebuilds the copy when the marker changed; distrusts it when Redis cannot say.
    async fn check_marker(&self, client: &Client) {
        let state = self.state();
        if !matches!(state, State::Complete | State::OverBudget) {
            return;
        }
        let loaded = match state {
            State::OverBudget => self.refused.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            _ => self.copy.load().as_ref().map(|c| c.fingerprint.clone()),
        };
        match self.marker(client).await {
            Ok(Some(marker)) if Some(&marker.fingerprint) == loaded.as_ref() => {}
            // Another data set: it may fit.
            Ok(Some(_)) if state == State::OverBudget => self.set_state(State::Warming),
            Ok(Some(_)) => {
                tracing::info!("completeness marker's fingerprint changed: rebuilding the near cache");
                self.lose_trust("the marker changed");
            }
            Ok(None) => {
                tracing::info!("completeness marker gone: dropping the near cache until Redis is complete again");
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.drop_copy();
                self.set_state(State::Warming);
            }
            Err(_) => self.lose_trust("the marker cannot be read"),
        }
    }

    /// Fetches one invalidated bucket again, then any others queued meanwhile.
    async fn refetch(&self, client: &Client, first: u32, queued: &mut mpsc::UnboundedReceiver<u32>) {
        let Some(copy) = self.copy.load_full() else { return };
        let mut next = Some(first);
        while let Some(bucket) = next {
            if let Err(e) = self.fetch_into(client, &copy, bucket).await {
                tracing::warn!(error = %e.details(), "near cache: cannot refetch an invalidated bucket");
                self.lose_trust("a refetch failed");
                return;
            }
            next = queued.try_recv().ok();
        }
    }

    /// Reads `bucket` and stores it unless it was invalidated meanwhile (it is queued again
    /// then).
    async fn fetch_into(&self, client: &Client, copy: &DataCopy, bucket: u32) -> Result<(), Error> {
        let Some(slot) = copy.slot(bucket) else { return Ok(()) };
        let epoch = slot.epoch.load(Ordering::SeqCst);
        let fields: HashMap<String, Bytes> = client.hgetall(self.layout.bucket_key(bucket)).await?;
        if let Some(added) = copy.fill(bucket, epoch, Bucket::from_fields(fields)) {
            self.add_bytes(added);
        }
        Ok(())
    }

    /// Switches tracking on (again) and rebuilds the copy from Redis; the copy is trusted only
    /// if nothing was lost from the moment tracking was on.
    async fn resync(&self, client: &Client, refetch: &mut mpsc::UnboundedReceiver<u32>) {
        if !client.is_connected() {
            return;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        // OFF first: ON with a prefix this connection already tracks is refused.
        // Every key of this layout version: buckets, schools and the marker.
        let prefix = self.layout.scan_pattern().trim_end_matches('*').to_owned();
        if let Err(e) = client.stop_tracking().await {
            tracing::debug!(error = %e.details(), "near cache: CLIENT TRACKING OFF failed");
            return;
        }
        if let Err(e) = client.start_tracking(prefix, true, false, false, false).await {
            tracing::warn!(error = %e.details(), "near cache: CLIENT TRACKING ON failed");
            count_resync("failed");
            return;
        }
        let marker = match self.marker(client).await {
            Ok(Some(marker)) => marker,
            Ok(None) => {
                // No complete data set in Redis: nothing to copy yet (the marker's invalidation
                // or the next interval tries again).
                self.drop_copy();
                self.set_state(State::Warming);
                return;
            }
            Err(_) => return,
        };
        let copy = Arc::new(DataCopy::new(&marker));
        if copy.overhead() > self.budget {
            self.over_budget(&marker);
            return;
        }
        // The old copy is dropped here: Redis answers while the new one loads.
        self.copy.store(Some(Arc::clone(&copy)));
        self.bytes.store(0, Ordering::Relaxed);
        self.add_bytes(copy.overhead());
        while refetch.try_recv().is_ok() {}

        let buckets = (0..copy.slots.len() as u32).map(|i| copy.first_bucket + i);
        let mut fetches = futures_util::stream::iter(buckets)
            .map(|bucket| {
                let copy = Arc::clone(&copy);
                async move { self.fetch_into(client, &copy, bucket).await }
            })
            .buffer_unordered(PRELOAD_IN_FLIGHT);
        while let Some(fetched) = fetches.next().await {
            if let Err(e) = fetched {
                tracing::warn!(error = %e.details(), "near cache: preload failed; Redis answers meanwhile");
                count_resync("failed");
                return;
            }
            if self.bytes() > self.budget {
                drop(fetches);
                self.over_budget(&marker);
                return;
            }
        }
        drop(fetches);
        // Buckets written during the preload were dropped by their epoch check: read them again.
        while let Ok(bucket) = refetch.try_recv() {
            if self.fetch_into(client, &copy, bucket).await.is_err() {
                count_resync("failed");
                return;
            }
        }
        // A bucket invalidated since is empty (lookups for it ask Redis) and queued: the copy
        // is still coherent, so a stream of writes cannot keep it from ever completing.
        if self.generation.load(Ordering::SeqCst) != generation {
            count_resync("failed");
            return;
        }
        copy.whole.store(true, Ordering::SeqCst);
        tracing::info!(bytes = self.bytes(), buckets = copy.slots.len(), "near cache complete");
        count_resync("complete");
        self.set_state(State::Complete);
    }

    fn over_budget(&self, marker: &Marker) {
        tracing::warn!(
            budget_bytes = self.budget,
            students = marker.count,
            "the data set does not fit the near cache's budget (API_NEAR_CACHE_MB): reading Redis instead"
        );
        count_resync("over_budget");
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(marker.fingerprint.clone());
        self.drop_copy();
        self.set_state(State::OverBudget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &[u8])]) -> Vec<(String, Bytes)> {
        pairs.iter().map(|(f, v)| ((*f).to_owned(), Bytes::copy_from_slice(v))).collect()
    }

    #[test]
    fn a_bucket_keeps_each_value_as_stored_and_knows_which_fields_are_absent() {
        let bucket = Bucket::from_fields(fields(&[("7", b"seven"), ("0", b"zero"), ("99", b"last"), ("3", b"")]));
        assert_eq!(bucket.value(0).as_deref(), Some(&b"zero"[..]));
        assert_eq!(bucket.value(7).as_deref(), Some(&b"seven"[..]));
        assert_eq!(bucket.value(99).as_deref(), Some(&b"last"[..]));
        // Present but empty is not absent: it reaches the decoder, which refuses it.
        assert_eq!(bucket.value(3).as_deref(), Some(&b""[..]));
        for absent in [1, 2, 4, 8, 98] {
            assert_eq!(bucket.value(absent), None, "field {absent}");
        }
        assert_eq!(bucket.value(BUCKET_SIZE), None, "beyond a bucket");
    }

    #[test]
    fn fields_no_lookup_can_reach_are_ignored() {
        let bucket = Bucket::from_fields(fields(&[("100", b"x"), ("-1", b"y"), ("abc", b"z"), ("5", b"ok")]));
        assert_eq!(bucket.present, 1 << 5);
        assert_eq!(bucket.data.as_ref(), b"ok");
    }
}
