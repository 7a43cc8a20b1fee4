//! PostgreSQL: the source of truth.
//!
//! Loading is built to survive being killed at any instant:
//! 1. one transaction marks the data set `loading`, empties the tables and sets aside the
//!    primary, unique and foreign keys of the three large tables (their definitions are saved in
//!    `seeder_deferred_constraints`, so a later run can always put them back);
//! 2. parallel binary COPY streams fill the tables, each chunk on its own connection;
//! 3. the saved keys are rebuilt (indexes in parallel, then foreign keys), the tables analysed;
//! 4. one transaction marks the data set `complete` with its fingerprint.
//!
//! A run that dies before step 4 leaves `loading` behind, and the next run starts again at
//! step 1. Building keys after the load is faster than maintaining them row by row, and lets the
//! results tables load in parallel with the students they reference.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::{StreamExt, TryStreamExt, pin_mut, stream};
use results_core::record::{Region, ResultRecord, School, Stream};
use results_core::{ContentChecksum, FactorHash, FactorKind, StudentId};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, GenericClient, NoTls};

use crate::origin::{Origin, factor_phrase};
use crate::progress::Phase;

/// Embedded migrations (the one `migrations/` folder at the top of the repository).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The tables whose keys are set aside during a load (the large ones).
const DEFERRED_TABLES: [&str; 3] = ["students", "natural_science_results", "social_science_results"];
/// Every table a load replaces, in an order TRUNCATE accepts in one statement.
const LOADED_TABLES: &str = "natural_science_results, social_science_results, students, schools, regions";
/// Advisory lock key held by a loading seeder ("seed" in ASCII), so two loads never interleave.
const LOAD_LOCK: i64 = 0x7365_6564;

/// What the `dataset` table says about the current contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    /// `true` once a load finished; `false` while one is (or was, when killed) under way.
    pub complete: bool,
    /// The generator seed (0 for an imported file).
    pub seed: u64,
    /// The number of students.
    pub students: u32,
    /// The generator version (0 for an imported file).
    pub generator_version: u32,
    /// The smallest registration number.
    pub first_id: u32,
    /// The largest registration number.
    pub last_id: u32,
    /// For an imported file, the digest of its bytes.
    pub source_digest: Option<String>,
    /// The content fingerprint, once complete.
    pub fingerprint: Option<String>,
    /// The second factor lookups must present (`dataset.factor`), if any.
    pub factor: Option<FactorKind>,
}

impl DatasetRow {
    /// Whether this row describes `origin` (for a generated data set: from this build's generator).
    pub fn describes(&self, origin: &Origin) -> bool {
        self.seed == origin.seed()
            && self.students == origin.students()
            && self.generator_version == origin.generator()
            && (self.first_id, self.last_id) == origin.id_range()
            && self.source_digest.as_deref() == origin.digest()
            && self.factor == origin.factor()
    }

    /// One phrase for messages, as [`Origin::describe`] says it.
    pub fn describe(&self) -> String {
        match &self.source_digest {
            Some(digest) => format!(
                "an imported results file of {} students (IDs {}..{}, file digest {digest}){}",
                self.students,
                self.first_id,
                self.last_id,
                factor_phrase(self.factor)
            ),
            None => format!(
                "the generated data set of seed {}, {} students (IDs {}..{}), generator v{}{}",
                self.seed,
                self.students,
                self.first_id,
                self.last_id,
                self.generator_version,
                factor_phrase(self.factor)
            ),
        }
    }
}

/// Row counts of the loaded tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows in `students`.
    pub students: u64,
    /// Rows in `natural_science_results`.
    pub natural_science: u64,
    /// Rows in `social_science_results`.
    pub social_science: u64,
    /// Rows in `schools`.
    pub schools: u64,
}

/// A short description of where a URL points, without credentials, for error messages.
pub fn describe_target(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(config) => {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".to_owned(),
            };
            let port = config.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default database)"))
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// One line for a PostgreSQL error: the server's message and SQLSTATE when there is one.
pub fn error_line(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut line = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                line = format!("{line}: {cause}");
                source = cause.source();
            }
            line
        }
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> anyhow::Error {
    match error {
        deadpool_postgres::PoolError::Backend(e) => anyhow::anyhow!(error_line(&e)),
        other => anyhow::anyhow!(other.to_string()),
    }
}

/// Adds context and flattens a driver error into one readable line.
pub(crate) trait PgContext<T> {
    /// The error as one line after `what`.
    fn pg(self, what: &str) -> anyhow::Result<T>;
}

impl<T> PgContext<T> for Result<T, tokio_postgres::Error> {
    fn pg(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {}", error_line(&e)))
    }
}

/// A stream value for binary COPY: PostgreSQL enums travel as their label.
#[derive(Debug)]
struct EnumLabel(&'static str);

impl ToSql for EnumLabel {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Enum(_))
    }

    to_sql_checked!();
}

/// A pool of connections to the results database.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    config: tokio_postgres::Config,
    target: String,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Pg {
    /// Connects (and checks one connection works) with up to `connections` connections.
    pub async fn connect(url: &str, connections: usize) -> anyhow::Result<Self> {
        let target = describe_target(url);
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("seeder");
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool =
            Pool::builder(manager).max_size(connections.max(1)).build().context("cannot build the PostgreSQL pool")?;
        let pg = Self { pool, config, target };
        drop(pg.client().await?);
        Ok(pg)
    }

    /// Where this pool points (no credentials).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// One pooled connection.
    pub(crate) async fn client(&self) -> anyhow::Result<Object> {
        self.pool
            .get()
            .await
            .map_err(pool_error)
            .with_context(|| format!("cannot connect to PostgreSQL at {}", self.target))
    }

    /// Applies the embedded migrations; refuses a database whose schema is from another version.
    pub async fn migrate(&self, url: &str) -> anyhow::Result<()> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {} to migrate", self.target))?;
        let outcome = MIGRATOR.run(&pool).await;
        pool.close().await;
        match outcome {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => bail!(
                "the database schema at {} is from another version of this project: migration {version} is \
                 applied there but unknown to this seeder; use the matching seeder or a fresh database",
                self.target
            ),
            Err(sqlx::migrate::MigrateError::VersionMismatch(version)) => bail!(
                "the database schema at {} is from another version of this project: migration {version} \
                 differs from this seeder's; use the matching seeder or a fresh database",
                self.target
            ),
            Err(other) => Err(other).with_context(|| format!("cannot migrate the database at {}", self.target)),
        }
    }

    /// Takes the load lock for as long as the returned guard lives; fails at once if another
    /// seeder holds it. The lock lives on its own session so it is released if this process dies.
    pub async fn lock_for_load(&self) -> anyhow::Result<LoadLock> {
        let (client, connection) =
            self.config.connect(NoTls).await.pg(&format!("cannot connect to PostgreSQL at {}", self.target))?;
        let task = tokio::spawn(connection);
        let row =
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&LOAD_LOCK]).await.pg("cannot take the load lock")?;
        if !row.get::<_, bool>(0) {
            bail!(
                "another seeder is loading or correcting the database at {} right now; wait for it to finish",
                self.target
            );
        }
        Ok(LoadLock { _client: client, task })
    }

    /// The `dataset` row, if any load ever started.
    pub async fn dataset(&self) -> anyhow::Result<Option<DatasetRow>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT state = 'complete', seed, students, generator_version, fingerprint, first_id, last_id, \
                 source_digest, factor FROM dataset",
                &[],
            )
            .await
            .pg("cannot read the dataset table")?;
        Ok(row.map(|row| DatasetRow {
            complete: row.get(0),
            seed: row.get::<_, i64>(1) as u64,
            students: row.get::<_, i32>(2) as u32,
            generator_version: row.get::<_, i32>(3) as u32,
            fingerprint: row.get(4),
            first_id: row.get::<_, i32>(5) as u32,
            last_id: row.get::<_, i32>(6) as u32,
            source_digest: row.get(7),
            factor: row.get::<_, Option<&str>>(8).and_then(FactorKind::from_name),
        }))
    }

    /// Step 1: marks the data set `loading`, empties the tables and sets the large tables' keys
    /// aside, in one transaction.
    pub async fn begin_load(&self, origin: &Origin) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.pg("cannot begin the load transaction")?;
        let (first_id, last_id) = origin.id_range();
        tx.execute(
            "INSERT INTO dataset (singleton, state, seed, students, generator_version, fingerprint, first_id, last_id, \
             source_digest, factor) VALUES (true, 'loading', $1, $2, $3, NULL, $4, $5, $6, $7) \
             ON CONFLICT (singleton) DO UPDATE SET state = 'loading', seed = $1, students = $2, \
             generator_version = $3, fingerprint = NULL, first_id = $4, last_id = $5, source_digest = $6, \
             factor = $7, updated_at = now()",
            &[
                &(origin.seed() as i64),
                &(origin.students() as i32),
                &(origin.generator() as i32),
                &(first_id as i32),
                &(last_id as i32),
                &origin.digest(),
                &origin.factor().map(FactorKind::as_str),
            ],
        )
        .await
        .pg("cannot mark the data set as loading")?;
        tx.batch_execute(&format!("TRUNCATE {LOADED_TABLES}")).await.pg("cannot empty the tables")?;
        // The regenerated data set has none of the corrections applied to the old one: the
        // journal keeps them, marked discarded, and nothing of them is left to publish
        // (`load::run` refuses to get here without being told to drop them).
        tx.batch_execute(
            "UPDATE corrections SET discarded_at = now() WHERE discarded_at IS NULL; TRUNCATE pending_publication",
        )
        .await
        .pg("cannot discard the corrections of the previous data set")?;
        // Foreign keys first: they depend on the unique indexes set aside after them.
        let constraints = tx
            .query(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.contype::text \
                 FROM pg_constraint c \
                 WHERE c.conrelid = ANY($1::text[]::regclass[]) AND c.contype IN ('p', 'u', 'f') \
                 ORDER BY (c.contype = 'f') DESC, c.conname",
                &[&DEFERRED_TABLES.as_slice()],
            )
            .await
            .pg("cannot list the keys to set aside")?;
        for row in constraints {
            let (table, name, definition, kind): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            tx.execute(
                "INSERT INTO seeder_deferred_constraints (table_name, name, definition, kind) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&table, &name, &definition, &kind],
            )
            .await
            .pg("cannot save a key definition")?;
            tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote_ident(&name)))
                .await
                .pg("cannot set a key aside")?;
        }
        tx.commit().await.pg("cannot commit the start of the load")
    }

    /// Step 2: copies regions, schools, students and results with parallel binary COPY, one
    /// chunk per connection, reporting rows to `phase`. Returns the rows copied.
    pub async fn copy_all(&self, schools: &[School], records: &[ResultRecord], phase: &Phase) -> anyhow::Result<u64> {
        let stream_type = self.stream_type().await?;
        self.copy_jobs(vec![CopyJob::Schools(schools)], records, &stream_type, phase).await
    }

    /// Step 2 in parts, for rows that arrive a batch at a time: the regions and schools first.
    pub async fn copy_schools(&self, schools: &[School], phase: &Phase) -> anyhow::Result<u64> {
        let stream_type = self.stream_type().await?;
        self.copy_job(CopyJob::Schools(schools), &stream_type, phase).await
    }

    /// Step 2 in parts: one batch of students and their results (their schools already copied).
    pub async fn copy_records(
        &self,
        records: &[ResultRecord],
        stream_type: &Type,
        phase: &Phase,
    ) -> anyhow::Result<u64> {
        self.copy_jobs(Vec::new(), records, stream_type, phase).await
    }

    /// The `stream` enum's type, which binary COPY of the students needs.
    pub async fn stream_type(&self) -> anyhow::Result<Type> {
        let client = self.client().await?;
        let statement = client.prepare("SELECT $1::stream").await.pg("cannot look up the stream type")?;
        Ok(statement.params()[0].clone())
    }

    async fn copy_jobs<'a>(
        &self,
        mut jobs: Vec<CopyJob<'a>>,
        records: &'a [ResultRecord],
        stream_type: &Type,
        phase: &Phase,
    ) -> anyhow::Result<u64> {
        let chunks = self.pool.status().max_size.max(1);
        let chunk_len = records.len().div_ceil(chunks).max(1);
        jobs.extend(records.chunks(chunk_len).map(CopyJob::Students));
        for stream in Stream::ALL {
            let of_stream: Vec<&ResultRecord> = records.iter().filter(|r| r.stream == stream).collect();
            let of_stream_len = of_stream.len().div_ceil(chunks).max(1);
            let parts: Vec<Vec<&ResultRecord>> = of_stream.chunks(of_stream_len).map(<[_]>::to_vec).collect();
            jobs.extend(parts.into_iter().map(|part| CopyJob::Results(stream, part)));
        }
        let copied: Vec<u64> = stream::iter(jobs)
            .map(|job| self.copy_job(job, stream_type, phase))
            .buffer_unordered(chunks)
            .try_collect()
            .await?;
        Ok(copied.into_iter().sum())
    }

    async fn copy_job(&self, job: CopyJob<'_>, stream_type: &Type, phase: &Phase) -> anyhow::Result<u64> {
        const REPORT_EVERY: u64 = 4_096;
        let client = self.client().await?;
        let mut written = 0u64;
        match job {
            CopyJob::Schools(schools) => {
                let regions =
                    copy_in(&client, "COPY regions (id, name) FROM STDIN BINARY", &[Type::INT2, Type::TEXT]).await?;
                pin_mut!(regions);
                for region in Region::ALL {
                    regions.as_mut().write(&[&i16::from(region.id), &region.name]).await.pg("COPY regions failed")?;
                }
                regions.finish().await.pg("COPY regions failed")?;
                let sink = copy_in(
                    &client,
                    "COPY schools (id, name, region_id) FROM STDIN BINARY",
                    &[Type::INT4, Type::TEXT, Type::INT2],
                )
                .await?;
                pin_mut!(sink);
                for school in schools {
                    sink.as_mut()
                        .write(&[&(school.id as i32), &school.name, &i16::from(school.region.id)])
                        .await
                        .pg("COPY schools failed")?;
                    written += 1;
                }
                sink.finish().await.pg("COPY schools failed")?;
                phase.inc(written);
            }
            CopyJob::Students(records) => {
                let sink = copy_in(
                    &client,
                    "COPY students (id, full_name, school_id, stream, factor_hash) FROM STDIN BINARY",
                    &[Type::INT4, Type::TEXT, Type::INT4, stream_type.clone(), Type::BYTEA],
                )
                .await?;
                pin_mut!(sink);
                for r in records {
                    let stream = EnumLabel(r.stream.as_str());
                    let factor = r.factor.as_ref().map(|h| h.0.as_slice());
                    sink.as_mut()
                        .write(&[&(r.id.get() as i32), &r.name, &(r.school_id as i32), &stream, &factor])
                        .await
                        .pg("COPY students failed")?;
                    written += 1;
                    if written.is_multiple_of(REPORT_EVERY) {
                        phase.inc(REPORT_EVERY);
                    }
                }
                sink.finish().await.pg("COPY students failed")?;
                phase.inc(written % REPORT_EVERY);
            }
            CopyJob::Results(stream, records) => {
                let table = results_table(stream);
                let columns: Vec<&str> = stream.subjects().iter().map(|s| s.as_str()).collect();
                let sql =
                    format!("COPY {table} (student_id, {}, rank_in_stream) FROM STDIN BINARY", columns.join(", "));
                let mut types = vec![Type::INT4];
                types.extend([Type::INT2; 6]);
                types.push(Type::INT4);
                let sink = copy_in(&client, &sql, &types).await?;
                pin_mut!(sink);
                let what = format!("COPY {table} failed");
                for r in records {
                    let s = r.scores.map(i16::from);
                    sink.as_mut()
                        .write(&[&(r.id.get() as i32), &s[0], &s[1], &s[2], &s[3], &s[4], &s[5], &(r.rank as i32)])
                        .await
                        .pg(&what)?;
                    written += 1;
                    if written.is_multiple_of(REPORT_EVERY) {
                        phase.inc(REPORT_EVERY);
                    }
                }
                sink.finish().await.pg(&what)?;
                phase.inc(written % REPORT_EVERY);
            }
        }
        Ok(written)
    }

    /// Step 3: rebuilds the keys set aside in step 1 (unique indexes in parallel, then foreign
    /// keys in parallel) and analyses the tables.
    pub async fn restore_constraints(&self) -> anyhow::Result<()> {
        let saved = {
            let client = self.client().await?;
            client
                .query("SELECT table_name, name, definition, kind FROM seeder_deferred_constraints", &[])
                .await
                .pg("cannot read the keys set aside")?
        };
        let saved: Vec<(String, String, String, String)> =
            saved.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        let parallel = self.pool.status().max_size.max(1);
        for foreign in [false, true] {
            let wave = saved.iter().filter(|(_, _, _, kind)| (kind == "f") == foreign);
            stream::iter(wave)
                .map(|(table, name, definition, _)| self.restore_one(table, name, definition))
                .buffer_unordered(parallel)
                .try_collect::<Vec<()>>()
                .await?;
        }
        let client = self.client().await?;
        client.batch_execute(&format!("ANALYZE {LOADED_TABLES}")).await.pg("cannot analyse the tables")
    }

    async fn restore_one(&self, table: &str, name: &str, definition: &str) -> anyhow::Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.pg("cannot begin rebuilding a key")?;
        tx.batch_execute(&format!("ALTER TABLE {table} ADD CONSTRAINT {} {definition}", quote_ident(name)))
            .await
            .pg(&format!("cannot rebuild key {name} on {table}"))?;
        tx.execute("DELETE FROM seeder_deferred_constraints WHERE table_name = $1 AND name = $2", &[&table, &name])
            .await
            .pg("cannot clear a rebuilt key")?;
        tx.commit().await.pg(&format!("cannot commit key {name} on {table}"))
    }

    /// Step 4: marks the data set complete with its fingerprint.
    pub async fn finish_load(&self, fingerprint: &str) -> anyhow::Result<()> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE dataset SET state = 'complete', fingerprint = $1, updated_at = now() WHERE state = 'loading'",
                &[&fingerprint],
            )
            .await
            .pg("cannot mark the data set complete")?;
        if updated != 1 {
            bail!("the dataset row changed under the seeder (another load?); run the seeder again");
        }
        Ok(())
    }

    /// Row counts of the loaded tables.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM students), (SELECT count(*) FROM natural_science_results), \
                 (SELECT count(*) FROM social_science_results), (SELECT count(*) FROM schools)",
                &[],
            )
            .await
            .pg("cannot count rows")?;
        Ok(Counts {
            students: row.get::<_, i64>(0) as u64,
            natural_science: row.get::<_, i64>(1) as u64,
            social_science: row.get::<_, i64>(2) as u64,
            schools: row.get::<_, i64>(3) as u64,
        })
    }

    /// Every school, ordered by ID.
    pub async fn read_schools(&self) -> anyhow::Result<Vec<School>> {
        let client = self.client().await?;
        schools_of(&**client).await
    }

    /// Every result (students joined with their stream's results), ordered by ID. Students
    /// without a result row are left out; compare with [`Pg::counts`] to find them.
    pub async fn read_results(&self, phase: Option<&Phase>) -> anyhow::Result<Vec<ResultRecord>> {
        let client = self.client().await?;
        let mut records = Vec::new();
        for_each_result(&**client, None, |record| {
            records.push(record);
            if let Some(phase) = phase
                && records.len().is_multiple_of(4_096)
            {
                phase.inc(4_096);
            }
        })
        .await?;
        Ok(records)
    }

    /// Streams every result in ID order to `each`, `batch` records at a time; each batch is
    /// handled before the next is read, so memory stays bounded by the batch, not the data set.
    /// Returns how many results were read.
    pub async fn for_each_batch<F, Fut>(&self, batch: usize, mut each: F) -> anyhow::Result<u64>
    where
        F: FnMut(Vec<ResultRecord>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let client = self.client().await?;
        let sql = results_sql(false);
        let rows = client
            .query_raw(sql.as_str(), std::iter::empty::<&(dyn ToSql + Sync)>())
            .await
            .pg("cannot read results")?;
        pin_mut!(rows);
        let batch = batch.max(1);
        let mut records = Vec::with_capacity(batch);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await.pg("cannot read results")? {
            records.push(record_from_row(&row)?);
            count += 1;
            if records.len() == batch {
                each(std::mem::replace(&mut records, Vec::with_capacity(batch))).await?;
            }
        }
        if !records.is_empty() {
            each(records).await?;
        }
        Ok(count)
    }

    /// The content checksum of what PostgreSQL holds (schools, then results by ID), streamed.
    pub async fn checksum(&self) -> anyhow::Result<ContentChecksum> {
        let client = self.client().await?;
        content_checksum(&**client).await
    }

    /// The results of `ids` that exist, ordered by ID.
    pub async fn read_results_of(&self, ids: &[StudentId]) -> anyhow::Result<Vec<ResultRecord>> {
        let client = self.client().await?;
        let mut records = Vec::with_capacity(ids.len());
        for_each_result(&**client, Some(ids), |record| records.push(record)).await?;
        Ok(records)
    }

    /// Corrections applied since the data set was loaded: how many, and when the last was.
    pub async fn live_corrections(&self) -> anyhow::Result<(u64, Option<String>)> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*), to_char(max(applied_at), 'YYYY-MM-DD HH24:MI:SS TZ') \
                 FROM corrections WHERE discarded_at IS NULL",
                &[],
            )
            .await
            .pg("cannot read the corrections journal")?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    /// Students whose corrected result is committed but not yet published to Redis, by ID.
    pub async fn pending_publication(&self) -> anyhow::Result<Vec<StudentId>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT student_id FROM pending_publication ORDER BY student_id", &[])
            .await
            .pg("cannot read the results pending publication")?;
        rows.iter()
            .map(|row| {
                let id = row.get::<_, i32>(0);
                StudentId::new(id as u32).map_err(|_| anyhow::anyhow!("pending_publication holds an invalid ID {id}"))
            })
            .collect()
    }

    /// Corrections and pending publications for `verify`: `(live corrections, pending results,
    /// oldest pending since, a few pending IDs)`; all zero on a schema without corrections.
    pub async fn corrections_summary(&self) -> anyhow::Result<(u64, u64, Option<String>, Vec<i32>)> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('pending_publication') IS NOT NULL", &[])
            .await
            .pg("cannot look for the corrections tables")?
            .get(0);
        if !exists {
            return Ok((0, 0, None, Vec::new()));
        }
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM corrections WHERE discarded_at IS NULL), count(*), \
                 to_char(min(since), 'YYYY-MM-DD HH24:MI:SS TZ'), \
                 (array_agg(student_id ORDER BY student_id))[1:5] FROM pending_publication",
                &[],
            )
            .await
            .pg("cannot read the corrections journal")?;
        let sample: Option<Vec<i32>> = row.get(3);
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64, row.get(2), sample.unwrap_or_default()))
    }

    /// Marks `ids` as published (Redis holds their current result).
    pub async fn clear_pending(&self, ids: &[StudentId]) -> anyhow::Result<u64> {
        let client = self.client().await?;
        let ids: Vec<i32> = ids.iter().map(|id| id.get() as i32).collect();
        client
            .execute("DELETE FROM pending_publication WHERE student_id = ANY($1)", &[&ids])
            .await
            .pg("cannot clear the published results from pending_publication")
    }

    /// Marks everything published (a load just wrote every result from PostgreSQL to Redis).
    pub async fn clear_all_pending(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        client
            .batch_execute("TRUNCATE pending_publication")
            .await
            .pg("cannot clear pending_publication after loading Redis")
    }
}

/// The SQL of every result (one stream's table per branch), optionally only of the IDs in `$1`.
fn results_sql(only_ids: bool) -> String {
    let select = |stream: Stream| {
        let subjects: Vec<String> = stream.subjects().iter().map(|s| format!("r.{}", s.as_str())).collect();
        let filter = if only_ids { " WHERE s.id = ANY($1)" } else { "" };
        format!(
            "SELECT s.id, s.full_name, s.school_id, s.stream::text, {}, r.rank_in_stream, s.factor_hash \
             FROM students s JOIN {} r ON r.student_id = s.id{filter}",
            subjects.join(", "),
            results_table(stream)
        )
    };
    format!("{} UNION ALL {} ORDER BY 1", select(Stream::NaturalScience), select(Stream::SocialScience))
}

/// Streams every result (or those of `ids`) in ID order into `each`, on any connection or inside
/// a transaction (a correction checksums what it is about to commit). Returns how many.
pub(crate) async fn for_each_result<C: GenericClient>(
    client: &C,
    ids: Option<&[StudentId]>,
    mut each: impl FnMut(ResultRecord),
) -> anyhow::Result<u64> {
    let sql = results_sql(ids.is_some());
    let rows = if let Some(ids) = ids {
        let ids: Vec<i32> = ids.iter().map(|id| id.get() as i32).collect();
        client.query_raw(sql.as_str(), [&ids as &(dyn ToSql + Sync)]).await
    } else {
        client.query_raw(sql.as_str(), std::iter::empty::<&(dyn ToSql + Sync)>()).await
    }
    .pg("cannot read results")?;
    pin_mut!(rows);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.pg("cannot read results")? {
        each(record_from_row(&row)?);
        count += 1;
    }
    Ok(count)
}

/// The content checksum of everything `client` sees (schools, then results, by ID).
pub(crate) async fn content_checksum<C: GenericClient>(client: &C) -> anyhow::Result<ContentChecksum> {
    let mut sum = ContentChecksum::new();
    for school in schools_of(client).await? {
        sum.add_school(&school);
    }
    for_each_result(client, None, |record| sum.add_result(&record)).await?;
    Ok(sum)
}

async fn schools_of<C: GenericClient>(client: &C) -> anyhow::Result<Vec<School>> {
    let rows =
        client.query("SELECT id, name, region_id FROM schools ORDER BY id", &[]).await.pg("cannot read schools")?;
    rows.iter()
        .map(|row| {
            let id = row.get::<_, i32>(0);
            let region_id = row.get::<_, i16>(2);
            let region = u8::try_from(region_id)
                .ok()
                .and_then(Region::by_id)
                .with_context(|| format!("school {id} has unknown region {region_id}"))?;
            Ok(School { id: id as u32, name: row.get(1), region })
        })
        .collect()
}

fn record_from_row(row: &tokio_postgres::Row) -> anyhow::Result<ResultRecord> {
    let id = row.get::<_, i32>(0);
    let bad = |what: &str| anyhow::anyhow!("student {id} in PostgreSQL has {what}");
    let stream = Stream::from_name(row.get(3)).ok_or_else(|| bad("an unknown stream"))?;
    let mut scores = [0u8; 6];
    for (i, score) in scores.iter_mut().enumerate() {
        *score = u8::try_from(row.get::<_, i16>(4 + i)).map_err(|_| bad("a score out of range"))?;
    }
    Ok(ResultRecord {
        id: StudentId::new(id as u32).map_err(|_| bad("an ID out of range"))?,
        name: row.get(1),
        school_id: row.get::<_, i32>(2) as u32,
        stream,
        scores,
        rank: row.get::<_, i32>(10) as u32,
        factor: match row.get::<_, Option<&[u8]>>(11) {
            None => None,
            Some(bytes) => Some(FactorHash(bytes.try_into().map_err(|_| bad("a factor hash of the wrong length"))?)),
        },
    })
}

/// The load lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LoadLock {
    _client: Client,
    task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Drop for LoadLock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum CopyJob<'a> {
    Schools(&'a [School]),
    Students(&'a [ResultRecord]),
    Results(Stream, Vec<&'a ResultRecord>),
}

async fn copy_in(client: &Client, sql: &str, types: &[Type]) -> anyhow::Result<BinaryCopyInWriter> {
    let sink = client.copy_in(sql).await.pg(&format!("cannot start `{sql}`"))?;
    Ok(BinaryCopyInWriter::new(sink, types))
}

/// The results table of `stream`.
pub fn results_table(stream: Stream) -> &'static str {
    match stream {
        Stream::NaturalScience => "natural_science_results",
        Stream::SocialScience => "social_science_results",
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
