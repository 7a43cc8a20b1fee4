//! The completeness marker: the small hash the seeder writes last (see [`crate::keys`]), and the
//! only thing that lets a reader treat a missing result as an unknown ID.

use std::collections::HashMap;

use crate::factor::FactorKind;
use crate::generate::StreamSizes;
use crate::keys;

/// Where every data set started before markers recorded their range ([`Marker::from_fields`]):
/// the generator's first ID then, fixed in code.
const LEGACY_FIRST_ID: u32 = 1_000_000;

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
    /// The second factor every lookup must present, if the data set carries one.
    pub factor: Option<FactorKind>,
}

impl Marker {
    /// The hash fields to write.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
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
        ];
        if let Some(kind) = self.factor {
            fields.push((keys::MARKER_FACTOR, kind.as_str().to_owned()));
        }
        fields
    }

    /// Parses the hash fields; `None` if any is missing or malformed (such a marker is not
    /// trusted).
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        let count = number(keys::MARKER_COUNT)?;
        let (first_id, last_id) = match (fields.get(keys::MARKER_FIRST_ID), fields.get(keys::MARKER_LAST_ID)) {
            (Some(_), Some(_)) => (
                u32::try_from(number(keys::MARKER_FIRST_ID)?).ok()?,
                u32::try_from(number(keys::MARKER_LAST_ID)?).ok()?,
            ),
            // Written before data sets recorded their range: every data set then was generated
            // from 1000000 upwards (migration 0003 backfills PostgreSQL's the same way). Trusting
            // it keeps a rolling deploy on Redis: new replicas reading a marker the old seeder
            // wrote would otherwise send every lookup to PostgreSQL until the next load.
            (None, None) => {
                let last = u64::from(LEGACY_FIRST_ID).checked_add(count)?.checked_sub(1)?;
                (LEGACY_FIRST_ID, u32::try_from(last).ok()?)
            }
            _ => return None,
        };
        // Absent: an open data set (and every marker written before factors existed).
        let factor = match fields.get(keys::MARKER_FACTOR) {
            None => None,
            Some(name) => Some(FactorKind::from_name(name)?),
        };
        Some(Marker {
            fingerprint: fields.get(keys::MARKER_FINGERPRINT)?.clone(),
            count,
            seed: number(keys::MARKER_SEED)?,
            generator: u32::try_from(number(keys::MARKER_GENERATOR)?).ok()?,
            first_id,
            last_id,
            codec: u8::try_from(number(keys::MARKER_CODEC)?).ok()?,
            streams: StreamSizes {
                natural_science: u32::try_from(number(keys::MARKER_NATURAL_SCIENCE)?).ok()?,
                social_science: u32::try_from(number(keys::MARKER_SOCIAL_SCIENCE)?).ok()?,
            },
            loaded_at: number(keys::MARKER_LOADED_AT)?,
            factor,
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
            factor: None,
        };
        let fields: HashMap<String, String> = marker.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(Marker::from_fields(&fields), Some(marker.clone()));
        let mut damaged = fields.clone();
        damaged.insert(keys::MARKER_COUNT.to_owned(), "many".to_owned());
        assert_eq!(Marker::from_fields(&damaged), None);
        let mut partial = fields.clone();
        partial.remove(keys::MARKER_FINGERPRINT);
        assert_eq!(Marker::from_fields(&partial), None);
        // Half a range is damage; no range at all is a marker from before data sets recorded it,
        // which described a data set generated from 1000000 upwards.
        let mut half = fields.clone();
        half.remove(keys::MARKER_LAST_ID);
        assert_eq!(Marker::from_fields(&half), None);
        // A data set with a second factor says which; a kind this build does not know is damage
        // (serving it open would skip the check).
        let guarded = Marker { factor: Some(FactorKind::DateOfBirth), ..marker.clone() };
        let guarded_fields: HashMap<String, String> =
            guarded.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(Marker::from_fields(&guarded_fields), Some(guarded));
        let mut unknown = guarded_fields;
        unknown.insert(keys::MARKER_FACTOR.to_owned(), "fingerprint".to_owned());
        assert_eq!(Marker::from_fields(&unknown), None);
        let mut old = fields;
        old.remove(keys::MARKER_FIRST_ID);
        old.remove(keys::MARKER_LAST_ID);
        let legacy = Marker::from_fields(&old).expect("a marker written before the ID range is trusted");
        assert_eq!((legacy.first_id, legacy.last_id), (1_000_000, 1_674_822));
    }
}
