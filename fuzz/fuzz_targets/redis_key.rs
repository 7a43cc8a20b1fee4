//! Key names and hash fields come back from Redis (`SCAN`, `HGETALL`) when the seeder verifies a
//! load: the key is mapped to a bucket, the field parsed and the pair turned into a student ID.
//! None of it panics, and every ID it yields is stored exactly where the layout would put it.
//!
//! Input: UTF-8 text, three lines: key prefix, key name, hash field (the seeds are real ones).
#![no_main]

use libfuzzer_sys::fuzz_target;
use results_core::{KeyLayout, StudentId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let (prefix, key, field) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let Ok(layout) = KeyLayout::new(prefix) else { return };
    let Some(bucket) = layout.bucket_of_key(key) else { return };
    // The canonical key of that bucket names the same bucket (a key with leading zeros is
    // accepted but is not what the seeder writes).
    assert_eq!(layout.bucket_of_key(&layout.bucket_key(bucket)), Some(bucket));
    assert!(key.starts_with(prefix) && key.ends_with(&bucket.to_string()), "{key:?} -> {bucket}");
    let Some(id) = field.parse::<u32>().ok().and_then(|f| KeyLayout::id_at(bucket, f)) else { return };
    assert!((StudentId::MIN..=StudentId::MAX).contains(&id.get()));
    let (stored_key, stored_field) = layout.result_location(id);
    assert_eq!(stored_key, layout.bucket_key(bucket));
    assert_eq!(field.parse::<u32>().ok(), Some(stored_field));
});
