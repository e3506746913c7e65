//! Hands what connections observed to the writer without ever making the
//! relay wait.
//!
//! Connections put their messages (or finished statements, see
//! [`super::handoff`]) into a bounded channel with `try_send`; one writer
//! thread takes them out, observes them, streams the events to the trace file
//! and through the audit. When the writer falls behind and the channel is
//! full, what did not fit is dropped and counted: the count is in the report,
//! and forwarding never slows down.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::handoff::Observers;
use crate::model::{Event, SqlError, TxnStatus};

/// Statements waiting for the writer at most; about 20 MB of typical
/// statements.
pub const CHANNEL_CAPACITY: usize = 32 * 1024;

/// Batches of messages waiting for the writer at most (see
/// [`super::handoff`]): at about [`super::handoff::FLUSH_AT`] bytes each,
/// some 10 MB.
pub const BATCH_CAPACITY: usize = 256;

/// Bytes waiting for the writer at most, statements and batches together.
/// The counts above bound the queue for typical statements; this bounds it
/// whatever their size: 256 batches of one 8 MB statement each were 2 GB
/// (issue 15, item 8). What does not fit is dropped and counted.
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of trace the writer gathers before it writes them to the file.
const TRACE_BUFFER: usize = 1024 * 1024;

/// The trace reaches its file at least this often, and at every step
/// marker: a proxy killed outright (SIGKILL, the machine's OOM killer, a CI
/// job's timeout) leaves what it recorded up to a second before, not an
/// empty file (issue 15, item 15).
pub const TRACE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long the writer sleeps when it finds nothing to write: at 100,000
/// statements a second, 200 arrive meanwhile, far below the capacity.
const POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// A statement as a connection observed it, cheap to make: its texts are
/// shared with the observer's prepared statements and portals, its time is
/// the raw clock reading. The writer turns it into an [`Event`], so that
/// copying the texts, formatting the time and freeing it all happen on the
/// writer's thread, also when the relay observes (faults, step checks).
#[derive(Debug)]
pub struct Recorded {
    pub sql: Arc<str>,
    pub params: Option<Arc<Vec<Option<String>>>>,
    pub started: SystemTime,
    pub duration_us: u64,
    pub conn: u64,
    /// The transaction status the statement started in.
    pub txn: TxnStatus,
    pub rows: Option<u64>,
    pub error: Option<SqlError>,
    pub application_name: Option<Arc<str>>,
    /// On a connection's first statement: the time spent connecting.
    pub connect_us: Option<u64>,
    /// Still running when the proxy's stop closed its connection.
    pub cut_by_stop: bool,
    /// The application instance that sent it, when known.
    pub instance: Option<u64>,
    /// The trace's `source`: `proxy` (PostgreSQL) or `mysql-proxy`.
    pub source: &'static str,
}

impl Recorded {
    /// About what it takes in memory, for the queue's budget.
    fn size(&self) -> usize {
        let params = self.params.as_ref().map_or(0, |p| {
            p.iter()
                .map(|v| 24 + v.as_ref().map_or(0, String::len))
                .sum()
        });
        size_of::<Recorded>()
            + self.sql.len()
            + params
            + self.error.as_ref().map_or(0, |e| e.message.len())
    }

    pub fn into_event(self) -> Event {
        Event {
            sql: String::from(&*self.sql),
            params: self
                .params
                .map(|p| Arc::try_unwrap(p).unwrap_or_else(|shared| shared.as_ref().clone()))
                .filter(|p| !p.is_empty()),
            ts: Some(crate::date::rfc3339(self.started)),
            conn: Some(self.conn),
            txn: Some(self.txn),
            rows: self.rows,
            duration_us: Some(self.duration_us),
            error: self.error,
            source: Some(self.source.into()),
            application_name: self.application_name.map(|a| String::from(&*a)),
            connect_us: self.connect_us,
            cut_by_stop: self.cut_by_stop,
            instance: self.instance,
            ..Event::default()
        }
    }
}

/// Counters shared by the relay and the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub recorded: AtomicU64,
    pub dropped: AtomicU64,
    pub undecoded_frames: AtomicU64,
    pub refused: AtomicU64,
    /// The proxy was told to stop: a connection that closes from now on
    /// with a statement still running was cut off by the stop.
    pub stopping: AtomicBool,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// A connection's handle on the channel.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Recorded>,
    batches: mpsc::Sender<Vec<u8>>,
    /// Bytes in the two channels (see [`QUEUE_BYTES`]).
    queued: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    /// The instant batch times count from.
    epoch: Instant,
}

impl Recorder {
    /// Hands over a statement the relay observed itself; counts it dropped
    /// when the writer is behind.
    pub fn record(&self, event: Recorded) {
        let size = event.size();
        if !self.reserve(size) || self.tx.try_send(event).is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            Stats::add(&self.stats.dropped, 1);
        }
    }

    /// Hands over a batch of messages, or gives it back when the writer is
    /// behind.
    pub fn hand_over(&self, batch: Vec<u8>) -> Result<(), Vec<u8>> {
        let size = batch.capacity();
        if !self.reserve(size) {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return Err(batch);
        }
        self.batches.try_send(batch).map_err(|e| {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            e.into_inner()
        })
    }

    /// Counts `size` bytes into the queue; false when they do not fit (they
    /// are counted all the same: the caller takes them out).
    fn reserve(&self, size: usize) -> bool {
        self.queued.fetch_add(size, Ordering::Relaxed) + size <= QUEUE_BYTES
    }

    /// Bytes waiting for the writer.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Where the writer sends each event after the trace file.
pub trait Sink: Send + 'static {
    fn event(&mut self, event: Event);

    /// Connection `conn` closed: every statement of it went to [`Self::event`].
    fn connection_closed(&mut self, conn: u64) {
        let _ = conn;
    }

    /// How the trace file shows bind values (`--params`).
    fn params(&self) -> crate::redact::ParamsMode {
        crate::redact::ParamsMode::Keep
    }
}

/// The writer thread and the first handle on its channel.
#[derive(Debug)]
pub struct Writer<S> {
    thread: std::thread::JoinHandle<Result<S, std::io::Error>>,
}

/// Starts the writer: it observes what connections hand over, and every
/// statement goes to `trace` (when given) as one JSON line, then to `sink`.
/// Returns the recorder connections clone.
pub fn start<S: Sink>(
    trace: Option<Box<dyn Write + Send>>,
    mut sink: S,
    stats: Arc<Stats>,
) -> (Recorder, Writer<S>) {
    let (tx, mut rx) = mpsc::channel::<Recorded>(CHANNEL_CAPACITY);
    let (batches, mut batch_rx) = mpsc::channel::<Vec<u8>>(BATCH_CAPACITY);
    let epoch = Instant::now();
    let counts = stats.clone();
    let queued = Arc::new(AtomicUsize::new(0));
    let taken = queued.clone();
    let thread = std::thread::Builder::new()
        .name("flowaudit-writer".into())
        .spawn(move || {
            // A large buffer: each write to the file costs the kernel the same
            // whatever its size (measured: 8 KB writes were a quarter of
            // this thread's time).
            let mut trace = trace.map(|w| {
                crate::trace::TraceWriter::new(std::io::BufWriter::with_capacity(TRACE_BUFFER, w))
                    .with_params(sink.params())
            });
            let mut observers = Observers::new(counts.clone(), epoch);
            let mut done = Vec::new();
            // Whether the trace has lines not yet in the file, and since when.
            let (mut unflushed, mut flushed_at) = (false, Instant::now());
            let mut write = |done: &mut Vec<Recorded>,
                             closed: &mut Vec<(usize, u64)>|
             -> Result<(), std::io::Error> {
                let mut step_ended = false;
                // Each close after the statements that came before it.
                let mut closed = closed.drain(..).peekable();
                for (i, recorded) in done.drain(..).enumerate() {
                    while let Some((_, conn)) = closed.next_if(|&(before, _)| before <= i) {
                        sink.connection_closed(conn);
                    }
                    let event = recorded.into_event();
                    if let Some(t) = trace.as_mut() {
                        t.write(&event)?;
                        unflushed = true;
                        step_ended |= crate::attribute::parse_marker(&event.sql).is_some();
                    }
                    sink.event(event);
                    Stats::add(&counts.recorded, 1);
                }
                for (_, conn) in closed {
                    sink.connection_closed(conn);
                }
                if unflushed && (step_ended || flushed_at.elapsed() >= TRACE_FLUSH_EVERY) {
                    if let Some(t) = trace.as_mut() {
                        t.flush()?;
                    }
                    (unflushed, flushed_at) = (false, Instant::now());
                }
                Ok(())
            };
            // Polled rather than awaited: a waiting receiver would make every
            // connection wake this thread for every statement, a system call
            // each; polling lets the statements pile up and go in batches.
            let (mut batches_open, mut statements_open) = (true, true);
            loop {
                let mut idle = true;
                match batch_rx.try_recv() {
                    Ok(batch) => {
                        idle = false;
                        observers.handle(&batch, &mut done);
                        taken.fetch_sub(batch.capacity(), Ordering::Relaxed);
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => batches_open = false,
                }
                match rx.try_recv() {
                    Ok(recorded) => {
                        idle = false;
                        taken.fetch_sub(recorded.size(), Ordering::Relaxed);
                        done.push(recorded);
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => statements_open = false,
                }
                write(&mut done, &mut observers.closed)?;
                if idle {
                    if !batches_open && !statements_open {
                        break;
                    }
                    std::thread::sleep(POLL);
                }
            }
            observers.finish(&mut done);
            write(&mut done, &mut observers.closed)?;
            if let Some(mut t) = trace {
                t.flush()?;
            }
            Ok(sink)
        })
        .expect("the writer thread starts");
    (
        Recorder {
            tx,
            batches,
            queued,
            stats,
            epoch,
        },
        Writer { thread },
    )
}

impl<S> Writer<S> {
    /// Waits until every recorder is dropped and the writer has written all it
    /// received; returns the sink.
    pub fn finish(self) -> Result<S, std::io::Error> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the trace writer panicked")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;

    /// A sink that holds the writer until told to go on.
    #[derive(Debug)]
    struct Stuck {
        go: std_mpsc::Receiver<()>,
        seen: u64,
    }

    impl Sink for Stuck {
        fn event(&mut self, _: Event) {
            if self.seen == 0 {
                let _ = self.go.recv();
            }
            self.seen += 1;
        }
    }

    /// What reached the file: a `Write` shared with the test.
    #[derive(Debug, Clone, Default)]
    struct File(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for File {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("file").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Discard;

    impl Sink for Discard {
        fn event(&mut self, _: Event) {}
    }

    /// Issue 15, item 15: a step marker sends the trace to the file at
    /// once (and else it goes at least every second), not at the end only.
    #[test]
    fn the_trace_reaches_the_file_at_each_step_marker() {
        let file = File::default();
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(Some(Box::new(file.clone())), Discard, stats);
        recorder.record(statement(Arc::from("select 'before the step'")));
        recorder.record(statement(Arc::from("SET flowaudit.step = 'next'")));
        let written = || String::from_utf8_lossy(&file.0.lock().expect("file")).into_owned();
        let deadline = Instant::now() + std::time::Duration::from_millis(800);
        while !written().contains("flowaudit.step") && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let text = written();
        assert!(text.contains("'before the step'"), "{text:?}");
        assert!(text.contains("flowaudit.step"), "{text:?}");
        drop(recorder);
        writer.finish().expect("writer");
    }

    fn statement(sql: Arc<str>) -> Recorded {
        Recorded {
            sql,
            params: None,
            started: SystemTime::now(),
            duration_us: 0,
            conn: 1,
            txn: TxnStatus::Idle,
            rows: None,
            error: None,
            application_name: None,
            connect_us: None,
            cut_by_stop: false,
            instance: None,
            source: "proxy",
        }
    }

    /// Issue 15, item 8: with the writer stuck, 8 MB statements and 8 MB
    /// batches fill the queue up to its budget in bytes, not up to its
    /// counts (256 batches were 2 GB); the rest is dropped and counted.
    #[test]
    fn the_writers_queue_is_bounded_in_bytes() {
        let (go_tx, go) = std_mpsc::channel();
        let (seen_tx, seen) = std_mpsc::channel();
        let stats = Arc::new(Stats::default());
        let stalling = Stalling {
            go,
            seen: Some(seen_tx),
        };
        let (recorder, writer) = start(None, stalling, stats.clone());
        recorder.record(statement(Arc::from("select 'first'")));
        seen.recv().expect("the writer holds the first statement");
        const MB8: usize = 8 * 1024 * 1024;
        let big: Arc<str> = Arc::from("x".repeat(MB8));
        let total = 64;
        for _ in 0..total {
            recorder.record(statement(big.clone()));
        }
        let dropped = Stats::get(&stats.dropped);
        assert!(recorder.queued() <= QUEUE_BYTES, "{}", recorder.queued());
        assert!(
            dropped >= total - (QUEUE_BYTES / MB8) as u64,
            "{dropped} of {total} dropped"
        );
        // Batches: zeroed memory is not touched until read.
        let mut refused = 0;
        for _ in 0..total {
            if recorder.hand_over(vec![0u8; MB8]).is_err() {
                refused += 1;
            }
        }
        assert!(recorder.queued() <= QUEUE_BYTES, "{}", recorder.queued());
        assert!(refused >= total - (QUEUE_BYTES / MB8) as u64, "{refused}");
        go_tx.send(()).expect("release the writer");
        drop(recorder);
        let sink = writer.finish().expect("writer");
        let recorded = Stats::get(&stats.recorded);
        assert_eq!(recorded + dropped, total + 1);
        drop(sink);
    }

    /// A sink that says when it got its first event and holds the writer
    /// there until told to go on.
    #[derive(Debug)]
    struct Stalling {
        go: std_mpsc::Receiver<()>,
        seen: Option<std_mpsc::Sender<()>>,
    }

    impl Sink for Stalling {
        fn event(&mut self, _: Event) {
            if let Some(seen) = self.seen.take() {
                let _ = seen.send(());
                let _ = self.go.recv();
            }
        }
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_instead_of_blocking() {
        let (go_tx, go) = std_mpsc::channel();
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(None, Stuck { go, seen: 0 }, stats.clone());
        let total = CHANNEL_CAPACITY as u64 + 500;
        let started = Instant::now();
        for i in 0..total {
            recorder.record(Recorded {
                sql: Arc::from(format!("select {i}")),
                params: None,
                started: SystemTime::now(),
                duration_us: 0,
                conn: 1,
                txn: TxnStatus::Idle,
                rows: None,
                error: None,
                application_name: None,
                connect_us: None,
                cut_by_stop: false,
                instance: None,
                source: "proxy",
            });
        }
        // Recording never waited for the stuck writer.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let dropped = Stats::get(&stats.dropped);
        assert!(dropped >= 499, "dropped {dropped}");
        go_tx.send(()).expect("release the writer");
        drop(recorder);
        let sink = writer.finish().expect("writer");
        let recorded = Stats::get(&stats.recorded);
        assert_eq!(recorded + dropped, total);
        assert_eq!(
            sink.seen, recorded,
            "every event not dropped reached the sink"
        );
    }
}
