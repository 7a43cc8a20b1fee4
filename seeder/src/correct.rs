//! `seeder correct`: applies corrected subject scores (results change after appeals).
//!
//! The input is a contract with whoever writes it (people, the result-day drill script): a CSV
//! file with the header `student_id,subject,score` and one row per changed subject score;
//! `subject` is the subject's name as the API's JSON shows it in `subjects[].subject`
//! ([`Subject::as_str`]), `score` a whole number `0..=`[`Subject::MAX_SCORE`].
//!
//! 1. **Check everything first.** The whole file is parsed, then checked against PostgreSQL
//!    (the student exists, the subject is one of their stream's). Every bad line is reported with
//!    its number and what is wrong, and nothing is applied ([`CorrectError::Invalid`]).
//! 2. **One transaction** (under the seeder's lock, so no load or other correction interleaves):
//!    the scores are updated, the stored ranks of the affected streams recomputed with `RANK()`
//!    (a changed total moves other students' ranks too; every stored rank that differs is
//!    rewritten), and the same transaction records every student whose stored result changed in
//!    `pending_publication`, a `corrections` journal row (time, file, counts) with every old and
//!    new score, and the data set's new content checksum (`dataset.fingerprint`).
//!    Scores that already have the given value change nothing: applying a file twice is a no-op
//!    the second time, and says so.
//! 3. **Publish** ([`crate::publish`]): Redis gets every pending result, then the new fingerprint
//!    in its completeness marker, then the pending rows are cleared. When Redis is down or fails
//!    midway, PostgreSQL keeps the correction and the pending rows, and `seeder publish` (or the
//!    same command again) finishes the job.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use results_core::record::{Stream, Subject};
use results_core::{StudentId, record};

use crate::Stores;
use crate::pg::{Pg, PgContext, content_checksum, results_table};
use crate::publish::{self, Published, Unpublished};

/// The header line every correction file starts with.
pub const HEADER: &str = "student_id,subject,score";

/// What `seeder correct` needs.
#[derive(Debug, Clone)]
pub struct CorrectSettings {
    /// The stores to correct.
    pub stores: Stores,
    /// The correction file.
    pub file: PathBuf,
    /// Check the file and show what would change, then roll back (nothing applied or published).
    pub dry_run: bool,
}

/// One well-formed row of a correction file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Line number in the file (the header is line 1).
    pub line: usize,
    /// The student.
    pub id: StudentId,
    /// The subject.
    pub subject: Subject,
    /// The corrected score.
    pub score: u8,
}

/// What is wrong with one line of a correction file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// Line number in the file (the header is line 1).
    pub line: usize,
    /// What is wrong, in words.
    pub problem: String,
}

/// A correction file read and checked on its own (before PostgreSQL is asked).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The rows that are well-formed.
    pub rows: Vec<Row>,
    /// Every problem found, by line.
    pub problems: Vec<LineProblem>,
    /// Data lines in the file (blank lines excluded).
    pub data_lines: usize,
    /// Whether the header was right (without it the rows cannot be interpreted).
    pub header_ok: bool,
}

/// Why a correction was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CorrectError {
    /// The file has bad lines; nothing was applied.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The file, as given.
        file: String,
        /// Every bad line.
        problems: Vec<LineProblem>,
    },
    /// PostgreSQL holds the correction but Redis did not get all of it.
    #[error("{unpublished}")]
    Unpublished {
        /// What the transaction did (a report for standard output).
        applied: Box<Applied>,
        /// What is missing from Redis and how to retry.
        unpublished: Unpublished,
    },
    /// Anything else (unreadable file, PostgreSQL unreachable, no data set): nothing applied.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One changed score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The student.
    pub id: StudentId,
    /// The subject.
    pub subject: Subject,
    /// The score before.
    pub old: u8,
    /// The score after.
    pub new: u8,
}

/// What the transaction did (or, in a dry run, would have done).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The file, as given.
    pub file: String,
    /// Rows in the file.
    pub rows: usize,
    /// The scores that changed.
    pub changes: Vec<Change>,
    /// Students whose stored result changed (their scores, or a rank the new totals moved).
    pub affected: u64,
    /// Of those, students whose scores did not change but whose rank moved.
    pub rank_moved: u64,
    /// The journal row (`corrections.id`), when something was committed.
    pub correction_id: Option<i64>,
    /// The data set's content checksum after the correction.
    pub fingerprint: String,
    /// Rolled back on purpose (`--dry-run`).
    pub dry_run: bool,
}

/// A correction applied and published.
#[derive(Debug, Clone)]
pub struct Corrected {
    /// What the transaction did.
    pub applied: Applied,
    /// What reached Redis (`None` in a dry run).
    pub published: Option<Published>,
}

/// The subject named `name` exactly as the API's JSON spells it.
pub fn subject_named(name: &str) -> Option<Subject> {
    Stream::ALL.iter().flat_map(|s| s.subjects()).find(|s| s.as_str() == name)
}

fn all_subject_names() -> String {
    let mut names: Vec<&str> = Vec::new();
    for subject in Stream::ALL.iter().flat_map(|s| s.subjects()) {
        if !names.contains(&subject.as_str()) {
            names.push(subject.as_str());
        }
    }
    names.join(", ")
}

fn subject_list(stream: Stream) -> String {
    stream.subjects().map(Subject::as_str).join(", ")
}

/// Parses and checks a correction file on its own: header, three fields per line, a valid
/// registration number, a known subject name, a score in range, no (student, subject) twice.
/// Read as CSV (RFC 4180, with the csv crate: a quoted field may hold a comma or a quote); fields
/// are trimmed, blank lines skipped, a UTF-8 byte-order mark and CRLF line ends accepted.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // A problem names the line an editor shows. The csv crate's own line numbers (1.4) skip blank
    // lines and count a CRLF file short, so lines are counted here from the record's first byte.
    let newlines: Vec<usize> = text.match_indices('\n').map(|(at, _)| at).collect();
    let line_at = |position: Option<&csv::Position>| {
        let start = position.map_or(0, |p| p.byte() as usize);
        // The reader may place a record after blank lines at the first of them.
        let start = start
            + text
                .as_bytes()
                .get(start..)
                .map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_whitespace()).count());
        newlines.partition_point(|&newline| newline < start) + 1
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(header) if !header.is_empty() => Some(header.iter().map(str::to_owned).collect::<Vec<_>>()),
        Ok(_) => None,
        Err(e) => Some(vec![e.to_string()]),
    };
    let lines = reader.records().filter_map(|record| {
        let (line, fields) = match record {
            Ok(record) => {
                let line = line_at(record.position());
                (line, record.iter().map(str::to_owned).collect::<Vec<_>>())
            }
            // Only invalid UTF-8 fails a flexible reader, which a &str cannot hold; were it to
            // happen, the line is reported malformed with the reader's error as its one field.
            Err(e) => (line_at(e.position()), vec![e.to_string()]),
        };
        let blank = fields.len() == 1 && fields[0].is_empty();
        (!blank).then_some((line, fields))
    });
    match header {
        Some(header) if header.iter().map(String::as_str).eq(HEADER.split(',')) => parsed.header_ok = true,
        Some(header) => {
            let header = header.join(",");
            parsed
                .problems
                .push(LineProblem { line: 1, problem: format!("the header must be `{HEADER}`, found `{header}`") });
            return parsed;
        }
        None => {
            parsed.problems.push(LineProblem { line: 1, problem: format!("the file is empty (expected `{HEADER}`)") });
            return parsed;
        }
    }
    let mut seen: HashMap<(StudentId, Subject), usize> = HashMap::new();
    for (line, fields) in lines {
        parsed.data_lines += 1;
        if fields.len() != 3 {
            parsed.problems.push(LineProblem {
                line,
                problem: format!("malformed: expected 3 fields `{HEADER}`, found {}", fields.len()),
            });
            continue;
        }
        let mut wrong = Vec::new();
        let id = StudentId::parse(&fields[0])
            .map_err(|e| wrong.push(format!("student_id `{}` is not a registration number: {e}", fields[0])))
            .ok();
        let subject = subject_named(&fields[1]);
        if subject.is_none() {
            wrong.push(format!("unknown subject `{}` (subjects: {})", fields[1], all_subject_names()));
        }
        let score = match fields[2].parse::<u16>() {
            Ok(score) if score <= u16::from(Subject::MAX_SCORE) => u8::try_from(score).ok(),
            Ok(score) => {
                wrong.push(format!("score {score} is out of range 0..={}", Subject::MAX_SCORE));
                None
            }
            Err(_) => {
                wrong.push(format!("score `{}` is not a whole number 0..={}", fields[2], Subject::MAX_SCORE));
                None
            }
        };
        match (id, subject, score) {
            (Some(id), Some(subject), Some(score)) => match seen.get(&(id, subject)) {
                Some(first) => parsed.problems.push(LineProblem {
                    line,
                    problem: format!("duplicate: student {id} {} is already on line {first}", subject.as_str()),
                }),
                None => {
                    seen.insert((id, subject), line);
                    parsed.rows.push(Row { line, id, subject, score });
                }
            },
            _ => parsed.problems.push(LineProblem { line, problem: wrong.join("; ") }),
        }
    }
    if parsed.data_lines == 0 {
        parsed.problems.push(LineProblem { line: 2, problem: "no rows: the file has only its header".to_owned() });
    }
    parsed
}

fn render_problems(file: &str, problems: &[LineProblem]) -> String {
    let mut out = format!("the correction file {file} has {} bad line(s); nothing was applied:", problems.len());
    for p in problems {
        let _ = write!(out, "\n  line {}: {}", p.line, p.problem);
    }
    out
}

/// Reads, checks, applies and publishes a correction file.
pub async fn run(settings: &CorrectSettings) -> Result<Corrected, CorrectError> {
    let file = settings.file.display().to_string();
    let text = std::fs::read_to_string(&settings.file)
        .with_context(|| format!("cannot read the correction file {file} (SEEDER_CORRECTION_FILE)"))?;
    let parsed = parse(&text);
    if !parsed.header_ok {
        return Err(CorrectError::Invalid { file, problems: parsed.problems });
    }
    let pg = Pg::connect(&settings.stores.database_url, 2).await?;
    pg.migrate(&settings.stores.database_url).await?;
    // Held until the publication is done: no load, correction or publication interleaves.
    let _lock = pg.lock_for_load().await?;
    match pg.dataset().await? {
        Some(row) if row.complete => {}
        _ => {
            return Err(anyhow::anyhow!(
                "PostgreSQL at {} holds no complete data set to correct; load one first with `seeder load`",
                pg.target()
            )
            .into());
        }
    }
    let applied = apply(&pg, &file, parsed, settings.dry_run).await?;
    if settings.dry_run {
        return Ok(Corrected { applied, published: None });
    }
    match publish::run(&pg, &settings.stores).await {
        Ok(published) => Ok(Corrected { applied, published: Some(published) }),
        Err(unpublished) => Err(CorrectError::Unpublished { applied: Box::new(applied), unpublished }),
    }
}

/// Step 2: the one transaction (checks against PostgreSQL included).
async fn apply(pg: &Pg, file: &str, parsed: Parsed, dry_run: bool) -> Result<Applied, CorrectError> {
    let Parsed { rows, mut problems, data_lines, .. } = parsed;
    let mut client = pg.client().await?;
    let tx = client.transaction().await.pg("cannot begin the correction transaction")?;

    // Who the students are.
    let ids: Vec<i32> = rows.iter().map(|r| r.id.get() as i32).collect::<BTreeSet<_>>().into_iter().collect();
    let streams: HashMap<i32, Option<Stream>> = tx
        .query("SELECT id, stream::text FROM students WHERE id = ANY($1)", &[&ids])
        .await
        .pg("cannot look up the students of the correction file")?
        .iter()
        .map(|row| (row.get::<_, i32>(0), Stream::from_name(row.get(1))))
        .collect();
    // Their current scores, locked until commit.
    let mut current: HashMap<i32, [u8; record::SUBJECTS_PER_STREAM]> = HashMap::new();
    for stream in Stream::ALL {
        let subjects = stream.subjects().map(Subject::as_str).join(", ");
        let of_stream: Vec<i32> = ids.iter().copied().filter(|id| streams.get(id) == Some(&Some(stream))).collect();
        let sql = format!(
            "SELECT student_id, {subjects} FROM {} WHERE student_id = ANY($1) FOR UPDATE",
            results_table(stream)
        );
        for row in tx.query(&sql, &[&of_stream]).await.pg("cannot read the current scores")? {
            let mut scores = [0u8; record::SUBJECTS_PER_STREAM];
            for (i, score) in scores.iter_mut().enumerate() {
                *score = u8::try_from(row.get::<_, i16>(1 + i)).unwrap_or(u8::MAX);
            }
            current.insert(row.get(0), scores);
        }
    }

    let mut changes = Vec::new();
    for row in &rows {
        let key = row.id.get() as i32;
        let stream = match streams.get(&key) {
            None => {
                problems.push(LineProblem { line: row.line, problem: format!("unknown student {}", row.id) });
                continue;
            }
            Some(None) => {
                problems.push(LineProblem {
                    line: row.line,
                    problem: format!("student {} has a stream this seeder does not know", row.id),
                });
                continue;
            }
            Some(Some(stream)) => *stream,
        };
        let Some(position) = stream.subjects().iter().position(|s| *s == row.subject) else {
            problems.push(LineProblem {
                line: row.line,
                problem: format!(
                    "subject {} is not in student {}'s stream {} (its subjects: {})",
                    row.subject.as_str(),
                    row.id,
                    stream.as_str(),
                    subject_list(stream)
                ),
            });
            continue;
        };
        let Some(scores) = current.get(&key) else {
            problems.push(LineProblem {
                line: row.line,
                problem: format!("student {} has no result row in PostgreSQL", row.id),
            });
            continue;
        };
        if scores[position] != row.score {
            changes.push((stream, Change { id: row.id, subject: row.subject, old: scores[position], new: row.score }));
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(CorrectError::Invalid { file: file.to_owned(), problems });
    }
    let mut applied = Applied {
        file: file.to_owned(),
        rows: data_lines,
        changes: changes.iter().map(|(_, c)| *c).collect(),
        dry_run,
        ..Applied::default()
    };
    if changes.is_empty() {
        // Already applied (or nothing to change): nothing is written, nothing journaled.
        tx.rollback().await.pg("cannot end the correction transaction")?;
        return Ok(applied);
    }

    // The new scores: one UPDATE per (stream, subject).
    let mut changed_students = BTreeSet::new();
    let mut by_column: HashMap<(Stream, Subject), (Vec<i32>, Vec<i16>)> = HashMap::new();
    for (stream, change) in &changes {
        changed_students.insert(change.id.get() as i32);
        let (ids, scores) = by_column.entry((*stream, change.subject)).or_default();
        ids.push(change.id.get() as i32);
        scores.push(i16::from(change.new));
    }
    for ((stream, subject), (ids, scores)) in &by_column {
        let column = subject.as_str();
        let sql = format!(
            "UPDATE {} AS t SET {column} = v.score FROM unnest($1::int4[], $2::int2[]) AS v(id, score) \
             WHERE t.student_id = v.id",
            results_table(*stream)
        );
        tx.execute(&sql, &[ids, scores]).await.pg("cannot update the scores")?;
    }

    // The ranks: the generator's ("1224") ranking is RANK() by total, highest first. Only the
    // stored ranks that differ are rewritten; each such student's result changed.
    let mut affected = changed_students.clone();
    for stream in Stream::ALL.into_iter().filter(|stream| changes.iter().any(|(s, _)| s == stream)) {
        let table = results_table(stream);
        let sql = format!(
            "WITH ranked AS (SELECT student_id, RANK() OVER (ORDER BY total DESC) AS rank FROM {table}) \
             UPDATE {table} AS t SET rank_in_stream = ranked.rank FROM ranked \
             WHERE t.student_id = ranked.student_id AND t.rank_in_stream <> ranked.rank \
             RETURNING t.student_id"
        );
        for row in tx.query(&sql, &[]).await.pg("cannot recompute the ranks")? {
            affected.insert(row.get::<_, i32>(0));
        }
    }
    applied.affected = affected.len() as u64;
    applied.rank_moved = affected.difference(&changed_students).count() as u64;

    // The data set's new fingerprint, from what this transaction is about to commit.
    applied.fingerprint = content_checksum(&*tx).await?.finish();
    if dry_run {
        tx.rollback().await.pg("cannot roll the dry run back")?;
        return Ok(applied);
    }

    let name = Path::new(file).file_name().map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned());
    let id: i64 = tx
        .query_one(
            "INSERT INTO corrections (file_name, file_rows, changed_scores, affected_students, fingerprint) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&name, &(data_lines as i32), &(changes.len() as i32), &(affected.len() as i32), &applied.fingerprint],
        )
        .await
        .pg("cannot journal the correction")?
        .get(0);
    let (students, subjects, old, new): (Vec<i32>, Vec<&str>, Vec<i16>, Vec<i16>) = changes
        .iter()
        .map(|(_, c)| (c.id.get() as i32, c.subject.as_str(), i16::from(c.old), i16::from(c.new)))
        .fold(Default::default(), |(mut a, mut b, mut c, mut d), (w, x, y, z)| {
            a.push(w);
            b.push(x);
            c.push(y);
            d.push(z);
            (a, b, c, d)
        });
    tx.execute(
        "INSERT INTO correction_changes (correction_id, student_id, subject, old_score, new_score) \
         SELECT $1, * FROM unnest($2::int4[], $3::text[], $4::int2[], $5::int2[])",
        &[&id, &students, &subjects, &old, &new],
    )
    .await
    .pg("cannot journal the changed scores")?;
    let affected: Vec<i32> = affected.into_iter().collect();
    tx.execute(
        "INSERT INTO pending_publication (student_id, correction_id) SELECT unnest($1::int4[]), $2 \
         ON CONFLICT (student_id) DO UPDATE SET correction_id = EXCLUDED.correction_id",
        &[&affected, &id],
    )
    .await
    .pg("cannot record the results to publish")?;
    let updated = tx
        .execute(
            "UPDATE dataset SET fingerprint = $1, updated_at = now() WHERE state = 'complete'",
            &[&applied.fingerprint],
        )
        .await
        .pg("cannot record the data set's new fingerprint")?;
    if updated != 1 {
        return Err(anyhow::anyhow!("the dataset row changed under the seeder (a load?); nothing was applied").into());
    }
    tx.commit().await.pg("cannot commit the correction")?;
    applied.correction_id = Some(id);
    Ok(applied)
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            return writeln!(
                f,
                "{}: all {} score(s) already have these values; nothing to change (applied before?)",
                self.file, self.rows
            );
        }
        let what = if self.dry_run { "dry run, rolled back: would change" } else { "PostgreSQL: changed" };
        writeln!(
            f,
            "{}: {what} {} of {} score(s) ({} already had their value); {} student(s) affected \
             ({} by their own scores, {} whose rank moved)",
            self.file,
            self.changes.len(),
            self.rows,
            self.rows - self.changes.len(),
            self.affected,
            self.affected - self.rank_moved,
            self.rank_moved
        )?;
        for c in self.changes.iter().take(20) {
            writeln!(f, "  {} {}: {} -> {}", c.id, c.subject.as_str(), c.old, c.new)?;
        }
        if self.changes.len() > 20 {
            writeln!(f, "  … and {} more", self.changes.len() - 20)?;
        }
        match self.correction_id {
            Some(id) => writeln!(f, "committed as correction {id}; data set fingerprint now {}", self.fingerprint),
            None => writeln!(f, "data set fingerprint would be {}", self.fingerprint),
        }
    }
}

impl Corrected {
    /// A short human-readable report for standard output.
    pub fn render(&self) -> String {
        let mut out = self.applied.to_string();
        if let Some(published) = &self.published {
            out.push_str(&published.to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(usize, String)> {
        parse(text).problems.into_iter().map(|p| (p.line, p.problem)).collect()
    }

    #[test]
    fn a_good_file_parses_with_crlf_bom_spaces_and_blank_lines() {
        let parsed = parse("\u{feff}student_id,subject,score\r\n1000001, english ,75\r\n\r\n1000001,aptitude,0\n");
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.data_lines, 2);
        let id = StudentId::new(1_000_001).expect("valid");
        assert_eq!(parsed.rows[0], Row { line: 2, id, subject: Subject::English, score: 75 });
        assert_eq!(parsed.rows[1], Row { line: 4, id, subject: Subject::Aptitude, score: 0 });
    }

    #[test]
    fn quoted_fields_are_read_as_csv() {
        let parsed = parse("student_id,subject,score\n\"1000001\",\"english\",\"75\"\n\"1000002\",\"a,b\",5\n,,\n");
        let id = StudentId::new(1_000_001).expect("valid");
        assert_eq!(parsed.rows, [Row { line: 2, id, subject: Subject::English, score: 75 }]);
        assert_eq!(parsed.data_lines, 3, "a line of empty fields is a data line, not a blank one");
        let found: Vec<(usize, &str)> = parsed.problems.iter().map(|p| (p.line, p.problem.as_str())).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].0 == 3 && found[0].1.contains("unknown subject `a,b`"), "one quoted field: {found:?}");
        assert_eq!(found[1].0, 4);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let found = problems(
            "student_id,subject,score\n\
             1000001,english,75\n\
             1000001,english,80\n\
             012,physics,50\n\
             1000002,Physics,50\n\
             1000003,biology,101\n\
             1000004,biology,-1\n\
             1000005,biology\n\
             1000006,history,7.5,extra\n",
        );
        let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9], "{found:#?}");
        assert!(found[0].1.contains("duplicate") && found[0].1.contains("line 2"), "{}", found[0].1);
        assert!(found[1].1.contains("student_id `012`"), "{}", found[1].1);
        assert!(found[2].1.contains("unknown subject `Physics`"), "{}", found[2].1);
        assert!(found[3].1.contains("score 101 is out of range 0..=100"), "{}", found[3].1);
        assert!(found[4].1.contains("score `-1` is not a whole number"), "{}", found[4].1);
        assert!(found[5].1.contains("malformed") && found[5].1.contains("found 2"), "{}", found[5].1);
        assert!(found[6].1.contains("found 4"), "{}", found[6].1);
    }

    #[test]
    fn a_wrong_header_or_an_empty_file_is_refused() {
        assert!(problems("id,subject,score\n1000001,english,75\n")[0].1.contains("header must be"));
        assert!(problems("")[0].1.contains("empty"));
        assert!(problems("student_id,subject,score\n")[0].1.contains("no rows"));
    }

    #[test]
    fn subject_names_are_the_api_json_names() {
        for stream in Stream::ALL {
            for subject in stream.subjects() {
                assert_eq!(subject_named(subject.as_str()), Some(subject));
            }
        }
        assert_eq!(subject_named("English"), None);
    }
}
