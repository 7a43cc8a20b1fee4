//! The Redis key layout.
//!
//! ```text
//! {prefix}:v1:r:{id / 100}   hash  field = id % 100 (decimal), value = codec::encode_result
//! {prefix}:v1:schools        hash  field = school id,          value = codec::encode_school
//! {prefix}:v1:meta           hash  the completeness marker (see MARKER_* field names)
//! ```
//!
//! Results are grouped a hundred to a hash: Redis stores small hashes as one compact listpack,
//! so a result costs its value plus a few bytes instead of a full key (~50 bytes vs ~110).
//! A hundred entries keep `HGET` a short scan and stay below `hash-max-listpack-entries`
//! (128 by default, raised in `redis/redis.conf`). Consecutive IDs share a bucket, and the key has
//! no hash tag, so buckets spread evenly over Redis Cluster slots: the full data set puts
//! 2,242-2,257 of its 6,749 buckets on each of three masters and at most 2 in one slot (tested).
//!
//! The layout version `v1` is part of every key: a future layout writes beside the old one, so
//! old and new replicas can both read during a rolling deploy.
//!
//! The marker is written last by the seeder, after every result; while it is present and its
//! count matches, a missing field is an authoritative "unknown ID" and no reader needs to ask
//! PostgreSQL. The seeder deletes it before it touches any result.

use crate::id::StudentId;

/// The layout version embedded in every key.
pub const LAYOUT_VERSION: u32 = 1;
/// Results per bucket hash.
pub const BUCKET_SIZE: u32 = 100;
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "results";

/// Marker field: the data-set fingerprint (see [`crate::checksum`]), hex.
pub const MARKER_FINGERPRINT: &str = "fingerprint";
/// Marker field: the number of results stored.
pub const MARKER_COUNT: &str = "count";
/// Marker field: the generator seed the data set came from.
pub const MARKER_SEED: &str = "seed";
/// Marker field: [`crate::generate::GENERATOR_VERSION`] of the data set.
pub const MARKER_GENERATOR: &str = "generator";
/// Marker field: the smallest registration number of the data set.
pub const MARKER_FIRST_ID: &str = "first_id";
/// Marker field: the largest registration number of the data set.
pub const MARKER_LAST_ID: &str = "last_id";
/// Marker field: the codec version of the stored values ([`crate::codec::CODEC_VERSION`], or
/// [`crate::codec::FACTOR_CODEC_VERSION`] when they carry a second factor).
pub const MARKER_CODEC: &str = "codec";
/// Marker field: students in the natural-science stream (the API shows "rank N of M").
pub const MARKER_NATURAL_SCIENCE: &str = "natural_science";
/// Marker field: students in the social-science stream.
pub const MARKER_SOCIAL_SCIENCE: &str = "social_science";
/// Marker field, only when lookups need a second factor: its kind ([`crate::FactorKind::as_str`]).
pub const MARKER_FACTOR: &str = "factor";
/// Marker field: when the load finished, Unix seconds.
pub const MARKER_LOADED_AT: &str = "loaded_at";

/// Why a key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key prefix {0:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct PrefixError(pub String);

/// Where everything lives in Redis, under one prefix (tests use a random one each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl KeyLayout {
    /// A layout under `prefix`, which must be a plain word so keys stay unambiguous.
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(plain) {
            return Err(PrefixError(prefix.to_owned()));
        }
        Ok(Self { prefix: prefix.to_owned() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bucket number holding `id`.
    pub fn bucket_of(id: StudentId) -> u32 {
        id.get() / BUCKET_SIZE
    }

    /// The key of bucket `bucket`.
    pub fn bucket_key(&self, bucket: u32) -> String {
        format!("{}:v{LAYOUT_VERSION}:r:{bucket}", self.prefix)
    }

    /// The bucket number of a bucket key of this layout (`None` for any other key).
    pub fn bucket_of_key(&self, key: &str) -> Option<u32> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(&format!(":v{LAYOUT_VERSION}:r:"))?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    }

    /// The hash key and field under which the result for `id` is stored.
    pub fn result_location(&self, id: StudentId) -> (String, u32) {
        (self.bucket_key(Self::bucket_of(id)), id.get() % BUCKET_SIZE)
    }

    /// The ID stored at `field` of `bucket`, if the pair is a valid location.
    pub fn id_at(bucket: u32, field: u32) -> Option<StudentId> {
        if field >= BUCKET_SIZE {
            return None;
        }
        bucket.checked_mul(BUCKET_SIZE).and_then(|base| StudentId::new(base + field).ok())
    }

    /// The schools hash.
    pub fn schools_key(&self) -> String {
        format!("{}:v{LAYOUT_VERSION}:schools", self.prefix)
    }

    /// The completeness marker hash.
    pub fn marker_key(&self) -> String {
        format!("{}:v{LAYOUT_VERSION}:meta", self.prefix)
    }

    /// A scratch key used to check that Redis accepts writes before a load starts.
    pub fn probe_key(&self) -> String {
        format!("{}:v{LAYOUT_VERSION}:probe", self.prefix)
    }

    /// A `SCAN MATCH` pattern covering every key of this layout version under the prefix.
    pub fn scan_pattern(&self) -> String {
        format!("{}:v{LAYOUT_VERSION}:*", self.prefix)
    }

    /// The buckets the contiguous IDs `ids` occupy.
    pub fn buckets_for(ids: std::ops::RangeInclusive<u32>) -> std::ops::RangeInclusive<u32> {
        ids.start() / BUCKET_SIZE..=ids.end() / BUCKET_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_one_location_and_back() {
        let layout = KeyLayout::new("t-1").expect("valid prefix");
        let id = StudentId::new(1_674_822).expect("in range");
        let (key, field) = layout.result_location(id);
        assert_eq!(key, "t-1:v1:r:16748");
        assert_eq!(field, 22);
        assert_eq!(KeyLayout::id_at(16_748, 22), Some(id));
        assert_eq!(KeyLayout::id_at(16_748, 100), None);
        assert_eq!(layout.bucket_of_key(&key), Some(16_748));
        for other in ["t-1:v1:schools", "t-1:v1:r:", "t-1:v1:r:+5", "t-12:v1:r:5", "t-1:v2:r:5"] {
            assert_eq!(layout.bucket_of_key(other), None, "{other}");
        }
    }

    #[test]
    fn buckets_cover_exactly_the_data_set() {
        assert_eq!(KeyLayout::buckets_for(1_000_000..=1_674_822), 10_000..=16_748);
        assert_eq!(KeyLayout::buckets_for(1_000_000..=1_000_099), 10_000..=10_000);
        assert_eq!(KeyLayout::buckets_for(1_000_000..=1_000_100), 10_000..=10_001);
        assert_eq!(KeyLayout::buckets_for(1..=674_823), 0..=6_748);
    }

    /// Redis Cluster's hash slot of a key without a hash tag: CRC16-XMODEM of the key, mod 16384.
    fn cluster_slot(key: &str) -> usize {
        let mut crc: u16 = 0;
        for &byte in key.as_bytes() {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            }
        }
        usize::from(crc) % 16_384
    }

    #[test]
    fn the_cluster_slot_function_matches_redis() {
        // Values from CLUSTER KEYSLOT (Redis 7) and the CRC16 check value of the Redis spec.
        assert_eq!(cluster_slot("123456789"), 0x31C3);
        assert_eq!(cluster_slot("results:v1:meta"), 13_138);
        assert_eq!(cluster_slot("results:v1:schools"), 9_976);
    }

    #[test]
    fn buckets_spread_evenly_over_a_three_master_cluster() {
        let layout = KeyLayout::default();
        let buckets = KeyLayout::buckets_for(1_000_000..=1_674_822);
        let keys: Vec<String> = buckets.map(|b| layout.bucket_key(b)).collect();
        // No hash tag anywhere (a prefix cannot contain braces): each key hashes whole, so the
        // buckets are not pinned to one slot.
        for key in keys.iter().chain([&layout.schools_key(), &layout.marker_key(), &layout.probe_key()]) {
            assert!(!key.contains('{') && !key.contains('}'), "{key} has a hash tag");
        }
        let mut per_slot = vec![0u32; 16_384];
        for key in &keys {
            per_slot[cluster_slot(key)] += 1;
        }
        // The slot ranges `redis-cli --cluster create` gives three masters.
        let per_master: Vec<u32> =
            [0..5_461, 5_461..10_923, 10_923..16_384].into_iter().map(|r| per_slot[r].iter().sum()).collect();
        let mean = keys.len() as f64 / 3.0;
        for (master, &n) in per_master.iter().enumerate() {
            assert!((f64::from(n) - mean).abs() / mean < 0.02, "master {master}: {n} buckets, mean {mean:.0}");
        }
        // 6,749 buckets over 16,384 slots (0.41 a slot): the fullest slot holds 2 (200 results).
        let fullest = per_slot.iter().max().copied().unwrap_or(0);
        assert!(fullest <= 3, "a slot holds {fullest} buckets");
    }

    #[test]
    fn prefixes_that_could_collide_are_refused() {
        for bad in ["", "a:b", "a*", "a b", &"x".repeat(65)] {
            assert!(KeyLayout::new(bad).is_err(), "{bad:?}");
        }
    }
}
