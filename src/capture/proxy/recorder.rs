//! Hands recorded statements to the writer without ever making the relay wait.
//!
//! Connections put events into a bounded channel with `try_send`; one writer
//! thread takes them out, streams them to the trace file and through the audit.
//! When the writer falls behind and the channel is full, the event is dropped
//! and counted: the count is in the report, and forwarding never slows down.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::model::Event;

/// Events waiting for the writer at most; about 20 MB of typical statements.
pub const CHANNEL_CAPACITY: usize = 32 * 1024;

/// How long the writer sleeps when it finds nothing to write: at 100,000
/// statements a second, 200 arrive meanwhile, far below the capacity.
const POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Counters shared by the relay and the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub recorded: AtomicU64,
    pub dropped: AtomicU64,
    pub undecoded_frames: AtomicU64,
    pub refused: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A connection's handle on the channel.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
}

impl Recorder {
    pub fn record(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => Stats::add(&self.stats.recorded, 1),
            Err(_) => Stats::add(&self.stats.dropped, 1),
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Where the writer sends each event after the trace file.
pub trait Sink: Send + 'static {
    fn event(&mut self, event: Event);
}

/// The writer thread and the first handle on its channel.
#[derive(Debug)]
pub struct Writer<S> {
    thread: std::thread::JoinHandle<Result<S, std::io::Error>>,
}

/// Starts the writer: every event goes to `trace` (when given) as one JSON
/// line, then to `sink`. Returns the recorder connections clone.
pub fn start<S: Sink>(
    trace: Option<Box<dyn Write + Send>>,
    mut sink: S,
    stats: Arc<Stats>,
) -> (Recorder, Writer<S>) {
    let (tx, mut rx) = mpsc::channel::<Event>(CHANNEL_CAPACITY);
    let thread = std::thread::Builder::new()
        .name("flowaudit-writer".into())
        .spawn(move || {
            let mut trace =
                trace.map(|w| crate::trace::TraceWriter::new(std::io::BufWriter::new(w)));
            // Polled rather than awaited: a waiting receiver would make every
            // connection wake this thread for every statement, a system call
            // each; polling lets the statements pile up and go in batches.
            loop {
                match rx.try_recv() {
                    Ok(event) => {
                        if let Some(t) = trace.as_mut() {
                            t.write(&event)?;
                        }
                        sink.event(event);
                    }
                    Err(TryRecvError::Empty) => std::thread::sleep(POLL),
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            if let Some(mut t) = trace {
                t.flush()?;
            }
            Ok(sink)
        })
        .expect("the writer thread starts");
    (Recorder { tx, stats }, Writer { thread })
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

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_instead_of_blocking() {
        let (go_tx, go) = std_mpsc::channel();
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(None, Stuck { go, seen: 0 }, stats.clone());
        let total = CHANNEL_CAPACITY as u64 + 500;
        let started = std::time::Instant::now();
        for i in 0..total {
            recorder.record(Event {
                sql: format!("select {i}"),
                ..Event::default()
            });
        }
        // Recording never waited for the stuck writer.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let dropped = Stats::get(&stats.dropped);
        let recorded = Stats::get(&stats.recorded);
        assert_eq!(recorded + dropped, total);
        assert!(dropped >= 499, "dropped {dropped}");
        go_tx.send(()).expect("release the writer");
        drop(recorder);
        let sink = writer.finish().expect("writer");
        assert_eq!(
            sink.seen, recorded,
            "every event not dropped reached the sink"
        );
    }
}
