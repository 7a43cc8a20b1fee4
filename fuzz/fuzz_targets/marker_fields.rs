//! The completeness marker is read from a Redis hash (`HGETALL`): field names and values are
//! untrusted. Parsing never panics; a marker it accepts holds exactly the numbers the fields
//! spelt, and writing it back out and parsing again gives the same marker.
//!
//! Input: UTF-8 text, one `field<TAB>value` per line (the seeds are real markers in that form).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use results_core::Marker;
use results_core::keys::{MARKER_CODEC, MARKER_COUNT, MARKER_FINGERPRINT, MARKER_LOADED_AT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let fields: HashMap<String, String> =
        text.split('\n').filter_map(|line| line.split_once('\t')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let Some(marker) = Marker::from_fields(&fields) else { return };
    assert_eq!(Some(&marker.fingerprint), fields.get(MARKER_FINGERPRINT));
    assert_eq!(fields.get(MARKER_COUNT).and_then(|v| v.parse().ok()), Some(marker.count));
    assert_eq!(fields.get(MARKER_LOADED_AT).and_then(|v| v.parse().ok()), Some(marker.loaded_at));
    assert_eq!(fields.get(MARKER_CODEC).and_then(|v| v.parse().ok()), Some(marker.codec));
    let written: HashMap<String, String> = marker.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(Marker::from_fields(&written), Some(marker));
});
