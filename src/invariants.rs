//! Data invariants: the `[[invariant]]` queries of the rule files, run against
//! the application's database at step boundaries or at the end. Each query
//! returns the rows that violate it; rows mean an `invariant-violated`
//! finding carrying the first 10 of them and their count.
//!
//! # Audits that cannot write
//!
//! An invariant is read, never trusted. Its SQL passes the static check of
//! [`check`] when the rule file loads (exactly one query, nothing that writes
//! or locks, no function known to act outside the transaction) and again, in
//! the database's own dialect, before the runner connects. It then runs on a
//! connection of flowaudit's own, as exactly one statement the server parses
//! on its own (never pasted into multi-statement text), in a read-only
//! transaction that is rolled back, under a statement timeout:
//!
//! - PostgreSQL: `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY` on a
//!   session whose `default_transaction_read_only` is on; the query is the
//!   body of `DECLARE … CURSOR FOR`, sent as one prepared statement (extended
//!   protocol, where PostgreSQL refuses a second command, and DECLARE takes
//!   only SELECT and VALUES, without data-modifying WITH or `SELECT … INTO`);
//!   `FETCH 10` reads the first rows as text and `MOVE FORWARD ALL` counts
//!   the rest on the server, in the same snapshot. `SET LOCAL
//!   statement_timeout` bounds each statement.
//! - MySQL and MariaDB: `START TRANSACTION READ ONLY` on a session set
//!   `READ ONLY`; the query travels as a bound value into a user variable and
//!   becomes a server-side prepared statement (`PREPARE … FROM @var`, which
//!   refuses several statements), executed through the text protocol so values
//!   arrive as text. `max_execution_time` (MySQL) or `max_statement_time`
//!   (MariaDB) bounds it.
//! - SQLite: a connection opened read-only (`SQLITE_OPEN_READONLY`: the file
//!   cannot be written whatever the pragmas say), `PRAGMA query_only`, a
//!   transaction, and an authorizer that lets SQLite compile nothing but
//!   reads (`sqlite_guard`), which matters because sqlx runs every
//!   statement of a SQLite text. A progress handler interrupts the query at
//!   its deadline.
//!
//! A client-side deadline (the timeout plus 2 s) bounds a server that ignores
//! its own. MySQL and SQLite rows are streamed and counted as they come, the
//! first 10 kept, so memory does not grow with the count and the timeout is
//! what bounds the time.
//!
//! What this guarantees: no invariant changes a row, a table or a setting
//! that outlives its transaction, on any of the three; none ends or cancels
//! another session, takes a session lock, opens a connection of its own or
//! writes a file through the functions [`check::REFUSED`] lists. What it does
//! not: a function or view defined in the database runs with whatever effects
//! its body has outside the transaction (a PL/pgSQL function that calls
//! `pg_terminate_backend` or `dblink`, a MySQL loadable function); the
//! transaction still refuses its writes to tables. The queries still read
//! what the connecting user may read and use the server's time and memory up
//! to the timeout.
//!
//! An invariant that is refused, fails or times out is an [`InvariantError`]
//! naming its rule file and name: a tool error (exit code 2), not a finding.
//!
//! Used by `demo` (after each step, on the shop's database) and `analyze
//! --database URL` (at the end); a proxy can call [`InvariantRunner::after_step`]
//! when it sees a step marker.

pub mod check;
mod sqlite_guard;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Column, Executor, Row};

use self::check::Dialect;
use crate::model::{Finding, Severity};
use crate::rules::INVARIANT_VIOLATED;
use crate::rules::config::{Invariant, RuleConfig, When};

const PG_BEGIN: &str = include_str!("../sql/invariants/postgres/begin.sql");
const PG_DECLARE: &str = include_str!("../sql/invariants/postgres/declare.sql");
const PG_FETCH: &str = include_str!("../sql/invariants/postgres/fetch.sql");
const PG_COUNT: &str = include_str!("../sql/invariants/postgres/count.sql");
const MYSQL_BEGIN: &str = include_str!("../sql/invariants/mysql/begin.sql");
const MYSQL_SET: &str = include_str!("../sql/invariants/mysql/set.sql");
const MYSQL_PREPARE: &str = include_str!("../sql/invariants/mysql/prepare.sql");
const MYSQL_EXECUTE: &str = include_str!("../sql/invariants/mysql/execute.sql");
const MYSQL_DEALLOCATE: &str = include_str!("../sql/invariants/mysql/deallocate.sql");

/// Rows a finding carries.
pub const MAX_ROWS: usize = 10;

/// The default statement timeout of an invariant query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest `timeout_ms` a rule file may give (one hour): within what every
/// server takes (PostgreSQL's `statement_timeout` stops at 2^31 - 1 ms), and
/// more than an audit should wait for one query.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// How long connecting may take before it is an error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The flow and step of findings from invariants that run at the end.
pub const END_FLOW: &str = "(invariants)";
pub const END_STEP: &str = "(end)";

#[derive(Debug, thiserror::Error)]
pub enum InvariantError {
    #[error(
        "--database {}: not a database URL flowaudit can open (sqlite:PATH, postgres://…, mysql://…)",
        crate::redact::url(.0)
    )]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("{file}: invariant \"{name}\": its query failed: {message}")]
    Query {
        file: String,
        name: String,
        message: String,
    },
    #[error("{file}: invariant \"{name}\": its query ran over the {secs} s statement timeout")]
    Timeout {
        file: String,
        name: String,
        secs: f64,
    },
    #[error("{file}: invariant \"{name}\": refused: {reason}")]
    Refused {
        file: String,
        name: String,
        reason: check::Refusal,
    },
}

impl InvariantError {
    fn refused(invariant: &Invariant, reason: check::Refusal) -> Self {
        InvariantError::Refused {
            file: invariant.file.clone(),
            name: invariant.name.clone(),
            reason,
        }
    }
}

/// The invariants of a rule configuration, with their severities resolved.
#[derive(Debug, Clone, Default)]
pub struct Invariants {
    list: Vec<(Invariant, Severity)>,
}

impl Invariants {
    /// The configuration's invariants; none when `invariant-violated` is
    /// turned off.
    pub fn from_config(config: &RuleConfig) -> Self {
        let Some(entry) = config.rules.get(INVARIANT_VIOLATED) else {
            return Self::default();
        };
        if !entry.enabled {
            return Self::default();
        }
        Self {
            list: config
                .invariants
                .iter()
                .map(|i| (i.clone(), i.severity.unwrap_or(entry.severity)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Checks every invariant's SQL in one database's dialect.
    fn check(&self, dialect: Dialect) -> Result<(), InvariantError> {
        for (invariant, _) in &self.list {
            check::for_dialect(statement(&invariant.sql), dialect)
                .map_err(|reason| InvariantError::refused(invariant, reason))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl Pool {
    fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::MySql(_) => Dialect::MySql,
        }
    }
}

/// The database a URL names, by its scheme.
fn dialect_of(url: &str) -> Option<Dialect> {
    if url.starts_with("sqlite:") {
        Some(Dialect::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Dialect::Postgres)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Some(Dialect::MySql)
    } else {
        None
    }
}

/// Runs invariants against one database.
#[derive(Debug)]
pub struct InvariantRunner {
    pool: Pool,
    invariants: Invariants,
    timeout: Duration,
    /// The SQLite progress handler's deadline.
    deadline: Arc<Mutex<Option<Instant>>>,
}

/// One invariant's result: the first rows, rendered, and how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations {
    pub rows: Vec<String>,
    pub count: u64,
}

impl InvariantRunner {
    /// Opens a read-only connection to `url` (`sqlite:PATH` or
    /// `sqlite://PATH`, `postgres://…` / `postgresql://…`, `mysql://…` /
    /// `mariadb://…`), once every invariant's SQL passed the check in that
    /// database's dialect.
    pub async fn connect(
        url: &str,
        invariants: Invariants,
        timeout: Duration,
    ) -> Result<Self, InvariantError> {
        let dialect = dialect_of(url).ok_or_else(|| InvariantError::Url(url.to_owned()))?;
        invariants.check(dialect)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let ms = timeout.as_millis().max(1);
        let pool = if dialect == Dialect::Sqlite {
            let options: SqliteConnectOptions = url
                .parse()
                .map_err(|_| InvariantError::Url(url.to_owned()))?;
            Self::sqlite_pool(options, deadline.clone()).await?
        } else if dialect == Dialect::Postgres {
            let options: PgConnectOptions = url
                .parse()
                .map_err(|_| InvariantError::Url(url.to_owned()))?;
            let options = options
                .options([
                    ("default_transaction_read_only", "on".to_owned()),
                    ("statement_timeout", format!("{ms}")),
                ])
                .application_name("flowaudit-invariants");
            probe::<sqlx::PgConnection>(&options).await?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(InvariantError::Connect)?,
            )
        } else {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options: MySqlConnectOptions =
                url.parse().map_err(|_| InvariantError::Url(url.clone()))?;
            probe::<sqlx::MySqlConnection>(&options).await?;
            Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                            set_mysql_timeout(conn, timeout).await
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(InvariantError::Connect)?,
            )
        };
        Ok(Self {
            pool,
            invariants,
            timeout,
            deadline,
        })
    }

    async fn sqlite_pool(
        options: SqliteConnectOptions,
        deadline: Arc<Mutex<Option<Instant>>>,
    ) -> Result<Pool, InvariantError> {
        // Read-only at open: SQLite refuses to write the file whatever the
        // session's pragmas say.
        let options = options
            .read_only(true)
            .pragma("query_only", "ON")
            .create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _| {
                let deadline = deadline.clone();
                Box::pin(async move {
                    {
                        let mut handle = conn.lock_handle().await?;
                        handle.set_progress_handler(1000, move || {
                            let at = *deadline.lock().unwrap_or_else(PoisonError::into_inner);
                            at.is_none_or(|at| Instant::now() < at)
                        });
                    }
                    sqlite_guard::install(conn).await
                })
            })
            .connect_with(options)
            .await
            .map_err(InvariantError::Connect)?;
        Ok(Pool::Sqlite(pool))
    }

    /// The invariants that run after `step` of `flow`, as findings of that step.
    pub async fn after_step(&self, flow: &str, step: &str) -> Result<Vec<Finding>, InvariantError> {
        let due: Vec<&(Invariant, Severity)> = self
            .invariants
            .list
            .iter()
            .filter(|(i, _)| {
                i.when == When::AfterStep
                    && i.steps
                        .as_ref()
                        .is_none_or(|steps| steps.iter().any(|s| s == step))
            })
            .collect();
        self.run(&due, flow, step).await
    }

    /// The invariants that run at the end (`when = "end"`).
    pub async fn at_end(&self) -> Result<Vec<Finding>, InvariantError> {
        let due: Vec<&(Invariant, Severity)> = self
            .invariants
            .list
            .iter()
            .filter(|(i, _)| i.when == When::End)
            .collect();
        self.run(&due, END_FLOW, END_STEP).await
    }

    /// Every invariant once, whatever its `when` (for `analyze --database`,
    /// which sees the data only after the run).
    pub async fn all_at_end(&self) -> Result<Vec<Finding>, InvariantError> {
        let due: Vec<&(Invariant, Severity)> = self.invariants.list.iter().collect();
        self.run(&due, END_FLOW, END_STEP).await
    }

    async fn run(
        &self,
        due: &[&(Invariant, Severity)],
        flow: &str,
        step: &str,
    ) -> Result<Vec<Finding>, InvariantError> {
        let mut out = Vec::new();
        for (invariant, severity) in due {
            let v = self.check(invariant).await?;
            if v.count == 0 {
                continue;
            }
            out.push(finding(invariant, *severity, flow, step, v));
        }
        Ok(out)
    }

    /// Runs one invariant's query.
    pub async fn check(&self, invariant: &Invariant) -> Result<Violations, InvariantError> {
        let sql = statement(&invariant.sql);
        // Checked at load already; again here in this database's dialect, for
        // an invariant that did not come from a rule file.
        check::for_dialect(sql, self.pool.dialect())
            .map_err(|reason| InvariantError::refused(invariant, reason))?;
        let timeout = invariant
            .timeout_ms
            .map_or(self.timeout, Duration::from_millis);
        let started = Instant::now();
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(started + timeout);
        // The server's own timeout acts first; this bounds a server that
        // ignores it. Dropping the run rolls its transaction back.
        let limit = timeout + Duration::from_secs(2);
        let run = async {
            match &self.pool {
                Pool::Postgres(p) => on_postgres(p, sql, timeout).await,
                Pool::MySql(p) => on_mysql(p, sql, timeout).await,
                Pool::Sqlite(p) => on_sqlite(p, sql).await,
            }
        };
        let result = tokio::time::timeout(limit, run).await;
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let timed_out = || InvariantError::Timeout {
            file: invariant.file.clone(),
            name: invariant.name.clone(),
            secs: timeout.as_secs_f64(),
        };
        match result {
            Err(_) => Err(timed_out()),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if started.elapsed() >= timeout || is_timeout(&e) {
                    Err(timed_out())
                } else {
                    Err(InvariantError::Query {
                        file: invariant.file.clone(),
                        name: invariant.name.clone(),
                        message: e
                            .as_database_error()
                            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                    })
                }
            }
        }
    }

    pub async fn close(self) {
        match self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
        }
    }
}

/// The invariant's SQL as it is sent: without surrounding blanks and
/// trailing semicolons.
fn statement(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// PostgreSQL: the query becomes a cursor in a read-only transaction; its
/// first rows are fetched as text and the rest counted on the server. The
/// FETCH and the MOVE share the timeout: the MOVE gets what the FETCH left.
async fn on_postgres(
    pool: &PgPool,
    sql: &str,
    timeout: Duration,
) -> Result<Violations, sqlx::Error> {
    let started = Instant::now();
    let mut tx = pool.begin_with(PG_BEGIN.trim()).await?;
    set_pg_timeout(&mut tx, timeout).await?;
    let declare = format!("{}\n{sql}", PG_DECLARE.trim());
    sqlx::query(sqlx::AssertSqlSafe(declare))
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    let first = sqlx::raw_sql(PG_FETCH.trim()).fetch_all(&mut *tx).await?;
    let mut count = first.len() as u64;
    if first.len() >= MAX_ROWS {
        set_pg_timeout(&mut tx, timeout.saturating_sub(started.elapsed())).await?;
        count += sqlx::raw_sql(PG_COUNT.trim())
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let rows = first.iter().map(render).collect();
    tx.rollback().await?;
    Ok(Violations { rows, count })
}

/// The statement timeout of the rest of the transaction (at least 1 ms: 0
/// would turn it off).
async fn set_pg_timeout(conn: &mut sqlx::PgConnection, left: Duration) -> Result<(), sqlx::Error> {
    let ms = left.as_millis().max(1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {ms}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// MySQL and MariaDB: the query is prepared on the server from a bound value
/// and executed in a read-only transaction; every row is read (the first
/// ones kept) and counted.
async fn on_mysql(
    pool: &MySqlPool,
    sql: &str,
    timeout: Duration,
) -> Result<Violations, sqlx::Error> {
    let mut tx = pool.begin_with(MYSQL_BEGIN.trim()).await?;
    set_mysql_timeout(&mut tx, timeout).await?;
    sqlx::query(MYSQL_SET.trim())
        .bind(sql)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(MYSQL_PREPARE.trim())
        .execute(&mut *tx)
        .await?;
    let v = collect(sqlx::raw_sql(MYSQL_EXECUTE.trim()).fetch(&mut *tx)).await?;
    sqlx::raw_sql(MYSQL_DEALLOCATE.trim())
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(v)
}

/// SQLite: the query runs in a transaction on a connection opened read-only,
/// under the authorizer of [`sqlite_guard`]; every row is read (the first
/// ones kept) and counted.
async fn on_sqlite(pool: &SqlitePool, sql: &str) -> Result<Violations, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let v = collect(
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .persistent(false)
            .fetch(&mut *tx),
    )
    .await?;
    tx.rollback().await?;
    Ok(v)
}

/// Reads a stream of rows to its end, keeping the first [`MAX_ROWS`]
/// rendered: memory stays bounded whatever the count.
async fn collect<R: Row>(
    mut rows: BoxStream<'_, Result<R, sqlx::Error>>,
) -> Result<Violations, sqlx::Error>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let mut v = Violations {
        rows: Vec::new(),
        count: 0,
    };
    while let Some(row) = rows.try_next().await? {
        if v.rows.len() < MAX_ROWS {
            v.rows.push(render(&row));
        }
        v.count += 1;
    }
    Ok(v)
}

/// The statement timeout of the next statements on a MySQL or MariaDB
/// connection, which name it differently; each refuses the other's.
async fn set_mysql_timeout(
    conn: &mut sqlx::MySqlConnection,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let mysql = format!(
        "SET SESSION max_execution_time = {}",
        timeout.as_millis().max(1)
    );
    let mariadb = format!("SET SESSION max_statement_time = {}", timeout.as_secs_f64());
    if conn.execute(sqlx::AssertSqlSafe(mysql)).await.is_err() {
        conn.execute(sqlx::AssertSqlSafe(mariadb)).await?;
    }
    Ok(())
}

/// Connects once outside the pool, so that a refused or failed connection
/// says why (a pool only says that it timed out).
async fn probe<C: sqlx::Connection>(options: &C::Options) -> Result<(), InvariantError> {
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, C::connect_with(options))
        .await
        .map_err(|_| InvariantError::Connect(sqlx::Error::PoolTimedOut))?
        .map_err(InvariantError::Connect)?;
    let _ = conn.close().await;
    Ok(())
}

/// Statement timeouts: PostgreSQL `57014` (query_canceled), MariaDB `70100`
/// (max_statement_time), SQLite 9 (`SQLITE_INTERRUPT`, from the progress
/// handler); MySQL's 3024 comes as `HY000`, told by its message.
fn is_timeout(e: &sqlx::Error) -> bool {
    let Some(d) = e.as_database_error() else {
        return false;
    };
    d.code()
        .is_some_and(|c| matches!(c.as_ref(), "57014" | "70100" | "9"))
        || d.message().contains("interrupted")
}

/// A row as `col=value, …`, every value taken as text (NULL as NULL).
fn render<R: Row>(row: &R) -> String
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    (0..row.len())
        .map(|i| {
            let name = row.columns()[i].name().to_owned();
            let value = row
                .try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .unwrap_or_else(|| "NULL".to_owned());
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn finding(
    invariant: &Invariant,
    severity: Severity,
    flow: &str,
    step: &str,
    v: Violations,
) -> Finding {
    let fingerprint = format!("invariant {}", invariant.name);
    let hash = xxhash_rust::xxh3::xxh3_64(fingerprint.as_bytes());
    Finding {
        location: None,
        driver: None,
        rule: INVARIANT_VIOLATED,
        severity,
        flow: flow.to_owned(),
        step: step.to_owned(),
        message: format!(
            "invariant {} ({}) returned {} violating row{}",
            invariant.name,
            invariant.file,
            v.count,
            if v.count == 1 { "" } else { "s" }
        ),
        fingerprint: Some(fingerprint),
        fingerprint_hash: Some(format!("{hash:016x}")),
        count: v.count,
        examples: v.rows,
        help: "find the step that broke it and make that step's writes keep it: one \
               transaction, guarded updates, constraints the database enforces"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! The layers under the static check, with the check bypassed: what each
    //! database itself refuses on the invariants' connection.

    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// The runner's connection to `url`, or `None` (the reason printed)
    /// when the server does not answer and CI is not set.
    async fn runner(url: &str) -> Option<InvariantRunner> {
        match InvariantRunner::connect(url, Invariants::default(), DEFAULT_TIMEOUT).await {
            Ok(r) => Some(r),
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{url} is required when CI=true: {e}"
                );
                eprintln!("skipped: {url}: {e}");
                None
            }
        }
    }

    #[test]
    fn sqlite_compiles_nothing_but_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("app.db");
        let url = format!("sqlite:{}", path.display());
        let copy = dir.path().join("copy.db");
        block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
                .await
                .expect("sqlite");
            sqlx::raw_sql(
                "CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER); \
                 INSERT INTO stock VALUES (1, 5), (2, 5), (3, 5)",
            )
            .execute(&mut c)
            .await
            .expect("setup");
            c.close().await.expect("close");

            let runner = runner(&url).await.expect("a SQLite file opens");
            let Pool::Sqlite(pool) = &runner.pool else {
                panic!("a SQLite pool");
            };
            // sqlx runs every statement of the text; SQLite refuses to
            // compile the second.
            for sql in [
                "SELECT 1; PRAGMA query_only = OFF; DELETE FROM stock".to_owned(),
                "SELECT 1; DELETE FROM stock".to_owned(),
                format!("SELECT 1; VACUUM INTO '{}'", copy.display()),
                "SELECT 1; ATTACH 'other.db' AS other".to_owned(),
                "SELECT 1; CREATE TEMP TABLE t (a)".to_owned(),
            ] {
                let e = on_sqlite(pool, &sql).await.expect_err(&sql).to_string();
                // VACUUM asks the authorizer as it runs, and cannot run in the
                // invariant's transaction in the first place.
                assert!(
                    e.contains("not authorized")
                        || e.contains("cannot VACUUM from within a transaction"),
                    "{sql}: {e}"
                );
            }
            let v = on_sqlite(pool, "SELECT id, qty FROM stock ORDER BY id")
                .await
                .expect("a read");
            assert_eq!(v.count, 3);
            assert_eq!(v.rows[0], "id=1, qty=5");
            // Read-only pragmas, as table-valued functions, are reads.
            let v = on_sqlite(pool, "SELECT name FROM pragma_table_info('stock')")
                .await
                .expect("pragma_table_info");
            assert_eq!(v.rows, ["name=id", "name=qty"]);
            let v = on_sqlite(pool, "SELECT * FROM pragma_foreign_key_check()")
                .await
                .expect("pragma_foreign_key_check");
            assert_eq!(v.count, 0);
            runner.close().await;
        });
        assert!(!copy.exists(), "VACUUM INTO wrote nothing");
        assert!(!dir.path().join("other.db").exists());
    }

    #[test]
    fn postgres_takes_one_query_in_the_prepared_statement() {
        block_on(async {
            let Some(runner) = runner("postgres://postgres@127.0.0.1:5432/test").await else {
                return;
            };
            let Pool::Postgres(pool) = &runner.pool else {
                panic!("a PostgreSQL pool");
            };
            let e = on_postgres(pool, "SELECT 1; SELECT 2", DEFAULT_TIMEOUT)
                .await
                .expect_err("two statements");
            assert!(
                e.to_string()
                    .contains("cannot insert multiple commands into a prepared statement"),
                "{e}"
            );
            // DECLARE takes queries only.
            let e = on_postgres(pool, "DELETE FROM pg_class", DEFAULT_TIMEOUT)
                .await
                .expect_err("a DELETE");
            assert!(e.to_string().contains("syntax error"), "{e}");
            let e = on_postgres(
                pool,
                "WITH d AS (DELETE FROM pg_class RETURNING *) SELECT * FROM d",
                DEFAULT_TIMEOUT,
            )
            .await
            .expect_err("a data-modifying WITH");
            assert!(e.to_string().contains("data-modifying"), "{e}");
            let v = on_postgres(pool, "SELECT generate_series(1, 25) AS n", DEFAULT_TIMEOUT)
                .await
                .expect("a read");
            assert_eq!((v.rows.len(), v.count), (MAX_ROWS, 25));
            assert_eq!(v.rows[9], "n=10");
            runner.close().await;
        });
    }

    #[test]
    fn mysql_takes_one_query_in_the_prepared_statement() {
        block_on(async {
            let Some(runner) = runner("mysql://root@127.0.0.1:3306/test").await else {
                return;
            };
            let Pool::MySql(pool) = &runner.pool else {
                panic!("a MySQL pool");
            };
            let e = on_mysql(
                pool,
                "SELECT 1; SET SESSION TRANSACTION READ WRITE",
                DEFAULT_TIMEOUT,
            )
            .await
            .expect_err("two statements");
            assert!(e.to_string().contains("SQL syntax"), "{e}");
            let v = on_mysql(pool, "SELECT seq AS n FROM seq_1_to_25", DEFAULT_TIMEOUT).await;
            // seq_1_to_25 is MariaDB's sequence engine; MySQL has none.
            if let Ok(v) = v {
                assert_eq!((v.rows.len(), v.count), (MAX_ROWS, 25));
                assert_eq!(v.rows[0], "n=1");
            }
            runner.close().await;
        });
    }
}
