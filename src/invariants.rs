//! Data invariants: the `[[invariant]]` queries of the rule files, run against
//! the application's database at step boundaries or at the end. Each query
//! returns the rows that violate it; rows mean an `invariant-violated`
//! finding carrying the first 10 of them and their count.
//!
//! flowaudit runs them on a connection of its own, read-only
//! (`default_transaction_read_only` in PostgreSQL, `SET SESSION TRANSACTION
//! READ ONLY` in MySQL, `PRAGMA query_only` in SQLite) and bounded by a
//! statement timeout (`statement_timeout`; `max_execution_time` in MySQL,
//! `max_statement_time` in MariaDB; in SQLite a progress handler that
//! interrupts the query at the deadline), with a client-side deadline
//! besides. Queries go through the simple query protocol (`raw_sql`), so
//! every value arrives as text whatever its type.
//!
//! An invariant whose SQL fails or times out is an [`InvariantError`] naming
//! its rule file and name: a tool error (exit code 2), not a finding.
//!
//! Used by `demo` (after each step, on the shop's database) and `analyze
//! --database URL` (at the end); a proxy can call [`InvariantRunner::after_step`]
//! when it sees a step marker.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Column, Executor, Row};

use crate::model::{Finding, Severity};
use crate::rules::INVARIANT_VIOLATED;
use crate::rules::config::{Invariant, RuleConfig, When};

const ROWS_SQL: &str = include_str!("../sql/invariants/rows.sql");
const COUNT_SQL: &str = include_str!("../sql/invariants/count.sql");

/// Rows a finding carries.
pub const MAX_ROWS: usize = 10;

/// The default statement timeout of an invariant query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

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
}

#[derive(Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
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
    /// `mariadb://…`).
    pub async fn connect(
        url: &str,
        invariants: Invariants,
        timeout: Duration,
    ) -> Result<Self, InvariantError> {
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let ms = timeout.as_millis().max(1);
        let pool = if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse()
                .map_err(|_| InvariantError::Url(url.to_owned()))?;
            Self::sqlite_pool(options, deadline.clone()).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
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
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options: MySqlConnectOptions =
                url.parse().map_err(|_| InvariantError::Url(url.clone()))?;
            let secs = timeout.as_secs_f64();
            probe::<sqlx::MySqlConnection>(&options).await?;
            Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                            // MySQL and MariaDB name the timeout differently;
                            // each refuses the other's.
                            let mysql = format!("SET SESSION max_execution_time = {ms}");
                            let mariadb = format!("SET SESSION max_statement_time = {secs}");
                            if conn.execute(sqlx::AssertSqlSafe(mysql)).await.is_err() {
                                conn.execute(sqlx::AssertSqlSafe(mariadb)).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(InvariantError::Connect)?,
            )
        } else {
            return Err(InvariantError::Url(url.to_owned()));
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
        let options = options.pragma("query_only", "ON").create_if_missing(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .after_connect(move |conn, _| {
                let deadline = deadline.clone();
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    handle.set_progress_handler(1000, move || {
                        let at = *deadline.lock().unwrap_or_else(PoisonError::into_inner);
                        at.is_none_or(|at| Instant::now() < at)
                    });
                    Ok(())
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
        let query = invariant.sql.trim().trim_end_matches(';').trim();
        let rows_sql = ROWS_SQL.replace("{query}", query);
        let rows = self.fetch(invariant, rows_sql).await?;
        let count = if rows.len() < MAX_ROWS {
            rows.len() as u64
        } else {
            let count_sql = COUNT_SQL.replace("{query}", query);
            self.fetch(invariant, count_sql)
                .await?
                .first()
                .and_then(|r| r.rsplit('=').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(rows.len() as u64)
        };
        Ok(Violations { rows, count })
    }

    async fn fetch(
        &self,
        invariant: &Invariant,
        sql: String,
    ) -> Result<Vec<String>, InvariantError> {
        let timeout = invariant
            .timeout_ms
            .map_or(self.timeout, Duration::from_millis);
        self.set_timeout(timeout)
            .await
            .map_err(InvariantError::Connect)?;
        let started = Instant::now();
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(started + timeout);
        let sql = sqlx::AssertSqlSafe(sql);
        // The server's own timeout acts first; this bounds a server that
        // ignores it.
        let limit = timeout + Duration::from_secs(2);
        let result = match &self.pool {
            Pool::Sqlite(p) => tokio::time::timeout(limit, sqlx::raw_sql(sql).fetch_all(p))
                .await
                .map(|r| r.map(|rows| rows.iter().map(render).collect::<Vec<_>>())),
            Pool::Postgres(p) => tokio::time::timeout(limit, sqlx::raw_sql(sql).fetch_all(p))
                .await
                .map(|r| r.map(|rows| rows.iter().map(render).collect::<Vec<_>>())),
            Pool::MySql(p) => tokio::time::timeout(limit, sqlx::raw_sql(sql).fetch_all(p))
                .await
                .map(|r| r.map(|rows| rows.iter().map(render).collect::<Vec<_>>())),
        };
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let timed_out = || InvariantError::Timeout {
            file: invariant.file.clone(),
            name: invariant.name.clone(),
            secs: timeout.as_secs_f64(),
        };
        match result {
            Err(_) => Err(timed_out()),
            Ok(Ok(rows)) => Ok(rows),
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

    /// The server-side statement timeout for the next query (SQLite's is the
    /// progress handler's deadline, set by the caller).
    async fn set_timeout(&self, timeout: Duration) -> Result<(), sqlx::Error> {
        let ms = timeout.as_millis().max(1);
        match &self.pool {
            Pool::Sqlite(_) => {}
            Pool::Postgres(p) => {
                p.execute(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
                    .await?;
            }
            Pool::MySql(p) => {
                let mysql = format!("SET SESSION max_execution_time = {ms}");
                let mariadb = format!("SET SESSION max_statement_time = {}", timeout.as_secs_f64());
                if p.execute(sqlx::AssertSqlSafe(mysql)).await.is_err() {
                    p.execute(sqlx::AssertSqlSafe(mariadb)).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        match self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
        }
    }
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
