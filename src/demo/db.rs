//! The shop's database layer: a sqlx pool on SQLite, and a count of every
//! statement the shop executes through it, kept by the shop itself so that
//! what a capture records can be checked against it.
//!
//! Repositories run statements through [`Conn::run`], which counts one
//! statement per call; transactions begin and commit through [`Db::begin`]
//! and [`Db::commit`], which count the `BEGIN` and `COMMIT` sqlx sends. A
//! transaction dropped without commit is rolled back by sqlx with a
//! `ROLLBACK` that is not counted: the shop rolls back explicitly through
//! [`Db::rollback`] instead.
//!
//! With a fault to inject ([`crate::fault`]), every statement passes the
//! [`FaultInjector`] first; the one it picks is not run: SQLite runs
//! [`crate::fault::SQLITE_FAILING_SQL`] in its place on the same connection,
//! which fails when stepped, and the shop gets that error as it would any
//! other. The capture records the failure with the driver's error.
//!
//! Without `--db`, the database is a named in-memory database in shared-cache
//! mode, so that the invariants' own read-only connection
//! ([`Db::invariants_url`]) sees it.
//!
//! In race mode ([`Db::open_racing`]) the database is a file in WAL mode, so
//! that connections really run at once (readers never wait, writers take
//! turns), and each customer gets a pool of its own connection
//! ([`Db::customer`]), captured as its own application instance.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Executor, Sqlite, Transaction};

use super::DemoError;
use crate::capture::sqlite::Capture;
use crate::fault::FaultInjector;
use crate::model::SqlError;

static IN_MEMORY: AtomicUsize = AtomicUsize::new(0);

/// The shop's pool and its statement count.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
    /// How the pool's connections open, for [`Db::customer`].
    options: SqliteConnectOptions,
    executed: Arc<AtomicU64>,
    url: String,
    capture: Option<Capture>,
    /// The step the journey is in, for the fault injector.
    step: Arc<Mutex<String>>,
    fault: Option<Arc<Mutex<FaultInjector>>>,
}

/// One connection's statements, counted.
#[derive(Debug)]
pub struct Conn<'c> {
    conn: &'c mut SqliteConnection,
    db: &'c Db,
}

impl Conn<'_> {
    /// The connection, to run exactly one statement on; an error when that
    /// statement is the injected fault (which has then failed in its place).
    pub async fn run(&mut self) -> Result<&mut SqliteConnection, DemoError> {
        self.db.executed.fetch_add(1, Ordering::Relaxed);
        self.db.inject(self.conn, false).await?;
        Ok(self.conn)
    }
}

impl Db {
    /// Opens the shop's database: `path`, or a fresh in-memory database. With
    /// a capture, every connection the pool opens is hooked as it opens.
    pub async fn open(path: Option<&Path>, capture: Option<&Capture>) -> Result<Self, sqlx::Error> {
        let (options, max, url) = match path {
            Some(path) => (
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true),
                4,
                format!("sqlite:{}", path.display()),
            ),
            // An in-memory database lives as long as a connection to it: the
            // pool keeps exactly one, forever.
            None => {
                let url = format!(
                    "sqlite:file:flowaudit-demo-{}-{}?mode=memory",
                    std::process::id(),
                    IN_MEMORY.fetch_add(1, Ordering::Relaxed)
                );
                (SqliteConnectOptions::from_str(&url)?, 1, url)
            }
        };
        let options = options.foreign_keys(true);
        let pool = connect(&options, max, capture, None).await?;
        Ok(Self {
            pool,
            options,
            executed: Arc::new(AtomicU64::new(0)),
            url,
            capture: capture.cloned(),
            step: Arc::default(),
            fault: None,
        })
    }

    /// Opens the shop's database at `path` for a race: in WAL mode, where
    /// reads run while another connection writes and writes take turns
    /// (waiting up to sqlx's busy timeout, 5 s, for the write lock), so
    /// that the customers' checkouts really run at once. `synchronous =
    /// NORMAL`, WAL's usual setting: a commit does not wait for the disk,
    /// so that no write lasts long enough to look like a lock wait to the
    /// scheduler ([`crate::race::LOCK_WAIT`]). This pool, of one
    /// connection, creates and seeds the shop; the customers have their own
    /// ([`Db::customer`]).
    pub async fn open_racing(path: &Path, capture: Option<&Capture>) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = connect(&options, 1, capture, None).await?;
        Ok(Self {
            pool,
            options,
            executed: Arc::new(AtomicU64::new(0)),
            url: format!("sqlite:{}", path.display()),
            capture: capture.cloned(),
            step: Arc::default(),
            fault: None,
        })
    }

    /// The shop as customer `instance` uses it: the same database and
    /// statement count, through a pool of one connection of its own,
    /// captured as application instance `instance` ([`crate::model::Event::instance`]).
    pub async fn customer(&self, instance: u64) -> Result<Self, sqlx::Error> {
        let pool = connect(&self.options, 1, self.capture.as_ref(), Some(instance)).await?;
        Ok(Self {
            pool,
            ..self.clone()
        })
    }

    /// Fails the statement the injector picks (see the module documentation).
    pub fn inject_fault(&mut self, injector: FaultInjector) {
        self.fault = Some(Arc::new(Mutex::new(injector)));
    }

    /// Whether the injected fault has happened.
    pub fn fault_fired(&self) -> bool {
        self.fault.as_ref().is_some_and(|f| {
            f.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .fired()
        })
    }

    /// The step the journey is in from now on.
    pub fn set_step(&self, step: &str) {
        step.clone_into(
            &mut self
                .step
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// The URL of the shop's database, for the invariants' own connection.
    pub fn invariants_url(&self) -> &str {
        &self.url
    }

    /// Runs the failing statement instead of the next one when the injector
    /// says so, and returns its error.
    async fn inject(&self, conn: &mut SqliteConnection, is_commit: bool) -> Result<(), DemoError> {
        let Some(fault) = &self.fault else {
            return Ok(());
        };
        let failing = {
            let step = self
                .step
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let mut fault = fault
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            fault
                .decide(&step, false, is_commit)
                .then(|| fault.spec().failing_sql_sqlite())
        };
        let Some(sql) = failing else { return Ok(()) };
        match conn.execute(sqlx::AssertSqlSafe(sql.clone())).await {
            Ok(_) => Err(DemoError::Rejected(format!(
                "the injected fault's statement did not fail: {sql}"
            ))),
            Err(e) => {
                if let Some(capture) = &self.capture {
                    let (code, message) = match e.as_database_error() {
                        Some(d) => (
                            d.code().map(|c| c.into_owned()).unwrap_or_default(),
                            d.message().to_owned(),
                        ),
                        None => (String::new(), e.to_string()),
                    };
                    capture.record_error(SqlError { code, message });
                }
                Err(DemoError::Database(e))
            }
        }
    }

    /// Statements executed through this database so far.
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }

    /// A connection from the pool for one unit of work.
    pub async fn acquire(&self) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// Counts the statements run on `conn`.
    pub fn conn<'c>(&'c self, conn: &'c mut SqliteConnection) -> Conn<'c> {
        Conn { conn, db: self }
    }

    pub async fn begin<'c>(
        &self,
        conn: &'c mut SqliteConnection,
    ) -> Result<Transaction<'c, Sqlite>, DemoError> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        self.inject(conn, false).await?;
        // IMMEDIATE: the shop's transactions read, then write. A deferred
        // BEGIN takes the write lock only at the first write, and in WAL mode
        // that upgrade fails at once with SQLITE_BUSY (no busy timeout: it
        // would deadlock) when another connection holds the lock, or has
        // committed since this transaction's first read (its snapshot is
        // stale: SQLITE_BUSY_SNAPSHOT). BEGIN IMMEDIATE takes the lock first,
        // waiting for it within the busy timeout, so that concurrent
        // checkouts take turns instead of failing (`demo --race`, issue 19).
        Ok(sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?)
    }

    /// Commits; when the fault is this COMMIT, the failing statement runs in
    /// its place and the transaction is rolled back, as a failed COMMIT
    /// leaves it.
    pub async fn commit(&self, mut tx: Transaction<'_, Sqlite>) -> Result<(), DemoError> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.inject(&mut tx, true).await {
            self.rollback(tx).await?;
            return Err(e);
        }
        Ok(tx.commit().await?)
    }

    pub async fn rollback(&self, tx: Transaction<'_, Sqlite>) -> Result<(), DemoError> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        Ok(tx.rollback().await?)
    }

    /// Runs a script of statements, each ending with `;` at the end of a line,
    /// one statement at a time (so that each is counted); `--` comment lines
    /// are left out.
    pub async fn run_script(&self, script: &'static str) -> Result<(), sqlx::Error> {
        let mut pooled = self.acquire().await?;
        let conn = self.conn(&mut pooled);
        for statement in statements(script) {
            conn.db.executed.fetch_add(1, Ordering::Relaxed);
            conn.conn.execute(sqlx::AssertSqlSafe(statement)).await?;
        }
        Ok(())
    }

    /// Runs a script as [`Db::run_script`] does, binding `value` to the `?1`
    /// of each of its statements.
    pub async fn run_script_with(
        &self,
        script: &'static str,
        value: i64,
    ) -> Result<(), sqlx::Error> {
        let mut pooled = self.acquire().await?;
        let conn = self.conn(&mut pooled);
        for statement in statements(script) {
            conn.db.executed.fetch_add(1, Ordering::Relaxed);
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(value)
                .execute(&mut *conn.conn)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A pool of up to `max` connections with `options`, each hooked to
/// `capture` (as application `instance`) as it opens.
async fn connect(
    options: &SqliteConnectOptions,
    max: u32,
    capture: Option<&Capture>,
    instance: Option<u64>,
) -> Result<SqlitePool, sqlx::Error> {
    let mut pool = SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None);
    if let Some(capture) = capture {
        let capture = capture.clone();
        pool = pool.after_connect(move |conn, _meta| {
            let capture = capture.clone();
            Box::pin(async move { capture.install_for(conn, instance).await })
        });
    }
    pool.connect_with(options.clone()).await
}

/// The statements of a script: split at a `;` that ends a line, comment lines
/// dropped.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let trimmed = line.trim_end();
        match trimmed.strip_suffix(';') {
            Some(last) => {
                current.push_str(last);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_owned());
                }
                current.clear();
            }
            None => {
                current.push_str(trimmed);
                current.push('\n');
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn scripts_split_at_line_ending_semicolons() {
        let got =
            statements("-- a comment\nCREATE TABLE t (\n  a TEXT DEFAULT ';'\n);\nSELECT 1;\n");
        assert_eq!(
            got,
            ["CREATE TABLE t (\n  a TEXT DEFAULT ';'\n)", "SELECT 1"]
        );
        assert_eq!(statements(crate::demo::SCHEMA).len(), 21);
    }
}
