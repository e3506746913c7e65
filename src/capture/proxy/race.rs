//! Race mode on the relay (`proxy --race STEP`, `run --race STEP`; issue
//! 19): every statement a client is about to send goes to the run's
//! [`Scheduler`] with the step the proxy tracks for it, and a write the
//! scheduler holds waits before the chunk that carries it goes to the server.
//!
//! The step's start is a barrier too: the first statement of the race step of
//! each instance (each application instance with `run`, whose markers count;
//! each connection with `proxy`, whose markers do not, as they may come on a
//! connection of their own) waits until `--race-instances` of them have
//! reached the step, or the race timeout passed; then it stays open.
//! Without it, instances of a short step that start a few milliseconds apart
//! may never be in it at once, and the race would be left to luck.
//!
//! Only in race mode does anything here run; it never reorders a
//! connection's messages (a whole chunk waits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use foldhash::HashSet;

use super::steps::{Check, StepTracker};
use crate::race::{Release, Scheduler};

/// What a connection's latest statements wait for before they go on.
#[derive(Default)]
pub struct Waits(pub Vec<Check>);

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Waits({})", self.0.len())
    }
}

/// Who reaches the race step: an application instance, or, when instances
/// are not known, a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arrival {
    Instance(u64),
    Conn(u64),
}

/// The start of the race: open once every instance has arrived (then it
/// forgets who did, and lets everyone through), or at its timeout.
#[derive(Debug, Default)]
struct Barrier {
    arrived: Mutex<Arrivals>,
    notify: tokio::sync::Notify,
    /// When the first arrival came: the barrier's deadline runs from it.
    first: Mutex<Option<Instant>>,
}

#[derive(Debug, Default)]
struct Arrivals {
    who: HashSet<Arrival>,
    open: bool,
}

/// The race's shared state on the proxy: the scheduler, the steps of every
/// connection, the step's start barrier. One per run, cloned into each
/// connection's observer.
#[derive(Debug, Clone)]
pub struct Race {
    scheduler: Arc<Scheduler>,
    tracker: Arc<Mutex<StepTracker>>,
    barrier: Arc<Barrier>,
    /// Barrier waits that ended at the timeout, not with every instance there.
    barrier_timeouts: Arc<AtomicU64>,
}

impl Race {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        Race {
            scheduler,
            tracker: Arc::default(),
            barrier: Arc::default(),
            barrier_timeouts: Arc::default(),
        }
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// How many starts of the step waited for the other instances until the
    /// timeout (they never came, or came too late).
    pub fn barrier_timeouts(&self) -> u64 {
        self.barrier_timeouts.load(Ordering::Relaxed)
    }

    /// Connection `conn` (of `instance`) is about to send `sql` with
    /// `params`: what must be awaited before the chunk carrying it is written
    /// to the server, if anything.
    pub fn statement(
        &self,
        conn: u64,
        instance: Option<u64>,
        application_name: Option<&str>,
        sql: &str,
        params: &[Option<String>],
    ) -> Vec<Check> {
        let seen = self
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .see_in(conn, instance, sql, application_name);
        let spec = self.scheduler.spec();
        let in_race = seen.step.as_deref() == Some(spec.step.as_str());
        let mut waits = Vec::new();
        let arrival = match instance {
            Some(i) => Some(Arrival::Instance(i)),
            None if !seen.marker => Some(Arrival::Conn(conn)),
            None => None,
        };
        if let Some(arrival) = arrival.filter(|_| in_race)
            && let Some(wait) = self.arrive(arrival)
        {
            waits.push(wait);
        }
        // A marker is attribution, not a statement of the step: it must not
        // count its connection among those running the step.
        let step = if seen.marker {
            None
        } else {
            seen.step.as_deref()
        };
        if let Some(hold) = self.scheduler.before(conn, step, sql, params) {
            let scheduler = self.scheduler.clone();
            waits.push(Box::pin(async move {
                let _: Release = scheduler.wait(&hold).await;
            }));
        }
        waits
    }

    /// `who` reached the race step: a wait for the others, unless it is the
    /// last of them or had arrived before.
    fn arrive(&self, who: Arrival) -> Option<Check> {
        let instances = self.scheduler.spec().instances;
        let deadline = {
            let mut first = self
                .barrier
                .first
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *first.get_or_insert_with(Instant::now) + self.scheduler.spec().timeout
        };
        {
            let mut arrived = self
                .barrier
                .arrived
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if arrived.open || !arrived.who.insert(who) {
                return None;
            }
            if arrived.who.len() >= instances {
                arrived.open = true;
                arrived.who = HashSet::default();
                drop(arrived);
                self.barrier.notify.notify_waiters();
                return None;
            }
        }
        let barrier = self.barrier.clone();
        let timeouts = self.barrier_timeouts.clone();
        Some(Box::pin(async move {
            loop {
                let notified = barrier.notify.notified();
                if barrier
                    .arrived
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .open
                {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let _ = tokio::time::timeout(deadline - now, notified).await;
            }
        }))
    }

    /// The server answered one of `conn`'s statements.
    pub fn answered(&self, conn: u64) {
        self.scheduler.answered(conn);
    }

    /// `conn` closed: the scheduler and the steps forget it.
    pub fn closed(&self, conn: u64) {
        self.scheduler.closed(conn);
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::race::RaceSpec;
    use std::time::Duration;

    fn race(timeout_ms: u64) -> Race {
        Race::new(Arc::new(Scheduler::new(RaceSpec {
            step: "checkout".into(),
            instances: 2,
            timeout: Duration::from_millis(timeout_ms),
        })))
    }

    const READ: &str = "SELECT stock FROM inventory WHERE product_id = $1";
    const WRITE: &str = "UPDATE inventory SET stock = $1 WHERE product_id = $2";

    fn p(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    /// Instance 1's ORM connection follows instance 1's markers, sent on
    /// another connection; its computed write of a row it read waits for
    /// instance 2 to read that row.
    #[tokio::test]
    async fn the_write_of_one_instance_waits_for_the_others_read() {
        let r = race(2000);
        let marker = "SET flowaudit.step = 'checkout'";
        assert!(crate::attribute::parse_marker(marker).is_some());
        // Instance 1 reaches the step first: its marker waits at the barrier.
        let waits = r.statement(10, Some(1), None, marker, &[]);
        assert_eq!(waits.len(), 1);
        let barrier = tokio::spawn(futures_util::future::join_all(waits));
        assert!(r.statement(20, Some(2), None, marker, &[]).is_empty());
        tokio::time::timeout(Duration::from_secs(1), barrier)
            .await
            .expect("the barrier opens when instance 2 arrives")
            .expect("joined");
        assert!(r.statement(11, Some(1), None, READ, &p(&["7"])).is_empty());
        r.answered(11);
        let mut held = r.statement(11, Some(1), None, WRITE, &p(&["8", "7"]));
        assert_eq!(held.len(), 1, "held until instance 2 reads product 7");
        let wait = held.pop().expect("one");
        let waiting = tokio::spawn(wait);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        assert!(r.statement(21, Some(2), None, READ, &p(&["7"])).is_empty());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !waiting.is_finished(),
            "instance 2's read is not answered yet"
        );
        r.answered(21);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released by the read")
            .expect("joined");
        let summary = r.scheduler().summary();
        assert_eq!((summary.entered, summary.held), (2, 1));
        assert_eq!(summary.released_by_reads, 1);
        assert_eq!(r.barrier_timeouts(), 0);
    }

    /// Without instances, markers do not count as arrivals (they may come
    /// on a connection of their own); a start nobody joins ends at the
    /// timeout, and says so.
    #[tokio::test]
    async fn a_lone_start_waits_until_the_timeout() {
        let r = race(50);
        assert!(
            r.statement(1, None, None, "SET flowaudit.step = 'checkout'", &[])
                .is_empty()
        );
        let waits = r.statement(2, None, None, READ, &p(&["7"]));
        assert_eq!(waits.len(), 1);
        let started = Instant::now();
        futures_util::future::join_all(waits).await;
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(r.barrier_timeouts(), 1);
        assert!(!r.scheduler().summary().raced());
    }
}
