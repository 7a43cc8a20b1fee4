//! The near cache: a copy of every published result in this replica's memory, kept coherent by
//! Redis itself (server-assisted client-side caching: RESP3 `CLIENT TRACKING` in broadcast mode
//! on the layout's key prefix, on a connection of its own); for a data set over its memory
//! budget, the part lookups read, least recently used evicted (bounded mode, below).
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
//!
//! **Bounded mode**: a data set whose copy would exceed the memory budget (the preload finds it
//! out, once per marker fingerprint) is not copied; the replica keeps the buckets its lookups
//! read instead, within the budget, least recently used evicted first (`BoundedCache`). Tracking
//! switches to Redis' default mode (no prefix, no broadcast): Redis remembers the keys this
//! connection read and pushes each one's invalidation once, when it is next written (broadcast
//! mode would push every write of a data set the cache mostly does not hold). Its rules, each
//! tested too:
//! - **Reads through the tracking connection**: a kept bucket answers from memory; a miss reads
//!   the whole bucket (`HGETALL`) on the tracking connection, so Redis tracks it for that
//!   connection, answers from it and keeps it. A bucket answers unknown IDs of its range, and an
//!   ID outside the marker's range is unknown, while the marker is complete, as the full copy.
//! - **Race**: fred hands invalidations to the listener task, so a reply and the invalidation
//!   of a write after it may be processed in either order. Each shard keeps epochs bumped by
//!   every invalidation, read before the fetch: the reply answers its lookup but is kept only if
//!   no invalidation came since (nor a trust loss: the generation, read first).
//! - **Lost invalidations** (as above, and any reconnection: the new connection tracks nothing):
//!   the bounded cache is emptied and reads go to Redis until tracking is on again on a live
//!   connection. It answers nothing while Redis is down: it holds only a part.
//! - **Reload**: the marker deleted empties it; its fingerprint changed empties it, and the new
//!   data set is preloaded whole if it fits. The marker is read on the tracking connection at
//!   each check, which also keeps it tracked (default mode forgets a key once it was pushed).
//! - **Budget**: `near_cache_bytes` counts the kept buckets, their LRU bookkeeping and the
//!   shards; a store evicts before it adds, under its shard's lock, so it never exceeds the
//!   budget.
//! - The cost: a miss reads a bucket of 100 results where the Redis tier reads one, so with
//!   uniformly random IDs over a data set ten times the budget (nine lookups in ten miss) it costs
//!   Redis and the network more than no near cache; it pays where lookups repeat (a region's or a
//!   school's students, a hot minute), and Redis default-mode tracking also keeps a table of the
//!   keys each replica read (`tracking-table-max-keys`: past it Redis pushes invalidations to
//!   make room, which merely empty buckets here).
//!
//! - **Redis Cluster**: tracking is switched on on every master's connection (each node pushes
//!   invalidations for its own keys only; vendor/fred is patched so that broadcast mode, too, goes
//!   to every node), and any change of the cluster's topology (a failover, a node added or gone)
//!   is a lost invalidation: the copy is not trusted until a resync has switched tracking on on
//!   the new connections too (scripts/tests/redis_cluster_test.sh).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use fred::prelude::*;
use fred::types::RespVersion;
use futures_util::StreamExt;
use hashlink::LinkedHashMap;
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

/// The bounded cache's shards: each has a lock and a budget of its own, so lookups on both cores
/// rarely wait for one another; no more than this (a shard's budget must hold some dozen buckets).
const MAX_SHARDS: u64 = 16;
/// A shard's budget at least, when the budget allows: ~40 buckets of 100 results.
const MIN_SHARD_BUDGET: u64 = 256 << 10;
/// Epochs per shard: an invalidation bumps its bucket's stripe. A fetch of another bucket of the
/// same stripe in flight then is not kept (its next lookup reads it again): rare, and the epochs
/// take the same memory whatever the data set's size (ten times 674k students: 67k buckets).
const EPOCH_STRIPES: usize = 64;
/// Memory per kept bucket beyond [`Bucket::bytes`]: its `Arc`, its hash slot, its LRU links and
/// key (the allocator's own rounding is not counted).
const ENTRY_OVERHEAD: u64 = 64;

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

/// One shard of the bounded cache.
struct Shard {
    /// The kept buckets, least recently used first.
    lru: LinkedHashMap<u32, Arc<Bucket>>,
    /// Memory held by the kept buckets (with [`ENTRY_OVERHEAD`]).
    bytes: u64,
    /// Bumped by every invalidation of a bucket of the stripe: a fetch that read its stripe's
    /// epoch before is not kept.
    epochs: [u64; EPOCH_STRIPES],
}

/// The bounded mode's cache (a data set too big for the budget): the buckets lookups read,
/// least recently used evicted first, each shard within its share of the budget.
///
/// A hand-written weighted LRU over `hashlink`'s ordered map rather than moka: moka applies its
/// evictions in batches (its housekeeping), so its weighted size may exceed the budget between
/// them, and the epoch check before a store must be atomic with the store; here both happen under
/// the shard's lock, and a store evicts before it adds, so the budget always holds.
struct BoundedCache {
    /// The data set (the marker's fingerprint) the kept buckets belong to.
    fingerprint: String,
    /// The marker's buckets: an ID outside them is unknown.
    buckets: RangeInclusive<u32>,
    shards: Box<[Mutex<Shard>]>,
    /// Memory each shard may hold.
    shard_budget: u64,
    /// Memory held in all: the bookkeeping and every shard's buckets.
    bytes: AtomicU64,
}

impl BoundedCache {
    fn new(marker: &Marker, budget: u64) -> Self {
        let shards = (budget / MIN_SHARD_BUDGET).clamp(1, MAX_SHARDS);
        let overhead = (size_of::<Self>() as u64) + shards * size_of::<Mutex<Shard>>() as u64;
        let shards: Box<[Mutex<Shard>]> = (0..shards)
            .map(|_| Mutex::new(Shard { lru: LinkedHashMap::new(), bytes: 0, epochs: [0; EPOCH_STRIPES] }))
            .collect();
        Self {
            fingerprint: marker.fingerprint.clone(),
            buckets: KeyLayout::buckets_for(marker.first_id..=marker.last_id),
            shard_budget: budget.saturating_sub(overhead) / shards.len() as u64,
            shards,
            bytes: AtomicU64::new(overhead),
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// The shard of `bucket`, and the stripe of its epoch there.
    fn shard(&self, bucket: u32) -> (MutexGuard<'_, Shard>, usize) {
        let n = self.shards.len();
        let shard = self.shards[bucket as usize % n].lock().unwrap_or_else(PoisonError::into_inner);
        // Consecutive buckets of one shard fall in different stripes.
        (shard, bucket as usize / n % EPOCH_STRIPES)
    }

    /// The kept answer for `field` of `bucket` (`None`: the bucket is not kept); marks the bucket
    /// used.
    fn get(&self, bucket: u32, field: u32) -> Option<Answer> {
        if !self.buckets.contains(&bucket) {
            return Some(Answer::Unknown);
        }
        let (mut shard, _) = self.shard(bucket);
        let kept = shard.lru.to_back(&bucket)?;
        Some(kept.value(field).map_or(Answer::Unknown, Answer::Value))
    }

    /// The epoch to read before fetching `bucket`, for [`BoundedCache::fill`].
    fn epoch(&self, bucket: u32) -> u64 {
        let (shard, stripe) = self.shard(bucket);
        shard.epochs[stripe]
    }

    /// Keeps a fetched bucket unless an invalidation of its stripe came after `epoch` was read,
    /// evicting the least recently used buckets first; whether it was kept.
    fn fill(&self, bucket: u32, epoch: u64, value: Arc<Bucket>) -> bool {
        let cost = value.bytes() + ENTRY_OVERHEAD;
        let (mut shard, stripe) = self.shard(bucket);
        if shard.epochs[stripe] != epoch || cost > self.shard_budget {
            return false;
        }
        let mut freed = shard.lru.remove(&bucket).map_or(0, |old| old.bytes() + ENTRY_OVERHEAD);
        while shard.bytes - freed + cost > self.shard_budget {
            let Some((_, old)) = shard.lru.pop_front() else { break };
            freed += old.bytes() + ENTRY_OVERHEAD;
        }
        shard.lru.insert(bucket, value);
        shard.bytes = shard.bytes - freed + cost;
        // Freed before added: the total never shows more than the shards hold.
        self.bytes.fetch_sub(freed, Ordering::SeqCst);
        self.bytes.fetch_add(cost, Ordering::SeqCst);
        true
    }

    /// Forgets `bucket` (Redis says it was written) and keeps a fetch in flight from storing it.
    fn invalidate(&self, bucket: u32) {
        let (mut shard, stripe) = self.shard(bucket);
        shard.epochs[stripe] = shard.epochs[stripe].wrapping_add(1);
        if let Some(old) = shard.lru.remove(&bucket) {
            let freed = old.bytes() + ENTRY_OVERHEAD;
            shard.bytes -= freed;
            self.bytes.fetch_sub(freed, Ordering::SeqCst);
        }
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
    /// Disabled (a budget of 0).
    Off = 0,
    /// No copy yet (starting, or no complete data set in Redis): reads go to Redis.
    Warming = 1,
    /// The copy is complete and coherent: it answers every lookup.
    Complete = 2,
    /// A copy exists but is not trusted (tracking dropped, marker changed): reads go to Redis;
    /// the copy answers only while Redis cannot.
    Resyncing = 3,
    /// The data set does not fit the memory budget: the buckets lookups read are kept, within
    /// it, under default-mode tracking; a lookup of another reads its bucket from Redis.
    Bounded = 4,
}

impl State {
    fn from_u8(n: u8) -> Self {
        match n {
            1 => Self::Warming,
            2 => Self::Complete,
            3 => Self::Resyncing,
            4 => Self::Bounded,
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
            Self::Bounded => "bounded",
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
    /// The full copy (a data set within the budget).
    copy: ArcSwapOption<DataCopy>,
    /// The bounded cache (a data set over the budget).
    bounded: ArcSwapOption<BoundedCache>,
    state: AtomicU8,
    /// Bumped by every event that may have lost an invalidation: a resync that began before
    /// the last bump does not make the copy trusted.
    generation: AtomicU64,
    /// Memory held by the full copy, bytes (the bounded cache counts its own).
    bytes: AtomicU64,
    budget: u64,
    /// A lookup's Redis timeout: a bounded miss's read waits no longer than the Redis tier's.
    read_timeout: Duration,
    layout: KeyLayout,
    /// The tracking connection (also what the preload and refetches read through).
    client: Option<Client>,
    /// The fingerprint of the data set found over budget: kept bounded, not copied again, until
    /// it changes.
    bounded_for: Mutex<Option<String>>,
    /// The marker key was written or deleted: the keeper checks it now.
    marker_touched: Notify,
    meters: Meters,
}

impl NearCache {
    /// A near cache for `settings`, connecting in the background; off (every lookup asks Redis)
    /// for a budget of 0.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut config = Config::from_url(&settings.redis_url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {}", e.details()))?;
        let off = settings.near_cache_budget == 0;
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
        Ok(Self {
            copy: ArcSwapOption::empty(),
            bounded: ArcSwapOption::empty(),
            state: AtomicU8::new(if off { State::Off } else { State::Warming } as u8),
            generation: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            budget: settings.near_cache_budget,
            read_timeout: settings.redis_timeout,
            layout: settings.layout.clone(),
            client,
            bounded_for: Mutex::new(None),
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

    /// Memory held by the copy or the bounded cache, bytes.
    pub fn bytes(&self) -> u64 {
        match self.bounded.load().as_ref() {
            Some(bounded) => bounded.bytes(),
            None => self.bytes.load(Ordering::Relaxed),
        }
    }

    fn show_bytes(&self) {
        self.meters.bytes.set(self.bytes() as f64);
    }

    /// The answer from memory for `id` while the copy is complete and coherent, or while the
    /// bounded cache is trusted and keeps `id`'s bucket; [`Answer::AskRedis`] otherwise. Does no
    /// I/O.
    pub fn get(&self, id: StudentId) -> Answer {
        let answer = match self.state() {
            State::Complete => self.read(id),
            State::Bounded => self.read_bounded(id),
            State::Off | State::Warming | State::Resyncing => {
                if self.client.is_some() {
                    self.meters.misses.increment(1);
                }
                return Answer::AskRedis;
            }
        };
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

    /// [`NearCache::get`], and in bounded mode a miss reads the bucket through the tracking
    /// connection (so Redis tracks it for this connection), answers from it and keeps it unless it
    /// was invalidated meanwhile. [`Answer::AskRedis`]: the cache cannot say (not trusted, or the
    /// read failed: the Redis tier answers, and counts its own errors). An error: that read took
    /// the lookup's whole Redis timeout, so Redis is slow and asking it again would double the
    /// wait; the caller treats Redis as down for this lookup.
    pub async fn lookup(&self, id: StudentId) -> Result<Answer, Error> {
        let answer = self.get(id);
        if answer != Answer::AskRedis {
            return Ok(answer);
        }
        self.fetch_bounded(id).await
    }

    fn read_bounded(&self, id: StudentId) -> Answer {
        let guard = self.bounded.load();
        let Some(cache) = guard.as_ref() else { return Answer::AskRedis };
        cache.get(KeyLayout::bucket_of(id), id.get() % BUCKET_SIZE).unwrap_or(Answer::AskRedis)
    }

    /// A bounded miss: see [`NearCache::lookup`].
    async fn fetch_bounded(&self, id: StudentId) -> Result<Answer, Error> {
        let Some(client) = &self.client else { return Ok(Answer::AskRedis) };
        // Read before anything else: a trust loss from here on (the connection dropped; the one
        // fred opens next tracks nothing until the keeper's resync) keeps the reply out.
        let generation = self.generation.load(Ordering::SeqCst);
        if self.state() != State::Bounded || !client.is_connected() {
            return Ok(Answer::AskRedis);
        }
        let Some(cache) = self.bounded.load_full() else { return Ok(Answer::AskRedis) };
        let (bucket, field) = (KeyLayout::bucket_of(id), id.get() % BUCKET_SIZE);
        // Before the read: an invalidation processed from here on (fred hands them to the
        // listener, so it may come before or after this reply) keeps the reply out.
        let epoch = cache.epoch(bucket);
        let options = Options { timeout: Some(self.read_timeout), fail_fast: true, ..Options::default() };
        let read = client.with_options(&options).hgetall(self.layout.bucket_key(bucket)).await;
        let fields: HashMap<String, Bytes> = match read {
            Ok(fields) => fields,
            Err(e) if *e.kind() == ErrorKind::Timeout => return Err(e),
            // This connection failed (the listener hears of it): the read pool may still answer.
            Err(_) => return Ok(Answer::AskRedis),
        };
        let value = Arc::new(Bucket::from_fields(fields));
        // Absent from a bucket read while the marker is complete: unknown, as a kept bucket says.
        let answer = value.value(field).map_or(Answer::Unknown, Answer::Value);
        if self.generation.load(Ordering::SeqCst) == generation && cache.fill(bucket, epoch, value) {
            self.show_bytes();
        }
        Ok(answer)
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

    /// Everything Redis pushed may have been missed: stop trusting the copy until a resync, and
    /// empty the bounded cache (it has nothing to answer while Redis is down: the full copy
    /// does, see the module's rules).
    fn lose_trust(&self, why: &'static str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if matches!(self.state(), State::Complete | State::Bounded) {
            tracing::warn!(why, "near cache not trusted until it resynchronises");
            self.set_state(State::Resyncing);
        }
        if self.bounded.swap(None).is_some() {
            self.show_bytes();
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
        self.bounded.store(None);
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
        let bounded = self.bounded.load_full();
        for key in keys {
            let Some(key) = key.as_str() else { continue };
            if key == marker_key {
                self.marker_touched.notify_one();
                continue;
            }
            let Some(bucket) = self.layout.bucket_of_key(key) else { continue };
            self.meters.invalidations.increment(1);
            if let Some(bounded) = &bounded {
                // Fetched again by its next lookup (not here: it may never be asked for again).
                bounded.invalidate(bucket);
                self.show_bytes();
                continue;
            }
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
            Reconnected,
            Refetch(u32),
            Stop,
        }
        loop {
            if matches!(self.state(), State::Warming | State::Resyncing) {
                // At most: bounded for an older data set, then the new one over budget, then
                // bounded for it.
                for _ in 0..3 {
                    if !self.resync(&client, &mut refetch_rx).await {
                        break;
                    }
                }
            }
            let wake = tokio::select! {
                () = tokio::time::sleep(interval) => Wake::Check,
                () = self.marker_touched.notified() => Wake::Check,
                Some(bucket) = refetch_rx.recv() => Wake::Refetch(bucket),
                _ = reconnects.recv() => Wake::Reconnected,
                () = stop.cancelled() => Wake::Stop,
            };
            match wake {
                Wake::Check => self.check_marker(&client).await,
                Wake::Reconnected if self.state() == State::Bounded => {
                    // A new connection tracks nothing: what the bounded cache read before may
                    // change unseen. The connection error that came first empties it already;
                    // this does not rely on fred reporting one. (The full copy is not rebuilt
                    // for it: a preload is not cheap, and fred's first connection is one too.)
                    self.lose_trust("the tracking connection reconnected");
                }
                Wake::Reconnected => self.check_marker(&client).await,
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
        // Never fires for a single Redis.
        let mut topology = client.cluster_change_rx();
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
                // A new master's connection does not track yet.
                change = topology.recv() => match change {
                    Ok(_) | Err(RecvError::Lagged(_)) => self.lose_trust("the cluster's topology changed"),
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
        let loaded = match state {
            State::Complete => self.copy.load().as_ref().map(|c| c.fingerprint.clone()),
            State::Bounded => self.bounded.load().as_ref().map(|b| b.fingerprint.clone()),
            State::Off | State::Warming | State::Resyncing => return,
        };
        // In bounded mode this read is also what keeps the marker tracked: default-mode tracking
        // forgets a key once it has pushed its invalidation, until it is read again.
        match self.marker(client).await {
            Ok(Some(marker)) if Some(&marker.fingerprint) == loaded.as_ref() => {}
            // A bounded cache is emptied; another data set may fit the budget.
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

    /// Switches tracking on (again) and rebuilds the copy from Redis, or starts an empty bounded
    /// cache for a data set found over budget; trusted only if nothing was lost from the moment
    /// tracking was on. Whether to run again at once: the mode changed (a new data set may fit
    /// the budget; one that does not is kept bounded).
    async fn resync(&self, client: &Client, refetch: &mut mpsc::UnboundedReceiver<u32>) -> bool {
        if !client.is_connected() {
            return false;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let bounded_for = self.bounded_for.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // OFF first: ON with a prefix this connection already tracks is refused.
        if let Err(e) = client.stop_tracking().await {
            tracing::debug!(error = %e.details(), "near cache: CLIENT TRACKING OFF failed");
            return false;
        }
        let tracking = if bounded_for.is_some() {
            // Default mode: Redis remembers the keys this connection reads (the kept buckets and
            // the marker) and pushes each one's invalidation once; broadcast mode would push
            // every write of the data set, which a bounded cache mostly does not hold.
            client.start_tracking(Vec::<String>::new(), false, false, false, false).await
        } else {
            // Broadcast mode on every key of this layout version: buckets, schools and the marker.
            let prefix = self.layout.scan_pattern().trim_end_matches('*').to_owned();
            client.start_tracking(prefix, true, false, false, false).await
        };
        if let Err(e) = tracking {
            tracing::warn!(error = %e.details(), "near cache: CLIENT TRACKING ON failed");
            count_resync("failed");
            return false;
        }
        let marker = match self.marker(client).await {
            Ok(Some(marker)) => marker,
            Ok(None) => {
                // No complete data set in Redis: nothing to copy yet (the marker's invalidation
                // or the next interval tries again).
                self.drop_copy();
                self.set_state(State::Warming);
                return false;
            }
            Err(_) => return false,
        };
        if let Some(fingerprint) = bounded_for {
            if fingerprint == marker.fingerprint {
                self.start_bounded(&marker, generation);
                return false;
            }
            // Another data set: it may fit the budget. Tracked in broadcast mode from the start.
            *self.bounded_for.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return true;
        }
        let copy = Arc::new(DataCopy::new(&marker));
        if copy.overhead() > self.budget {
            self.over_budget(&marker);
            return true;
        }
        // The old copy is dropped here: Redis answers while the new one loads.
        self.bounded.store(None);
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
                return false;
            }
            if self.bytes() > self.budget {
                drop(fetches);
                self.over_budget(&marker);
                return true;
            }
        }
        drop(fetches);
        // Buckets written during the preload were dropped by their epoch check: read them again.
        while let Ok(bucket) = refetch.try_recv() {
            if self.fetch_into(client, &copy, bucket).await.is_err() {
                count_resync("failed");
                return false;
            }
        }
        // A bucket invalidated since is empty (lookups for it ask Redis) and queued: the copy
        // is still coherent, so a stream of writes cannot keep it from ever completing.
        if self.generation.load(Ordering::SeqCst) != generation {
            count_resync("failed");
            return false;
        }
        copy.whole.store(true, Ordering::SeqCst);
        tracing::info!(bytes = self.bytes(), buckets = copy.slots.len(), "near cache complete");
        count_resync("complete");
        self.trust_from(State::Complete, generation);
        false
    }

    /// Makes `state` (complete or bounded) current; a trust loss since `generation` that fell
    /// between the caller's check and now is applied after it (lose_trust changes only a trusted
    /// state, which it may have found not yet set).
    fn trust_from(&self, state: State, generation: u64) {
        self.set_state(state);
        if self.generation.load(Ordering::SeqCst) != generation {
            self.lose_trust("tracking may have lost an invalidation while the near cache resynchronised");
        }
    }

    /// A data set over budget: what the preload held is dropped (it was read under broadcast
    /// tracking, which the bounded mode's default-mode tracking replaces) and the next resync
    /// starts the bounded cache.
    fn over_budget(&self, marker: &Marker) {
        tracing::warn!(
            budget_bytes = self.budget,
            students = marker.count,
            "the data set does not fit the near cache's budget (API_NEAR_CACHE_MB): keeping the buckets lookups read, least recently used evicted"
        );
        count_resync("over_budget");
        *self.bounded_for.lock().unwrap_or_else(PoisonError::into_inner) = Some(marker.fingerprint.clone());
        self.drop_copy();
        self.set_state(State::Warming);
    }

    /// An empty bounded cache for `marker`'s data set, trusted if tracking lost nothing since
    /// `generation`.
    fn start_bounded(&self, marker: &Marker, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation {
            count_resync("failed");
            return;
        }
        self.drop_copy();
        self.bounded.store(Some(Arc::new(BoundedCache::new(marker, self.budget))));
        self.show_bytes();
        tracing::info!(budget_bytes = self.budget, "near cache bounded");
        count_resync("bounded");
        self.trust_from(State::Bounded, generation);
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

    fn marker(first_id: u32, last_id: u32) -> Marker {
        Marker {
            fingerprint: "f".to_owned(),
            count: u64::from(last_id - first_id + 1),
            seed: 0,
            generator: 0,
            first_id,
            last_id,
            codec: 1,
            streams: results_core::generate::StreamSizes::default(),
            loaded_at: 0,
            factor: None,
        }
    }

    /// A bucket whose field 0 holds `len` bytes.
    fn sized(len: usize) -> Arc<Bucket> {
        Arc::new(Bucket::from_fields([("0".to_owned(), Bytes::from(vec![b'x'; len]))]))
    }

    #[test]
    fn the_bounded_cache_evicts_the_least_recently_used_and_never_holds_more_than_its_budget() {
        let budget = 64 << 10;
        let cache = BoundedCache::new(&marker(0, 99_999), budget);
        assert_eq!(cache.shards.len(), 1, "a small budget is one shard");
        // Three such buckets fit the shard, not four.
        let len = (cache.shard_budget / 3) as usize - size_of::<Bucket>() - ENTRY_OVERHEAD as usize - 16;
        for bucket in [10, 11, 12] {
            assert!(cache.fill(bucket, cache.epoch(bucket), sized(len)));
        }
        assert!(cache.get(10, 0).is_some(), "10 used last now: 11 is the least recently used");
        assert!(cache.fill(13, cache.epoch(13), sized(len)));
        assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
        assert!(cache.get(11, 0).is_none(), "11 evicted");
        for kept in [10, 12, 13] {
            assert!(matches!(cache.get(kept, 0), Some(Answer::Value(v)) if v.len() == len), "{kept} kept");
        }
        assert_eq!(cache.get(13, 1), Some(Answer::Unknown), "a kept bucket knows its absent fields");
        assert_eq!(cache.get(1_000, 0), Some(Answer::Unknown), "outside the marker's buckets");
        // Replacing a kept bucket counts it once.
        let before = cache.bytes();
        assert!(cache.fill(13, cache.epoch(13), sized(len)));
        assert_eq!(cache.bytes(), before);
        assert!(!cache.fill(14, cache.epoch(14), sized(cache.shard_budget as usize)), "bigger than a shard");
        assert!(cache.get(14, 0).is_none());
        cache.invalidate(10);
        cache.invalidate(12);
        cache.invalidate(13);
        assert_eq!(cache.bytes(), BoundedCache::new(&marker(0, 99_999), budget).bytes(), "only the bookkeeping");
    }

    #[test]
    fn a_fetch_that_an_invalidation_overtook_is_not_kept() {
        let cache = BoundedCache::new(&marker(0, 99_999), 1 << 20);
        let epoch = cache.epoch(7);
        cache.invalidate(7);
        assert!(!cache.fill(7, epoch, sized(10)), "read before the write it was told of");
        assert!(cache.get(7, 0).is_none());
        assert!(cache.fill(7, cache.epoch(7), sized(10)), "read after it");
        assert!(cache.get(7, 0).is_some());
    }

    #[test]
    fn a_big_budget_is_sharded_and_each_shard_keeps_to_its_share() {
        let budget = 128 << 20;
        let cache = BoundedCache::new(&marker(0, 9_999_999), budget);
        assert_eq!(cache.shards.len() as u64, MAX_SHARDS);
        assert!(cache.shard_budget * MAX_SHARDS + cache.bytes() <= budget);
    }

    #[test]
    fn fields_no_lookup_can_reach_are_ignored() {
        let bucket = Bucket::from_fields(fields(&[("100", b"x"), ("-1", b"y"), ("abc", b"z"), ("5", b"ok")]));
        assert_eq!(bucket.present, 1 << 5);
        assert_eq!(bucket.data.as_ref(), b"ok");
    }
}
