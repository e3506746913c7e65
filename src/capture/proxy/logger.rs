//! Messages about connections (a refused handshake, an unreachable server),
//! written by a thread of their own.
//!
//! The relay runs every connection on one thread: a write to a stderr that
//! nobody reads (a pipe whose 64 KiB are full) blocked it, and with it every
//! connection; 763 bad connections froze the proxy for 11 s (issue 15, item
//! 12). Connections hand their lines to a bounded queue without waiting;
//! when it is full the line is dropped and counted, and the count is in the
//! report.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::Log;

/// Lines waiting for the logging thread at most.
pub const LOG_QUEUE: usize = 1024;

/// The logging thread, seen from the end of the run.
#[derive(Debug)]
pub struct LogLines {
    dropped: Arc<AtomicU64>,
    /// Disconnected once the thread has written every line it got.
    done: mpsc::Receiver<()>,
}

/// Starts a thread that writes each line to `out` as `flowaudit: LINE`;
/// returns the [`Log`] that connections call, which never waits.
pub fn log_to(out: impl Write + Send + 'static) -> (Log, LogLines) {
    let (tx, rx) = mpsc::sync_channel::<String>(LOG_QUEUE);
    let (done_tx, done) = mpsc::channel::<()>();
    let dropped = Arc::new(AtomicU64::new(0));
    let mut out = out;
    let spawned = std::thread::Builder::new()
        .name("flowaudit-log".into())
        .spawn(move || {
            let _done = done_tx;
            for line in rx {
                // A closed or failing stderr loses the line, nothing more.
                let _ = writeln!(out, "flowaudit: {line}");
            }
        });
    if spawned.is_err() {
        // Without the thread every line counts as dropped.
        let counter = dropped.clone();
        let log: Log = Arc::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        return (log, LogLines { dropped, done });
    }
    let counter = dropped.clone();
    let log: Log = Arc::new(move |line| {
        if tx.try_send(line).is_err() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (log, LogLines { dropped, done })
}

impl LogLines {
    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `wait` for the thread to write what it holds (every
    /// [`Log`] must be gone for it to end); the lines dropped. A thread
    /// stuck on a stderr nobody reads is left behind.
    pub fn finish(self, wait: Duration) -> u64 {
        let _ = self.done.recv_timeout(wait);
        self.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stderr nobody reads: every write waits until the test ends.
    #[derive(Debug)]
    struct Blocked(mpsc::Receiver<()>);

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_for_a_blocked_output_are_dropped_and_counted_without_waiting() {
        let (unblock, blocked) = mpsc::channel();
        let (log, lines) = log_to(Blocked(blocked));
        let started = std::time::Instant::now();
        for i in 0..10 * LOG_QUEUE {
            log(format!("connection {i}: refused"));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let dropped = lines.dropped();
        // The queue holds LOG_QUEUE, the thread perhaps the one it writes.
        let held = 10 * LOG_QUEUE as u64 - dropped;
        assert!(
            held == LOG_QUEUE as u64 || held == LOG_QUEUE as u64 + 1,
            "{dropped}"
        );
        drop(unblock);
        drop(log);
        assert_eq!(lines.finish(Duration::from_secs(5)), dropped);
    }

    #[test]
    fn lines_are_written_in_order() {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        #[derive(Debug)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (log, lines) = log_to(Shared(buffer.clone()));
        log("one".into());
        log("two".into());
        drop(log);
        assert_eq!(lines.finish(Duration::from_secs(5)), 0);
        assert_eq!(
            String::from_utf8_lossy(&buffer.lock().expect("buffer")),
            "flowaudit: one\nflowaudit: two\n"
        );
    }
}
