//! The JSON body of a result, rendered once per cache fill together with its strong ETag, so a
//! cached answer costs no serialisation.

use axum::http::HeaderValue;
use bytes::Bytes;
use results_core::FactorHash;
use results_core::record::{PASS_MARK, ResultRecord, SUBJECTS_PER_STREAM, Subject};
use serde::Serialize;

/// A school as shown to students.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchoolInfo {
    /// School name.
    pub name: String,
    /// Region name.
    pub region: &'static str,
}

/// A rendered result: body and ETag.
#[derive(Debug, Clone)]
pub struct RenderedResult {
    /// The JSON body.
    pub body: Bytes,
    /// Strong ETag of the body (`"…"`).
    pub etag: HeaderValue,
    /// The keyed hash of the second factor a lookup must present to see it, if any.
    pub factor: Option<FactorHash>,
}

#[derive(Serialize)]
struct ResultJson<'a> {
    student_id: u32,
    name: &'a str,
    school: SchoolJson<'a>,
    stream: &'static str,
    subjects: [SubjectJson; SUBJECTS_PER_STREAM],
    total: u16,
    max_total: u16,
    pass_mark: u16,
    passed: bool,
    rank: RankJson,
}

#[derive(Serialize)]
struct SchoolJson<'a> {
    id: u32,
    name: &'a str,
    region: &'a str,
}

#[derive(Serialize)]
struct SubjectJson {
    subject: &'static str,
    score: u8,
}

#[derive(Serialize)]
struct RankJson {
    in_stream: u32,
    stream_size: u32,
}

/// Renders `record` with its school and the size of its stream.
pub fn render(record: &ResultRecord, school: &SchoolInfo, stream_size: u32) -> RenderedResult {
    let subjects = record.stream.subjects().map(|subject| SubjectJson { subject: subject.as_str(), score: 0 });
    let mut subjects = subjects;
    for (json, score) in subjects.iter_mut().zip(record.scores) {
        json.score = score;
    }
    let json = ResultJson {
        student_id: record.id.get(),
        name: &record.name,
        school: SchoolJson { id: record.school_id, name: &school.name, region: school.region },
        stream: record.stream.as_str(),
        subjects,
        total: record.total(),
        max_total: SUBJECTS_PER_STREAM as u16 * u16::from(Subject::MAX_SCORE),
        pass_mark: PASS_MARK,
        passed: record.passed(),
        rank: RankJson { in_stream: record.rank, stream_size },
    };
    // Serialising plain structs of numbers and strings cannot fail.
    let body = serde_json::to_vec(&json).unwrap_or_default();
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
    RenderedResult {
        body: Bytes::from(body),
        etag: HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
        factor: record.factor,
    }
}
