//! The shared vocabulary of the results portal: every binary (API, seeder, load generator) links
//! this crate so that they agree byte for byte on what a result is and where it lives.
//! Nothing here performs I/O (`env` reads the process's environment, nothing else).
//!
//! - [`id`]: what a well-formed registration number is, and strict parsing from untrusted text.
//! - [`record`]: the result record, streams, subjects, schools, regions and the pass mark.
//! - [`factor`]: the second factor (PIN or date of birth) and its keyed hash.
//! - [`codec`]: the versioned MessagePack encoding of records and schools stored in Redis.
//! - [`keys`]: the Redis key layout (prefix, layout version, buckets, completeness marker).
//! - [`marker`]: the completeness marker the seeder writes last, which makes a miss authoritative.
//! - [`generate`]: the deterministic data generator (same seed, same data, byte for byte).
//! - `names`: the word lists of the generated students', schools' and regions' names.
//! - [`checksum`]: the order-defined content checksum used as data-set fingerprint and by verify.
//! - [`latency`]: the latency histogram buckets the API and the load generator share.
//! - [`env`]: the shared variables (`RESULTS_KEY_PREFIX`, `RESULTS_STUDENTS`), the `RUST_LOG` fallback.

pub mod checksum;
pub mod codec;
pub mod env;
pub mod factor;
pub mod generate;
pub mod id;
pub mod keys;
pub mod latency;
pub mod marker;
mod names;
pub mod record;

pub use checksum::ContentChecksum;
pub use codec::{CODEC_VERSION, CodecError, FACTOR_CODEC_VERSION, READABLE_CODEC_VERSIONS};
pub use factor::{FactorHash, FactorKey, FactorKind};
pub use generate::{
    DEFAULT_FIRST_ID, DEFAULT_SEED, DEFAULT_STUDENTS, Dataset, DatasetSpec, GENERATOR_VERSION, SpecError,
};
pub use id::{IdError, StudentId};
pub use keys::KeyLayout;
pub use marker::Marker;
pub use record::{PASS_MARK, Region, ResultRecord, SUBJECTS_PER_STREAM, School, Stream, Subject};
