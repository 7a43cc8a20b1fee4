//! The result record and its parts: streams, subjects, schools, regions and the pass mark.
//!
//! The same definitions are mirrored by the PostgreSQL schema in `migrations/` (the subject
//! columns, the score range and the pass mark in the generated `passed` column); a test in the
//! seeder checks the two agree.

use serde::{Deserialize, Serialize};

use crate::factor::FactorHash;
use crate::id::StudentId;

/// Every stream examines this many subjects, each scored 0 to [`Subject::MAX_SCORE`].
pub const SUBJECTS_PER_STREAM: usize = 6;

/// A student passes with a total of at least half the available marks.
pub const PASS_MARK: u16 = 300;

/// The two streams of the national exam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Natural science: physics, chemistry and biology beside the common subjects.
    NaturalScience,
    /// Social science: geography, history and economics beside the common subjects.
    SocialScience,
}

impl Stream {
    /// Both streams, in their stable wire order.
    pub const ALL: [Stream; 2] = [Stream::NaturalScience, Stream::SocialScience];

    /// The subjects of this stream, in the order scores are stored.
    pub fn subjects(self) -> [Subject; SUBJECTS_PER_STREAM] {
        use Subject::*;
        match self {
            Stream::NaturalScience => [English, Mathematics, Physics, Chemistry, Biology, Aptitude],
            Stream::SocialScience => [English, Mathematics, Geography, History, Economics, Aptitude],
        }
    }

    /// The name used in the database enum, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::NaturalScience => "natural_science",
            Stream::SocialScience => "social_science",
        }
    }

    /// Parses [`Stream::as_str`] back.
    pub fn from_name(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The stable one-byte tag used in the Redis encoding.
    pub fn tag(self) -> u8 {
        match self {
            Stream::NaturalScience => 0,
            Stream::SocialScience => 1,
        }
    }

    /// Inverse of [`Stream::tag`].
    pub fn from_tag(tag: u8) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

/// An examined subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// English (both streams).
    English,
    /// Mathematics (both streams, with a stream-specific paper).
    Mathematics,
    /// Physics (natural science).
    Physics,
    /// Chemistry (natural science).
    Chemistry,
    /// Biology (natural science).
    Biology,
    /// Geography (social science).
    Geography,
    /// History (social science).
    History,
    /// Economics (social science).
    Economics,
    /// Scholastic aptitude (both streams).
    Aptitude,
}

impl Subject {
    /// The highest score of any subject.
    pub const MAX_SCORE: u8 = 100;

    /// The column name in the results tables and the key in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::English => "english",
            Subject::Mathematics => "mathematics",
            Subject::Physics => "physics",
            Subject::Chemistry => "chemistry",
            Subject::Biology => "biology",
            Subject::Geography => "geography",
            Subject::History => "history",
            Subject::Economics => "economics",
            Subject::Aptitude => "aptitude",
        }
    }
}

/// The administrative regions schools belong to, with stable numeric IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// Stable ID (the `regions.id` primary key).
    pub id: u8,
    /// Display name.
    pub name: &'static str,
    /// Share of the country's candidates, in per mille; drives how many schools it gets.
    pub(crate) weight_per_mille: u32,
}

impl Region {
    /// Every region, ordered by ID. The weights add up to 1000.
    pub const ALL: [Region; 14] = [
        Region { id: 1, name: "Addis Ababa", weight_per_mille: 80 },
        Region { id: 2, name: "Afar", weight_per_mille: 20 },
        Region { id: 3, name: "Amhara", weight_per_mille: 215 },
        Region { id: 4, name: "Benishangul-Gumuz", weight_per_mille: 15 },
        Region { id: 5, name: "Central Ethiopia", weight_per_mille: 60 },
        Region { id: 6, name: "Dire Dawa", weight_per_mille: 10 },
        Region { id: 7, name: "Gambela", weight_per_mille: 10 },
        Region { id: 8, name: "Harari", weight_per_mille: 5 },
        Region { id: 9, name: "Oromia", weight_per_mille: 345 },
        Region { id: 10, name: "Sidama", weight_per_mille: 40 },
        Region { id: 11, name: "Somali", weight_per_mille: 40 },
        Region { id: 12, name: "South Ethiopia", weight_per_mille: 55 },
        Region { id: 13, name: "South West Ethiopia Peoples'", weight_per_mille: 30 },
        Region { id: 14, name: "Tigray", weight_per_mille: 75 },
    ];

    /// Looks a region up by its stable ID.
    pub fn by_id(id: u8) -> Option<Region> {
        Region::ALL.into_iter().find(|r| r.id == id)
    }
}

/// A school; students are registered through their school.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct School {
    /// Stable ID (the `schools.id` primary key), starting at 1.
    pub id: u32,
    /// Display name, unique within its region.
    pub name: String,
    /// The region the school is in.
    pub region: Region,
}

/// One student's published result: everything the API returns except what is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    /// Registration number.
    pub id: StudentId,
    /// Full name: given name, father's name and grandfather's name.
    pub name: String,
    /// The school the student sat the exam through ([`School::id`]).
    pub school_id: u32,
    /// The student's stream, which fixes the subjects.
    pub stream: Stream,
    /// Scores in the order of [`Stream::subjects`], each 0 to [`Subject::MAX_SCORE`].
    pub scores: [u8; SUBJECTS_PER_STREAM],
    /// Rank within the stream by total, highest first; ties share a rank ("1224" ranking).
    pub rank: u32,
    /// The keyed hash of the student's second factor, when the data set carries one
    /// ([`crate::factor`]): a lookup must then present the factor.
    pub factor: Option<FactorHash>,
}

impl ResultRecord {
    /// The sum of the scores.
    pub fn total(&self) -> u16 {
        self.scores.iter().map(|&s| u16::from(s)).sum()
    }

    /// Whether the total reaches [`PASS_MARK`].
    pub fn passed(&self) -> bool {
        self.total() >= PASS_MARK
    }

    /// Subjects paired with their scores.
    pub fn subject_scores(&self) -> impl Iterator<Item = (Subject, u8)> + '_ {
        self.stream.subjects().into_iter().zip(self.scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_weights_add_up_to_the_whole_country() {
        assert_eq!(Region::ALL.iter().map(|r| r.weight_per_mille).sum::<u32>(), 1000);
        for (i, r) in Region::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.id), i + 1, "region IDs are dense and ordered");
        }
    }

    #[test]
    fn stream_names_and_tags_round_trip() {
        for s in Stream::ALL {
            assert_eq!(Stream::from_name(s.as_str()), Some(s));
            assert_eq!(Stream::from_tag(s.tag()), Some(s));
        }
        assert_eq!(Stream::from_tag(7), None);
    }
}
