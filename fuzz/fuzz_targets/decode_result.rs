//! Result values read from Redis are untrusted: any bytes (corrupt, truncated, written by another
//! codec version) decode to a record or a `CodecError`, never a panic. The API counts the error as
//! `decode_error` and answers from PostgreSQL.
//!
//! Beyond "no panic": whatever decodes is a valid record (the decoder's domain checks hold), the
//! error kind matches the version byte, and re-encoding what decoded gives the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use results_core::codec::{decode_result, encode_result};
use results_core::{CodecError, READABLE_CODEC_VERSIONS, StudentId, Subject};

fuzz_target!(|data: &[u8]| {
    let id = StudentId::new(1_234_567).expect("in range");
    match decode_result(id, data) {
        Ok(record) => {
            assert!(READABLE_CODEC_VERSIONS.contains(&data[0]));
            // Version 2 exactly when the value carries a second-factor hash.
            assert_eq!(data[0] == READABLE_CODEC_VERSIONS[1], record.factor.is_some());
            assert_eq!(record.id, id, "the ID comes from the hash field, never from the value");
            assert!(record.scores.iter().all(|&s| s <= Subject::MAX_SCORE), "{record:?}");
            assert!(record.rank > 0 && record.school_id > 0 && !record.name.is_empty(), "{record:?}");
            let again = encode_result(&record);
            assert_eq!(decode_result(id, &again).ok(), Some(record));
        }
        Err(CodecError::Empty) => assert!(data.is_empty()),
        Err(CodecError::UnsupportedVersion { found }) => {
            assert_eq!(found, data[0]);
            assert!(!READABLE_CODEC_VERSIONS.contains(&found));
        }
        Err(CodecError::Malformed(_) | CodecError::Invalid(_)) => assert!(READABLE_CODEC_VERSIONS.contains(&data[0])),
    }
});
