//! School values read from Redis are untrusted: any bytes decode to a school or a `CodecError`,
//! never a panic (the API's directory skips a school that does not decode).
//!
//! Beyond "no panic": a decoded school has a known region and the ID it was asked for, and
//! re-encoding it gives the same school.
#![no_main]

use libfuzzer_sys::fuzz_target;
use results_core::codec::{decode_school, encode_school};
use results_core::{CODEC_VERSION, CodecError, Region};

fuzz_target!(|data: &[u8]| {
    match decode_school(17, data) {
        Ok(school) => {
            assert_eq!(data[0], CODEC_VERSION);
            assert_eq!(school.id, 17);
            assert_eq!(Region::by_id(school.region.id), Some(school.region));
            assert_eq!(decode_school(17, &encode_school(&school)).ok(), Some(school));
        }
        Err(CodecError::Empty) => assert!(data.is_empty()),
        Err(CodecError::UnsupportedVersion { found }) => assert_ne!(found, CODEC_VERSION),
        Err(CodecError::Malformed(_) | CodecError::Invalid(_)) => assert_eq!(data[0], CODEC_VERSION),
    }
});
