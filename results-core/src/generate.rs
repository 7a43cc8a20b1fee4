//! The deterministic data generator: the same [`DatasetSpec`] gives the same schools and results,
//! byte for byte, on every machine and run.
//!
//! Every student is drawn from its own ChaCha8 stream (stream number = index in the data set),
//! so any student can be generated alone, in any order, on any thread. Only the rank needs the
//! whole data set. Arithmetic is integer-only (no floating point whose last bit could differ
//! between platforms).
//!
//! Shape of the data:
//! - schools: one per ~250 students, spread over regions by population share, sizes from ~50 to
//!   ~550 weight units, and registration numbers handed out school by school, so a school's
//!   students have consecutive IDs (as when schools register their candidates in one batch);
//! - each student: a three-part name (given, father's, grandfather's), ~45% natural science;
//! - scores: a per-student ability, a per-school quality and per-subject noise, each roughly
//!   normal, around subject means in the 36-50 range; about a third of students pass.

use std::collections::HashSet;
use std::ops::{Range, RangeInclusive};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::id::StudentId;
use crate::names;
use crate::record::{Region, ResultRecord, SUBJECTS_PER_STREAM, School, Stream, Subject};

/// Bumped whenever a change here (or in the name lists) changes the generated data.
pub const GENERATOR_VERSION: u32 = 1;
/// The number of students in the default data set (the reference design's national cohort).
pub const DEFAULT_STUDENTS: u32 = 674_823;
/// The default seed value.
pub const DEFAULT_SEED: u64 = 2_026;
/// The registration number of a generated data set's first student, unless told otherwise
/// (`seeder --first-id`): students get `first ..= first + students - 1`.
pub const DEFAULT_FIRST_ID: u32 = 1_000_000;
/// Average school size; the number of schools follows from the number of students.
const STUDENTS_PER_SCHOOL: u32 = 250;
/// Schools draw from streams above this, students from streams below it.
const SCHOOL_STREAM_BASE: u64 = 1 << 40;
/// Share of students in the natural-science stream, percent.
const NATURAL_SCIENCE_PERCENT: u32 = 45;

/// Why a data-set specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// An empty data set has nothing to serve.
    #[error("the number of students must be at least 1")]
    NoStudents,
    /// The IDs would run past the largest registration number.
    #[error("{students} students from registration number {first_id} would run past the largest, {}", StudentId::MAX)]
    TooManyStudents {
        /// The first registration number asked for.
        first_id: u32,
        /// The number of students asked for.
        students: u32,
    },
    /// Registration numbers start at 1.
    #[error("the first registration number must be between 1 and {}", StudentId::MAX)]
    BadFirstId,
}

/// What to generate: the seed value, the number of students and the first registration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetSpec {
    seed: u64,
    students: u32,
    first_id: u32,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        Self { seed: DEFAULT_SEED, students: DEFAULT_STUDENTS, first_id: DEFAULT_FIRST_ID }
    }
}

impl DatasetSpec {
    /// A specification of `students` students from `seed`, numbered from [`DEFAULT_FIRST_ID`].
    pub fn new(seed: u64, students: u32) -> Result<Self, SpecError> {
        Self::with_first_id(seed, students, DEFAULT_FIRST_ID)
    }

    /// A specification of `students` students from `seed`, numbered from `first_id` upwards.
    pub fn with_first_id(seed: u64, students: u32, first_id: u32) -> Result<Self, SpecError> {
        if StudentId::new(first_id).is_err() {
            return Err(SpecError::BadFirstId);
        }
        if students == 0 {
            return Err(SpecError::NoStudents);
        }
        if first_id.checked_add(students - 1).is_none_or(|last| last > StudentId::MAX) {
            return Err(SpecError::TooManyStudents { first_id, students });
        }
        Ok(Self { seed, students, first_id })
    }

    /// The first registration number.
    pub fn first_id(&self) -> u32 {
        self.first_id
    }

    /// The ID of the student at `index` (position in the data set), if there is one.
    pub fn id_at(&self, index: u32) -> Option<StudentId> {
        if index >= self.students {
            return None;
        }
        StudentId::new(self.first_id + index).ok()
    }

    /// The position in the data set of the student with `id`, if it belongs to this data set.
    pub fn index_of(&self, id: StudentId) -> Option<u32> {
        self.contains(id).then(|| id.get() - self.first_id)
    }

    /// The seed value.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of students.
    pub fn students(&self) -> u32 {
        self.students
    }

    /// The registration numbers in use: `first_id ..= first_id + students - 1`.
    pub fn ids(&self) -> RangeInclusive<u32> {
        self.first_id..=self.first_id + self.students - 1
    }

    /// Whether `id` belongs to a student of this data set.
    pub fn contains(&self, id: StudentId) -> bool {
        self.ids().contains(&id.get())
    }
}

/// How many students each stream has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSizes {
    /// Students in the natural-science stream.
    pub natural_science: u32,
    /// Students in the social-science stream.
    pub social_science: u32,
}

impl StreamSizes {
    /// Counts the streams of `records`.
    pub fn count(records: &[ResultRecord]) -> Self {
        let natural = records.iter().filter(|r| r.stream == Stream::NaturalScience).count();
        let natural = u32::try_from(natural).unwrap_or(u32::MAX);
        let all = u32::try_from(records.len()).unwrap_or(u32::MAX);
        Self { natural_science: natural, social_science: all - natural }
    }

    /// The size of `stream`.
    pub fn of(&self, stream: Stream) -> u32 {
        match stream {
            Stream::NaturalScience => self.natural_science,
            Stream::SocialScience => self.social_science,
        }
    }
}

/// A data set ready to generate: the schools are drawn up front (they are few), students on
/// demand.
#[derive(Debug, Clone)]
pub struct Dataset {
    spec: DatasetSpec,
    base: ChaCha8Rng,
    schools: Vec<School>,
    /// Per school: quality, in hundredths of a standard deviation.
    quality: Vec<i32>,
    /// Per school: index one past its last student (school `s` holds `end[s-1]..end[s]`).
    end: Vec<u32>,
}

/// Uniform in `0..n` (multiply-shift; the bias for the small `n` used here is negligible).
fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    ((u64::from(rng.next_u32()) * u64::from(n)) >> 32) as u32
}

/// Roughly standard normal, in hundredths (Irwin-Hall sum of four uniforms).
fn normal100(rng: &mut ChaCha8Rng) -> i32 {
    let sum: i64 = (0..4).map(|_| i64::from(rng.next_u32() >> 16)).sum();
    // Mean 4 * 32767.5, standard deviation 2 * 65536 / sqrt(12) = 37837.
    ((sum - 131_070) * 100 / 37_837) as i32
}

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[below(rng, words.len() as u32) as usize]
}

impl Dataset {
    /// Draws the schools of `spec`.
    pub fn new(spec: DatasetSpec) -> Self {
        let base = ChaCha8Rng::seed_from_u64(spec.seed);
        let count = spec.students.div_ceil(STUDENTS_PER_SCHOOL);
        let mut schools = Vec::with_capacity(count as usize);
        let mut quality = Vec::with_capacity(count as usize);
        let mut weights = Vec::with_capacity(count as usize);
        let mut taken = HashSet::new();
        for index in 0..count {
            let mut rng = base.clone();
            rng.set_stream(SCHOOL_STREAM_BASE + u64::from(index));
            let region = Self::draw_region(&mut rng);
            let name = Self::draw_school_name(&mut rng, region, &mut taken);
            let small = below(&mut rng, 100);
            weights.push(u64::from(50 + below(&mut rng, 300) + small * small / 50));
            quality.push(normal100(&mut rng) * 7 / 10);
            schools.push(School { id: index + 1, name, region });
        }
        // Cumulative boundaries: sizes proportional to weights, adding up to exactly `students`.
        let total: u64 = weights.iter().sum();
        let mut running = 0u64;
        let end = weights
            .iter()
            .map(|w| {
                running += w;
                (u64::from(spec.students) * running / total) as u32
            })
            .collect();
        Self { spec, base, schools, quality, end }
    }

    fn draw_region(rng: &mut ChaCha8Rng) -> Region {
        let mut point = below(rng, 1000);
        for region in Region::ALL {
            if point < region.weight_per_mille {
                return region;
            }
            point -= region.weight_per_mille;
        }
        Region::ALL[Region::ALL.len() - 1]
    }

    fn draw_school_name(rng: &mut ChaCha8Rng, region: Region, taken: &mut HashSet<(u8, String)>) -> String {
        let towns = names::TOWNS[usize::from(region.id - 1)];
        for _ in 0..8 {
            let town = pick(rng, towns);
            let kind = pick(rng, names::SCHOOL_KINDS);
            let name = match below(rng, 4) {
                0 => format!("{town} {kind}"),
                2 => format!("{town} No. {} {kind}", 1 + below(rng, 6)),
                _ => format!("{town} {} {kind}", pick(rng, names::SCHOOL_NAMES)),
            };
            if taken.insert((region.id, name.clone())) {
                return name;
            }
        }
        // Crowded region: number the schools of the town.
        let town = pick(rng, towns);
        (7..)
            .map(|n| format!("{town} No. {n} Secondary School"))
            .find(|name| taken.insert((region.id, name.clone())))
            .unwrap_or_default()
    }

    /// The specification.
    pub fn spec(&self) -> DatasetSpec {
        self.spec
    }

    /// Every school, ordered by ID.
    pub fn schools(&self) -> &[School] {
        &self.schools
    }

    /// Indexes (positions in the data set) of the students of the school at `school_index`.
    pub fn school_students(&self, school_index: usize) -> Range<u32> {
        let start = if school_index == 0 { 0 } else { self.end[school_index - 1] };
        start..self.end[school_index]
    }

    fn school_index_of(&self, student_index: u32) -> usize {
        self.end.partition_point(|&end| end <= student_index)
    }

    /// The student at `index` (position in the data set), with `rank` left at 0: ranks need
    /// the whole data set, see [`assign_ranks`].
    pub fn student_unranked(&self, index: u32) -> Option<ResultRecord> {
        let id = self.spec.id_at(index)?;
        let school = self.school_index_of(index);
        let mut rng = self.base.clone();
        rng.set_stream(u64::from(index));
        let given = if below(&mut rng, 2) == 0 { pick(&mut rng, names::MALE) } else { pick(&mut rng, names::FEMALE) };
        let father = pick(&mut rng, names::MALE);
        let grandfather = pick(&mut rng, names::MALE);
        let stream =
            if below(&mut rng, 100) < NATURAL_SCIENCE_PERCENT { Stream::NaturalScience } else { Stream::SocialScience };
        let ability = normal100(&mut rng);
        let quality = self.quality[school];
        let mut scores = [0u8; SUBJECTS_PER_STREAM];
        for (score, subject) in scores.iter_mut().zip(stream.subjects()) {
            let noise = normal100(&mut rng);
            let points = subject_mean(subject, stream) + (ability * 14 + quality * 6 + noise * 9) / 100;
            *score = points.clamp(0, i32::from(Subject::MAX_SCORE)) as u8;
        }
        Some(ResultRecord {
            id,
            name: format!("{given} {father} {grandfather}"),
            school_id: self.schools[school].id,
            stream,
            scores,
            rank: 0,
            factor: None,
        })
    }

    /// Every result, ranked, ordered by ID. Uses all cores; ~0.5 s for the default data set.
    pub fn generate(&self) -> Vec<ResultRecord> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16) as u32;
        let chunk = self.spec.students.div_ceil(threads);
        let mut records: Vec<ResultRecord> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk)..((t + 1) * chunk).min(self.spec.students);
                    scope.spawn(move || range.filter_map(|i| self.student_unranked(i)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        assign_ranks(&mut records);
        records
    }
}

fn subject_mean(subject: Subject, stream: Stream) -> i32 {
    match (subject, stream) {
        (Subject::English, _) => 42,
        (Subject::Mathematics, Stream::NaturalScience) => 40,
        (Subject::Mathematics, Stream::SocialScience) => 36,
        (Subject::Physics, _) => 38,
        (Subject::Chemistry, _) => 41,
        (Subject::Biology, _) => 46,
        (Subject::Geography, _) => 47,
        (Subject::History, _) => 48,
        (Subject::Economics, _) => 44,
        (Subject::Aptitude, _) => 50,
    }
}

/// Competition ranks by total within each stream: 1 + the number of students of the stream with a
/// strictly higher total (ties share a rank, the next rank is skipped: "1224"). Built from the
/// totals alone, so a data set too large to hold can be ranked from one pass over its rows.
#[derive(Debug, Clone)]
pub struct RankTable {
    /// Per stream (in [`Stream::ALL`] order), students per total.
    count: [Vec<u32>; 2],
    /// Per stream, the rank of each total, once [`RankTable::finish`] ran.
    rank_of: [Vec<u32>; 2],
}

/// The number of possible totals: 0 to six times the highest score.
const TOTALS: usize = SUBJECTS_PER_STREAM * Subject::MAX_SCORE as usize + 1;

impl Default for RankTable {
    fn default() -> Self {
        Self { count: [vec![0; TOTALS], vec![0; TOTALS]], rank_of: [vec![0; TOTALS], vec![0; TOTALS]] }
    }
}

fn stream_slot(stream: Stream) -> usize {
    usize::from(stream.tag())
}

impl RankTable {
    /// Counts one student's total.
    pub fn add(&mut self, stream: Stream, total: u16) {
        if let Some(n) = self.count[stream_slot(stream)].get_mut(usize::from(total)) {
            *n += 1;
        }
    }

    /// Computes the ranks from the totals counted so far.
    pub fn finish(&mut self) {
        for slot in 0..2 {
            let mut above = 0u32;
            for total in (0..TOTALS).rev() {
                self.rank_of[slot][total] = above + 1;
                above += self.count[slot][total];
            }
        }
    }

    /// The rank of `total` in `stream` (after [`RankTable::finish`]).
    pub fn rank(&self, stream: Stream, total: u16) -> u32 {
        self.rank_of[stream_slot(stream)].get(usize::from(total)).copied().unwrap_or(0)
    }

    /// Students counted per stream.
    pub fn stream_sizes(&self) -> StreamSizes {
        let size = |stream: Stream| self.count[stream_slot(stream)].iter().sum();
        StreamSizes { natural_science: size(Stream::NaturalScience), social_science: size(Stream::SocialScience) }
    }
}

/// Sets every record's rank within its stream (see [`RankTable`]).
pub fn assign_ranks(records: &mut [ResultRecord]) {
    let mut table = RankTable::default();
    records.iter().for_each(|r| table.add(r.stream, r.total()));
    table.finish();
    for r in records.iter_mut() {
        r.rank = table.rank(r.stream, r.total());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ContentChecksum;

    fn fingerprint(spec: DatasetSpec) -> String {
        let data = Dataset::new(spec);
        let mut sum = ContentChecksum::new();
        data.schools().iter().for_each(|s| sum.add_school(s));
        data.generate().iter().for_each(|r| sum.add_result(r));
        sum.finish()
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let spec = DatasetSpec::new(7, 5_000).expect("valid");
        assert_eq!(fingerprint(spec), fingerprint(spec));
        let other = DatasetSpec::new(8, 5_000).expect("valid");
        assert_ne!(fingerprint(spec), fingerprint(other));
    }

    #[test]
    fn a_student_is_the_same_alone_or_in_the_whole_set() {
        let data = Dataset::new(DatasetSpec::new(1, 3_000).expect("valid"));
        let all = data.generate();
        let mut alone = data.student_unranked(1_234).expect("exists");
        alone.rank = all[1_234].rank;
        assert_eq!(alone, all[1_234]);
        assert_eq!(data.student_unranked(3_000), None);
    }

    #[test]
    fn ids_are_contiguous_and_schools_partition_the_students() {
        let data = Dataset::new(DatasetSpec::new(3, 10_001).expect("valid"));
        let all = data.generate();
        assert_eq!(all.len(), 10_001);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(data.spec().index_of(r.id), Some(i as u32));
        }
        let mut covered = 0;
        for (s, school) in data.schools().iter().enumerate() {
            let range = data.school_students(s);
            assert_eq!(range.start, covered, "schools are consecutive");
            assert!(!range.is_empty(), "school {} has students", school.id);
            assert!(all[range.start as usize..range.end as usize].iter().all(|r| r.school_id == school.id));
            covered = range.end;
        }
        assert_eq!(covered, 10_001);
    }

    #[test]
    fn ranks_follow_totals_within_each_stream() {
        let all = Dataset::new(DatasetSpec::new(5, 4_000).expect("valid")).generate();
        for stream in Stream::ALL {
            let mut of_stream: Vec<_> = all.iter().filter(|r| r.stream == stream).collect();
            of_stream.sort_by_key(|r| std::cmp::Reverse(r.total()));
            assert_eq!(of_stream[0].rank, 1);
            for pair in of_stream.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if a.total() == b.total() {
                    assert_eq!(a.rank, b.rank);
                } else {
                    assert!(b.rank > a.rank);
                }
            }
            // The rank of the first of a tie group is its 1-based position.
            for (pos, r) in of_stream.iter().enumerate() {
                assert!(r.rank as usize <= pos + 1);
            }
        }
    }

    #[test]
    fn distribution_is_plausible() {
        let all = Dataset::new(DatasetSpec::new(DEFAULT_SEED, 50_000).expect("valid")).generate();
        let n = all.len() as f64;
        let pass = all.iter().filter(|r| r.passed()).count() as f64 / n;
        let natural = all.iter().filter(|r| r.stream == Stream::NaturalScience).count() as f64 / n;
        let mean_total = all.iter().map(|r| f64::from(r.total())).sum::<f64>() / n;
        assert!((0.2..0.5).contains(&pass), "pass rate {pass}");
        assert!((0.40..0.50).contains(&natural), "natural-science share {natural}");
        assert!((230.0..300.0).contains(&mean_total), "mean total {mean_total}");
        assert!(all.iter().any(|r| r.total() > 450) && all.iter().any(|r| r.total() < 150), "spread");
        let names: HashSet<_> = all.iter().map(|r| r.name.as_str()).collect();
        assert!(names.len() > 40_000, "names are varied: {}", names.len());
    }

    #[test]
    fn refuses_empty_and_oversized_specs() {
        assert_eq!(DatasetSpec::new(1, 0), Err(SpecError::NoStudents));
        let fits = StudentId::MAX - DEFAULT_FIRST_ID + 1;
        assert!(DatasetSpec::new(1, fits).is_ok());
        assert_eq!(
            DatasetSpec::new(1, fits + 1),
            Err(SpecError::TooManyStudents { first_id: DEFAULT_FIRST_ID, students: fits + 1 })
        );
        assert_eq!(DatasetSpec::with_first_id(1, 10, 0), Err(SpecError::BadFirstId));
        assert!(DatasetSpec::with_first_id(1, StudentId::MAX, 1).is_ok());
    }

    #[test]
    fn first_id_lays_out_the_reference_range_with_the_same_content() {
        // The reference design's load pattern asks for 10,000..674,823: with --first-id 1 the
        // default data set holds every one of them.
        let spec = DatasetSpec::with_first_id(DEFAULT_SEED, 2_000, 1).expect("valid");
        assert_eq!(spec.ids(), 1..=2_000);
        assert_eq!(spec.id_at(0).map(StudentId::get), Some(1));
        assert_eq!(spec.id_at(2_000), None);
        let moved = Dataset::new(spec).generate();
        let default = Dataset::new(DatasetSpec::new(DEFAULT_SEED, 2_000).expect("valid")).generate();
        for (a, b) in moved.iter().zip(&default) {
            assert_eq!(a.id.get() + DEFAULT_FIRST_ID - 1, b.id.get());
            assert_eq!((&a.name, a.scores, a.rank), (&b.name, b.scores, b.rank), "only the numbers move");
        }
    }
}
