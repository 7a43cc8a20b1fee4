//! Which IDs users ask for: the seeded IDs (from the data set's specification alone, or from an
//! IDs file `seeder export --ids-file` wrote for an imported data set), a few hot schools,
//! unknown but well-formed IDs, and malformed ones.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rand::Rng;
use results_core::{Dataset, DatasetSpec, StudentId};

/// Malformed IDs the API must answer with 400 `invalid_id`: letters, zero, a leading zero, too
/// many digits, signs. Each is safe in a URL path as it is.
pub const MALFORMED: [&str; 8] = ["abc1234", "0", "0999999", "1234567890", "1000000x", "-100000", "+100000", "1e6"];

/// IDs per stand-in "school" of an IDs file: authorities number candidates school by school, so
/// a run of consecutive registration numbers is the closest thing to a school a list offers.
const RUN_PER_SCHOOL: u32 = 250;

/// The IDs of one data set and how to draw them.
#[derive(Debug, Clone)]
pub struct IdSpace {
    /// The IDs of an IDs file, ascending; `None` for a generated data set (`first..first+count`).
    list: Option<Arc<[u32]>>,
    first: u32,
    count: u32,
    /// Positions (0..count) of the hot schools' students.
    hot: Vec<Range<u32>>,
    hot_percent: u8,
}

impl IdSpace {
    /// The IDs of `spec`, with `hot_schools` schools (spread over the list of schools) receiving
    /// `hot_percent` percent of hot-spot lookups.
    pub fn new(spec: DatasetSpec, hot_schools: usize, hot_percent: u8) -> Self {
        let dataset = Dataset::new(spec);
        let schools = dataset.schools().len();
        let wanted = hot_schools.min(schools);
        let hot = (0..wanted)
            .map(|i| i * schools / wanted.max(1))
            .map(|school| dataset.school_students(school))
            .filter(|range| !range.is_empty())
            .collect();
        Self { list: None, first: spec.first_id(), count: spec.students(), hot, hot_percent }
    }

    /// The IDs of an imported data set as `seeder export --ids-file` lists them. The hot
    /// schools are `hot_schools` runs of consecutive IDs spread over the list.
    ///
    /// # Errors
    /// An empty list, or more IDs than a data set can hold.
    pub fn from_list(mut ids: Vec<u32>, hot_schools: usize, hot_percent: u8) -> Result<Self, String> {
        ids.sort_unstable();
        ids.dedup();
        let count = u32::try_from(ids.len()).map_err(|_| "too many IDs".to_owned())?;
        let first = *ids.first().ok_or("the IDs file holds no ID")?;
        let runs = (count / RUN_PER_SCHOOL).max(1) as usize;
        let wanted = hot_schools.min(runs);
        let hot = (0..wanted)
            .map(|i| (i * runs / wanted.max(1)) as u32 * RUN_PER_SCHOOL)
            .map(|start| start..(start + RUN_PER_SCHOOL).min(count))
            .filter(|range| !range.is_empty())
            .collect();
        Ok(Self { list: Some(ids.into()), first, count, hot, hot_percent })
    }

    /// Reads an IDs file: one registration number a line (blank lines ignored).
    ///
    /// # Errors
    /// The file cannot be read, or a line is not a registration number.
    pub fn read_list(path: &Path) -> Result<Vec<u32>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                StudentId::parse(line.trim())
                    .map(StudentId::get)
                    .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
            })
            .collect()
    }

    fn at(&self, position: u32) -> u32 {
        match &self.list {
            Some(ids) => ids[position as usize],
            None => self.first + position,
        }
    }

    /// The `step`-th seeded ID in order, from the first again after the last.
    pub fn walk(&self, step: u32) -> u32 {
        self.at(step % self.count.max(1))
    }

    /// Number of seeded students.
    pub fn students(&self) -> u32 {
        self.count
    }

    /// A seeded ID, uniformly.
    pub fn uniform(&self, rng: &mut impl Rng) -> u32 {
        self.at(rng.random_range(0..self.count))
    }

    /// A seeded ID from the skewed result-day mix: mostly students of the hot schools.
    pub fn hot_spot(&self, rng: &mut impl Rng) -> u32 {
        if self.hot.is_empty() || rng.random_range(0..100u8) >= self.hot_percent {
            return self.uniform(rng);
        }
        let school = &self.hot[rng.random_range(0..self.hot.len())];
        self.at(rng.random_range(school.clone()))
    }

    /// A well-formed ID above the data set (404 expected), when the range leaves room.
    pub fn unknown(&self, rng: &mut impl Rng) -> Option<u32> {
        let start = self.at(self.count - 1) + 1;
        (start <= StudentId::MAX).then(|| rng.random_range(start..=StudentId::MAX))
    }

    /// The hot schools' IDs.
    pub fn hot_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.hot.iter().flat_map(|range| range.clone().map(|p| self.at(p)))
    }

    /// How many hot schools there are.
    pub fn hot_schools(&self) -> usize {
        self.hot.len()
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
        let spec = DatasetSpec::with_first_id(7, 2_000, 1).expect("spec");
        let ids = IdSpace::new(spec, 3, 100);
        assert_eq!(ids.hot_schools(), 3);
        let hot: Vec<u32> = ids.hot_ids().collect();
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            assert!(spec.ids().contains(&ids.uniform(&mut rng)));
            assert!(hot.contains(&ids.hot_spot(&mut rng)));
            let unknown = ids.unknown(&mut rng).expect("room");
            assert!(unknown > *spec.ids().end() && unknown <= StudentId::MAX);
        }
    }

    #[test]
    fn an_ids_file_is_drawn_from_as_listed() {
        let listed: Vec<u32> = (0..1_000).map(|i| 10_000 + 7 * i).collect();
        let ids = IdSpace::from_list(listed.clone(), 2, 100).expect("ids");
        assert_eq!(ids.students(), 1_000);
        assert_eq!(ids.hot_schools(), 2);
        let hot: Vec<u32> = ids.hot_ids().collect();
        assert_eq!(hot.len(), 500);
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            assert!(listed.binary_search(&ids.uniform(&mut rng)).is_ok());
            assert!(hot.contains(&ids.hot_spot(&mut rng)));
            assert!(ids.unknown(&mut rng).expect("room") > 10_000 + 7 * 999);
        }
        assert!(IdSpace::from_list(Vec::new(), 2, 100).is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.txt");
        std::fs::write(&path, "12\n\n7\n").expect("write");
        assert_eq!(IdSpace::read_list(&path), Ok(vec![12, 7]));
        std::fs::write(&path, "12\n012\n").expect("write");
        assert!(IdSpace::read_list(&path).expect_err("leading zero").contains(":2:"));
    }
}
