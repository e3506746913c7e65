//! Race mode (`--race STEP`): several instances of one step run at once, and
//! flowaudit makes them interleave in the order that loses updates, on
//! purpose, the way `--inject-fault` makes a statement fail on purpose.
//!
//! The [`Scheduler`] sees every statement of the run before it goes to the
//! database (the proxy's relay, or the demo's SQLite hook) with the step it
//! belongs to. When a connection in the race step reads a row by key without
//! a lock (`SELECT … WHERE id = ?`, no `FOR UPDATE`) and is later about to
//! write the same row by key to a value it computed (`UPDATE … SET stock = ?
//! WHERE id = ?`), its write is held until every other instance of the step
//! has read that row too. Then each instance writes a value computed from the
//! same old one, and all but the last write are lost; the `lost-update` rule
//! shows it from the trace, the data invariants from the data.
//!
//! A hold ends, whichever comes first:
//!
//! - **reads**: the other instances (`--race-instances` − 1 connections
//!   besides the holder) have read the row, with or without a lock, and
//!   the database has answered those reads;
//! - **lock wait**: every other connection in the step that has not read the
//!   row is itself held (and its own hold is not over), or has had a
//!   statement at the database for longer than [`LOCK_WAIT`] (waiting for a
//!   lock the holder has, most likely: a `FOR UPDATE` doing its job), so
//!   that holding on would deadlock;
//! - **timeout**: `--race-timeout` (2 s by default) passed: the others never
//!   came, and the report says so.
//!
//! Only writes are held, and only the holder's: a connection's own messages
//! are never reordered. Outside race mode nothing here runs.
//!
//! State is per connection (the rows it read in the step, cleared when it
//! leaves the step or closes) and per row read in the step: bounded by what
//! the live step instances read.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};

use crate::rules::units::{ValueRef, keyed_read, keyed_write};

/// How long a hold lasts at most unless told otherwise (`--race-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many instances of the step race unless told otherwise
/// (`--race-instances`).
pub const DEFAULT_INSTANCES: usize = 2;
/// A statement at the database for longer than this, while another
/// connection's write is held, is taken as waiting for a lock. Well above
/// what a COMMIT takes on a loaded machine: at 50 ms, the other instance's
/// statements (a COMMIT waiting for its fsync on a busy 2-core machine) ended
/// holds 12 ms in as lock waits, before that instance read the row, and the
/// race of the row was lost (tests/race_proxy.rs, issue 19).
pub const LOCK_WAIT: Duration = Duration::from_millis(250);
/// Statement texts whose keyed reading is remembered (parsing is the costly
/// part); past it, texts are parsed every time.
const PARSED_CAP: usize = 4096;
/// Rows a connection's reads are remembered for within one step.
const READS_CAP: usize = 4096;

/// What to race.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceSpec {
    /// The step whose instances race.
    pub step: String,
    /// How many instances must have read a row before a held write of it
    /// goes on (2 or more).
    pub instances: usize,
    /// The longest a write is held.
    pub timeout: Duration,
}

impl RaceSpec {
    pub fn new(step: impl Into<String>) -> Self {
        RaceSpec {
            step: step.into(),
            instances: DEFAULT_INSTANCES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A row named by key: its table and `column = value` pairs, sorted by
/// column. Shown as `products(id = 7)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    pub table: String,
    pub keys: Vec<(String, String)>,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(", self.table)?;
        for (i, (col, value)) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{col} = {value}")?;
        }
        f.write_str(")")
    }
}

/// What a statement does to a row, as far as racing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A SELECT of one row by key; `locked` with `FOR UPDATE`/`FOR SHARE`.
    Read { row: Row, locked: bool },
    /// An UPDATE by key to values computed by the application (no column on
    /// the right side of any assignment).
    Write { row: Row },
    /// Anything else.
    Other,
}

/// The table and key of a keyed statement, with its bind values in place.
/// `None` when a key's value is unknown (a parameter past `params`, NULL).
fn row_of(keyed: &crate::rules::units::Keyed, params: &[Option<String>]) -> Option<Row> {
    let mut keys = keyed
        .keys
        .iter()
        .map(|(col, value)| {
            let value = match value {
                ValueRef::Param(i) => params.get(*i)?.clone()?,
                ValueRef::Literal(text) => text.clone(),
            };
            Some((col.rsplit('.').next().unwrap_or(col).to_owned(), value))
        })
        .collect::<Option<Vec<_>>>()?;
    keys.sort();
    let table = keyed
        .table
        .rsplit('.')
        .next()
        .unwrap_or(&keyed.table)
        .to_owned();
    Some(Row { table, keys })
}

/// The parsed shape of a statement text, with its values still to bind.
#[derive(Debug, Clone)]
enum Shape {
    Read(crate::rules::units::KeyedRead),
    Write(crate::rules::units::KeyedWrite),
    Other,
}

fn shape(sql: &str) -> Shape {
    if let Some(read) = keyed_read(sql) {
        return Shape::Read(read);
    }
    match keyed_write(sql) {
        Some(write) if write.absolute => Shape::Write(write),
        _ => Shape::Other,
    }
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The other instances read the row.
    Reads,
    /// The others were held or waiting at the database (a lock wait).
    LockWait,
    /// Every instance came to the step, and none of the others is still in
    /// it without having read the row: nobody is left to wait for (they
    /// finished the step, or closed, before this write).
    Gone,
    /// The timeout passed first.
    Timeout,
}

/// A write held back: wait for it with [`Scheduler::wait_blocking`] or
/// [`Scheduler::wait`] before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub conn: u64,
    pub row: Row,
    pub deadline: Instant,
    started: Instant,
}

/// What the race did, for the report's notes and the checks after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaceSummary {
    /// Connections that ran statements of the step.
    pub entered: usize,
    /// The most connections in the step at one time.
    pub concurrent: usize,
    /// Writes held, and how their holds ended.
    pub held: u64,
    pub released_by_reads: u64,
    pub released_by_gone: u64,
    pub released_by_lock_wait: u64,
    pub released_by_timeout: u64,
    /// The longest hold.
    pub longest: Duration,
}

impl RaceSummary {
    /// One line for the report's notes.
    pub fn note(&self, spec: &RaceSpec) -> String {
        format!(
            "race on step {}: {} connection(s) ran it, at most {} at once; {} write(s) held \
             until the other instances read their row ({} released by their reads, {} as no \
             other instance was left in the step, {} by a lock wait in the database, {} by the \
             {} s timeout; longest hold {} ms)",
            spec.step,
            self.entered,
            self.concurrent,
            self.held,
            self.released_by_reads,
            self.released_by_gone,
            self.released_by_lock_wait,
            self.released_by_timeout,
            spec.timeout.as_secs_f64(),
            self.longest.as_millis()
        )
    }

    /// The step never ran in more than one instance at once: the race did
    /// not happen, and a report would say nothing about it.
    pub fn raced(&self) -> bool {
        self.concurrent >= 2
    }
}

#[derive(Debug, Default)]
struct ConnState {
    in_step: bool,
    /// Rows this connection read in the step without a lock.
    unlocked_reads: HashSet<Row>,
    /// When its statement went to the database, until answered.
    at_database: Option<Instant>,
    /// The row its statement at the database reads, until answered: a read
    /// not yet answered may still see the held write, once released.
    reading: Option<Row>,
    /// The row of its write being held.
    held: Option<Row>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<u64, ConnState>,
    /// Per row read in the step: the connections that read it (any lock).
    readers: HashMap<Row, HashSet<u64>>,
    parsed: HashMap<String, Shape>,
    in_step: usize,
    summary: RaceSummary,
}

/// The race's shared state. One per run; every connection's observer holds
/// it (behind an `Arc`).
#[derive(Debug)]
pub struct Scheduler {
    spec: RaceSpec,
    /// How long a statement at the database counts as a lock wait
    /// ([`LOCK_WAIT`] unless [`Scheduler::with_lock_wait`] says otherwise).
    lock_wait: Duration,
    state: Mutex<State>,
    changed: Condvar,
    notify: tokio::sync::Notify,
}

impl Scheduler {
    pub fn new(spec: RaceSpec) -> Self {
        Scheduler {
            spec,
            lock_wait: LOCK_WAIT,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Takes a statement at the database for longer than `lock_wait` as
    /// waiting for a lock. For a database that reports its lock waits only
    /// as time (SQLite's busy handler) where a statement can take long
    /// without waiting for a lock (a busy machine), a longer wait than
    /// [`LOCK_WAIT`] keeps a slow statement from ending a hold too early.
    pub fn with_lock_wait(mut self, lock_wait: Duration) -> Self {
        self.lock_wait = lock_wait;
        self
    }

    pub fn spec(&self) -> &RaceSpec {
        &self.spec
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.changed.notify_all();
        self.notify.notify_waiters();
    }

    /// What `sql` with `params` does to a row.
    pub fn access(&self, sql: &str, params: &[Option<String>]) -> Access {
        let shape = {
            let mut state = self.lock();
            match state.parsed.get(sql) {
                Some(shape) => shape.clone(),
                None => {
                    let shape = shape(sql);
                    if state.parsed.len() < PARSED_CAP {
                        state.parsed.insert(sql.to_owned(), shape.clone());
                    }
                    shape
                }
            }
        };
        match shape {
            Shape::Read(read) => match row_of(&read.keyed, params) {
                Some(row) => Access::Read {
                    row,
                    locked: read.locked,
                },
                None => Access::Other,
            },
            Shape::Write(write) => match row_of(&write.keyed, params) {
                Some(row) => Access::Write { row },
                None => Access::Other,
            },
            Shape::Other => Access::Other,
        }
    }

    /// Connection `conn` is about to send `sql` (with `params`), a statement
    /// of `step` (`None`: not known to be in any). Returns the hold to wait
    /// for when it is a write that must wait; otherwise the statement goes
    /// on at once (and counts as at the database until [`Self::answered`]).
    pub fn before(
        &self,
        conn: u64,
        step: Option<&str>,
        sql: &str,
        params: &[Option<String>],
    ) -> Option<Hold> {
        let racing = step == Some(self.spec.step.as_str());
        let access = if racing {
            self.access(sql, params)
        } else {
            Access::Other
        };
        let now = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let c = state.conns.entry(conn).or_default();
        if racing != c.in_step {
            c.in_step = racing;
            if racing {
                state.in_step += 1;
                state.summary.entered += 1;
                state.summary.concurrent = state.summary.concurrent.max(state.in_step);
            } else {
                state.in_step -= 1;
                let rows: Vec<Row> = c.unlocked_reads.drain().collect();
                forget_reader(&mut state.readers, conn, rows);
            }
        }
        let hold = match access {
            Access::Read { row, locked } => {
                if !locked && c.unlocked_reads.len() < READS_CAP {
                    c.unlocked_reads.insert(row.clone());
                }
                c.reading = Some(row.clone());
                let readers = state.readers.entry(row).or_default();
                readers.insert(conn);
                None
            }
            Access::Write { row } if c.unlocked_reads.contains(&row) => {
                let others = read_by_others(state, &row, conn);
                (others + 1 < self.spec.instances).then(|| Hold {
                    conn,
                    row,
                    deadline: now + self.spec.timeout,
                    started: now,
                })
            }
            _ => None,
        };
        let c = state.conns.entry(conn).or_default();
        match &hold {
            Some(h) => {
                c.held = Some(h.row.clone());
                state.summary.held += 1;
            }
            None => c.at_database = Some(now),
        }
        drop(guard);
        self.wake();
        hold
    }

    /// The database answered `conn`'s statement.
    pub fn answered(&self, conn: u64) {
        if let Some(c) = self.lock().conns.get_mut(&conn) {
            c.at_database = None;
            c.reading = None;
        }
        self.wake();
    }

    /// `conn` closed: it is in no step any more.
    pub fn closed(&self, conn: u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(c) = state.conns.remove(&conn) {
            if c.in_step {
                state.in_step -= 1;
            }
            forget_reader(
                &mut state.readers,
                conn,
                c.unlocked_reads.into_iter().collect(),
            );
            // Its locked reads, too.
            state.readers.retain(|_, readers| {
                readers.remove(&conn);
                !readers.is_empty()
            });
        }
        drop(guard);
        self.wake();
    }

    /// Whether `hold` may end now, and why.
    fn check(&self, hold: &Hold, now: Instant) -> Option<Release> {
        let state = self.lock();
        let readers = state.readers.get(&hold.row);
        let others = read_by_others(&state, &hold.row, hold.conn);
        if others + 1 >= self.spec.instances {
            return Some(Release::Reads);
        }
        // The connections in the step that have not read the row: each
        // held, or at the database for a while (a lock wait), and at least
        // enough of them to make up the instances: holding on would wait for
        // each other.
        let mut stuck = 0;
        for (id, c) in &state.conns {
            let has_read =
                readers.is_some_and(|r| r.contains(id)) && c.reading.as_ref() != Some(&hold.row);
            if *id == hold.conn || !c.in_step || has_read {
                continue;
            }
            // A hold that the reads already end is no wait: its thread has
            // not yet woken to see it.
            let held = c
                .held
                .as_ref()
                .is_some_and(|row| read_by_others(&state, row, *id) + 1 < self.spec.instances);
            let waiting = held || c.at_database.is_some_and(|at| now - at >= self.lock_wait);
            if !waiting {
                return (now >= hold.deadline).then_some(Release::Timeout);
            }
            stuck += 1;
        }
        if stuck > 0 && others + stuck + 1 >= self.spec.instances {
            return Some(Release::LockWait);
        }
        if stuck == 0 && state.summary.entered >= self.spec.instances {
            // Every instance came, and no other is in the step unread: the
            // others finished it (or closed) before this write.
            return Some(Release::Gone);
        }
        (now >= hold.deadline).then_some(Release::Timeout)
    }

    fn release(&self, hold: &Hold, how: Release) -> Release {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(c) = state.conns.get_mut(&hold.conn) {
            c.held = None;
            c.at_database = Some(now);
        }
        let s = &mut state.summary;
        match how {
            Release::Reads => s.released_by_reads += 1,
            Release::Gone => s.released_by_gone += 1,
            Release::LockWait => s.released_by_lock_wait += 1,
            Release::Timeout => s.released_by_timeout += 1,
        }
        s.longest = s.longest.max(now - hold.started);
        drop(state);
        self.wake();
        how
    }

    /// Waits on this thread until `hold` may end (the demo's SQLite hook).
    pub fn wait_blocking(&self, hold: &Hold) -> Release {
        loop {
            let now = Instant::now();
            if let Some(how) = self.check(hold, now) {
                return self.release(hold, how);
            }
            // Woken by any change; a lock wait shows by time passing.
            let next = hold.deadline.min(now + self.lock_wait.min(LOCK_WAIT) / 5);
            let state = self.lock();
            let _ = self
                .changed
                .wait_timeout(state, next.saturating_duration_since(now));
        }
    }

    /// Waits until `hold` may end (the proxy's relay).
    pub async fn wait(&self, hold: &Hold) -> Release {
        loop {
            let now = Instant::now();
            if let Some(how) = self.check(hold, now) {
                return self.release(hold, how);
            }
            let next = hold.deadline.min(now + self.lock_wait.min(LOCK_WAIT) / 5);
            let notified = self.notify.notified();
            let _ = tokio::time::timeout(next.saturating_duration_since(now), notified).await;
        }
    }

    /// What the race did so far.
    pub fn summary(&self) -> RaceSummary {
        self.lock().summary.clone()
    }
}

/// The connections other than `conn` that read `row` in the step and have
/// had the answer: a read still at the database is not yet a read of the old
/// value, as the held write, released, could reach the row before it.
fn read_by_others(state: &State, row: &Row, conn: u64) -> usize {
    state.readers.get(row).map_or(0, |readers| {
        readers
            .iter()
            .filter(|id| {
                **id != conn
                    && state
                        .conns
                        .get(id)
                        .is_none_or(|c| c.reading.as_ref() != Some(row))
            })
            .count()
    })
}

fn forget_reader(readers: &mut HashMap<Row, HashSet<u64>>, conn: u64, rows: Vec<Row>) {
    for row in rows {
        if let Some(r) = readers.get_mut(&row) {
            r.remove(&conn);
            if r.is_empty() {
                readers.remove(&row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const READ: &str = "SELECT stock FROM products WHERE id = $1";
    const WRITE: &str = "UPDATE products SET stock = $1 WHERE id = $2";

    fn p(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    fn scheduler() -> Arc<Scheduler> {
        Arc::new(Scheduler::new(RaceSpec {
            step: "checkout".into(),
            instances: 2,
            timeout: Duration::from_secs(2),
        }))
    }

    #[test]
    fn rows_are_named_by_table_and_sorted_keys() {
        let s = scheduler();
        let Access::Read { row, locked } = s.access(
            "SELECT * FROM public.stock WHERE stock.b = ? AND a = 'x'",
            &p(&["2"]),
        ) else {
            panic!("a keyed read");
        };
        assert!(!locked);
        assert_eq!(row.to_string(), "stock(a = x, b = 2)");
        assert!(matches!(
            s.access(
                "UPDATE products SET stock = stock - $1 WHERE id = $2",
                &p(&["1", "7"])
            ),
            Access::Other
        ));
        assert!(matches!(
            s.access(WRITE, &p(&["8", "7"])),
            Access::Write { .. }
        ));
    }

    #[test]
    fn a_write_waits_for_the_other_instance_to_read_its_row() {
        let s = scheduler();
        assert!(s.before(1, Some("checkout"), READ, &p(&["7"])).is_none());
        s.answered(1);
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held: the other instance has not read product 7");
        assert_eq!(hold.row.to_string(), "products(id = 7)");
        let other = s.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            assert!(
                other
                    .before(2, Some("checkout"), READ, &p(&["7"]))
                    .is_none()
            );
            other.answered(2);
        });
        assert_eq!(s.wait_blocking(&hold), Release::Reads);
        reader.join().expect("reader");
        // The second instance's write goes at once: the first read the row.
        assert!(
            s.before(2, Some("checkout"), WRITE, &p(&["8", "7"]))
                .is_none()
        );
        let summary = s.summary();
        assert_eq!(
            (summary.entered, summary.concurrent, summary.held),
            (2, 2, 1)
        );
        assert_eq!(summary.released_by_reads, 1);
        assert!(summary.raced());
    }

    #[test]
    fn locked_reads_other_rows_and_other_steps_are_not_held() {
        let s = scheduler();
        s.before(
            1,
            Some("checkout"),
            &format!("{READ} FOR UPDATE"),
            &p(&["7"]),
        );
        assert!(
            s.before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
                .is_none()
        );
        s.before(1, Some("checkout"), READ, &p(&["8"]));
        assert!(
            s.before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
                .is_none()
        );
        s.before(3, Some("browse"), READ, &p(&["9"]));
        assert!(
            s.before(3, Some("browse"), WRITE, &p(&["1", "9"]))
                .is_none()
        );
        assert_eq!(s.summary().held, 0);
    }

    #[test]
    fn a_hold_ends_at_the_timeout_when_nobody_comes() {
        let s = Scheduler::new(RaceSpec {
            step: "checkout".into(),
            instances: 2,
            timeout: Duration::from_millis(40),
        });
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        assert_eq!(s.wait_blocking(&hold), Release::Timeout);
        let summary = s.summary();
        assert_eq!(summary.released_by_timeout, 1);
        assert!(!summary.raced(), "only one connection ran the step");
    }

    /// The other instance finished the step (or closed) before this write:
    /// nobody is left to wait for.
    #[test]
    fn a_hold_ends_when_no_other_instance_is_left_in_the_step() {
        let s = scheduler();
        s.before(2, Some("checkout"), "SELECT 1", &[]);
        s.answered(2);
        s.before(2, Some("browse"), "SELECT 1", &[]);
        s.answered(2);
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.answered(1);
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        let started = Instant::now();
        assert_eq!(s.wait_blocking(&hold), Release::Gone);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(s.summary().released_by_gone, 1);
    }

    /// The other instance is blocked in the database (on a lock the holder
    /// has): the hold ends rather than deadlock.
    #[test]
    fn a_lock_wait_in_the_database_ends_the_hold() {
        let s = scheduler();
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.before(
            2,
            Some("checkout"),
            "UPDATE carts SET n = $1 WHERE id = $2",
            &p(&["1", "3"]),
        );
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        let started = Instant::now();
        assert_eq!(s.wait_blocking(&hold), Release::LockWait);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// The scheduler sees a read before the database runs it: the held
    /// write goes on once the read is answered, not when it is sent, or it
    /// could run first and the read would see its value.
    #[test]
    fn a_hold_ends_when_the_others_read_is_answered() {
        let s = scheduler();
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.answered(1);
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        s.before(2, Some("checkout"), READ, &p(&["7"]));
        assert_eq!(s.check(&hold, Instant::now()), None, "read sent, not done");
        let other = s.clone();
        let answer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            other.answered(2);
        });
        let started = Instant::now();
        assert_eq!(s.wait_blocking(&hold), Release::Reads);
        assert!(started.elapsed() >= Duration::from_millis(25));
        answer.join().expect("answered");
        // A second write by a reader whose read is still at the database
        // waits too.
        s.before(3, Some("checkout"), READ, &p(&["19"]));
        s.answered(3);
        s.before(2, Some("checkout"), READ, &p(&["19"]));
        assert!(
            s.before(3, Some("checkout"), WRITE, &p(&["8", "19"]))
                .is_some()
        );
    }

    /// A holder whose hold the reads have ended, but whose thread has not
    /// yet woken to go on, is not waiting: another hold does not end for it
    /// as if the two waited for each other.
    #[test]
    fn a_hold_already_over_is_not_a_lock_wait() {
        let s = scheduler();
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.answered(1);
        let first = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        s.before(2, Some("checkout"), READ, &p(&["7"]));
        s.answered(2);
        s.before(2, Some("checkout"), WRITE, &p(&["8", "7"]));
        s.answered(2);
        s.before(2, Some("checkout"), READ, &p(&["19"]));
        s.answered(2);
        let second = s
            .before(2, Some("checkout"), WRITE, &p(&["8", "19"]))
            .expect("held: connection 1 has not read product 19");
        // Connection 1 is still marked held, its hold over (2 read 7).
        assert_eq!(s.check(&first, Instant::now()), Some(Release::Reads));
        assert_eq!(s.check(&second, Instant::now()), None);
        assert_eq!(s.wait_blocking(&first), Release::Reads);
        s.answered(1);
        s.before(1, Some("checkout"), READ, &p(&["19"]));
        s.answered(1);
        assert_eq!(s.wait_blocking(&second), Release::Reads);
    }

    /// A longer lock wait: a slow statement of the other instance (a busy
    /// machine) does not end the hold; the other's read does.
    #[test]
    fn a_slow_statement_is_no_lock_wait_when_told_to_wait_longer() {
        let s = Arc::new(
            Scheduler::new(RaceSpec {
                step: "checkout".into(),
                instances: 2,
                timeout: Duration::from_secs(5),
            })
            .with_lock_wait(Duration::from_secs(1)),
        );
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.before(
            2,
            Some("checkout"),
            "UPDATE carts SET n = $1 WHERE id = $2",
            &p(&["1", "3"]),
        );
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        let other = s.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            other.answered(2);
            other.before(2, Some("checkout"), READ, &p(&["7"]));
            other.answered(2);
        });
        let started = Instant::now();
        assert_eq!(s.wait_blocking(&hold), Release::Reads);
        assert!(started.elapsed() >= Duration::from_millis(140));
        reader.join().expect("reader");
    }

    /// Two holders, each waiting for the other to read a row it will not
    /// read before its own write goes: both end at once.
    #[test]
    fn two_holds_waiting_for_each_other_end() {
        let s = scheduler();
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        s.before(2, Some("checkout"), READ, &p(&["19"]));
        let a = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        let b = s
            .before(2, Some("checkout"), WRITE, &p(&["8", "19"]))
            .expect("held");
        let other = s.clone();
        let t = std::thread::spawn(move || other.wait_blocking(&b));
        assert_eq!(s.wait_blocking(&a), Release::LockWait);
        assert_eq!(t.join().expect("joined"), Release::LockWait);
    }

    #[tokio::test]
    async fn the_async_wait_is_woken_by_the_read() {
        let s = scheduler();
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        let hold = s
            .before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
            .expect("held");
        let other = s.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            other.before(2, Some("checkout"), READ, &p(&["7"]));
            tokio::time::sleep(Duration::from_millis(20)).await;
            other.answered(2);
        });
        assert_eq!(s.wait(&hold).await, Release::Reads);
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "the read's answer ends the hold, not the read being sent"
        );
    }

    #[test]
    fn leaving_the_step_or_closing_forgets_the_reads() {
        let s = scheduler();
        s.before(2, Some("checkout"), READ, &p(&["7"]));
        s.before(2, Some("browse"), READ, &p(&["7"]));
        s.closed(2);
        s.before(1, Some("checkout"), READ, &p(&["7"]));
        assert!(
            s.before(1, Some("checkout"), WRITE, &p(&["8", "7"]))
                .is_some(),
            "connection 2's read ended with its step"
        );
        assert!(s.lock().readers.values().all(|r| !r.contains(&2)));
    }
}
