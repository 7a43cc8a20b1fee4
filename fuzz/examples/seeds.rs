//! Writes the committed seed corpora (`fuzz/seeds/<target>/`) from real values: a small data set
//! from `results_core::generate`, encoded exactly as the seeder stores it in Redis, plus the edge
//! cases a reader must survive (empty, truncated, another codec version).
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.
//! Files are named by a hash of their content (as libFuzzer names corpus files), so rerunning it
//! rewrites the same files.

use std::fs;
use std::path::{Path, PathBuf};

use results_core::codec::{encode_result, encode_school};
use results_core::generate::StreamSizes;
use results_core::keys::DEFAULT_PREFIX;
use results_core::{CODEC_VERSION, ContentChecksum, Dataset, DatasetSpec, KeyLayout, Marker};

/// Students in the seed data set: enough for both streams, several schools and tied ranks.
const STUDENTS: u32 = 1_000;
/// How many result values to keep (spread evenly over the data set).
const RESULTS_KEPT: usize = 16;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("fuzz/seeds"));
    let spec = DatasetSpec::new(results_core::DEFAULT_SEED, STUDENTS).map_err(std::io::Error::other)?;
    let dataset = Dataset::new(spec);
    let records = dataset.generate();

    let kept: Vec<_> = records.iter().step_by(records.len() / RESULTS_KEPT).collect();
    let mut results: Vec<Vec<u8>> = kept.iter().map(|r| encode_result(r)).collect();
    let good = results[0].clone();
    results.push(Vec::new());
    results.push(good[..good.len() / 2].to_vec());
    let mut old = good.clone();
    old[0] = CODEC_VERSION.wrapping_sub(1);
    results.push(old);
    let mut newer = good;
    newer[0] = CODEC_VERSION + 1;
    results.push(newer);
    write_all(&root.join("decode_result"), &results)?;

    let mut schools: Vec<Vec<u8>> = dataset.schools().iter().take(8).map(encode_school).collect();
    if let Some(longest) = dataset.schools().iter().max_by_key(|s| s.name.len()) {
        schools.push(encode_school(longest));
    }
    write_all(&root.join("decode_school"), &schools)?;

    let mut checksum = ContentChecksum::new();
    dataset.schools().iter().for_each(|s| checksum.add_school(s));
    records.iter().for_each(|r| checksum.add_result(r));
    let marker = Marker {
        fingerprint: checksum.finish(),
        count: records.len() as u64,
        seed: spec.seed(),
        generator: results_core::GENERATOR_VERSION,
        first_id: *spec.ids().start(),
        last_id: *spec.ids().end(),
        codec: CODEC_VERSION,
        streams: StreamSizes::count(&records),
        loaded_at: 1_790_000_000,
    };
    let lines = |m: &Marker| m.to_fields().iter().map(|(k, v)| format!("{k}\t{v}\n")).collect::<String>().into_bytes();
    let other_codec = Marker { codec: CODEC_VERSION + 1, ..marker.clone() };
    write_all(&root.join("marker_fields"), &[lines(&marker), lines(&other_codec)])?;

    let layout = KeyLayout::default();
    let (key, field) = layout.result_location(spec.id_at(STUDENTS - 1).expect("in range"));
    let keys = [
        format!("{DEFAULT_PREFIX}\n{key}\n{field}"),
        format!("{DEFAULT_PREFIX}\n{}\n0", layout.bucket_key(spec.first_id() / 100)),
        format!("{DEFAULT_PREFIX}\n{}\n7", layout.schools_key()),
        format!("{DEFAULT_PREFIX}\n{}\n", layout.marker_key()),
    ];
    write_all(&root.join("redis_key"), &keys.map(String::into_bytes))?;

    let ids = ["1", "1000000", "999999999", "1674822", "0999999", "0", "1000000000", "", "1e6", "١٢٣٤٥٦٧"];
    write_all(&root.join("student_id"), &ids.map(|s| s.as_bytes().to_vec()))?;
    Ok(())
}

fn write_all(dir: &Path, inputs: &[Vec<u8>]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for input in inputs {
        let name = format!("{:016x}", fnv1a(input));
        fs::write(dir.join(name), input)?;
    }
    println!("{}: {} seeds", dir.display(), inputs.len());
    Ok(())
}

/// A stable name for a seed (FNV-1a; collisions would only merge two seeds into one file).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
