#![allow(unsafe_code)]
//! In-process capture for SQLite through sqlx: every statement a connection
//! runs becomes an [`Event`], with the flow and step the application marked
//! through [`Capture::flow`] and [`Capture::step`].
//!
//! The hook is SQLite's own trace callback (`sqlite3_trace_v2`, see
//! <https://sqlite.org/c3ref/trace_v2.html>), set on the raw handle that sqlx
//! hands out with `SqliteConnection::lock_handle`. Per statement:
//!
//! - `SQLITE_TRACE_STMT` (first step of a run): the statement text as
//!   prepared (`sqlite3_sql`), its bind values recovered from
//!   `sqlite3_expanded_sql` (see [`super::expanded`]; where they cannot be,
//!   `sql` is the expanded text with the literals inline and `params` is
//!   absent, which the fingerprint reads as the parameter set), the
//!   transaction status (`sqlite3_get_autocommit`), the connection, and the
//!   wall-clock time it started (`ts`, which the HTML report's timeline
//!   draws);
//! - `SQLITE_TRACE_ROW`: one more result row;
//! - `SQLITE_TRACE_PROFILE` (the run ended: done, failed, or reset early):
//!   the duration since the run started, timed here with `Instant` because
//!   SQLite's own profile time comes from the VFS clock, in whole
//!   milliseconds; and `rows`: result rows for a statement that returns
//!   columns, else the rows it changed (the growth of
//!   `sqlite3_total_changes64`: rows its triggers wrote included, 0 for DDL and
//!   transaction control).
//!
//! Events are kept in the order statements started, so an N+1's source query
//! comes before its loop even when a statement's run ends late. Trigger
//! programs announce themselves through `SQLITE_TRACE_STMT` too; they are part
//! of their statement, not statements of their own, and are skipped. A failed
//! statement is captured, but without its error code (the trace callback runs
//! before SQLite records the error); the code that ran it can add the error
//! with [`Capture::record_error`], as the demo does for an injected fault.
//!
//! In race mode ([`Capture::racing`], `flowaudit demo --race STEP`) the
//! callback also drives the race's [`Scheduler`]: at `SQLITE_TRACE_STMT` it
//! tells the scheduler what the connection is about to run and, when the
//! scheduler holds that write, waits for the hold to end right there. The
//! callback runs on the connection's own worker thread, at the statement's
//! first opcode (`OP_Init`), before the statement has taken any lock: the
//! wait delays exactly that connection's statement and nothing else, and
//! the connection holds no lock that the others could wait for. The event
//! is recorded when the wait ends, so the events are in the order the
//! statements really ran. `SQLITE_TRACE_PROFILE` tells the scheduler the
//! statement was answered and `SQLITE_TRACE_CLOSE` that the connection
//! closed. Outside race mode nothing waits and nothing else changes.
//!
//! What is captured: everything the connection runs after [`Capture::install`],
//! including the `BEGIN`/`COMMIT` sqlx issues for a transaction. The PRAGMAs
//! sqlx runs while it opens a connection come before `after_connect`, where
//! the hook is installed, and are not captured.
//!
//! # Why this is sound
//!
//! The callback's context pointer is not a pointer: it is a key into
//! [`HOOKS`], cast to `*mut c_void` and never dereferenced. The callback looks
//! the key up and holds only a `Weak` reference to the capture's state, so a
//! capture dropped before its connection closes leaves a callback that finds
//! nothing and returns; `SQLITE_TRACE_CLOSE` removes the key. No memory is
//! shared with SQLite except through these lookups, so no lifetime has to be
//! argued about. The pointers SQLite passes in (`P`, `X`) are valid for the
//! duration of the callback (trace_v2 documentation), and the functions called
//! on them only read the statement or connection, which SQLite allows inside a
//! trace callback. The callback runs on sqlx's worker thread for the
//! connection; the state it writes is behind a `Mutex`. A panic never crosses
//! the FFI boundary: the body runs under `catch_unwind`.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use libsqlite3_sys::{
    SQLITE_TRACE_CLOSE, SQLITE_TRACE_PROFILE, SQLITE_TRACE_ROW, SQLITE_TRACE_STMT,
    sqlite3_column_count, sqlite3_db_handle, sqlite3_expanded_sql, sqlite3_free,
    sqlite3_get_autocommit, sqlite3_sql, sqlite3_stmt, sqlite3_total_changes64, sqlite3_trace_v2,
};
use sqlx::sqlite::SqliteConnection;

use crate::model::{Event, SqlError, TxnStatus};
use crate::race::Scheduler;

/// The `source` of every event this module produces.
pub const SOURCE: &str = "sqlite";

/// Hooked connections by key (the trace callback's context value).
static HOOKS: LazyLock<Mutex<HashMap<usize, Hook>>> = LazyLock::new(Mutex::default);
static NEXT_KEY: AtomicUsize = AtomicUsize::new(1);

#[derive(Debug)]
struct Hook {
    state: Weak<Mutex<State>>,
    conn: u64,
    /// The application instance whose statements the connection runs.
    instance: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    flow: Option<String>,
    step: Option<String>,
    events: Vec<Event>,
    /// Statements whose run has started and not yet ended, by (connection,
    /// statement handle address).
    running: HashMap<(u64, usize), Running>,
    connections: u64,
    /// The race's scheduler, in race mode.
    race: Option<Arc<Scheduler>>,
}

#[derive(Debug)]
struct Running {
    index: usize,
    rows: u64,
    changes_before: i64,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the statements of the connections it is installed on. Clones share
/// one record.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    state: Arc<Mutex<State>>,
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// A capture that also drives `scheduler` (race mode): writes it holds
    /// wait in the trace callback, on their connection's own thread (see the
    /// module documentation).
    pub fn racing(scheduler: Arc<Scheduler>) -> Self {
        let capture = Self::default();
        lock(&capture.state).race = Some(scheduler);
        capture
    }

    /// Names the flow of every statement from now on.
    pub fn flow(&self, name: &str) {
        lock(&self.state).flow = Some(name.to_owned());
    }

    /// Starts a step: every statement from now on belongs to it.
    pub fn step(&self, name: &str) {
        lock(&self.state).step = Some(name.to_owned());
    }

    /// A copy of the events so far, in the order their statements started.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.state).events.clone()
    }

    /// Takes the events so far, leaving the record empty. Call it between
    /// statements: a statement still running when it is called is dropped.
    pub fn take(&self) -> Vec<Event> {
        let mut state = lock(&self.state);
        state.running.clear();
        std::mem::take(&mut state.events)
    }

    /// Records that the latest statement failed, with the driver's error: the
    /// trace callback runs before SQLite records an error, so the code that
    /// ran the statement reports it. Call it right after the failure, before
    /// another statement starts.
    pub fn record_error(&self, error: SqlError) {
        if let Some(last) = lock(&self.state).events.last_mut() {
            last.error = Some(error);
        }
    }

    /// Hooks a connection: from now on every statement it runs is recorded.
    /// Meant for `SqlitePoolOptions::after_connect`.
    pub async fn install(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        self.install_for(conn, None).await
    }

    /// [`Self::install`] for a connection of one application instance: its
    /// events carry `instance` ([`Event::instance`]), so that the audit
    /// judges each instance's statements as a run of their own.
    pub async fn install_for(
        &self,
        conn: &mut SqliteConnection,
        instance: Option<u64>,
    ) -> Result<(), sqlx::Error> {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle();
        let id = {
            let mut state = lock(&self.state);
            state.connections += 1;
            state.connections
        };
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        lock(&HOOKS).insert(
            key,
            Hook {
                state: Arc::downgrade(&self.state),
                conn: id,
                instance,
            },
        );
        // SAFETY: the locked handle gives this thread exclusive use of the
        // connection; the context is a key, never dereferenced (module docs).
        unsafe {
            sqlite3_trace_v2(
                db.as_ptr(),
                SQLITE_TRACE_STMT | SQLITE_TRACE_ROW | SQLITE_TRACE_PROFILE | SQLITE_TRACE_CLOSE,
                Some(on_trace),
                key as *mut c_void,
            );
        }
        Ok(())
    }
}

/// The trace callback (`xCallback` of `sqlite3_trace_v2`). Its return value is
/// ignored by SQLite; it returns 0 as documented.
unsafe extern "C" fn on_trace(
    kind: c_uint,
    ctx: *mut c_void,
    p: *mut c_void,
    x: *mut c_void,
) -> c_int {
    let key = ctx as usize;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if kind == SQLITE_TRACE_CLOSE {
            let hook = lock(&HOOKS).remove(&key);
            let race = hook
                .and_then(|h| Some((h.state.upgrade()?, h.conn)))
                .and_then(|(state, conn)| Some((lock(&state).race.clone()?, conn)));
            if let Some((race, conn)) = race {
                race.closed(conn);
            }
            return;
        }
        let (state, conn, instance) = {
            let hooks = lock(&HOOKS);
            let Some(hook) = hooks.get(&key) else { return };
            let Some(state) = hook.state.upgrade() else {
                return;
            };
            (state, hook.conn, hook.instance)
        };
        let stmt = p.cast::<sqlite3_stmt>();
        let running_key = (conn, stmt as usize);
        let mut guard = lock(&state);
        match kind {
            SQLITE_TRACE_STMT => {
                // SAFETY: for SQLITE_TRACE_STMT, P is the statement and X its
                // text (or a trigger's comment), both valid during the call.
                let started = unsafe { statement_started(stmt, x.cast::<c_char>().cast_const()) };
                let Some((mut event, changes_before)) = started else {
                    return;
                };
                event.conn = Some(conn);
                event.instance = instance;
                event.flow = guard.flow.clone();
                event.step = guard.step.clone();
                if let Some(race) = guard.race.clone() {
                    // Wait without the record locked: the other connections
                    // record their statements meanwhile.
                    drop(guard);
                    let params = event.params.as_deref().unwrap_or_default();
                    if let Some(hold) = race.before(conn, event.step.as_deref(), &event.sql, params)
                    {
                        race.wait_blocking(&hold);
                    }
                    guard = lock(&state);
                }
                let index = guard.events.len();
                guard.events.push(event);
                guard.running.insert(
                    running_key,
                    Running {
                        index,
                        rows: 0,
                        changes_before,
                        // The run starts when this callback returns.
                        started: Instant::now(),
                    },
                );
            }
            SQLITE_TRACE_ROW => {
                if let Some(r) = guard.running.get_mut(&running_key) {
                    r.rows += 1;
                }
            }
            SQLITE_TRACE_PROFILE => {
                let Some(r) = guard.running.remove(&running_key) else {
                    return;
                };
                let elapsed = r.started.elapsed();
                // SAFETY: for SQLITE_TRACE_PROFILE, P is the statement (X, its
                // millisecond-grained run time, is not used).
                let (returns_rows, changes) = unsafe {
                    (
                        sqlite3_column_count(stmt) > 0,
                        sqlite3_total_changes64(sqlite3_db_handle(stmt)),
                    )
                };
                if let Some(event) = guard.events.get_mut(r.index) {
                    event.duration_us =
                        Some(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
                    event.rows = Some(if returns_rows {
                        r.rows
                    } else {
                        u64::try_from(changes - r.changes_before).unwrap_or(0)
                    });
                }
                if let Some(race) = guard.race.clone() {
                    drop(guard);
                    race.answered(conn);
                }
            }
            _ => {}
        }
    }));
    0
}

/// The event for a statement whose run starts, and the connection's change
/// count at that moment; `None` for a trigger program's announcement.
///
/// # Safety
/// `stmt` must be a live statement and `text` the NUL-terminated text SQLite
/// passed with it to a `SQLITE_TRACE_STMT` callback.
unsafe fn statement_started(stmt: *mut sqlite3_stmt, text: *const c_char) -> Option<(Event, i64)> {
    // SAFETY: the caller's contract; the expanded text is ours to free.
    unsafe {
        let raw = sqlite3_sql(stmt);
        // A trigger program passes "-- TRIGGER name", not the statement's text.
        if raw.is_null() || raw != text {
            return None;
        }
        let sql = CStr::from_ptr(raw).to_string_lossy().into_owned();
        let expanded_ptr = sqlite3_expanded_sql(stmt);
        let expanded = if expanded_ptr.is_null() {
            None
        } else {
            let text = CStr::from_ptr(expanded_ptr).to_string_lossy().into_owned();
            sqlite3_free(expanded_ptr.cast());
            Some(text)
        };
        let db = sqlite3_db_handle(stmt);
        let txn = if sqlite3_get_autocommit(db) == 0 {
            TxnStatus::Open
        } else {
            TxnStatus::Idle
        };
        let changes_before = sqlite3_total_changes64(db);
        let (sql, params) = match expanded {
            None => (sql, None),
            Some(expanded) => match super::expanded::bind_values(&sql, &expanded) {
                Some(values) if values.is_empty() => (sql, None),
                Some(values) => (sql, Some(values)),
                None => (expanded, None),
            },
        };
        Some((
            Event {
                sql,
                params,
                txn: Some(txn),
                ts: Some(crate::date::rfc3339(std::time::SystemTime::now())),
                source: Some(SOURCE.to_owned()),
                ..Event::default()
            },
            changes_before,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor};

    async fn run() -> Vec<Event> {
        let capture = Capture::new();
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        capture.install(&mut conn).await.expect("hook");
        capture.flow("f");
        capture.step("s1");
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
            .await
            .expect("create");
        sqlx::query("INSERT INTO t (name) VALUES (?), (?)")
            .bind("a'b")
            .bind(Option::<String>::None)
            .execute(&mut conn)
            .await
            .expect("insert");
        capture.step("s2");
        let mut tx = conn.begin().await.expect("begin");
        let rows = sqlx::query("SELECT id FROM t WHERE id >= ?")
            .bind(1_i64)
            .fetch_all(&mut *tx)
            .await
            .expect("select");
        assert_eq!(rows.len(), 2);
        tx.commit().await.expect("commit");
        conn.close().await.expect("close");
        capture.events()
    }

    #[test]
    fn records_text_values_rows_and_transaction_status() {
        let events = block_on(run());
        let sql: Vec<&str> = events.iter().map(|e| e.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
                "INSERT INTO t (name) VALUES (?), (?)",
                "BEGIN",
                "SELECT id FROM t WHERE id >= ?",
                "COMMIT",
            ]
        );
        assert_eq!(events[1].params, Some(vec![Some("a'b".into()), None]));
        assert_eq!(events[1].rows, Some(2));
        assert_eq!(events[0].rows, Some(0));
        assert_eq!(events[3].rows, Some(2));
        assert_eq!(events[3].params, Some(vec![Some("1".into())]));
        assert_eq!(events[3].txn, Some(TxnStatus::Open));
        assert_eq!(events[2].txn, Some(TxnStatus::Idle));
        assert_eq!(events[1].step.as_deref(), Some("s1"));
        assert_eq!(events[3].step.as_deref(), Some("s2"));
        assert!(events.iter().all(|e| e.conn == Some(1)
            && e.flow.as_deref() == Some("f")
            && e.source.as_deref() == Some(SOURCE)
            && e.duration_us.is_some()));
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn trigger_programs_are_part_of_their_statement() {
        let events = block_on(async {
            let capture = Capture::new();
            let mut conn = SqliteConnection::connect("sqlite::memory:")
                .await
                .expect("in-memory database");
            capture.install(&mut conn).await.expect("hook");
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
                .await
                .expect("create");
            conn.execute("CREATE TABLE log (id INTEGER)")
                .await
                .expect("create");
            conn.execute(
                "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.id); END",
            )
            .await
            .expect("trigger");
            conn.execute("INSERT INTO t VALUES (1)")
                .await
                .expect("insert");
            conn.close().await.expect("close");
            capture.events()
        });
        assert_eq!(events.len(), 4, "{events:#?}");
        assert_eq!(events[3].sql, "INSERT INTO t VALUES (1)");
        // The row the trigger wrote counts as a change of the statement.
        assert_eq!(events[3].rows, Some(2));
    }

    #[test]
    fn a_capture_dropped_before_its_connection_is_harmless() {
        block_on(async {
            let capture = Capture::new();
            let mut conn = SqliteConnection::connect("sqlite::memory:")
                .await
                .expect("in-memory database");
            capture.install(&mut conn).await.expect("hook");
            drop(capture);
            conn.execute("SELECT 1").await.expect("runs unobserved");
            conn.close().await.expect("close");
        });
    }

    /// Race mode: the second connection's read goes in while the first
    /// connection's write of the same row waits in the callback, and the
    /// events come in the order the statements ran (issue 19).
    #[test]
    fn a_racing_capture_holds_the_write_until_the_other_instance_read_the_row() {
        use crate::race::{RaceSpec, Scheduler};
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
        use std::time::Duration;

        let dir = tempfile::tempdir().expect("temporary directory");
        let scheduler = Arc::new(Scheduler::new(RaceSpec {
            step: "checkout".into(),
            instances: 2,
            timeout: Duration::from_secs(10),
        }));
        let capture = Capture::racing(scheduler.clone());
        let (events, stock) = block_on(async {
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join("race.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let mut a = SqliteConnection::connect_with(&options)
                .await
                .expect("connection a");
            let mut b = SqliteConnection::connect_with(&options)
                .await
                .expect("connection b");
            capture.install_for(&mut a, Some(1)).await.expect("hook a");
            capture.install_for(&mut b, Some(2)).await.expect("hook b");
            a.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
                .await
                .expect("create");
            a.execute("INSERT INTO stock VALUES (7, 4)")
                .await
                .expect("seed");
            capture.step("checkout");
            async fn buy(conn: &mut SqliteConnection, delay: Duration) {
                tokio::time::sleep(delay).await;
                let n: i64 = sqlx::query_scalar("SELECT n FROM stock WHERE id = ?")
                    .bind(7_i64)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("read");
                sqlx::query("UPDATE stock SET n = ? WHERE id = ?")
                    .bind(n - 2)
                    .bind(7_i64)
                    .execute(&mut *conn)
                    .await
                    .expect("write");
            }
            // b reads well after a would have written, were a not held.
            tokio::join!(
                buy(&mut a, Duration::ZERO),
                buy(&mut b, Duration::from_millis(100))
            );
            capture.step("after");
            let stock: i64 = sqlx::query_scalar("SELECT n FROM stock WHERE id = 7")
                .fetch_one(&mut a)
                .await
                .expect("stock");
            a.close().await.expect("close a");
            b.close().await.expect("close b");
            (capture.events(), stock)
        });
        let racing: Vec<(u64, Option<u64>, &str)> = events
            .iter()
            .filter(|e| e.step.as_deref() == Some("checkout"))
            .map(|e| {
                (
                    e.conn.unwrap_or(0),
                    e.instance,
                    e.sql.split(' ').next().unwrap_or_default(),
                )
            })
            .collect();
        // Both reads before either write (which of the two writes is
        // recorded first once the hold ends is up to the threads).
        assert_eq!(racing.len(), 4, "{events:#?}");
        assert_eq!(
            &racing[..2],
            [(1, Some(1), "SELECT"), (2, Some(2), "SELECT")],
            "{events:#?}"
        );
        let mut writes = racing[2..].to_vec();
        writes.sort_unstable();
        assert_eq!(
            writes,
            [(1, Some(1), "UPDATE"), (2, Some(2), "UPDATE")],
            "{events:#?}"
        );
        // Both wrote 4 - 2: one update lost.
        assert_eq!(stock, 2);
        let summary = scheduler.summary();
        assert_eq!(
            (summary.entered, summary.concurrent, summary.held),
            (2, 2, 1)
        );
        assert_eq!(summary.released_by_reads, 1);
        assert!(summary.longest >= Duration::from_millis(50), "{summary:?}");
        // The held write's time is its own, not the hold's.
        let write = events
            .iter()
            .find(|e| e.conn == Some(1) && e.sql.starts_with("UPDATE"))
            .expect("a's write");
        assert!(write.duration_us.is_some_and(|us| us < 50_000), "{write:?}");
    }
}
