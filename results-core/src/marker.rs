//! The completeness marker: the small hash the seeder writes last (see [`crate::keys`]), and the
//! only thing that lets a reader treat a missing result as an unknown ID.

use std::collections::HashMap;

use crate::generate::StreamSizes;
use crate::keys;

/// What a complete load wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Content fingerprint of the data set.
    pub fingerprint: String,
    /// Number of results.
    pub count: u64,
    /// Generator seed (0 for an imported file).
    pub seed: u64,
    /// Generator version (0 for an imported file).
    pub generator: u32,
    /// The smallest registration number of the data set.
    pub first_id: u32,
    /// The largest registration number of the data set.
    pub last_id: u32,
    /// Codec version of the values.
    pub codec: u8,
    /// Students per stream.
    pub streams: StreamSizes,
    /// When the load finished, Unix seconds.
    pub loaded_at: u64,
}

impl Marker {
    /// The hash fields to write.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (keys::MARKER_FINGERPRINT, self.fingerprint.clone()),
            (keys::MARKER_COUNT, self.count.to_string()),
            (keys::MARKER_SEED, self.seed.to_string()),
            (keys::MARKER_GENERATOR, self.generator.to_string()),
            (keys::MARKER_FIRST_ID, self.first_id.to_string()),
            (keys::MARKER_LAST_ID, self.last_id.to_string()),
            (keys::MARKER_CODEC, self.codec.to_string()),
            (keys::MARKER_NATURAL_SCIENCE, self.streams.natural_science.to_string()),
            (keys::MARKER_SOCIAL_SCIENCE, self.streams.social_science.to_string()),
            (keys::MARKER_LOADED_AT, self.loaded_at.to_string()),
        ]
    }

    /// Parses the hash fields; `None` if any is missing or malformed (such a marker is not
    /// trusted).
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Some(Marker {
            fingerprint: fields.get(keys::MARKER_FINGERPRINT)?.clone(),
            count: number(keys::MARKER_COUNT)?,
            seed: number(keys::MARKER_SEED)?,
            generator: u32::try_from(number(keys::MARKER_GENERATOR)?).ok()?,
            first_id: u32::try_from(number(keys::MARKER_FIRST_ID)?).ok()?,
            last_id: u32::try_from(number(keys::MARKER_LAST_ID)?).ok()?,
            codec: u8::try_from(number(keys::MARKER_CODEC)?).ok()?,
            streams: StreamSizes {
                natural_science: u32::try_from(number(keys::MARKER_NATURAL_SCIENCE)?).ok()?,
                social_science: u32::try_from(number(keys::MARKER_SOCIAL_SCIENCE)?).ok()?,
            },
            loaded_at: number(keys::MARKER_LOADED_AT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_a_damaged_marker_is_not_trusted() {
        let marker = Marker {
            fingerprint: "ab".repeat(16),
            count: 674_823,
            seed: 2026,
            generator: 1,
            first_id: 1_000_000,
            last_id: 1_674_822,
            codec: 1,
            streams: StreamSizes { natural_science: 303_000, social_science: 371_823 },
            loaded_at: 1_790_000_000,
        };
        let fields: HashMap<String, String> = marker.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(Marker::from_fields(&fields), Some(marker));
        let mut damaged = fields.clone();
        damaged.insert(keys::MARKER_COUNT.to_owned(), "many".to_owned());
        assert_eq!(Marker::from_fields(&damaged), None);
        let mut partial = fields.clone();
        partial.remove(keys::MARKER_FINGERPRINT);
        assert_eq!(Marker::from_fields(&partial), None);
        // A marker from before the data set recorded its ID range is not trusted either: the
        // seeder rewrites it from PostgreSQL on its next run.
        let mut old = fields;
        old.remove(keys::MARKER_LAST_ID);
        assert_eq!(Marker::from_fields(&old), None);
    }
}
