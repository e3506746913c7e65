//! The MySQL / MariaDB wire-protocol proxy, beside the PostgreSQL one and
//! of the same shape: the application connects to flowaudit, flowaudit
//! relays every byte to the real server over one upstream connection per
//! client (no pooling, so every authentication method passes through
//! untouched) and records each statement from copies of the packets.
//!
//! - `packet`: cuts each direction's bytes into packets, whatever the
//!   chunks, and joins the parts of a payload of 16 MB or more;
//! - `messages`: reads the payloads the observer needs (greeting,
//!   handshake response, commands, OK / ERR / EOF);
//! - `session`: matches answers to commands and builds the events;
//! - `values`: the binary parameters of prepared statements in text form;
//! - this file: the handshake, then the relay, observing on it.
//!
//! The accept loop, the listeners, the trace writer, the step checks and
//! the race are the PostgreSQL proxy's (`proxy`): only the bytes differ.
//!
//! What the proxy changes, and why:
//! - In the server's greeting it clears the TLS and compression
//!   capabilities (it reads plain, uncompressed packets), MySQL 8's query
//!   attributes and MariaDB's cached result-set metadata (both change the
//!   layout of what it reads). A client negotiates without them as with a
//!   server that lacks them; a client that requires TLS is told so, by
//!   name, and closed.
//! - With `--inject-fault`, the chosen statement's command is replaced by
//!   a COM_QUERY of `SIGNAL SQLSTATE 'FA001'`, which the server answers with
//!   ERR 1644 (SQLSTATE FA001) in its place; nothing else is rewritten.
//!
//! Safety rules kept as in the PostgreSQL proxy: the relay writes each
//! chunk on as soon as it is read (the client's after it is observed, so
//! that an answer is never observed before its command); nothing of the
//! authentication exchange is read beyond the packet headers and the
//! server's OK or ERR; recording never waits.

pub mod messages;
pub mod packet;
pub mod session;
pub mod values;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::capture::proxy::{
    Observing, Recorder, Stats, Upstream, Write, lock, out_of_descriptors, pump,
};
use messages::{Greeting, Response, command, error_packet};
use packet::{MAX_PACKET, PacketDecoder};
pub use session::{SOURCE, Session};

/// How long to wait for the upstream server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one side of a connection may go on once the other closed.
const SERVER_GONE_GRACE: Duration = Duration::from_secs(1);

/// Packets of the handshake are small; a longer one is not MySQL.
const MAX_HANDSHAKE_PACKET: usize = 1024 * 1024;

/// The SQLSTATE the injected fault raises (`--inject-fault`), as with
/// PostgreSQL: class FA, which no server uses.
pub const FAULT_SQLSTATE: &str = crate::fault::POSTGRES_SQLSTATE;

/// Whether a MySQL or MariaDB server answers at the address: a TCP connect
/// and its greeting, which the server sends before anything else. A server
/// that refuses the connection at once (too many connections, a host not
/// allowed) answers with an ERR packet instead, which says why.
pub async fn probe(upstream: &Upstream) -> Result<(), String> {
    let exchange = async {
        let mut server = TcpStream::connect((upstream.host.as_str(), upstream.port))
            .await
            .map_err(|e| e.to_string())?;
        let (_, payload) = read_packet(&mut server)
            .await
            .map_err(|e| format!("{e}: not MySQL?"))?;
        match payload.first() {
            Some(10) => Ok(()),
            Some(0xff) => Err(match messages::err(&payload) {
                Some(e) => format!("the server refused the connection: {}", e.message),
                None => "the server refused the connection".into(),
            }),
            _ => Err("it did not greet as MySQL does: not MySQL?".into()),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// One packet (payload of one physical packet, at most
/// [`MAX_HANDSHAKE_PACKET`] bytes): its sequence id and payload.
async fn read_packet(from: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut header = [0u8; 4];
    from.read_exact(&mut header)
        .await
        .map_err(|e| format!("closed during the handshake ({e})"))?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_HANDSHAKE_PACKET || len == MAX_PACKET {
        return Err(format!("a handshake packet of {len} bytes"));
    }
    let mut payload = vec![0u8; len];
    from.read_exact(&mut payload)
        .await
        .map_err(|e| format!("closed during the handshake ({e})"))?;
    Ok((header[3], payload))
}

/// One client, from its first byte to its last.
pub(crate) async fn serve_client(
    mut client: TcpStream,
    conn: u64,
    upstream: &Upstream,
    observing: Observing,
    startup_timeout: Duration,
) -> Result<(), String> {
    let _ = client.set_nodelay(true);
    let opened = Instant::now();
    let started = tokio::time::timeout(
        startup_timeout,
        start_session(&mut client, upstream, observing.recorder.stats()),
    )
    .await;
    let (server, agreed) = match started {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(message)) => return Err(message),
        Err(_) => {
            return Err(format!(
                "closed: not through its handshake within {} s (--startup-timeout)",
                startup_timeout.as_secs_f64()
            ));
        }
    };
    let Observing {
        recorder,
        fault,
        checks,
        race,
        instance,
        ..
    } = observing;
    let stats = recorder.stats().clone();
    let rewriting = fault.is_some();
    let session = Mutex::new(Guard(
        Session::new(conn, agreed.capabilities, agreed.status, opened)
            .with_instance(instance)
            .with_fault(fault)
            .with_checks(checks)
            .with_race(race),
        recorder,
    ));
    relay(client, server, &session, rewriting).await;
    let undecoded = lock(&session).0.counts.undecoded;
    Stats::add(&stats.undecoded_frames, undecoded);
    Ok(())
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy)]
struct Agreed {
    capabilities: u32,
    status: u16,
}

/// A connection up to the end of its authentication: the connection to the
/// server, its greeting (relayed without the capabilities the proxy does not
/// speak), the client's response, the authentication exchange. `None` when
/// the connection ended on its own (a failed login, a client that left).
async fn start_session(
    client: &mut TcpStream,
    upstream: &Upstream,
    stats: &Stats,
) -> Result<Option<(TcpStream, Agreed)>, String> {
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((upstream.host.as_str(), upstream.port)),
    )
    .await;
    let mut server = match connect {
        Ok(Ok(server)) => server,
        failure => {
            Stats::add(&stats.refused, 1);
            let (code, message) = match failure {
                // ER_CON_COUNT_ERROR: "Too many connections".
                Ok(Err(e)) if out_of_descriptors(&e) => (
                    1040,
                    format!(
                        "flowaudit: too many connections: the proxy is out of file \
                         descriptors ({e})"
                    ),
                ),
                // ER_NET_READ_ERROR, a server error number: clients built on
                // Connector/C take one in the client range (2003, "can't
                // connect") for a malformed packet and drop the message.
                Ok(Err(e)) => (
                    1158,
                    format!(
                        "flowaudit: cannot reach the database server at {}: {e}",
                        upstream.describe()
                    ),
                ),
                _ => (
                    1158,
                    format!(
                        "flowaudit: cannot reach the database server at {}: no answer in {} s",
                        upstream.describe(),
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ),
            };
            let _ = client
                .write_all(&error_packet(0, code, "08S01", &message))
                .await;
            let _ = client.shutdown().await;
            return Err(message);
        }
    };
    let _ = server.set_nodelay(true);
    Stats::add(&stats.connections, 1);
    let (seq, greeting) = read_packet(&mut server).await?;
    let Some(read) = Greeting::read(&greeting) else {
        // An ERR (the server refuses this client) or not MySQL: as it came.
        let _ = client.write_all(&packet::encode(seq, &greeting)).await;
        return match messages::err(&greeting) {
            Some(e) => Err(format!("the server refused the connection: {}", e.message)),
            None => Err(format!(
                "{} did not greet as a MySQL server does: is it one?",
                upstream.describe()
            )),
        };
    };
    let relayed = read.relayed(&greeting);
    let offered = Greeting::read(&relayed).map_or(0, |g| g.capabilities);
    write(client, &packet::encode(seq, &relayed)).await?;
    let (seq, response) = match read_packet(client).await {
        Ok(packet) => packet,
        Err(_) => {
            // The clients that require TLS close here: the greeting offers
            // none, and they do not ask.
            Stats::add(&stats.refused, 1);
            return Err(
                "closed after the server's greeting without answering it: a client \
                        that requires TLS does this, and the proxy offers none; connect \
                        without TLS (ssl-mode=DISABLED or PREFERRED, no ssl= options)"
                    .into(),
            );
        }
    };
    let Some(answer) = Response::read(&response) else {
        return Err("an unreadable handshake response: not a MySQL client?".into());
    };
    if answer.wants_tls {
        Stats::add(&stats.refused, 1);
        let message = "flowaudit: the proxy relays MySQL without TLS and cannot take this \
                       client's TLS request; connect without TLS (ssl-mode=DISABLED or \
                       PREFERRED, ssl=false)";
        let _ = client
            .write_all(&error_packet(seq.wrapping_add(1), 1045, "08004", message))
            .await;
        return Err(message.into());
    }
    write(&mut server, &packet::encode(seq, &response)).await?;
    // The authentication exchange, relayed packet by packet, either side
    // first (caching_sha2_password's fast path sends two server packets
    // in a row; its full path has the client ask for a key), until the
    // server's OK or ERR. Only the first byte of the server's packets is
    // read; the client's are not read at all.
    loop {
        tokio::select! {
            from_server = read_packet(&mut server) => {
                let (seq, payload) = from_server?;
                write(client, &packet::encode(seq, &payload)).await?;
                match payload.first() {
                    Some(0x00) => {
                        let status = messages::ok(&payload).map_or(read.status, |ok| ok.status);
                        return Ok(Some((
                            server,
                            Agreed { capabilities: answer.capabilities & offered, status },
                        )));
                    }
                    Some(0xff) => return Ok(None),
                    _ => {}
                }
            }
            from_client = read_packet(client) => {
                let Ok((seq, payload)) = from_client else { return Ok(None) };
                write(&mut server, &packet::encode(seq, &payload)).await?;
            }
        }
    }
}

async fn write(to: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    to.write_all(bytes)
        .await
        .map_err(|e| format!("closed during the handshake ({e})"))
}

/// A session observed on the relay, and where its statements go.
#[derive(Debug)]
struct Guard(Session, Recorder);

impl Guard {
    fn record(&mut self) {
        for recorded in self.0.take() {
            self.1.record(recorded);
        }
    }
}

impl Drop for Guard {
    /// Records what is still pending when the connection goes, however it goes.
    fn drop(&mut self) {
        let by_stop = self.1.stats().stopping();
        self.0.close(Instant::now(), by_stop);
        self.record();
    }
}

/// How much of a client packet the observer keeps, from its command byte:
/// all of a statement, the start of long data, a few bytes of the rest.
fn keep_client(first: u8) -> usize {
    match first {
        command::QUERY | command::STMT_PREPARE | command::STMT_EXECUTE => usize::MAX,
        command::STMT_SEND_LONG_DATA => 7 + crate::capture::proxy::MAX_VALUE_TEXT,
        command::INIT_DB => 1024,
        // Authentication data (COM_CHANGE_USER's too) is never kept.
        command::CHANGE_USER => 0,
        _ => 16,
    }
}

/// How much of a server packet the observer keeps: an ERR's message, the
/// start of the rest (an OK's status flags are within its first 20 bytes).
fn keep_server(first: u8) -> usize {
    if first == 0xff { 1024 } else { 64 }
}

/// Copies bytes both ways until either side closes, observing them on the
/// relay. The client's bytes are observed before they are forwarded (and,
/// with a fault to inject, held until each command is whole); the server's
/// are forwarded first.
async fn relay(client: TcpStream, server: TcpStream, session: &Mutex<Guard>, rewriting: bool) {
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let mut up = PacketDecoder::new(keep_client);
    let mut down = PacketDecoder::new(keep_server);
    let mut holding = Holding::default();
    let checking = lock(session).0.has_checks();
    let upward = pump(
        client_r,
        server_w,
        |chunk, out| {
            let mut guard = lock(session);
            let guard = &mut *guard;
            guard.0.begin_chunk(Instant::now());
            let write = if rewriting {
                holding.feed(chunk, out, |bytes, whole, out| {
                    let replaced = whole.then(|| guard.0.replacement(bytes)).flatten();
                    out.extend_from_slice(replaced.as_deref().unwrap_or(bytes));
                    observe_client(&mut up, &mut guard.0, bytes);
                });
                Write::Buffer
            } else {
                observe_client(&mut up, &mut guard.0, chunk);
                Write::Chunk
            };
            guard.record();
            write
        },
        |_| {},
        || {
            if checking {
                lock(session).0.due_checks()
            } else {
                Vec::new()
            }
        },
    );
    let downward = pump(
        server_r,
        client_w,
        |_, _| Write::Chunk,
        |chunk| {
            let mut guard = lock(session);
            guard.0.begin_chunk(Instant::now());
            let observer = &mut guard.0;
            down.feed(chunk, |p| observer.server_packet(p));
            guard.record();
        },
        Vec::new,
    );
    tokio::pin!(upward, downward);
    tokio::select! {
        () = &mut upward => {
            // MySQL clients do not half-close: one that closed without
            // COM_QUIT was killed or lost, and what it sent and was not
            // answered failed for it, whatever the server still does. The
            // server's last packets get a moment, then the connection goes.
            {
                let mut guard = lock(session);
                if !guard.0.quit() {
                    guard.0.close(Instant::now(), false);
                    guard.record();
                }
            }
            let _ = tokio::time::timeout(SERVER_GONE_GRACE, downward).await;
        }
        () = &mut downward => {
            let _ = tokio::time::timeout(SERVER_GONE_GRACE, upward).await;
        }
    }
}

fn observe_client(up: &mut PacketDecoder, session: &mut Session, bytes: &[u8]) {
    if session.in_infile() && up.at_boundary() {
        up.feed_discarding(bytes, |p| session.client_packet(p));
    } else {
        up.feed(bytes, |p| session.client_packet(p));
    }
}

/// With a fault to inject: the client's commands that may carry the failing
/// statement (COM_QUERY, COM_STMT_EXECUTE, in one physical packet) are held
/// until whole, so that one can be replaced; every other byte goes on as
/// it comes.
#[derive(Debug, Default)]
struct Holding {
    /// The packet being held (header first), or the header being read.
    held: Vec<u8>,
    /// Bytes of the current packet that go on without being held.
    passing: usize,
    /// The current physical packet continues a longer payload.
    continuing: bool,
}

impl Holding {
    /// Feeds a chunk; `emit` gets the bytes to forward in order, each piece
    /// with whether it is one whole held packet, and appends what goes on.
    fn feed(
        &mut self,
        mut chunk: &[u8],
        out: &mut Vec<u8>,
        mut emit: impl FnMut(&[u8], bool, &mut Vec<u8>),
    ) {
        while !chunk.is_empty() {
            if self.passing > 0 {
                let n = self.passing.min(chunk.len());
                emit(&chunk[..n], false, out);
                self.passing -= n;
                chunk = &chunk[n..];
                continue;
            }
            // A header and the command byte decide whether it is held.
            let need = if self.held.len() >= 4 && packet_len(&self.held) == 0 {
                4
            } else {
                5
            };
            if self.held.len() < need {
                let n = (need - self.held.len()).min(chunk.len());
                self.held.extend_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                if self.held.len() < 4 || (self.held.len() < 5 && packet_len(&self.held) > 0) {
                    continue;
                }
            }
            let len = packet_len(&self.held);
            let candidate = !self.continuing
                && self.held[3] == 0
                && len < MAX_PACKET
                && matches!(
                    self.held.get(4),
                    Some(&(command::QUERY | command::STMT_EXECUTE))
                );
            self.continuing = len == MAX_PACKET;
            if !candidate {
                let held = std::mem::take(&mut self.held);
                self.passing = len + 4 - held.len();
                emit(&held, false, out);
                self.held = held;
                self.held.clear();
                continue;
            }
            let n = (len + 4 - self.held.len()).min(chunk.len());
            self.held.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.held.len() == len + 4 {
                let held = std::mem::take(&mut self.held);
                emit(&held, true, out);
                self.held = held;
                self.held.clear();
            }
        }
    }
}

fn packet_len(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// What `run` tells the wrapped command, besides `DATABASE_URL`: the
/// variables MySQL's own clients read.
pub fn client_env(addr: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("MYSQL_HOST", addr.ip().to_string()),
        ("MYSQL_TCP_PORT", addr.port().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use packet::encode;
    use proptest::prelude::*;

    fn run(holding: &mut Holding, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut whole = Vec::new();
        for chunk in chunks {
            holding.feed(chunk, &mut out, |bytes, is_whole, out| {
                if is_whole {
                    whole.push(bytes.to_vec());
                }
                out.extend_from_slice(bytes);
            });
        }
        (out, whole)
    }

    #[test]
    fn commands_are_held_whole_and_the_rest_passes() {
        let mut bytes = encode(0, b"\x03select 1");
        bytes.extend(encode(0, b"\x0e"));
        bytes.extend(encode(2, b"\x03not a command: file data"));
        bytes.extend(encode(3, b""));
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let (out, whole) = run(&mut Holding::default(), &[a, b]);
            assert_eq!(out, bytes, "cut at {cut}");
            assert_eq!(whole, vec![encode(0, b"\x03select 1")], "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn holding_forwards_every_byte_in_order(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in 0usize..300,
        ) {
            let cut = cut.min(bytes.len());
            let (a, b) = bytes.split_at(cut);
            let mut h = Holding::default();
            let (out, _) = run(&mut h, &[a, b]);
            // What is held back is an incomplete packet at the end.
            prop_assert!(bytes.starts_with(&out));
            prop_assert_eq!(out.len() + h.held.len(), bytes.len());
        }
    }
}
