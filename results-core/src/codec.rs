//! The versioned encoding of values stored in Redis.
//!
//! A value is one version byte ([`CODEC_VERSION`]) followed by a MessagePack array (rmp-serde's
//! compact, field-order encoding). The student ID is not inside the value: it is the hash field
//! (see [`crate::keys`]). Bytes read from Redis are untrusted: decoding never panics, and every
//! way a value can be wrong (empty, another version, malformed, out-of-range field) is a
//! [`CodecError`] the reader can count and fall back on.
//!
//! Evolving the encoding: add a new version byte and keep decoding the old one for one release,
//! so old and new replicas can run side by side during a rolling deploy.
//!
//! Version 2 ([`FACTOR_CODEC_VERSION`]) is version 1 plus the keyed hash of the student's second
//! factor ([`crate::factor`]). Only a result that has one is written in version 2: an open data
//! set's values, and so its fingerprint, stay byte for byte what they were.

use serde::{Deserialize, Serialize};

use crate::factor::{FACTOR_HASH_BYTES, FactorHash};
use crate::id::StudentId;
use crate::record::{Region, ResultRecord, SUBJECTS_PER_STREAM, School, Stream, Subject};

/// The version byte written in front of every value by this build.
pub const CODEC_VERSION: u8 = 1;
/// The version byte of a result that carries a second-factor hash (and of the marker of a data
/// set whose results do).
pub const FACTOR_CODEC_VERSION: u8 = 2;
/// Every version byte this build reads.
pub const READABLE_CODEC_VERSIONS: [u8; 2] = [CODEC_VERSION, FACTOR_CODEC_VERSION];

/// Why bytes from Redis could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Zero bytes: not a value this project writes.
    #[error("empty value")]
    Empty,
    /// Written by another version of the codec.
    #[error("value has codec version {found}, this build reads versions {CODEC_VERSION} and {FACTOR_CODEC_VERSION}")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// Not a well-formed MessagePack value of the expected shape.
    #[error("malformed value: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// Well-formed, but a field is outside its domain.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// The on-the-wire shape of a result, version 1 (field order is the format).
#[derive(Serialize, Deserialize)]
struct ResultV1<'a> {
    name: &'a str,
    school_id: u32,
    stream: u8,
    scores: [u8; SUBJECTS_PER_STREAM],
    rank: u32,
}

/// Version 2: version 1 and the factor hash (field order is the format).
#[derive(Serialize, Deserialize)]
struct ResultV2<'a> {
    name: &'a str,
    school_id: u32,
    stream: u8,
    scores: [u8; SUBJECTS_PER_STREAM],
    rank: u32,
    #[serde(with = "serde_bytes_array")]
    factor: [u8; FACTOR_HASH_BYTES],
}

/// The factor hash as one MessagePack bin of 16 bytes (an array of integers would be ~twice as
/// long).
mod serde_bytes_array {
    use serde::de::Error as _;
    use serde::{Deserializer, Serializer};

    use super::FACTOR_HASH_BYTES;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; FACTOR_HASH_BYTES], out: S) -> Result<S::Ok, S::Error> {
        out.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<[u8; FACTOR_HASH_BYTES], D::Error> {
        let bytes: &'de [u8] = serde::Deserialize::deserialize(input)?;
        bytes.try_into().map_err(|_| D::Error::custom("a factor hash is 16 bytes"))
    }
}

/// The on-the-wire shape of a school, version 1.
#[derive(Serialize, Deserialize)]
struct SchoolV1<'a> {
    name: &'a str,
    region_id: u8,
}

fn encode_with_version<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    encode_as(CODEC_VERSION, value, out);
}

fn encode_as<T: Serialize>(version: u8, value: &T, out: &mut Vec<u8>) {
    out.push(version);
    // Serializing plain structs of integers, strings and arrays into a Vec cannot fail:
    // the only error sources of rmp-serde are I/O (a Vec never fails) and unsupported types.
    if let Err(error) = rmp_serde::encode::write(out, value) {
        unreachable!("encoding into a Vec cannot fail: {error}");
    }
}

fn payload(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&CODEC_VERSION, rest)) => Ok(rest),
        Some((&found, _)) => Err(CodecError::UnsupportedVersion { found }),
    }
}

/// Appends the encoding of `record` to `out` (cleared by the caller when reusing a buffer):
/// version 1 without a factor, version 2 with one.
pub fn encode_result_into(record: &ResultRecord, out: &mut Vec<u8>) {
    let (name, school_id, stream, scores, rank) =
        (record.name.as_str(), record.school_id, record.stream.tag(), record.scores, record.rank);
    match record.factor {
        None => encode_with_version(&ResultV1 { name, school_id, stream, scores, rank }, out),
        Some(FactorHash(factor)) => {
            encode_as(FACTOR_CODEC_VERSION, &ResultV2 { name, school_id, stream, scores, rank, factor }, out);
        }
    }
}

/// The encoding of `record`.
pub fn encode_result(record: &ResultRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    encode_result_into(record, &mut out);
    out
}

/// Decodes the value stored for `id` (either version).
pub fn decode_result(id: StudentId, bytes: &[u8]) -> Result<ResultRecord, CodecError> {
    let (wire, factor) = match bytes.split_first() {
        Some((&FACTOR_CODEC_VERSION, rest)) => {
            let v2: ResultV2<'_> = rmp_serde::from_slice(rest)?;
            let v1 = ResultV1 {
                name: v2.name,
                school_id: v2.school_id,
                stream: v2.stream,
                scores: v2.scores,
                rank: v2.rank,
            };
            (v1, Some(FactorHash(v2.factor)))
        }
        _ => (rmp_serde::from_slice::<ResultV1<'_>>(payload(bytes)?)?, None),
    };
    let stream = Stream::from_tag(wire.stream).ok_or(CodecError::Invalid("unknown stream"))?;
    if wire.scores.iter().any(|&s| s > Subject::MAX_SCORE) {
        return Err(CodecError::Invalid("score above the maximum"));
    }
    if wire.rank == 0 || wire.name.is_empty() || wire.school_id == 0 {
        return Err(CodecError::Invalid("missing name, school or rank"));
    }
    Ok(ResultRecord {
        id,
        name: wire.name.to_owned(),
        school_id: wire.school_id,
        stream,
        scores: wire.scores,
        rank: wire.rank,
        factor,
    })
}

/// The encoding of a school (stored in the schools hash, field = school ID).
pub fn encode_school(school: &School) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    encode_with_version(&SchoolV1 { name: &school.name, region_id: school.region.id }, &mut out);
    out
}

/// Decodes the value stored for school `id`.
pub fn decode_school(id: u32, bytes: &[u8]) -> Result<School, CodecError> {
    let wire: SchoolV1<'_> = rmp_serde::from_slice(payload(bytes)?)?;
    let region = Region::by_id(wire.region_id).ok_or(CodecError::Invalid("unknown region"))?;
    Ok(School { id, name: wire.name.to_owned(), region })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResultRecord {
        ResultRecord {
            id: StudentId::new(1_234_567).expect("in range"),
            name: "Hana Tesfaye Bekele".to_owned(),
            school_id: 1_742,
            stream: Stream::SocialScience,
            scores: [55, 61, 70, 48, 100, 0],
            rank: 120_345,
            factor: None,
        }
    }

    #[test]
    fn a_result_with_a_factor_is_version_2_and_one_without_stays_version_1() {
        let open = sample();
        let v1 = encode_result(&open);
        let mut guarded = sample();
        guarded.factor = Some(FactorHash([7; FACTOR_HASH_BYTES]));
        let v2 = encode_result(&guarded);
        assert_eq!((v1[0], v2[0]), (CODEC_VERSION, FACTOR_CODEC_VERSION));
        assert_eq!(v2.len(), v1.len() + 2 + FACTOR_HASH_BYTES, "one bin of 16 bytes more");
        assert_eq!(decode_result(open.id, &v1).expect("v1"), open);
        assert_eq!(decode_result(guarded.id, &v2).expect("v2"), guarded);
        // A version-1 body under the version-2 byte is refused, not read as open.
        let mut relabelled = v1.clone();
        relabelled[0] = FACTOR_CODEC_VERSION;
        assert!(decode_result(open.id, &relabelled).is_err());
        for cut in 1..v2.len() {
            assert!(decode_result(guarded.id, &v2[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn result_round_trips_and_stays_small() {
        let record = sample();
        let bytes = encode_result(&record);
        assert_eq!(bytes[0], CODEC_VERSION);
        assert!(bytes.len() < 48, "value is {} bytes", bytes.len());
        let back = decode_result(record.id, &bytes).expect("decodes");
        assert_eq!(back, record);
    }

    #[test]
    fn school_round_trips() {
        let school = School { id: 9, name: "Bahir Dar Tana Secondary School".into(), region: Region::ALL[2] };
        assert_eq!(decode_school(9, &encode_school(&school)).expect("decodes"), school);
    }

    #[test]
    fn another_version_is_refused_not_misread() {
        let mut bytes = encode_result(&sample());
        bytes[0] = FACTOR_CODEC_VERSION + 1;
        assert!(matches!(
            decode_result(sample().id, &bytes),
            Err(CodecError::UnsupportedVersion { found }) if found == FACTOR_CODEC_VERSION + 1
        ));
    }

    #[test]
    fn corrupt_values_are_errors_never_panics() {
        let id = sample().id;
        assert!(matches!(decode_result(id, &[]), Err(CodecError::Empty)));
        let good = encode_result(&sample());
        // Every truncation of a good value is an error.
        for cut in 1..good.len() {
            assert!(decode_result(id, &good[..cut]).is_err(), "truncated at {cut}");
        }
        // A score above 100 and an unknown stream tag are rejected.
        let mut bad = sample();
        bad.scores[0] = 101;
        assert!(matches!(decode_result(id, &encode_result(&bad)), Err(CodecError::Invalid(_))));
        let mut unknown_stream = Vec::new();
        let wire = ResultV1 { name: "A B C", school_id: 1, stream: 7, scores: [1; 6], rank: 1 };
        encode_with_version(&wire, &mut unknown_stream);
        assert!(matches!(decode_result(id, &unknown_stream), Err(CodecError::Invalid(_))));
        // Overwrite each byte in turn: decoding stays total (a value or an error, no panic).
        let mut flipped = good.clone();
        for i in 1..flipped.len() {
            flipped[i] = 0xff;
            let outcome = decode_result(id, &flipped);
            assert!(outcome.is_err() || outcome.is_ok_and(|r| r.id == id));
            flipped[i] = good[i];
        }
    }
}
