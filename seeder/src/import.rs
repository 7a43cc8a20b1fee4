//! `seeder import`: publishes an exam authority's results file (format: [`crate::results_file`]).
//!
//! 1. **Check the whole file first**, reading it once as a stream: header, every row, schools,
//!    duplicates. Nothing is written anywhere until every line is right; every bad line is
//!    reported as `FILE:LINE: what is wrong` (the first [`SHOWN_PROBLEMS`], then a count). The
//!    same pass hashes the bytes (the file's identity), counts each stream's totals (the ranks)
//!    and, for standard input, spools the bytes to a temporary file for the second pass.
//!    Memory: 8 bytes per student (ID and line, for duplicates) and the schools.
//! 2. **Load** with the same plan as `seeder load` ([`crate::load`]): the same file already loaded
//!    is a no-op, another data set needs `--force`, corrections need `--discard-corrections`;
//!    PostgreSQL is filled by streaming the file again in batches through binary COPY and
//!    committed with its fingerprint (computed from PostgreSQL, in ID order) before Redis is
//!    loaded from PostgreSQL, batch by batch, and the completeness marker is written last.
//!
//! A file that changes between the two passes is caught by its digest before the load is marked
//! complete; the load then stays unfinished and the next run starts it again.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use results_core::generate::RankTable;
use results_core::record::ResultRecord;
use results_core::{ContentChecksum, FactorKey};
use xxhash_rust::xxh3::Xxh3;

use crate::Stores;
use crate::load::{Copied, InMemory, LoadOutcome, Plan, Rows};
use crate::origin::{FileOrigin, Origin};
use crate::pg::Pg;
use crate::progress::{Phase, PhaseReport, Progress, ProgressMode};
use crate::results_file::{Header, MAX_LINE_BYTES, SchoolIndex, expected_columns};

/// Bad lines shown; the rest are counted.
pub const SHOWN_PROBLEMS: usize = 50;
/// Students per batch sent to PostgreSQL: bounds memory, and keeps each COPY long enough.
const COPY_BATCH: usize = 50_000;

/// Where the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file.
    Path(PathBuf),
    /// Standard input (`--file -`).
    Stdin,
}

impl Input {
    /// `-` is standard input, anything else a path.
    pub fn from_arg(path: &Path) -> Self {
        if path.as_os_str() == "-" { Input::Stdin } else { Input::Path(path.to_owned()) }
    }

    /// The name used in `FILE:LINE:` messages.
    pub fn name(&self) -> String {
        match self {
            Input::Path(path) => path.display().to_string(),
            Input::Stdin => "stdin".to_owned(),
        }
    }
}

/// Everything an import needs.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// The stores to load.
    pub stores: Stores,
    /// The results file.
    pub input: Input,
    /// Reload even if the stores hold this file already, and replace another data set.
    pub force: bool,
    /// With `force`: drop corrections applied since the data set was loaded.
    pub discard_corrections: bool,
    /// PostgreSQL connections used in parallel for COPY and index builds.
    pub pg_connections: usize,
    /// How to show progress.
    pub progress: ProgressMode,
    /// The secret a second factor's hash is keyed with (`FACTOR_KEY`); needed when the file has a
    /// factor column.
    pub factor_key: Option<FactorKey>,
}

/// The bad lines of a refused file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFile {
    /// The first [`SHOWN_PROBLEMS`] problems, as `FILE:LINE: what is wrong`, by line.
    pub problems: Vec<String>,
    /// How many problems there are in all.
    pub total: u64,
}

impl fmt::Display for InvalidFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        let more = self.total - self.problems.len() as u64;
        if more > 0 {
            writeln!(f, "… and {more} more problem(s)")?;
        }
        write!(f, "the file has {} problem(s); nothing was written to PostgreSQL or Redis", self.total)
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a valid results file; nothing was written.
    #[error("{0}")]
    Invalid(InvalidFile),
    /// Anything else (a store unreachable, a refusal of the load plan).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Problems found so far: the first few by line, and a count.
struct Problems {
    file: String,
    shown: Vec<(u64, String)>,
    total: u64,
}

impl Problems {
    fn new(file: String) -> Self {
        Self { file, shown: Vec::new(), total: 0 }
    }

    /// Records a problem; callers add them in line order (or merge, see [`Problems::finish`]).
    fn push(&mut self, line: u64, problem: String) {
        self.total += 1;
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push((line, problem));
        }
    }

    fn finish(mut self, more: Problems) -> Result<(), ImportError> {
        if self.total + more.total == 0 {
            return Ok(());
        }
        self.shown.extend(more.shown);
        self.shown.sort_by_key(|(line, _)| *line);
        self.shown.truncate(SHOWN_PROBLEMS);
        let problems = self.shown.iter().map(|(line, p)| format!("{}:{line}: {p}", self.file)).collect();
        Err(ImportError::Invalid(InvalidFile { problems, total: self.total + more.total }))
    }
}

/// A line longer than [`MAX_LINE_BYTES`]: the file is refused without buffering it.
#[derive(Debug, thiserror::Error)]
#[error("line {line} is longer than {MAX_LINE_BYTES} bytes: not a results file")]
struct LineTooLong {
    line: u64,
}

/// Reads the file for the CSV parser while hashing it, bounding line length and, for standard
/// input, spooling it to a temporary file for the second pass.
struct Guard<R> {
    inner: R,
    hasher: Xxh3,
    spool: Option<BufWriter<File>>,
    since_newline: usize,
    line: u64,
}

impl<R: Read> Guard<R> {
    fn new(inner: R, spool: Option<File>) -> Self {
        Self { inner, hasher: Xxh3::new(), spool: spool.map(BufWriter::new), since_newline: 0, line: 1 }
    }

    fn digest(&self) -> String {
        format!("{:032x}", self.hasher.digest128())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        for &byte in chunk {
            if byte == b'\n' {
                self.since_newline = 0;
                self.line += 1;
            } else {
                self.since_newline += 1;
                if self.since_newline > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, LineTooLong { line: self.line }));
                }
            }
        }
        self.hasher.update(chunk);
        if let Some(spool) = &mut self.spool {
            spool.write_all(chunk)?;
        }
        Ok(n)
    }
}

/// Where the second pass reads the checked bytes.
enum Source {
    Path(PathBuf),
    /// Standard input as spooled during the check (deleted when dropped).
    Spool(tempfile::NamedTempFile),
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Path(path) => path,
            Source::Spool(file) => file.path(),
        }
    }
}

/// A file that passed every check, and what the check learned.
pub struct Checked {
    origin: Origin,
    source: Source,
    schools: SchoolIndex,
    ranks: RankTable,
}

impl Checked {
    /// What the file is.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

fn csv_reader<R: Read>(reader: R) -> csv::Reader<R> {
    // No automatic header, and rows of any length: this module reports both as FILE:LINE.
    csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(reader)
}

/// The CSV error of a read, as a problem (a bad file) or an error (the disk failed).
fn read_problem(error: csv::Error) -> Result<(u64, String), anyhow::Error> {
    let line = error.position().map_or(0, csv::Position::line);
    match error.into_kind() {
        csv::ErrorKind::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<LineTooLong>()) {
            Some(too_long) => Ok((too_long.line, too_long.to_string())),
            None => Err(anyhow::Error::new(io).context("cannot read the results file")),
        },
        other => Ok((line, format!("unreadable CSV: {other:?}"))),
    }
}

/// Pass 1: checks the whole file; nothing is written to the stores.
pub fn check(input: &Input) -> Result<Checked, ImportError> {
    let name = input.name();
    let (reader, spool): (Box<dyn Read>, Option<tempfile::NamedTempFile>) = match input {
        Input::Path(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (Box::new(file), None)
        }
        Input::Stdin => {
            let spool = tempfile::NamedTempFile::new().context("cannot create a temporary file for standard input")?;
            (Box::new(std::io::stdin().lock()), Some(spool))
        }
    };
    let spool_file = match &spool {
        Some(s) => Some(s.reopen().context("cannot open the temporary file for standard input")?),
        None => None,
    };
    let mut csv = csv_reader(Guard::new(std::io::BufReader::with_capacity(1 << 16, reader), spool_file));
    let mut problems = Problems::new(name.clone());
    let mut record = csv::ByteRecord::new();
    let header = match csv.read_byte_record(&mut record) {
        Ok(true) => Header::parse(&record),
        Ok(false) => Err(format!("the file is empty; expected a header with the columns {}", expected_columns())),
        Err(e) => Err(read_problem(e)?.1),
    };
    let header = match header {
        Ok(header) => header,
        Err(problem) => {
            // Nothing after a wrong header can be read as rows: one problem, and stop (this is
            // also what refuses a binary or garbage file at once).
            return Err(ImportError::Invalid(InvalidFile { problems: vec![format!("{name}:1: {problem}")], total: 1 }));
        }
    };
    let mut ids: Vec<(u32, u32)> = Vec::new();
    let mut schools = SchoolIndex::default();
    let mut ranks = RankTable::default();
    let mut last_line = 1u64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let (line, problem) = read_problem(e)?;
                problems.push(line, problem);
                break;
            }
        }
        let line = record.position().map_or(last_line + 1, csv::Position::line);
        last_line = line;
        let checked = header.parse_row(&record).and_then(|row| schools.resolve(&row).map(|_| row));
        match checked {
            Ok(row) => {
                let Ok(line32) = u32::try_from(line) else {
                    problems.push(line, "too many lines".to_owned());
                    break;
                };
                ids.push((row.id.get(), line32));
                let total = row.scores.iter().map(|&s| u16::from(s)).sum();
                ranks.add(row.stream, total);
            }
            Err(problem) => problems.push(line, problem),
        }
    }
    if ids.is_empty() && problems.total == 0 {
        problems.push(last_line + 1, "no students after the header".to_owned());
    }
    // Duplicates: sorted by (ID, line), every repeat is reported on its own line.
    ids.sort_unstable();
    let mut duplicates = Problems::new(name.clone());
    let mut repeats: Vec<(u64, String)> = ids
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .map(|pair| {
            (u64::from(pair[1].1), format!("registration_number {} is already on line {}", pair[1].0, pair[0].1))
        })
        .collect();
    repeats.sort_unstable_by_key(|(line, _)| *line);
    for (line, problem) in repeats {
        duplicates.push(line, problem);
    }
    problems.finish(duplicates)?;
    let guard = csv.into_inner();
    let digest = guard.digest();
    if let Some(mut spool) = guard.spool {
        spool.flush().context("cannot write the temporary file for standard input")?;
    }
    ranks.finish();
    let (first_id, last_id) = match (ids.first(), ids.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ => return Err(anyhow::anyhow!("no students after the header").into()),
    };
    let students = u32::try_from(ids.len()).context("too many students")?;
    drop(ids);
    let origin = Origin::File(FileOrigin { digest, students, first_id, last_id, factor: header.factor() });
    let source = match (input, spool) {
        (_, Some(spool)) => Source::Spool(spool),
        (Input::Path(path), None) => Source::Path(path.clone()),
        (Input::Stdin, None) => return Err(anyhow::anyhow!("standard input was not spooled").into()),
    };
    Ok(Checked { origin, source, schools, ranks })
}

/// Pass 2: reads the checked file again and sends its records, ranked, in batches; returns the
/// digest of what it read (compared with pass 1's) and, when the rows came in ascending ID order
/// (as `seeder export` writes them), the data set's fingerprint.
fn stream_records(
    checked: &Checked,
    key: Option<&FactorKey>,
    batches: &tokio::sync::mpsc::Sender<Vec<ResultRecord>>,
) -> anyhow::Result<(String, Option<String>)> {
    let path = checked.source.path();
    let file = File::open(path).with_context(|| format!("cannot open {} again", path.display()))?;
    let mut csv = csv_reader(Guard::new(std::io::BufReader::with_capacity(1 << 16, file), None));
    let mut record = csv::ByteRecord::new();
    let changed = || anyhow::anyhow!("the results file changed while it was imported; run the import again");
    if !csv.read_byte_record(&mut record).context("cannot read the results file again")? {
        return Err(changed());
    }
    let header = Header::parse(&record).map_err(|_| changed())?;
    // The fingerprint hashes schools, then results in ascending ID order: computed on the way
    // while the file is in that order, which spares reading everything back from PostgreSQL.
    let mut schools = ContentChecksum::new();
    checked.schools.schools().iter().for_each(|s| schools.add_school(s));
    let mut sum = Some(schools);
    let mut previous = 0u32;
    let mut batch = Vec::with_capacity(COPY_BATCH);
    while csv.read_byte_record(&mut record).map_err(|_| changed())? {
        let row = header.parse_row(&record).map_err(|_| changed())?;
        let school_id = checked.schools.id_of(&row).ok_or_else(changed)?;
        let total = row.scores.iter().map(|&s| u16::from(s)).sum();
        let factor = match (header.factor(), row.factor.as_deref()) {
            (Some(kind), Some(value)) => {
                Some(key.context("the file has a second-factor column but no FACTOR_KEY")?.hash(kind, value))
            }
            _ => None,
        };
        let record = ResultRecord {
            id: row.id,
            name: row.name,
            school_id,
            stream: row.stream,
            scores: row.scores,
            rank: checked.ranks.rank(row.stream, total),
            factor,
        };
        if record.id.get() < previous {
            sum = None;
        }
        previous = record.id.get();
        if let Some(sum) = &mut sum {
            sum.add_result(&record);
        }
        batch.push(record);
        if batch.len() == COPY_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(COPY_BATCH));
            if batches.blocking_send(full).is_err() {
                bail!("the PostgreSQL load stopped");
            }
        }
    }
    if !batch.is_empty() && batches.blocking_send(batch).is_err() {
        bail!("the PostgreSQL load stopped");
    }
    Ok((csv.into_inner().digest(), sum.map(|sum| sum.finish())))
}

/// The rows of a checked file, and the key of its factor, for the load plan.
struct FileRows(Arc<Checked>, Option<FactorKey>);

impl Rows for FileRows {
    fn origin(&self) -> &Origin {
        &self.0.origin
    }

    async fn prepare(&self, _: &Progress, _: &mut Vec<PhaseReport>) -> anyhow::Result<Option<InMemory>> {
        Ok(None)
    }

    async fn copy(&self, pg: &Pg, _: Option<&InMemory>, phase: &Phase) -> anyhow::Result<Copied> {
        let mut copied = pg.copy_schools(&self.0.schools.schools(), phase).await?;
        let stream_type = pg.stream_type().await?;
        let (sender, mut batches) = tokio::sync::mpsc::channel(2);
        let checked = Arc::clone(&self.0);
        let key = self.1.clone();
        let reader = tokio::task::spawn_blocking(move || stream_records(&checked, key.as_ref(), &sender));
        while let Some(batch) = batches.recv().await {
            copied += pg.copy_records(&batch, &stream_type, phase).await?;
        }
        let (digest, fingerprint) = reader.await??;
        if Some(digest.as_str()) != self.0.origin.digest() {
            bail!("the results file changed while it was imported; run the import again");
        }
        Ok(Copied { rows: copied, fingerprint })
    }
}

/// Checks the file, then loads it (see the module documentation).
pub async fn run(settings: &ImportSettings) -> Result<LoadOutcome, ImportError> {
    let input = settings.input.clone();
    let checked = tokio::task::spawn_blocking(move || check(&input)).await.context("the file check failed")??;
    if let Some(kind) = checked.origin.factor()
        && settings.factor_key.is_none()
    {
        return Err(anyhow::anyhow!(
            "the file has a {} column: set FACTOR_KEY (a secret of at least {} bytes, the same the API is given) \
             so that the stores hold only its keyed hash; nothing was written",
            kind.as_str(),
            results_core::factor::MIN_KEY_BYTES
        )
        .into());
    }
    tracing::info!(
        students = checked.origin.students(),
        schools = checked.schools.schools().len(),
        "the results file is valid; loading it"
    );
    let plan = Plan {
        stores: &settings.stores,
        force: settings.force,
        discard_corrections: settings.discard_corrections,
        pg_connections: settings.pg_connections,
        progress: settings.progress,
    };
    Ok(plan.execute(&FileRows(Arc::new(checked), settings.factor_key.clone())).await?)
}
