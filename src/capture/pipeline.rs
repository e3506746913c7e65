//! Reading and auditing on two threads: one reads a server log (its lines,
//! their prefixes, messages and parameters) or a trace (its JSON) into
//! events, the other audits them, so that `analyze` uses two cores where
//! there are two. The events are allocated on one thread and freed on the
//! other, which the global allocator (mimalloc, see `main.rs`) handles
//! without a slow path: with the system allocator the hand-over made traces
//! slower to read than on one thread.
//!
//! The reader hands its events over in batches through a bounded channel:
//! per event, a channel costs more than the work it would move, and the
//! bound keeps memory at a few batches whatever the file's size. The events
//! arrive in the order they were read, and the reader's result (its summary,
//! or the error that stopped it) comes after every event read before it, so
//! that a malformed line ends the run exactly as on one thread: the events
//! before it audited, the same message.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::model::Event;

/// Events a batch holds: enough that the channel's cost per batch is small
/// against the batch's work, few enough that a batch is a few hundred KB.
pub const BATCH: usize = 1024;

/// Batches in flight: the reader may run this far ahead of the audit.
const DEPTH: usize = 4;

/// What the reader hands over, in the order it read it.
// An event moves by value inside a batch, which is allocated once and reused:
// boxing it to make the rare close smaller would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item {
    /// An event and the line of the input it was read at, when the reader
    /// knows.
    Event(Event, Option<u64>),
    /// A connection the input saw end, after its last event: what the audit
    /// keeps for it can go.
    Closed(u64),
}

type Read = Item;

/// The reader's end of the channel.
#[derive(Debug)]
pub struct Feed {
    tx: SyncSender<Vec<Read>>,
    /// Emptied batches the audit sends back, so that batches are allocated
    /// once, not once per [`BATCH`] events.
    spare: Receiver<Vec<Read>>,
    batch: Vec<Read>,
    /// The audit has stopped (it panicked): reading on is of no use.
    closed: bool,
}

impl Feed {
    /// Hands an event or a close to the audit. `false` when the audit is
    /// gone and the reader should stop.
    pub fn push(&mut self, item: Item) -> bool {
        self.batch.push(item);
        if self.batch.len() >= BATCH {
            self.flush();
        }
        !self.closed
    }

    fn flush(&mut self) {
        if self.batch.is_empty() || self.closed {
            return;
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        if self.tx.send(full).is_err() {
            self.closed = true;
        }
    }
}

/// Runs `read` on a thread of its own and `audit` on this one, on each item
/// `read` pushes to its [`Feed`], in order. Returns what `read` returned,
/// once every event it pushed has been audited. A panic on either side is
/// passed on.
pub fn run<T, E>(
    read: impl FnOnce(&mut Feed) -> Result<T, E> + Send,
    mut audit: impl FnMut(Item),
) -> Result<T, E>
where
    T: Send,
    E: Send,
{
    std::thread::scope(|scope| {
        // Made inside the scope: a panic of the audit drops the receiver, so
        // that the reader's next send fails instead of waiting forever.
        let (tx, rx) = sync_channel::<Vec<Read>>(DEPTH);
        let (spare_tx, spare_rx) = sync_channel::<Vec<Read>>(DEPTH + 1);
        let reader = std::thread::Builder::new()
            .name("read".to_owned())
            .spawn_scoped(scope, move || {
                let mut feed = Feed {
                    tx,
                    spare: spare_rx,
                    batch: Vec::with_capacity(BATCH),
                    closed: false,
                };
                let result = read(&mut feed);
                feed.flush();
                result
            });
        let reader = match reader {
            Ok(handle) => handle,
            // No thread to be had: the reader's work would have to wait for
            // memory anyway; say so as the panic it would be on one thread.
            Err(e) => panic!("cannot start the reading thread: {e}"),
        };
        // Ends when the reader has returned and dropped its sender.
        for mut batch in rx.iter() {
            for item in batch.drain(..) {
                audit(item);
            }
            let _ = spare_tx.try_send(batch);
        }
        match reader.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Item {
        let event = Event {
            sql: format!("select {n}"),
            ..Event::default()
        };
        Item::Event(event, Some(n as u64 + 1))
    }

    /// What the audit side saw, as text: `select N@line` or `closed N`.
    fn seen(item: Item) -> String {
        match item {
            Item::Event(e, line) => format!("{}@{}", e.sql, line.unwrap_or(0)),
            Item::Closed(conn) => format!("closed {conn}"),
        }
    }

    #[test]
    fn events_and_closes_arrive_in_order_then_the_result() {
        let total = 3 * BATCH + 7;
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let result: Result<&str, ()> = run(
            |feed| {
                for n in 0..total {
                    assert!(feed.push(event(n)));
                    if n % 100 == 0 {
                        assert!(feed.push(Item::Closed(n as u64)));
                    }
                }
                Ok("done")
            },
            |item| got.push(seen(item)),
        );
        for n in 0..total {
            expected.push(format!("select {n}@{}", n + 1));
            if n % 100 == 0 {
                expected.push(format!("closed {n}"));
            }
        }
        assert_eq!(result, Ok("done"));
        assert_eq!(got, expected);
    }

    #[test]
    fn an_error_comes_after_every_event_read_before_it() {
        let mut seen = 0;
        let result: Result<(), String> = run(
            |feed| {
                for n in 0..BATCH + 3 {
                    feed.push(event(n));
                }
                Err("line 1028: malformed".to_owned())
            },
            |_| seen += 1,
        );
        assert_eq!(result, Err("line 1028: malformed".to_owned()));
        assert_eq!(seen, BATCH + 3);
    }
}
