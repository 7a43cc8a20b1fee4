//! Which IDs users ask for, from the data set's specification alone (no database): the seeded
//! range, a few hot schools, unknown but well-formed IDs, and malformed ones.

use std::ops::Range;

use rand::Rng;
use results_core::{Dataset, DatasetSpec, StudentId};

/// Malformed IDs the API must answer with 400 `invalid_id`: letters, wrong lengths, out of
/// range, signs. Each is safe in a URL path as it is.
pub const MALFORMED: [&str; 8] =
    ["abc1234", "12345", "123456789", "0999999", "10000000", "1000000x", "-100000", "+100000"];

/// The IDs of one data set and how to draw them.
#[derive(Debug, Clone)]
pub struct IdSpace {
    first: u32,
    count: u32,
    /// ID ranges of the hot schools.
    hot: Vec<Range<u32>>,
    hot_percent: u8,
}

impl IdSpace {
    /// The IDs of `spec`, with `hot_schools` schools (spread over the list of schools) receiving
    /// `hot_percent` percent of hot-spot lookups.
    pub fn new(spec: DatasetSpec, hot_schools: usize, hot_percent: u8) -> Self {
        let first = *spec.ids().start();
        let dataset = Dataset::new(spec);
        let schools = dataset.schools().len();
        let wanted = hot_schools.min(schools);
        let hot = (0..wanted)
            .map(|i| i * schools / wanted.max(1))
            .map(|school| dataset.school_students(school))
            .filter(|range| !range.is_empty())
            .map(|range| first + range.start..first + range.end)
            .collect();
        Self { first, count: spec.students(), hot, hot_percent }
    }

    /// Number of seeded students.
    pub fn students(&self) -> u32 {
        self.count
    }

    /// A seeded ID, uniformly.
    pub fn uniform(&self, rng: &mut impl Rng) -> u32 {
        self.first + rng.random_range(0..self.count)
    }

    /// A seeded ID from the skewed result-day mix: mostly students of the hot schools.
    pub fn hot_spot(&self, rng: &mut impl Rng) -> u32 {
        if self.hot.is_empty() || rng.random_range(0..100u8) >= self.hot_percent {
            return self.uniform(rng);
        }
        let school = &self.hot[rng.random_range(0..self.hot.len())];
        rng.random_range(school.clone())
    }

    /// A well-formed ID outside the data set (404 expected), when the range leaves room.
    pub fn unknown(&self, rng: &mut impl Rng) -> Option<u32> {
        let start = self.first + self.count;
        (start <= StudentId::MAX).then(|| rng.random_range(start..=StudentId::MAX))
    }

    /// The hot schools' ID ranges.
    pub fn hot_ranges(&self) -> &[Range<u32>] {
        &self.hot
    }
}

/// A malformed ID (400 expected).
pub fn malformed(rng: &mut impl Rng) -> &'static str {
    MALFORMED[rng.random_range(0..MALFORMED.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_ids_are_refused_by_the_shared_parser() {
        for text in MALFORMED {
            assert!(StudentId::parse(text).is_err(), "{text} must be malformed");
        }
    }

    #[test]
    fn drawn_ids_fall_where_they_should() {
        let spec = DatasetSpec::new(7, 2_000).expect("spec");
        let ids = IdSpace::new(spec, 3, 100);
        assert_eq!(ids.hot_ranges().len(), 3);
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            assert!(spec.ids().contains(&ids.uniform(&mut rng)));
            let hot = ids.hot_spot(&mut rng);
            assert!(ids.hot_ranges().iter().any(|r| r.contains(&hot)));
            let unknown = ids.unknown(&mut rng).expect("room");
            assert!(unknown > *spec.ids().end() && unknown <= StudentId::MAX);
        }
    }
}
