//! What connections hand the writer thread.
//!
//! Observing a statement (decoding its messages, matching answers to
//! requests, building its event) costs more than relaying its bytes, and on
//! the relay's thread every instruction delays the application's traffic. So
//! by default the relay only cuts the stream into messages, as it must to
//! know where they end, and appends a copy of them to one [`Outbox`] that
//! all connections share, in the order they crossed and with the time each
//! chunk was read. Every few milliseconds, or once it holds
//! [`FLUSH_AT`] bytes, the outbox goes to the writer thread as one batch,
//! and the writer runs the observers ([`Session`]) on it. A batch is one
//! allocation and one channel message for hundreds of statements, and
//! nothing the relay touches per chunk is shared with the writer's core.
//! Measured under `pgbench -S -M prepared -c 8`: observing on the relay took
//! 11.4k instructions per transaction there (callgrind) and 3.2 µs of user
//! time; handing over takes 6.4k (5.4k with each direction in its own task)
//! and 1.8–1.9 µs. A relay that observed nothing at all ran at 0.94×
//! PgBouncer, which bounds what any hand-off can reach.
//!
//! With fault injection or step checks the relay has to observe a message
//! before it forwards it; then it hands over finished statements instead
//! ([`super::recorder::Recorder::record`]).
//!
//! Nothing here waits: when the writer falls behind and its channel is full,
//! the batch is dropped and the statements it asked for are counted. Each
//! connection in it then has a gap: its observer forgets the requests still
//! waiting for answers (counted too) and goes on from the next message
//! ([`Session::gap`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::frame::{Frame, FrameDecoder};
use super::recorder::{Recorded, Recorder, Stats};
use super::session::Session;

/// The outbox goes to the writer once it holds this many bytes.
pub const FLUSH_AT: usize = 32 * 1024;

/// And at the latest this long after its last hand-over.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);

const OPENED: u8 = b'O';
const FROM_CLIENT: u8 = b'>';
const FROM_SERVER: u8 = b'<';
const CLOSED: u8 = b'X';

/// Record flags.
const GAP: u8 = 1;
const HAS_NAME: u8 = 2;
/// On a close: the proxy was stopping.
const BY_STOP: u8 = 4;

/// Kind, flags, connection (u64), time since the epoch in ns (u64), payload
/// length (u32).
const HEADER: usize = 22;

/// The relay's side, shared by its connections.
#[derive(Debug)]
pub struct Outbox {
    recorder: Recorder,
    buf: Vec<u8>,
    /// Connections whose records were dropped since their last delivery.
    gapped: HashSet<u64>,
}

pub type SharedOutbox = Arc<Mutex<Outbox>>;

impl Outbox {
    pub fn shared(recorder: Recorder) -> SharedOutbox {
        Arc::new(Mutex::new(Outbox {
            recorder,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            gapped: HashSet::new(),
        }))
    }

    /// Starts a record; returns where its payload starts.
    fn begin(&mut self, kind: u8, mut flags: u8, conn: u64, at: Instant) -> usize {
        if !self.gapped.is_empty() && self.gapped.remove(&conn) {
            flags |= GAP;
        }
        let since = at.saturating_duration_since(self.recorder.epoch());
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        self.buf.push(kind);
        self.buf.push(flags);
        self.buf.extend_from_slice(&conn.to_le_bytes());
        self.buf.extend_from_slice(&nanos.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.len()
    }

    /// Ends the record whose payload starts at `start`.
    fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start - 4..start].copy_from_slice(&len.to_le_bytes());
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    pub fn opened(&mut self, conn: u64, application_name: Option<&str>, at: Instant) {
        let flags = if application_name.is_some() {
            HAS_NAME
        } else {
            0
        };
        let start = self.begin(OPENED, flags, conn, at);
        self.buf
            .extend_from_slice(application_name.unwrap_or("").as_bytes());
        self.end(start);
    }

    /// Appends the messages that `chunk` completes, as `decoder` cuts them.
    pub fn messages(
        &mut self,
        conn: u64,
        from_client: bool,
        at: Instant,
        decoder: &mut FrameDecoder,
        chunk: &[u8],
    ) {
        let kind = if from_client {
            FROM_CLIENT
        } else {
            FROM_SERVER
        };
        let mark = self.buf.len();
        let gapped = !self.gapped.is_empty() && self.gapped.contains(&conn);
        let start = self.begin(kind, 0, conn, at);
        decoder.feed(chunk, |f| push_frame(&mut self.buf, &f));
        if self.buf.len() == start {
            // The chunk completed no message: no record.
            self.buf.truncate(mark);
            if gapped {
                self.gapped.insert(conn);
            }
            return;
        }
        self.end(start);
    }

    pub fn closed(&mut self, conn: u64, at: Instant) {
        let flags = if self.recorder.stats().stopping() {
            BY_STOP
        } else {
            0
        };
        let start = self.begin(CLOSED, flags, conn, at);
        self.end(start);
    }

    /// Hands the records over; when the writer is behind, drops them and
    /// counts the statements they asked for.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(FLUSH_AT + 4096));
        if let Err(batch) = self.recorder.hand_over(batch) {
            let mut asked = 0u64;
            for record in records(&batch) {
                match record.kind {
                    FROM_CLIENT => {
                        asked += frames(record.payload)
                            .filter(|f| matches!(f.tag, b'Q' | b'E'))
                            .count() as u64;
                        self.gapped.insert(record.conn);
                    }
                    CLOSED => {
                        self.gapped.remove(&record.conn);
                    }
                    _ => {
                        self.gapped.insert(record.conn);
                    }
                }
            }
            Stats::add(&self.recorder.stats().dropped, asked);
        }
    }
}

/// Appends a message to a record: tag, whether the body was cut, the body's
/// length on the wire (u32), the length kept (u32), the kept bytes.
pub fn push_frame(buf: &mut Vec<u8>, frame: &Frame<'_>) {
    buf.push(frame.tag);
    buf.push(u8::from(frame.truncated));
    buf.extend_from_slice(&(frame.len as u32).to_le_bytes());
    buf.extend_from_slice(&(frame.body.len() as u32).to_le_bytes());
    buf.extend_from_slice(frame.body);
}

/// The messages of a record, in order.
pub fn frames(mut payload: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    std::iter::from_fn(move || {
        let (head, rest) = payload.split_at_checked(10)?;
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let kept = u32::from_le_bytes([head[6], head[7], head[8], head[9]]) as usize;
        let (body, rest) = rest.split_at_checked(kept)?;
        payload = rest;
        Some(Frame {
            tag: head[0],
            body,
            len,
            truncated: head[1] != 0,
        })
    })
}

/// One record of a batch.
#[derive(Debug)]
struct Record<'a> {
    kind: u8,
    flags: u8,
    conn: u64,
    nanos: u64,
    payload: &'a [u8],
}

fn records(mut batch: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (head, rest) = batch.split_at_checked(HEADER)?;
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let len = u32::from_le_bytes([head[18], head[19], head[20], head[21]]) as usize;
        let (payload, rest) = rest.split_at_checked(len)?;
        batch = rest;
        Some(Record {
            kind: head[0],
            flags: head[1],
            conn: u64_at(2),
            nanos: u64_at(10),
            payload,
        })
    })
}

/// A connection's place in the outbox; ends its session when dropped, also
/// when the connection is aborted.
#[derive(Debug)]
pub struct Link {
    conn: u64,
    outbox: SharedOutbox,
}

impl Link {
    pub fn open(
        conn: u64,
        outbox: SharedOutbox,
        application_name: Option<&str>,
        at: Instant,
    ) -> Link {
        lock(&outbox).opened(conn, application_name, at);
        Link { conn, outbox }
    }

    /// Appends the messages a chunk completes.
    pub fn messages(&self, from_client: bool, decoder: &mut FrameDecoder, chunk: &[u8]) {
        if decoder.lost_sync() {
            return;
        }
        let at = Instant::now();
        lock(&self.outbox).messages(self.conn, from_client, at, decoder, chunk);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        lock(&self.outbox).closed(self.conn, Instant::now());
    }
}

pub fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    // A panic while appending must not stop the relay: take the state as it is.
    outbox
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer's side: one observer per open connection.
#[derive(Debug)]
pub struct Observers {
    sessions: HashMap<u64, Session>,
    /// Connections that closed, each with the number of statements of `out`
    /// (see [`Self::handle`]) before its close: what the audit kept for
    /// them can go once those are written.
    pub closed: Vec<(usize, u64)>,
    stats: Arc<Stats>,
    epoch: Instant,
}

impl Observers {
    pub fn new(stats: Arc<Stats>, epoch: Instant) -> Self {
        Observers {
            sessions: HashMap::new(),
            closed: Vec::new(),
            stats,
            epoch,
        }
    }

    /// Observes the records of one batch; the statements they complete go
    /// to `out`.
    pub fn handle(&mut self, batch: &[u8], out: &mut Vec<Recorded>) {
        for record in records(batch) {
            let at = self.epoch + Duration::from_nanos(record.nanos);
            let conn = record.conn;
            match record.kind {
                OPENED => {
                    let name = (record.flags & HAS_NAME != 0)
                        .then(|| String::from_utf8_lossy(record.payload).into_owned());
                    let mut session = Session::new(conn, name, at);
                    if record.flags & GAP != 0 {
                        session.gap();
                    }
                    if let Some(old) = self.sessions.insert(conn, session) {
                        self.end(old, at, false, out);
                        self.closed.push((out.len(), conn));
                    }
                }
                FROM_CLIENT | FROM_SERVER => {
                    let session = self.sessions.entry(conn).or_insert_with(|| {
                        // Its opening was dropped: it starts here, after a gap.
                        let mut session = Session::new(conn, None, at);
                        session.gap();
                        session
                    });
                    if record.flags & GAP != 0 {
                        session.gap();
                    }
                    session.begin_chunk(at);
                    for frame in frames(record.payload) {
                        if record.kind == FROM_CLIENT {
                            session.client_frame(frame);
                        } else {
                            session.server_frame(frame);
                        }
                    }
                    out.extend(session.take());
                }
                CLOSED => {
                    if let Some(session) = self.sessions.remove(&conn) {
                        self.end(session, at, record.flags & BY_STOP != 0, out);
                        self.closed.push((out.len(), conn));
                    }
                }
                _ => {}
            }
        }
    }

    /// Ends the sessions whose close never arrived (it was dropped).
    pub fn finish(&mut self, out: &mut Vec<Recorded>) {
        let now = Instant::now();
        let mut open: Vec<(u64, Session)> = self.sessions.drain().collect();
        open.sort_by_key(|(conn, _)| *conn);
        let by_stop = self.stats.stopping();
        for (_, session) in open {
            self.end(session, now, by_stop, out);
        }
    }

    fn end(&self, mut session: Session, at: Instant, by_stop: bool, out: &mut Vec<Recorded>) {
        session.close(at, by_stop);
        out.extend(session.take());
        Stats::add(&self.stats.undecoded_frames, session.counts.undecoded);
        Stats::add(&self.stats.dropped, session.counts.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::proxy::frame::{skip_client, skip_server};
    use crate::capture::proxy::recorder::{Sink, start};
    use crate::model::Event;

    fn frame(tag: u8, body: &[u8]) -> Frame<'_> {
        Frame {
            tag,
            body,
            len: body.len(),
            truncated: false,
        }
    }

    fn wire(messages: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, body) in messages {
            out.push(*tag);
            out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
            out.extend_from_slice(body);
        }
        out
    }

    #[derive(Debug, Default)]
    struct Collect(Vec<Event>);

    impl Sink for Collect {
        fn event(&mut self, event: Event) {
            self.0.push(event);
        }
    }

    #[test]
    fn a_record_gives_back_its_messages_in_order_with_cut_bodies_marked() {
        let mut payload = Vec::new();
        push_frame(&mut payload, &frame(b'Q', b"select 1\0"));
        push_frame(
            &mut payload,
            &Frame {
                tag: b'D',
                body: b"",
                len: 1_000_000,
                truncated: true,
            },
        );
        push_frame(&mut payload, &frame(b'Z', b"I"));
        let back: Vec<(u8, Vec<u8>, usize, bool)> = frames(&payload)
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
        // A payload cut short ends at the last whole message.
        assert_eq!(frames(&payload[..payload.len() - 1]).count(), 2);
    }

    /// Two connections interleaved through the outbox and the writer come
    /// out as the relay saw them, with the application_name of the startup.
    #[test]
    fn connections_handed_over_are_observed_by_the_writer_in_order() {
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(None, Collect::default(), stats.clone());
        let outbox = Outbox::shared(recorder);
        let t0 = Instant::now();
        {
            let a = Link::open(1, outbox.clone(), Some("shop"), t0);
            let b = Link::open(2, outbox.clone(), None, t0);
            let (mut a_up, mut a_down) =
                (FrameDecoder::new(|_| false), FrameDecoder::new(skip_server));
            let (mut b_up, mut b_down) =
                (FrameDecoder::new(|_| false), FrameDecoder::new(skip_server));
            let query = |sql: &str| wire(&[(b'Q', format!("{sql}\0").as_bytes())]);
            let answer = wire(&[
                (b'D', b"\0\x01\0\0\0\x011"),
                (b'C', b"SELECT 1\0"),
                (b'Z', b"I"),
            ]);
            a.messages(true, &mut a_up, &query("select 'a1'"));
            b.messages(true, &mut b_up, &query("select 'b1'"));
            // A chunk cut inside a message: the record comes with the rest.
            b.messages(false, &mut b_down, &answer[..3]);
            b.messages(false, &mut b_down, &answer[3..]);
            a.messages(false, &mut a_down, &answer);
            a.messages(true, &mut a_up, &query("select 'a2'"));
            // Connection a goes before its answer comes: recorded as cut off.
        }
        lock(&outbox).flush();
        drop(outbox);
        let events = writer.finish().expect("writer").0;
        // sql, rows, application_name, SQLSTATE
        type Seen = (String, Option<u64>, Option<String>, Option<String>);
        let got: Vec<Seen> = events
            .into_iter()
            .map(|e| (e.sql, e.rows, e.application_name, e.error.map(|x| x.code)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("select 'b1'".into(), Some(1), None, None),
                ("select 'a1'".into(), Some(1), Some("shop".into()), None),
                (
                    "select 'a2'".into(),
                    None,
                    Some("shop".into()),
                    Some("08006".into())
                ),
            ]
        );
        assert_eq!(Stats::get(&stats.recorded), 3);
        assert_eq!(Stats::get(&stats.dropped), 0);
    }

    /// Issue 15: what a client sends to authenticate (PasswordMessage,
    /// SASLInitialResponse and SASLResponse, all tagged `p`), the server's
    /// authentication requests and its cancel key are forwarded only: not a
    /// byte of them is copied into the outbox the writer reads, also when a
    /// chunk ends inside one, and the observer does not count them as
    /// undecoded.
    #[test]
    fn authentication_messages_are_forwarded_not_copied_for_the_writer() {
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(None, Collect::default(), stats.clone());
        let outbox = Outbox::shared(recorder);
        let secret = b"hunter2-cleartext";
        let mut password = secret.to_vec();
        password.push(0);
        let mut sasl_initial = b"SCRAM-SHA-256\0\0\0\0\x2an,,n=,r=hunter2-cleartext-nonce".to_vec();
        sasl_initial.push(0);
        let sasl_response = b"c=biws,r=nonce,p=hunter2-cleartext-proof";
        let up_stream = wire(&[
            (b'p', &password),
            (b'p', &sasl_initial),
            (b'p', sasl_response),
            (b'Q', b"select 1\0"),
        ]);
        // AuthenticationSASLFinal: the server's signature, and what the
        // client's proof is checked with, are as good as the password to
        // test guesses against.
        let down_stream = wire(&[
            (b'R', b"\0\0\0\x0cv=hunter2-cleartext-signature"),
            // BackendKeyData: process id and the key that cancels its queries.
            (b'K', b"\0\0\x30\x39hunter2-cancel-key"),
            (b'C', b"SELECT 1\0"),
            (b'Z', b"I"),
        ]);
        let held = {
            let link = Link::open(1, outbox.clone(), None, Instant::now());
            let mut up = FrameDecoder::new(skip_client);
            let mut down = FrameDecoder::new(skip_server);
            // Cut inside the first message's body and inside the second's.
            for chunk in [&up_stream[..9], &up_stream[9..30], &up_stream[30..]] {
                link.messages(true, &mut up, chunk);
            }
            link.messages(false, &mut down, &down_stream);
            lock(&outbox).buf.clone()
        };
        assert!(
            !held.windows(7).any(|w| w == b"hunter2"),
            "an authentication message was copied for the writer"
        );
        assert!(held.windows(8).any(|w| w == b"select 1"));
        let tags: Vec<(u8, usize, bool)> = records(&held)
            .filter(|r| r.kind == FROM_CLIENT)
            .flat_map(|r| frames(r.payload).map(|f| (f.tag, f.body.len(), f.truncated)))
            .collect();
        assert_eq!(
            tags,
            vec![
                (b'p', 0, true),
                (b'p', 0, true),
                (b'p', 0, true),
                (b'Q', 9, false)
            ]
        );
        lock(&outbox).flush();
        drop(outbox);
        let events = writer.finish().expect("writer").0;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].sql, "select 1");
        assert_eq!(Stats::get(&stats.undecoded_frames), 0);
    }

    /// A sink that holds the writer until told to go on.
    #[derive(Debug)]
    struct Stuck {
        go: std::sync::mpsc::Receiver<()>,
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

    /// With the writer stuck, the relay goes on: batches that do not fit are
    /// dropped, their statements counted, and the rest are recorded whole.
    #[test]
    fn a_stuck_writer_makes_the_outbox_drop_and_count_never_wait() {
        let (go_tx, go) = std::sync::mpsc::channel();
        let stats = Arc::new(Stats::default());
        let (recorder, writer) = start(None, Stuck { go, seen: 0 }, stats.clone());
        let outbox = Outbox::shared(recorder);
        let total = crate::capture::proxy::recorder::BATCH_CAPACITY as u64 + 300;
        let started = Instant::now();
        {
            let link = Link::open(1, outbox.clone(), None, Instant::now());
            let (mut up, mut down) = (FrameDecoder::new(|_| false), FrameDecoder::new(skip_server));
            let answer = wire(&[(b'C', b"SELECT 1\0"), (b'Z', b"I")]);
            for i in 0..total {
                link.messages(
                    true,
                    &mut up,
                    &wire(&[(b'Q', format!("select {i}\0").as_bytes())]),
                );
                link.messages(false, &mut down, &answer);
                lock(&outbox).flush();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        let dropped = Stats::get(&stats.dropped);
        assert!(dropped >= 290, "dropped {dropped}");
        go_tx.send(()).expect("release the writer");
        lock(&outbox).flush();
        drop(outbox);
        let sink = writer.finish().expect("writer");
        let recorded = Stats::get(&stats.recorded);
        assert_eq!(recorded + Stats::get(&stats.dropped), total);
        assert_eq!(sink.seen, recorded);
    }

    /// A gap drops exactly the statement whose answer was lost, and the
    /// observer goes on with the next one.
    #[test]
    fn after_a_gap_the_observer_counts_what_it_lost_and_goes_on() {
        let stats = Arc::new(Stats::default());
        let epoch = Instant::now();
        let mut observers = Observers::new(stats.clone(), epoch);
        let mut batch = Vec::new();
        let mut record = |kind: u8, flags: u8, messages: &[(u8, &[u8])]| {
            batch.push(kind);
            batch.push(flags);
            batch.extend_from_slice(&7u64.to_le_bytes());
            batch.extend_from_slice(&0u64.to_le_bytes());
            let mut payload = Vec::new();
            for (tag, body) in messages {
                push_frame(&mut payload, &frame(*tag, body));
            }
            batch.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            batch.extend_from_slice(&payload);
        };
        let answer: &[(u8, &[u8])] = &[(b'C', b"SELECT 1\0"), (b'Z', b"I")];
        record(OPENED, 0, &[]);
        record(FROM_CLIENT, 0, &[(b'Q', b"select 1\0")]);
        record(FROM_SERVER, 0, answer);
        // `select 2` is asked, its answer is lost; `select 3` comes after the gap.
        record(FROM_CLIENT, 0, &[(b'Q', b"select 2\0")]);
        record(FROM_CLIENT, GAP, &[(b'Q', b"select 3\0")]);
        record(FROM_SERVER, 0, answer);
        record(CLOSED, 0, &[]);
        let mut out = Vec::new();
        observers.handle(&batch, &mut out);
        let got: Vec<String> = out.into_iter().map(|r| r.into_event().sql).collect();
        assert_eq!(got, vec!["select 1".to_owned(), "select 3".to_owned()]);
        assert_eq!(Stats::get(&stats.dropped), 1, "select 2 is counted");
    }
}
