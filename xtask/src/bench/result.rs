//! A benchmark's figures: the per-run table (`runs.csv`), its medians, and the machine-readable
//! result `docs/bench/<name>.json` that `xtask capacity-model` and the docs read. Pure apart from
//! the file writes; the JSON keeps the keys and number types of the former
//! `scripts/bench/result_json.py` (sorted keys, two-space indent, a number written as an integer
//! when its CSV text is one).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// A number read from a CSV cell or a `--meta` value: an integer when the text is one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// Text without a decimal point that reads as a whole number (`42`, `1e3`).
    Int(i64),
    /// Anything else that reads as a number (`0.46`, `3.0`).
    Float(f64),
}

impl Num {
    /// The value as a float, for sorting and averaging.
    pub fn get(self) -> f64 {
        match self {
            // Exact for every count and byte total a benchmark writes (below 2^53).
            #[expect(clippy::cast_precision_loss, reason = "benchmark figures are far below 2^53")]
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn json(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) => Value::from(round6(f)),
        }
    }
}

/// Reads `text` as a number the way the JSON writer always has: `None` for empty or non-numeric
/// text (such a column is left out of the medians), an integer when it is whole and written
/// without a decimal point, a float otherwise.
pub fn number(text: &str) -> Option<Num> {
    let t = text.trim();
    let value: f64 = t.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    if value.fract() == 0.0 && !t.contains('.') && value.abs() < 9.0e15 {
        #[expect(clippy::cast_possible_truncation, reason = "whole and below 2^53, checked above")]
        return Some(Num::Int(value as i64));
    }
    Some(Num::Float(value))
}

/// Rounds to six decimals, correctly rounded from the decimal expansion (as Python's `round`).
fn round6(f: f64) -> f64 {
    format!("{f:.6}").parse().unwrap_or(f)
}

/// The median of `values` (None when empty): the middle value itself for an odd count (an
/// integer stays one), the mean of the two middle values, a float, for an even count.
pub fn median(values: &[Num]) -> Option<Num> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.get().total_cmp(&b.get()));
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(Num::Float(f64::midpoint(v[n / 2 - 1].get(), v[n / 2].get()))),
    }
}

/// The median of a list of plain floats (0 when empty): the summaries' figures.
pub fn median_f64(values: &[f64]) -> f64 {
    let nums: Vec<Num> = values.iter().map(|v| Num::Float(*v)).collect();
    median(&nums).map_or(0.0, Num::get)
}

/// The per-run figures of a benchmark: a header and rows of cells, written as `runs.csv`.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// One row per run (and target), cells as written to the CSV.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &str) -> Table {
        Table { header: header.split(',').map(str::to_owned).collect(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<String>) -> Result<()> {
        if row.len() != self.header.len() {
            bail!("a row of {} cells for {} columns: {row:?}", row.len(), self.header.len());
        }
        self.rows.push(row);
        Ok(())
    }

    /// The table as CSV text (cells never hold commas here).
    pub fn csv(&self) -> String {
        let mut text = self.header.join(",") + "\n";
        for row in &self.rows {
            let _ = writeln!(text, "{}", row.join(","));
        }
        text
    }

    /// Parses CSV text as written by [`Table::csv`].
    pub fn parse(text: &str) -> Result<Table> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().context("the CSV is empty")?;
        let mut table = Table::new(header.trim_end());
        for line in lines {
            table.push(line.trim_end().split(',').map(str::to_owned).collect())?;
        }
        Ok(table)
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The rows whose `key` column equals `value` (all rows when the table has no such column).
    pub fn rows_where(&self, key: &str, value: &str) -> Vec<&Vec<String>> {
        let k = self.column(key);
        self.rows.iter().filter(|r| k.is_none_or(|k| r[k] == value)).collect()
    }

    /// The numbers of column `name` in `rows` (cells that are not numbers skipped).
    pub fn numbers(&self, rows: &[&Vec<String>], name: &str) -> Vec<f64> {
        let Some(c) = self.column(name) else { return Vec::new() };
        rows.iter().filter_map(|r| number(&r[c])).map(Num::get).collect()
    }

    /// Median of column `name` over the rows of `target` (the `target` column), 0 when none.
    pub fn median_of(&self, target: &str, name: &str) -> f64 {
        median_f64(&self.numbers(&self.rows_where("target", target), name))
    }

    /// Largest value of column `name` over the rows of `target`, 0 when none.
    pub fn max_of(&self, target: &str, name: &str) -> f64 {
        self.numbers(&self.rows_where("target", target), name).into_iter().fold(0.0, f64::max)
    }

    /// Sum of column `name` over the rows of `target`.
    pub fn sum_of(&self, target: &str, name: &str) -> f64 {
        self.numbers(&self.rows_where("target", target), name).into_iter().fold(0.0, |a, b| a + b)
    }

    /// The median of every column whose every value in `rows` is a number.
    fn medians(&self, rows: &[&Vec<String>]) -> Value {
        let mut out = Map::new();
        for (c, name) in self.header.iter().enumerate() {
            let values: Option<Vec<Num>> = rows.iter().map(|r| number(&r[c])).collect();
            if let Some(m) = values.as_deref().and_then(median) {
                out.insert(name.clone(), m.json());
            }
        }
        Value::Object(out)
    }
}

/// Where and how a result was measured: the fields of the JSON besides the medians.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The benchmark's name, e.g. `stack`.
    pub bench: String,
    /// The command that measured it.
    pub command: String,
    /// UTC time, `2026-12-03T10:00:00Z`.
    pub measured_at: String,
    /// `git rev-parse --short=12 HEAD`, if known.
    pub git_commit: Option<String>,
    /// The machine's cores.
    pub cores: usize,
    /// Extra facts, `KEY=VALUE` (values that read as numbers are written as numbers).
    pub meta: Vec<(String, String)>,
}

/// The result document: provenance, the number of rounds (distinct `round`, else `run`, values),
/// and the medians of every numeric column, per target when the table has a `target` column.
pub fn document(table: &Table, p: &Provenance) -> Result<Value> {
    if table.rows.is_empty() {
        bail!("the benchmark recorded no runs");
    }
    let round_col = table.column("round").or_else(|| table.column("run"));
    let mut rounds: Vec<String> = match round_col {
        Some(c) => table.rows.iter().map(|r| r[c].clone()).collect(),
        None => (0..table.rows.len()).map(|i| i.to_string()).collect(),
    };
    rounds.sort();
    rounds.dedup();
    let medians = match table.column("target") {
        Some(t) => {
            let mut targets: Vec<&str> = Vec::new();
            for r in &table.rows {
                if !targets.contains(&r[t].as_str()) {
                    targets.push(&r[t]);
                }
            }
            let mut per = Map::new();
            for target in targets {
                per.insert(target.to_owned(), table.medians(&table.rows_where("target", target)));
            }
            Value::Object(per)
        }
        None => table.medians(&table.rows.iter().collect::<Vec<_>>()),
    };
    let mut meta = Map::new();
    for (k, v) in &p.meta {
        meta.insert(k.clone(), number(v).map_or_else(|| Value::from(v.as_str()), Num::json));
    }
    let mut doc = Map::new();
    doc.insert("bench".into(), p.bench.as_str().into());
    doc.insert("command".into(), p.command.as_str().into());
    doc.insert("measured_at".into(), p.measured_at.as_str().into());
    doc.insert("git_commit".into(), p.git_commit.as_deref().map_or(Value::Null, Value::from));
    doc.insert("machine".into(), serde_json::json!({ "cores": p.cores }));
    doc.insert("rounds".into(), rounds.len().into());
    doc.insert("meta".into(), Value::Object(meta));
    doc.insert("medians".into(), medians);
    Ok(sorted(Value::Object(doc)))
}

/// Every object's keys in sorted order, whatever order `serde_json::Map` keeps.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        other => other,
    }
}

/// The document as text: two-space indent, a final newline.
pub fn to_text(doc: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(doc)? + "\n")
}

/// Writes `text` to `path` whole or not at all (a temporary file renamed into place).
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().context("a result file needs a name")?.to_string_lossy();
    let tmp = dir.join(format!(".result-{}-{name}", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance(meta: &[(&str, &str)]) -> Provenance {
        Provenance {
            bench: "seed".into(),
            command: "cargo xtask bench seed 3".into(),
            measured_at: "2026-12-03T10:00:00Z".into(),
            git_commit: Some("abcdef123456".into()),
            cores: 2,
            meta: meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn numbers_keep_their_written_type() {
        assert_eq!(number("42"), Some(Num::Int(42)));
        assert_eq!(number("52.0"), Some(Num::Float(52.0)));
        assert_eq!(number("0.46"), Some(Num::Float(0.46)));
        assert_eq!(number("1e3"), Some(Num::Int(1000)));
        assert_eq!(number(""), None);
        assert_eq!(number("auto"), None);
        assert_eq!(number("1.88 1.69 1.16"), None);
    }

    #[test]
    fn medians_of_odd_counts_are_members_and_of_even_counts_means() {
        assert_eq!(median(&[Num::Int(3), Num::Int(1), Num::Int(2)]), Some(Num::Int(2)));
        assert_eq!(median(&[Num::Int(1), Num::Int(2)]), Some(Num::Float(1.5)));
        assert_eq!(median(&[Num::Int(2), Num::Int(4)]), Some(Num::Float(3.0)));
        assert_eq!(median(&[]), None);
        assert!((median_f64(&[5.0, 1.0, 3.0, 100.0]) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn a_flat_table_gives_the_seed_json_shape() {
        let mut t = Table::new("run,copy_seconds,seeder_seconds,ratio,redis_bytes,bytes_per_result");
        for row in
            ["1,12.000,5.600,0.47,35069792,52.0", "2,12.520,5.614,0.46,35069800,52.0", "3,13.1,6.0,0.45,35069700,52.0"]
        {
            t.push(row.split(',').map(str::to_owned).collect()).expect("six cells");
        }
        let doc = document(&t, &provenance(&[("students", "674823"), ("seed", "2026"), ("redis_version", "7.0.15")]))
            .expect("rows");
        let text = to_text(&doc).expect("serialises");
        let expected = r#"{
  "bench": "seed",
  "command": "cargo xtask bench seed 3",
  "git_commit": "abcdef123456",
  "machine": {
    "cores": 2
  },
  "measured_at": "2026-12-03T10:00:00Z",
  "medians": {
    "bytes_per_result": 52.0,
    "copy_seconds": 12.52,
    "ratio": 0.46,
    "redis_bytes": 35069792,
    "run": 2,
    "seeder_seconds": 5.614
  },
  "meta": {
    "redis_version": "7.0.15",
    "seed": 2026,
    "students": 674823
  },
  "rounds": 3
}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn a_table_with_targets_gives_medians_per_target_leaving_out_empty_columns() {
        let t = Table::parse(
            "round,target,rps,replica_requests\n1,ceiling,100,\n1,stack,50,49\n2,ceiling,110,\n2,stack,60,59\n",
        )
        .expect("valid CSV");
        let doc = document(&t, &provenance(&[("load_before", "1.88 1.69 1.16"), ("api_worker_threads", "auto")]))
            .expect("rows");
        assert_eq!(doc["rounds"], 2);
        assert_eq!(doc["medians"]["ceiling"], serde_json::json!({ "round": 1.5, "rps": 105.0 }));
        assert_eq!(doc["medians"]["stack"]["replica_requests"], 54.0);
        assert_eq!(doc["meta"]["load_before"], "1.88 1.69 1.16");
        assert_eq!(doc["meta"]["api_worker_threads"], "auto");
        assert!((t.median_of("stack", "rps") - 55.0).abs() < 1e-9);
        assert!((t.max_of("ceiling", "rps") - 110.0).abs() < 1e-9);
        assert!((t.sum_of("stack", "replica_requests") - 108.0).abs() < 1e-9);
    }

    #[test]
    fn rounds_count_distinct_runs_across_sizes() {
        let t = Table::parse("target,run,ratio\nrows_10,1,2.0\nrows_10,2,2.5\nrows_100,1,3.0\n").expect("valid");
        let doc = document(&t, &provenance(&[])).expect("rows");
        assert_eq!(doc["rounds"], 2);
        assert_eq!(doc["meta"], serde_json::json!({}));
        assert_eq!(doc["medians"]["rows_10"]["run"], 1.5);
    }

    #[test]
    fn medians_are_rounded_to_six_decimals() {
        let t = Table::parse("run,x\n1,0.12345678\n").expect("valid");
        let doc = document(&t, &provenance(&[])).expect("rows");
        assert_eq!(doc["medians"]["x"], 0.123457);
    }

    #[test]
    fn rows_must_fit_the_header_and_a_result_needs_rows() {
        let mut t = Table::new("a,b");
        assert!(t.push(vec!["1".into()]).is_err());
        assert!(document(&t, &provenance(&[])).is_err());
    }
}
