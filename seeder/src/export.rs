//! `seeder export`: writes what PostgreSQL holds as a results file (the format `seeder import`
//! reads, [`crate::results_file`]) and its registration numbers, one a line (for
//! `loadgen --ids-file`); or the generated rows as CSV files plus a `copy.psql` script of
//! `\copy` commands, so a benchmark can load exactly the same rows with `psql` as the baseline
//! the seeder is measured against.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use anyhow::Context;
use results_core::record::{Region, ResultRecord, Stream};
use results_core::{Dataset, DatasetSpec};

use crate::Stores;
use crate::pg::{Pg, results_table};
use crate::results_file::{COLUMNS, write_row};

/// Results read from PostgreSQL per batch while exporting.
const EXPORT_BATCH: usize = 20_000;

/// The results file and IDs file being written.
struct Outputs<'a> {
    results: Option<csv::Writer<BufWriter<File>>>,
    ids: Option<BufWriter<File>>,
    file: Option<&'a Path>,
    ids_file: Option<&'a Path>,
    schools: HashMap<u32, results_core::School>,
    count: u64,
}

impl<'a> Outputs<'a> {
    fn create(
        file: Option<&'a Path>,
        ids_file: Option<&'a Path>,
        schools: &[results_core::School],
    ) -> anyhow::Result<Self> {
        let create = |path: &Path| -> anyhow::Result<BufWriter<File>> {
            Ok(BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?))
        };
        let results = match file {
            Some(path) => {
                let mut writer = csv::Writer::from_writer(create(path)?);
                writer.write_record(COLUMNS).context("cannot write the results file")?;
                Some(writer)
            }
            None => None,
        };
        let ids = ids_file.map(create).transpose()?;
        let schools = schools.iter().map(|s| (s.id, s.clone())).collect();
        Ok(Self { results, ids, file, ids_file, schools, count: 0 })
    }

    fn write(&mut self, record: &ResultRecord) -> anyhow::Result<()> {
        if let Some(writer) = &mut self.results {
            // Writing the row without it would make a re-import an open data set.
            if record.factor.is_some() {
                anyhow::bail!(
                    "the data set requires a second factor, which the stores hold only as a keyed hash: a results \
                     file cannot be exported from them (publish again from the authority's file; --ids-file alone works)"
                );
            }
            let school = self
                .schools
                .get(&record.school_id)
                .with_context(|| format!("student {} has an unknown school", record.id))?;
            write_row(writer, record, school).context("cannot write the results file")?;
        }
        if let Some(out) = &mut self.ids {
            writeln!(out, "{}", record.id).context("cannot write the IDs file")?;
        }
        self.count += 1;
        Ok(())
    }

    /// Flushes both files; returns what was written, in words.
    fn finish(self, from: &str) -> anyhow::Result<String> {
        if let Some(writer) = self.results {
            writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write the results file: {e}"))?.flush()?;
        }
        if let Some(mut out) = self.ids {
            out.flush().context("cannot write the IDs file")?;
        }
        let mut report = format!("exported {} students from {from}", self.count);
        for (what, path) in [("results file", self.file), ("IDs file", self.ids_file)] {
            if let Some(path) = path {
                report.push_str(&format!("; {what} {}", path.display()));
            }
        }
        Ok(report)
    }
}

/// Writes the results file and/or the IDs file of what PostgreSQL holds (corrections included),
/// streaming: memory does not grow with the data set. Returns a one-line report.
pub async fn results(stores: &Stores, file: Option<&Path>, ids_file: Option<&Path>) -> anyhow::Result<String> {
    let pg = Pg::connect(&stores.database_url, 1).await?;
    match pg.dataset().await? {
        Some(row) if row.complete => {}
        _ => anyhow::bail!("PostgreSQL at {} holds no complete data set to export", pg.target()),
    }
    let mut out = Outputs::create(file, ids_file, &pg.read_schools().await?)?;
    pg.for_each_batch(EXPORT_BATCH, |records| {
        let written = records.iter().try_for_each(|record| out.write(record));
        async move { written }
    })
    .await?;
    out.finish(&format!("PostgreSQL at {}", pg.target()))
}

/// Writes the results file and/or the IDs file of the generated data set `spec` (no store is
/// read). Returns a one-line report.
pub fn generated(spec: DatasetSpec, file: Option<&Path>, ids_file: Option<&Path>) -> anyhow::Result<String> {
    let dataset = Dataset::new(spec);
    let mut out = Outputs::create(file, ids_file, dataset.schools())?;
    dataset.generate().iter().try_for_each(|record| out.write(record))?;
    out.finish("the generator")
}

struct Table {
    name: &'static str,
    columns: String,
    path: PathBuf,
    /// RFC 4180, as PostgreSQL's `FORMAT csv` reads it (a name holding a comma or quote is quoted).
    out: csv::Writer<BufWriter<File>>,
}

impl Table {
    fn create(dir: &Path, name: &'static str, columns: String) -> anyhow::Result<Self> {
        let path = dir.join(format!("{name}.csv"));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { name, columns, path, out: csv::Writer::from_writer(BufWriter::new(file)) })
    }
}

/// Writes the CSV files and `copy.psql` into `dir` (created if missing); returns the rows written.
pub fn run(spec: DatasetSpec, dir: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dataset = Dataset::new(spec);
    let records = dataset.generate();
    let subject_columns = |stream: Stream| stream.subjects().map(|s| s.as_str()).join(", ");
    let mut regions = Table::create(dir, "regions", "id, name".into())?;
    let mut schools = Table::create(dir, "schools", "id, name, region_id".into())?;
    let mut students = Table::create(dir, "students", "id, full_name, school_id, stream".into())?;
    let mut natural = Table::create(
        dir,
        results_table(Stream::NaturalScience),
        format!("student_id, {}, rank_in_stream", subject_columns(Stream::NaturalScience)),
    )?;
    let mut social = Table::create(
        dir,
        results_table(Stream::SocialScience),
        format!("student_id, {}, rank_in_stream", subject_columns(Stream::SocialScience)),
    )?;
    let mut rows = 0u64;
    let io = |e: std::io::Error| anyhow::anyhow!("cannot write CSV: {e}");
    let csv_error = |e: csv::Error| anyhow::anyhow!("cannot write CSV: {e}");
    for r in Region::ALL {
        regions.out.write_record([r.id.to_string().as_str(), r.name]).map_err(csv_error)?;
        rows += 1;
    }
    for s in dataset.schools() {
        schools.out.write_record([s.id.to_string().as_str(), &s.name, &s.region.id.to_string()]).map_err(csv_error)?;
        rows += 1;
    }
    for r in &records {
        let id = r.id.to_string();
        students.out.write_record([&id, &r.name, &r.school_id.to_string(), r.stream.as_str()]).map_err(csv_error)?;
        let table = if r.stream == Stream::NaturalScience { &mut natural } else { &mut social };
        let row = std::iter::once(id).chain(r.scores.iter().map(u8::to_string)).chain([r.rank.to_string()]);
        table.out.write_record(row).map_err(csv_error)?;
        rows += 2;
    }
    let script_path = dir.join("copy.psql");
    let mut script =
        BufWriter::new(File::create(&script_path).with_context(|| format!("cannot create {}", script_path.display()))?);
    for mut table in [regions, schools, students, natural, social] {
        table.out.flush().map_err(io)?;
        let absolute = std::path::absolute(&table.path).unwrap_or(table.path.clone());
        writeln!(
            script,
            "\\copy {} ({}) FROM '{}' WITH (FORMAT csv)",
            table.name,
            table.columns,
            absolute.display().to_string().replace('\'', "''")
        )
        .map_err(io)?;
    }
    script.flush().map_err(io)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_tables_read_back_as_csv_with_every_name_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = DatasetSpec::with_first_id(7, 40, 1_000_000).expect("a spec");
        let rows = run(spec, dir.path()).expect("exported");
        let read = |name: &str| -> Vec<csv::StringRecord> {
            let path = dir.path().join(format!("{name}.csv"));
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).expect("open");
            reader.records().collect::<Result<_, _>>().expect("valid CSV")
        };
        let dataset = Dataset::new(spec);
        let students = read("students");
        let records = dataset.generate();
        assert_eq!(students.len(), records.len());
        for (row, record) in students.iter().zip(&records) {
            assert_eq!(row.len(), 4);
            assert_eq!((&row[0], &row[1]), (record.id.to_string().as_str(), record.name.as_str()));
        }
        let schools = read("schools");
        assert!(schools.iter().zip(dataset.schools()).all(|(row, s)| row.len() == 3 && row[1] == s.name));
        let regions = read("regions");
        assert!(regions.iter().zip(Region::ALL).all(|(row, r)| row.len() == 2 && &row[1] == r.name));
        let results =
            read(results_table(Stream::NaturalScience)).len() + read(results_table(Stream::SocialScience)).len();
        assert_eq!(results, records.len());
        assert_eq!(rows as usize, Region::ALL.len() + schools.len() + 2 * records.len());
    }
}
