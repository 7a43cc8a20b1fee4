//! The content checksum: a fingerprint of a data set that PostgreSQL, Redis and the generator
//! can each compute independently and compare.
//!
//! It is XXH3-128 over every school and then every result, each in ascending ID order, as
//! `id (u32 little-endian) ‖ encoded value (see [`crate::codec`])`. The codec is deterministic,
//! so the same content always gives the same checksum, whichever store it was read from.
//! Callers must feed schools before results and IDs in ascending order.

use xxhash_rust::xxh3::Xxh3;

use crate::codec;
use crate::record::{ResultRecord, School};

/// Accumulates the checksum of a data set.
#[derive(Clone, Default)]
pub struct ContentChecksum {
    hasher: Xxh3,
    schools: u64,
    results: u64,
    scratch: Vec<u8>,
}

impl ContentChecksum {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a school (all schools come before any result).
    pub fn add_school(&mut self, school: &School) {
        self.add_encoded_school(school.id, &codec::encode_school(school));
    }

    /// Adds a school already in its stored encoding.
    pub fn add_encoded_school(&mut self, id: u32, encoded: &[u8]) {
        debug_assert_eq!(self.results, 0, "schools are hashed before results");
        self.hasher.update(&id.to_le_bytes());
        self.hasher.update(encoded);
        self.schools += 1;
    }

    /// Adds a result.
    pub fn add_result(&mut self, record: &ResultRecord) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        codec::encode_result_into(record, &mut scratch);
        self.add_encoded_result(record.id.get(), &scratch);
        self.scratch = scratch;
    }

    /// Adds a result already in its stored encoding (as read from Redis).
    pub fn add_encoded_result(&mut self, id: u32, encoded: &[u8]) {
        self.hasher.update(&id.to_le_bytes());
        self.hasher.update(encoded);
        self.results += 1;
    }

    /// Number of results added.
    pub fn results(&self) -> u64 {
        self.results
    }

    /// Number of schools added.
    pub fn schools(&self) -> u64 {
        self.schools
    }

    /// The fingerprint: 32 lowercase hex digits.
    pub fn finish(&self) -> String {
        format!("{:032x}", self.hasher.digest128())
    }
}

impl std::fmt::Debug for ContentChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentChecksum")
            .field("schools", &self.schools)
            .field("results", &self.results)
            .field("fingerprint", &self.finish())
            .finish()
    }
}
