//! The results file: the one CSV format an exam authority publishes its results in
//! (`seeder import`) and `seeder export` writes. `docs/results-file.md` describes it for
//! people; [`FORMAT_HELP`] is the same description in `seeder import --help`.
//!
//! UTF-8 (a leading BOM is accepted), CRLF or LF line ends, fields quoted as CSV quotes them
//! (commas and doubled quotes inside quotes). A header row names the columns, in any order:
//! [`COLUMNS`] must all be there but [`SCHOOL_CODE`], which may be, and at most one second-factor
//! column ([`FactorKind::as_str`]: `pin` or `date_of_birth`); nothing else. One row per student.
//! Spaces around a field are ignored.

use std::collections::HashMap;
use std::fmt::Write as _;

use results_core::record::{Region, SUBJECTS_PER_STREAM, School, Stream, Subject};
use results_core::{FactorKind, IdError, StudentId};

/// The registration-number column.
pub const REGISTRATION_NUMBER: &str = "registration_number";
/// The student's full name.
pub const FULL_NAME: &str = "full_name";
/// Optional: the school's numeric code, which then identifies the school.
pub const SCHOOL_CODE: &str = "school_code";
/// The school's name.
pub const SCHOOL: &str = "school";
/// The region's name, one of [`Region::ALL`].
pub const REGION: &str = "region";
/// The stream: `natural_science` or `social_science`.
pub const STREAM: &str = "stream";

/// Every subject column, in the order export writes them.
pub const SUBJECTS: [Subject; 9] = [
    Subject::English,
    Subject::Mathematics,
    Subject::Physics,
    Subject::Chemistry,
    Subject::Biology,
    Subject::Geography,
    Subject::History,
    Subject::Economics,
    Subject::Aptitude,
];

/// Every column, in the order `seeder export` writes them; all are required but [`SCHOOL_CODE`].
/// The subject columns are named as [`SUBJECTS`] are (a test checks).
pub const COLUMNS: [&str; 15] = [
    REGISTRATION_NUMBER,
    FULL_NAME,
    SCHOOL_CODE,
    SCHOOL,
    REGION,
    STREAM,
    "english",
    "mathematics",
    "physics",
    "chemistry",
    "biology",
    "geography",
    "history",
    "economics",
    "aptitude",
];

/// The columns every file must have.
pub fn required() -> impl Iterator<Item = &'static str> {
    COLUMNS.into_iter().filter(|c| *c != SCHOOL_CODE)
}

/// The columns, as messages and `--help` name them.
pub fn expected_columns() -> String {
    let factors: Vec<&str> = FactorKind::ALL.iter().map(|k| k.as_str()).collect();
    format!(
        "{} (and optionally {SCHOOL_CODE}, and one second-factor column: {})",
        required().collect::<Vec<_>>().join(","),
        factors.join(" or ")
    )
}

/// The longest full name or school name, in characters (the `students.full_name` CHECK).
pub const MAX_NAME_CHARS: usize = 200;
/// The longest line accepted, in bytes: a real row is well under 1 KiB, and the bound keeps a
/// garbage file (2 GB without a line end) from being buffered whole.
pub const MAX_LINE_BYTES: usize = 4_096;

/// The format as `seeder import --help` and the docs state it.
pub const FORMAT_HELP: &str = "The file: CSV, UTF-8 (a BOM is accepted), LF or CRLF line ends, fields with commas or \
quotes in double quotes (a quote inside doubled). The first line is the header; it names these columns, in any order \
(nothing else): registration_number, full_name, school, region, stream, english, mathematics, physics, chemistry, \
biology, geography, history, economics, aptitude, and optionally school_code and at most one of pin or date_of_birth. \
Then one row per student:\n\n\
registration_number  a positive whole number of at most 9 digits, no leading zero; each appears once\n\
full_name            1-200 characters\n\
school_code          optional: a positive whole number of at most 9 digits; when the column is there it identifies \
the school (every row with a code must give the same school name and region), otherwise a school is identified by \
its name within its region\n\
school               the school's name, 1-200 characters\n\
region               one of: Addis Ababa, Afar, Amhara, Benishangul-Gumuz, Central Ethiopia, Dire Dawa, Gambela, \
Harari, Oromia, Sidama, Somali, South Ethiopia, South West Ethiopia Peoples', Tigray\n\
stream               natural_science (english, mathematics, physics, chemistry, biology, aptitude) or social_science \
(english, mathematics, geography, history, economics, aptitude)\n\
subject columns      the six subjects of the row's stream: a whole number 0-100 each; the other stream's subjects \
empty\n\
pin                  optional second factor: 4 to 12 digits from the student's admission slip (leading zeros count)\n\
date_of_birth        optional second factor instead: YYYY-MM-DD\n\n\
With a pin or date_of_birth column every row must have one, and the API then answers a result only to a lookup that \
presents it; the stores keep only its keyed hash (HMAC-SHA-256 under FACTOR_KEY, which the import then needs).\n\n\
Spaces around fields are ignored; control characters and invalid UTF-8 are refused; a line may be at most 4096 bytes. \
Ranks are computed (competition rank by total within the stream), not read. A sample is docs/results-sample.csv; \
the full description is docs/results-file.md.";

/// Where each column is in the file's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    registration_number: usize,
    full_name: usize,
    school_code: Option<usize>,
    school: usize,
    region: usize,
    stream: usize,
    /// Per entry of [`SUBJECTS`], its column.
    subjects: [usize; 9],
    /// The second-factor column, when the file has one.
    factor: Option<(FactorKind, usize)>,
    columns: usize,
}

/// A row as the file states it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Registration number.
    pub id: StudentId,
    /// Full name.
    pub name: String,
    /// School code, when the file has the column.
    pub school_code: Option<u32>,
    /// School name.
    pub school: String,
    /// Region.
    pub region: Region,
    /// Stream.
    pub stream: Stream,
    /// Scores in the order of [`Stream::subjects`].
    pub scores: [u8; SUBJECTS_PER_STREAM],
    /// The second factor in its canonical text ([`FactorKind::canonical`]), when the file has one.
    /// Personal data: never in a message.
    pub factor: Option<String>,
}

/// At most a few characters of a field, for messages (names are never echoed: personal data).
fn shown(field: &str) -> String {
    const SHOW: usize = 20;
    if field.chars().count() > SHOW {
        format!("{:?}…", field.chars().take(SHOW).collect::<String>())
    } else {
        format!("{field:?}")
    }
}

impl Header {
    /// Reads the header row; the error names what is wrong and the expected columns.
    pub fn parse(record: &csv::ByteRecord) -> Result<Self, String> {
        let mut found: HashMap<&str, usize> = HashMap::new();
        let mut factor: Option<(FactorKind, usize)> = None;
        let mut problems = Vec::new();
        for (i, raw) in record.iter().enumerate() {
            let Ok(name) = std::str::from_utf8(raw) else {
                problems.push(format!("column {} is not valid UTF-8", i + 1));
                continue;
            };
            let name = name.trim().trim_start_matches('\u{feff}');
            if let Some(kind) = FactorKind::from_name(name) {
                match factor {
                    Some((first, _)) if first == kind => problems.push(format!("column {name} twice")),
                    Some((first, _)) => problems
                        .push(format!("columns {} and {name}: a data set has one second factor", first.as_str())),
                    None => factor = Some((kind, i)),
                }
                continue;
            }
            match COLUMNS.iter().find(|c| **c == name) {
                Some(column) if found.insert(column, i).is_some() => problems.push(format!("column {column} twice")),
                Some(_) => {}
                None => problems.push(format!("unknown column {}", shown(name))),
            }
        }
        let missing: Vec<&str> = required().filter(|c| !found.contains_key(c)).collect();
        if !missing.is_empty() {
            problems.push(format!("missing column(s) {}", missing.join(", ")));
        }
        if !problems.is_empty() {
            return Err(format!("wrong header: {}; expected the columns {}", problems.join("; "), expected_columns()));
        }
        let at = |name: &str| found.get(name).copied().unwrap_or_default();
        Ok(Self {
            registration_number: at(REGISTRATION_NUMBER),
            full_name: at(FULL_NAME),
            school_code: found.get(SCHOOL_CODE).copied(),
            school: at(SCHOOL),
            region: at(REGION),
            stream: at(STREAM),
            subjects: SUBJECTS.map(|s| at(s.as_str())),
            factor,
            columns: record.len(),
        })
    }

    /// The second factor the file carries, if any.
    pub fn factor(&self) -> Option<FactorKind> {
        self.factor.map(|(kind, _)| kind)
    }

    /// Whether schools are identified by a code column.
    pub fn has_school_code(&self) -> bool {
        self.school_code.is_some()
    }

    /// Checks one row; the error says what is wrong (the first problem found).
    pub fn parse_row(&self, record: &csv::ByteRecord) -> Result<Row, String> {
        if record.len() != self.columns {
            return Err(format!("{} fields, but the header has {}", record.len(), self.columns));
        }
        let text = |column: usize, name: &str| -> Result<&str, String> {
            let raw = record.get(column).unwrap_or_default();
            let value = std::str::from_utf8(raw).map_err(|_| format!("{name} is not valid UTF-8"))?.trim();
            if value.chars().any(char::is_control) {
                return Err(format!("{name} contains a control character"));
            }
            Ok(value)
        };
        let id_text = text(self.registration_number, REGISTRATION_NUMBER)?;
        let id = StudentId::parse(id_text).map_err(|e| match e {
            IdError::Empty => "registration_number is empty".to_owned(),
            other => format!("registration_number {}: {other}", shown(id_text)),
        })?;
        let name = |column: usize, what: &str| -> Result<String, String> {
            let value = text(column, what)?;
            match value.chars().count() {
                0 => Err(format!("{what} is empty")),
                n if n > MAX_NAME_CHARS => Err(format!("{what} is {n} characters long (at most {MAX_NAME_CHARS})")),
                _ => Ok(value.to_owned()),
            }
        };
        let full_name = name(self.full_name, FULL_NAME)?;
        let school_code = match self.school_code {
            None => None,
            Some(column) => {
                let code = text(column, SCHOOL_CODE)?;
                let parsed = StudentId::parse(code).map_err(|_| {
                    format!("school_code {} must be a positive whole number of at most 9 digits", shown(code))
                })?;
                Some(parsed.get())
            }
        };
        let school = name(self.school, SCHOOL)?;
        let region_text = text(self.region, REGION)?;
        let region = Region::ALL.into_iter().find(|r| r.name == region_text).ok_or_else(|| {
            let names: Vec<&str> = Region::ALL.iter().map(|r| r.name).collect();
            format!("unknown region {}; the regions are: {}", shown(region_text), names.join(", "))
        })?;
        let stream_text = text(self.stream, STREAM)?;
        let stream = Stream::from_name(stream_text).ok_or_else(|| {
            format!("unknown stream {}; the streams are: natural_science, social_science", shown(stream_text))
        })?;
        let of_stream = stream.subjects();
        let mut scores = [0u8; SUBJECTS_PER_STREAM];
        for (subject, &column) in SUBJECTS.iter().zip(&self.subjects) {
            let value = text(column, subject.as_str())?;
            match of_stream.iter().position(|s| s == subject) {
                Some(slot) => scores[slot] = score(subject.as_str(), value)?,
                None if value.is_empty() => {}
                None => {
                    return Err(format!(
                        "{} is not a subject of {}; leave it empty",
                        subject.as_str(),
                        stream.as_str()
                    ));
                }
            }
        }
        let factor = match self.factor {
            None => None,
            Some((kind, column)) => {
                let value = text(column, kind.as_str())?;
                if value.is_empty() {
                    return Err(format!("{} is empty (with a {0} column every student needs one)", kind.as_str()));
                }
                // The value is personal data: the message says what is expected, never what was there.
                Some(kind.canonical(value).ok_or_else(|| format!("{} is not {}", kind.as_str(), kind.expected()))?)
            }
        };
        Ok(Row { id, name: full_name, school_code, school, region, stream, scores, factor })
    }
}

fn score(subject: &str, value: &str) -> Result<u8, String> {
    if value.is_empty() {
        return Err(format!("{subject} is missing (a whole number 0-{} is required)", Subject::MAX_SCORE));
    }
    let parsed = (value.len() <= 3 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u8>().ok())
        .flatten()
        .filter(|s| *s <= Subject::MAX_SCORE);
    parsed.ok_or_else(|| format!("{subject} score {} is not a whole number 0-{}", shown(value), Subject::MAX_SCORE))
}

/// How the file's schools map to school IDs: by code when the file has codes (the ID is the code,
/// so export -> import keeps them), else by name within region, numbered in order of first
/// appearance.
#[derive(Debug, Clone, Default)]
pub struct SchoolIndex {
    /// Per region, school name to ID (nested so a lookup borrows the row's name, no copy).
    by_name: HashMap<u8, HashMap<String, u32>>,
    by_code: HashMap<u32, (u8, String)>,
    schools: Vec<School>,
}

impl SchoolIndex {
    fn named(&self, row: &Row) -> Option<u32> {
        self.by_name.get(&row.region.id).and_then(|names| names.get(row.school.as_str())).copied()
    }

    fn register(&mut self, id: u32, row: &Row) {
        self.by_name.entry(row.region.id).or_default().insert(row.school.clone(), id);
        self.schools.push(School { id, name: row.school.clone(), region: row.region });
    }

    /// Registers the school of `row` (first seen) or checks it against what was seen; returns its ID.
    pub fn resolve(&mut self, row: &Row) -> Result<u32, String> {
        match row.school_code {
            Some(code) => {
                if let Some((region, name)) = self.by_code.get(&code) {
                    if (*region, name.as_str()) != (row.region.id, row.school.as_str()) {
                        return Err(format!("school_code {code} was given before with another school name or region"));
                    }
                    return Ok(code);
                }
                if self.named(row).is_some() {
                    return Err(format!(
                        "school_code {code}: the same school name in {} was given before with another code",
                        row.region.name
                    ));
                }
                self.by_code.insert(code, (row.region.id, row.school.clone()));
                self.register(code, row);
                Ok(code)
            }
            None => {
                if let Some(id) = self.named(row) {
                    return Ok(id);
                }
                let id = u32::try_from(self.schools.len() + 1).map_err(|_| "too many schools".to_owned())?;
                self.register(id, row);
                Ok(id)
            }
        }
    }

    /// The ID of an already registered school.
    pub fn id_of(&self, row: &Row) -> Option<u32> {
        match row.school_code {
            Some(code) => self.by_code.contains_key(&code).then_some(code),
            None => self.named(row),
        }
    }

    /// Every school, ordered by ID.
    pub fn schools(&self) -> Vec<School> {
        let mut schools = self.schools.clone();
        schools.sort_unstable_by_key(|s| s.id);
        schools
    }
}

/// One CSV line of the results file for a record (fields quoted only when they need it).
pub fn write_row(
    out: &mut csv::Writer<impl std::io::Write>,
    record: &results_core::ResultRecord,
    school: &School,
) -> csv::Result<()> {
    let mut fields: Vec<String> = vec![
        record.id.to_string(),
        record.name.clone(),
        school.id.to_string(),
        school.name.clone(),
        school.region.name.to_owned(),
        record.stream.as_str().to_owned(),
    ];
    let of_stream = record.stream.subjects();
    for subject in SUBJECTS {
        let value = of_stream.iter().position(|s| *s == subject).map(|slot| record.scores[slot]);
        let mut cell = String::new();
        if let Some(score) = value {
            let _ = write!(cell, "{score}");
        }
        fields.push(cell);
    }
    out.write_record(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    fn header() -> Header {
        Header::parse(&record(&COLUMNS)).expect("the exported header is valid")
    }

    fn row(fields: [&str; 15]) -> Result<Row, String> {
        header().parse_row(&record(&fields))
    }

    const GOOD: [&str; 15] = [
        "10042",
        "Abebe Kebede Tesfaye",
        "7",
        "Bole Secondary School",
        "Addis Ababa",
        "natural_science",
        "55",
        "61",
        "40",
        "72",
        "38",
        "",
        "",
        "",
        "90",
    ];

    #[test]
    fn a_good_row_parses_into_the_streams_score_order() {
        let parsed = row(GOOD).expect("valid");
        assert_eq!(parsed.id.get(), 10_042);
        assert_eq!(parsed.school_code, Some(7));
        assert_eq!(parsed.stream, Stream::NaturalScience);
        assert_eq!(parsed.scores, [55, 61, 40, 72, 38, 90]);
    }

    #[test]
    fn each_kind_of_bad_field_is_named() {
        let cases: [(usize, &str, &str); 12] = [
            (0, "01234", "start with 0"),
            (0, "12a", "only the digits"),
            (0, "1234567890", "too long"),
            (1, "", "full_name is empty"),
            (1, "a\u{7}b", "control character"),
            (4, "Atlantis", "unknown region"),
            (5, "arts", "unknown stream"),
            (6, "", "english is missing"),
            (6, "101", "not a whole number 0-100"),
            (6, "-1", "not a whole number 0-100"),
            (6, "5.5", "not a whole number 0-100"),
            (11, "50", "geography is not a subject of natural_science"),
        ];
        for (column, value, expected) in cases {
            let mut fields = GOOD;
            fields[column] = value;
            let problem = row(fields).expect_err(value);
            assert!(problem.contains(expected), "{value:?}: {problem}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let mut fields = GOOD;
        fields[1] = &long;
        assert!(row(fields).expect_err("long").contains("at most 200"));
        assert!(header().parse_row(&record(&GOOD[..14])).expect_err("short").contains("14 fields"));
    }

    #[test]
    fn a_wrong_header_names_what_is_wrong_and_what_is_expected() {
        let mut columns: Vec<&str> = required().collect();
        columns[1] = "name";
        let problem = Header::parse(&record(&columns)).expect_err("wrong");
        assert!(problem.contains("unknown column \"name\""), "{problem}");
        assert!(problem.contains("missing column(s) full_name"), "{problem}");
        assert!(problem.contains(&expected_columns()), "{problem}");
        // Any order, and the code column is optional.
        let mut reversed: Vec<&str> = required().collect();
        reversed.reverse();
        assert!(!Header::parse(&record(&reversed)).expect("valid").has_school_code());
    }

    #[test]
    fn schools_by_code_must_agree_and_by_name_are_numbered_in_order() {
        let mut index = SchoolIndex::default();
        let first = row(GOOD).expect("valid");
        assert_eq!(index.resolve(&first), Ok(7));
        let mut renamed = first.clone();
        renamed.school = "Other".into();
        assert!(index.resolve(&renamed).is_err());
        let mut recoded = first.clone();
        recoded.school_code = Some(8);
        assert!(index.resolve(&recoded).is_err(), "one school, two codes");

        let mut by_name = SchoolIndex::default();
        let mut a = first.clone();
        a.school_code = None;
        let mut b = a.clone();
        b.region = Region::ALL[2];
        assert_eq!((by_name.resolve(&a), by_name.resolve(&b), by_name.resolve(&a)), (Ok(1), Ok(2), Ok(1)));
        assert_eq!(by_name.schools().len(), 2);
    }

    #[test]
    fn a_factor_column_is_optional_single_checked_and_never_echoed() {
        let with = |column: &str, value: &str| {
            let mut names = COLUMNS.to_vec();
            names.push(column);
            let mut fields = GOOD.to_vec();
            fields.push(value);
            Header::parse(&record(&names))
                .and_then(|h| h.parse_row(&record(&fields)).map(|row| (h.factor(), row.factor)))
        };
        assert_eq!(with("pin", " 004217 "), Ok((Some(FactorKind::Pin), Some("004217".to_owned()))));
        assert_eq!(
            with("date_of_birth", "2008-02-29"),
            Ok((Some(FactorKind::DateOfBirth), Some("2008-02-29".to_owned())))
        );
        assert_eq!(header().factor(), None);
        assert_eq!(row(GOOD).expect("valid").factor, None);
        let empty = with("pin", "").expect_err("empty");
        assert!(empty.contains("pin is empty"), "{empty}");
        for (column, bad) in [("pin", "12a456"), ("pin", "123"), ("date_of_birth", "2007-02-29")] {
            let problem = with(column, bad).expect_err(bad);
            assert!(problem.contains(&format!("{column} is not")), "{problem}");
            assert!(!problem.contains(bad), "the value is personal data: {problem}");
        }
        let mut two = COLUMNS.to_vec();
        two.extend(["pin", "date_of_birth"]);
        let problem = Header::parse(&record(&two)).expect_err("two factors");
        assert!(problem.contains("one second factor"), "{problem}");
    }

    #[test]
    fn the_help_lists_every_column_and_region() {
        for column in COLUMNS.into_iter().chain(FactorKind::ALL.map(FactorKind::as_str)) {
            assert!(FORMAT_HELP.contains(column), "{column}");
        }
        for region in Region::ALL {
            assert!(FORMAT_HELP.contains(region.name), "{}", region.name);
        }
        assert!(FORMAT_HELP.contains(&MAX_LINE_BYTES.to_string()));
        assert!(FORMAT_HELP.contains(&MAX_NAME_CHARS.to_string()));
        let subjects: Vec<&str> = SUBJECTS.iter().map(|s| s.as_str()).collect();
        assert_eq!(&COLUMNS[6..], subjects.as_slice());
    }
}
