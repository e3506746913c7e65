//! What a connection hands the writer thread.
//!
//! Observing a statement (decoding its messages, matching answers to
//! requests, building its event) costs more than relaying its bytes, and on
//! the relay's thread every instruction delays the application's traffic. So
//! by default the relay only cuts the stream into messages, as it must to
//! know where they end, and hands a copy of each chunk's messages over; the
//! writer thread runs the observer ([`Session`]) on them, in the order they
//! crossed, with the time each chunk was read. Measured with
//! `benches/proxy_pgbench.sh`: observing on the relay cost about a tenth of
//! the proxy's throughput, handing over costs a small part of that.
//!
//! With fault injection or step checks the relay has to observe a message
//! before it forwards it; then it hands over finished statements instead
//! ([`Observed::Statement`]).
//!
//! Nothing here waits: when the writer falls behind and the channel is full,
//! the messages are dropped and the statements they asked for are counted.
//! The observer then forgets the requests still waiting for answers (they are
//! counted too) and goes on from the next message ([`Session::gap`]).

use std::time::Instant;

use foldhash::{HashMap, HashMapExt};

use super::frame::Frame;
use super::recorder::{Recorded, Recorder, Stats};
use super::session::Session;

/// One item on the channel to the writer.
#[derive(Debug)]
pub enum Observed {
    /// A statement the relay observed itself.
    Statement(Recorded),
    /// A connection started its session.
    Opened {
        conn: u64,
        application_name: Option<String>,
        at: Instant,
    },
    /// The messages completed by one chunk, encoded by [`push_frame`].
    Messages {
        conn: u64,
        from_client: bool,
        /// When the chunk was read.
        at: Instant,
        /// Messages of this connection were dropped before these.
        gap: bool,
        batch: Vec<u8>,
    },
    /// The connection closed.
    Closed { conn: u64, at: Instant },
}

/// Appends a message to a batch: tag, whether the body was cut, the body's
/// length on the wire (u32), the length kept (u32), the kept bytes.
pub fn push_frame(batch: &mut Vec<u8>, frame: &Frame<'_>) {
    batch.push(frame.tag);
    batch.push(u8::from(frame.truncated));
    batch.extend_from_slice(&(frame.len as u32).to_le_bytes());
    batch.extend_from_slice(&(frame.body.len() as u32).to_le_bytes());
    batch.extend_from_slice(frame.body);
}

/// The messages of a batch, in order.
pub fn frames(mut batch: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    std::iter::from_fn(move || {
        let (head, rest) = batch.split_at_checked(10)?;
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let kept = u32::from_le_bytes([head[6], head[7], head[8], head[9]]) as usize;
        let (body, rest) = rest.split_at_checked(kept)?;
        batch = rest;
        Some(Frame {
            tag: head[0],
            body,
            len,
            truncated: head[1] != 0,
        })
    })
}

/// A connection's end of the hand-off.
#[derive(Debug)]
pub struct Link {
    conn: u64,
    recorder: Recorder,
    /// Something of this connection was dropped since the last delivery.
    gap: bool,
    closed: bool,
}

impl Link {
    pub fn open(
        conn: u64,
        recorder: Recorder,
        application_name: Option<String>,
        at: Instant,
    ) -> Link {
        let opened = Observed::Opened {
            conn,
            application_name,
            at,
        };
        let gap = recorder.hand_over(opened).is_err();
        Link {
            conn,
            recorder,
            gap,
            closed: false,
        }
    }

    /// Hands over the messages of one chunk. When the writer is behind they
    /// are dropped, and the statements they asked for (Query, Execute) are
    /// counted as dropped.
    pub fn send(&mut self, from_client: bool, at: Instant, batch: Vec<u8>) {
        let messages = Observed::Messages {
            conn: self.conn,
            from_client,
            at,
            gap: self.gap,
            batch,
        };
        match self.recorder.hand_over(messages) {
            Ok(()) => self.gap = false,
            Err(Observed::Messages { batch, .. }) => {
                self.gap = true;
                if from_client {
                    let asked = frames(&batch)
                        .filter(|f| matches!(f.tag, b'Q' | b'E'))
                        .count();
                    Stats::add(&self.recorder.stats().dropped, asked as u64);
                }
            }
            Err(_) => self.gap = true,
        }
    }

    pub fn close(&mut self, at: Instant) {
        if !self.closed {
            self.closed = true;
            // When this is dropped the writer closes the session at its end.
            let _ = self.recorder.hand_over(Observed::Closed {
                conn: self.conn,
                at,
            });
        }
    }
}

impl Drop for Link {
    /// A connection aborted (the proxy stopping) still ends its session.
    fn drop(&mut self) {
        self.close(Instant::now());
    }
}

/// The writer's side: one observer per open connection.
#[derive(Debug)]
pub struct Observers {
    sessions: HashMap<u64, Session>,
    stats: std::sync::Arc<Stats>,
}

impl Observers {
    pub fn new(stats: std::sync::Arc<Stats>) -> Self {
        Observers {
            sessions: HashMap::new(),
            stats,
        }
    }

    /// Observes one item; the statements it completes go to `out`.
    pub fn handle(&mut self, item: Observed, out: &mut Vec<Recorded>) {
        match item {
            Observed::Statement(recorded) => out.push(recorded),
            Observed::Opened {
                conn,
                application_name,
                at,
            } => {
                self.sessions
                    .insert(conn, Session::new(conn, application_name, at));
            }
            Observed::Messages {
                conn,
                from_client,
                at,
                gap,
                batch,
            } => {
                let session = self.sessions.entry(conn).or_insert_with(|| {
                    // Its opening was dropped: it starts here, after a gap.
                    let mut session = Session::new(conn, None, at);
                    session.gap();
                    session
                });
                if gap {
                    session.gap();
                }
                session.begin_chunk(at);
                for frame in frames(&batch) {
                    if from_client {
                        session.client_frame(frame);
                    } else {
                        session.server_frame(frame);
                    }
                }
                out.extend(session.take());
            }
            Observed::Closed { conn, at } => {
                if let Some(session) = self.sessions.remove(&conn) {
                    self.end(session, at, out);
                }
            }
        }
    }

    /// Ends the sessions whose close never arrived.
    pub fn finish(&mut self, out: &mut Vec<Recorded>) {
        let now = Instant::now();
        let mut open: Vec<(u64, Session)> = self.sessions.drain().collect();
        open.sort_by_key(|(conn, _)| *conn);
        for (_, session) in open {
            self.end(session, now, out);
        }
    }

    fn end(&self, mut session: Session, at: Instant, out: &mut Vec<Recorded>) {
        session.close(at);
        out.extend(session.take());
        Stats::add(&self.stats.undecoded_frames, session.counts.undecoded);
        Stats::add(&self.stats.dropped, session.counts.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Frame<'_> {
        Frame {
            tag,
            body,
            len: body.len(),
            truncated: false,
        }
    }

    #[test]
    fn a_batch_gives_back_its_messages_in_order_with_cut_bodies_marked() {
        let mut batch = Vec::new();
        push_frame(&mut batch, &frame(b'Q', b"select 1\0"));
        push_frame(
            &mut batch,
            &Frame {
                tag: b'D',
                body: b"",
                len: 1_000_000,
                truncated: true,
            },
        );
        push_frame(&mut batch, &frame(b'Z', b"I"));
        let back: Vec<(u8, Vec<u8>, usize, bool)> = frames(&batch)
            .map(|f| (f.tag, f.body.to_vec(), f.len, f.truncated))
            .collect();
        assert_eq!(
            back,
            vec![
                (b'Q', b"select 1\0".to_vec(), 9, false),
                (b'D', Vec::new(), 1_000_000, true),
                (b'Z', b"I".to_vec(), 1, false),
            ]
        );
        // A batch cut short ends at the last whole message.
        assert_eq!(frames(&batch[..batch.len() - 1]).count(), 2);
    }

    /// The observer on the writer's side records what the relay saw, and a
    /// gap in the middle drops exactly the statement whose answer was lost.
    #[test]
    fn the_writer_observes_handed_over_messages_and_counts_what_a_gap_lost() {
        let stats = std::sync::Arc::new(Stats::default());
        let mut observers = Observers::new(stats.clone());
        let mut out = Vec::new();
        let t0 = Instant::now();
        let batch_of = |frames: &[(u8, &[u8])]| {
            let mut batch = Vec::new();
            for (tag, body) in frames {
                push_frame(&mut batch, &frame(*tag, body));
            }
            batch
        };
        let messages = |from_client: bool, gap: bool, batch: Vec<u8>| Observed::Messages {
            conn: 7,
            from_client,
            at: t0,
            gap,
            batch,
        };
        observers.handle(
            Observed::Opened {
                conn: 7,
                application_name: Some("shop".into()),
                at: t0,
            },
            &mut out,
        );
        observers.handle(
            messages(true, false, batch_of(&[(b'Q', b"select 1\0")])),
            &mut out,
        );
        observers.handle(
            messages(
                false,
                false,
                batch_of(&[(b'C', b"SELECT 1\0"), (b'Z', b"I")]),
            ),
            &mut out,
        );
        // `select 2` is asked, its answer is dropped; `select 3` comes after the gap.
        observers.handle(
            messages(true, false, batch_of(&[(b'Q', b"select 2\0")])),
            &mut out,
        );
        observers.handle(
            messages(true, true, batch_of(&[(b'Q', b"select 3\0")])),
            &mut out,
        );
        observers.handle(
            messages(
                false,
                false,
                batch_of(&[(b'C', b"SELECT 1\0"), (b'Z', b"I")]),
            ),
            &mut out,
        );
        observers.handle(Observed::Closed { conn: 7, at: t0 }, &mut out);
        let got: Vec<(String, Option<String>)> = out
            .into_iter()
            .map(Recorded::into_event)
            .map(|e| (e.sql, e.application_name))
            .collect();
        assert_eq!(
            got,
            vec![
                ("select 1".to_owned(), Some("shop".to_owned())),
                ("select 3".to_owned(), Some("shop".to_owned())),
            ]
        );
        assert_eq!(Stats::get(&stats.dropped), 1, "select 2 is counted");
    }
}
