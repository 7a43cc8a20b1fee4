//! Every valid record and school survives encode → decode unchanged (arbitrary Unicode names,
//! every stream, region, score and rank, with or without a second-factor hash), and the encoding
//! carries its version byte (1 without a factor, 2 with one).
//!
//! The input is shaped by `arbitrary`; it is then mapped into the valid domain (scores 0-100,
//! rank and school ID at least 1, a non-empty name) rather than discarded, so no run is wasted.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use results_core::codec::{decode_result, decode_school, encode_result, encode_result_into, encode_school};
use results_core::{CODEC_VERSION, FACTOR_CODEC_VERSION, FactorHash, Region, ResultRecord, School, Stream, StudentId, Subject};

#[derive(Arbitrary, Debug)]
struct Input {
    id_offset: u32,
    name: String,
    school_id: u32,
    social_science: bool,
    scores: [u8; 6],
    rank: u32,
    factor: Option<[u8; 16]>,
    school_name: String,
    region: u8,
}

fuzz_target!(|input: Input| {
    let id = StudentId::new(StudentId::MIN + input.id_offset % StudentId::MAX).expect("in range");
    let name = if input.name.is_empty() { "A".to_owned() } else { input.name };
    let record = ResultRecord {
        id,
        name,
        school_id: input.school_id.max(1),
        stream: if input.social_science { Stream::SocialScience } else { Stream::NaturalScience },
        scores: input.scores.map(|s| s % (Subject::MAX_SCORE + 1)),
        rank: input.rank.max(1),
        factor: input.factor.map(FactorHash),
    };
    let bytes = encode_result(&record);
    assert_eq!(bytes[0], if record.factor.is_some() { FACTOR_CODEC_VERSION } else { CODEC_VERSION });
    assert_eq!(decode_result(id, &bytes).ok().as_ref(), Some(&record));
    // Appending into a reused buffer (the seeder's path) gives the same bytes.
    let mut reused = Vec::new();
    encode_result_into(&record, &mut reused);
    assert_eq!(reused, bytes);

    let region = Region::ALL[usize::from(input.region) % Region::ALL.len()];
    let school = School { id: input.school_id, name: input.school_name, region };
    let bytes = encode_school(&school);
    assert_eq!(bytes[0], CODEC_VERSION);
    assert_eq!(decode_school(school.id, &bytes).ok(), Some(school));
});
