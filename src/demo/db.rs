//! The shop's database layer: a sqlx pool on SQLite, and a count of every
//! statement the shop executes through it, kept by the shop itself so that
//! what a capture records can be checked against it.
//!
//! Repositories run statements through [`Conn::run`], which counts one
//! statement per call; transactions begin and commit through [`Db::begin`]
//! and [`Db::commit`], which count the `BEGIN` and `COMMIT` sqlx sends. A
//! transaction dropped without commit is rolled back by sqlx with a
//! `ROLLBACK` that is not counted: the shop only drops one on its error paths.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions};
use sqlx::{Executor, Sqlite, Transaction};

use crate::capture::sqlite::Capture;

/// The shop's pool and its statement count.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
    executed: Arc<AtomicU64>,
}

/// One connection's statements, counted.
#[derive(Debug)]
pub struct Conn<'c> {
    conn: &'c mut SqliteConnection,
    executed: &'c AtomicU64,
}

impl Conn<'_> {
    /// The connection, to run exactly one statement on.
    pub fn run(&mut self) -> &mut SqliteConnection {
        self.executed.fetch_add(1, Ordering::Relaxed);
        self.conn
    }
}

impl Db {
    /// Opens the shop's database: `path`, or a fresh in-memory database. With
    /// a capture, every connection the pool opens is hooked as it opens.
    pub async fn open(path: Option<&Path>, capture: Option<&Capture>) -> Result<Self, sqlx::Error> {
        let (options, max) = match path {
            Some(path) => (
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true),
                4,
            ),
            // An in-memory database lives and dies with its connection: the
            // pool keeps exactly one, forever.
            None => (SqliteConnectOptions::from_str("sqlite::memory:")?, 1),
        };
        let options = options.foreign_keys(true);
        let mut pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None);
        if let Some(capture) = capture {
            let capture = capture.clone();
            pool = pool.after_connect(move |conn, _meta| {
                let capture = capture.clone();
                Box::pin(async move { capture.install(conn).await })
            });
        }
        Ok(Self {
            pool: pool.connect_with(options).await?,
            executed: Arc::new(AtomicU64::new(0)),
        })
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
        Conn {
            conn,
            executed: &self.executed,
        }
    }

    pub async fn begin<'c>(
        &self,
        conn: &'c mut SqliteConnection,
    ) -> Result<Transaction<'c, Sqlite>, sqlx::Error> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        sqlx::Connection::begin(conn).await
    }

    pub async fn commit(&self, tx: Transaction<'_, Sqlite>) -> Result<(), sqlx::Error> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        tx.commit().await
    }

    /// Runs a script of statements, each ending with `;` at the end of a line,
    /// one statement at a time (so that each is counted); `--` comment lines
    /// are left out.
    pub async fn run_script(&self, script: &'static str) -> Result<(), sqlx::Error> {
        let mut pooled = self.acquire().await?;
        let mut conn = self.conn(&mut pooled);
        for statement in statements(script) {
            conn.run().execute(sqlx::AssertSqlSafe(statement)).await?;
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
        let mut conn = self.conn(&mut pooled);
        for statement in statements(script) {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .bind(value)
                .execute(conn.run())
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
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
