//! The PostgreSQL wire-protocol proxy: the application connects to flowaudit,
//! flowaudit relays every byte unchanged to the real server over one upstream
//! connection per client (no pooling, so every authentication method passes
//! through untouched) and records each statement from copies of the messages.
//!
//! - `auth`: the authentication exchange, relayed before the rest;
//! - `frame`: cuts each direction's bytes into messages, whatever the chunks;
//! - `messages`: reads the bodies the observer needs;
//! - `session`: matches answers to requests and builds the events;
//! - `split`: the statements of a multi-statement Query;
//! - `race`: race mode, the statements held for the race's scheduler;
//! - `values`: bind values in text form;
//! - `recorder`: the bounded channel to the trace writer;
//! - `logger`: messages about connections, on a thread of their own.
//!
//! Safety rules kept here: the relay writes each chunk on as soon as it is
//! read (the client's after it is observed, so that an answer never arrives
//! before its request is known; observing is a copy and a few comparisons);
//! nothing the client sends during authentication is observed, and no message
//! of it longer than the server accepts goes on; a frame the observer cannot
//! decode is forwarded and counted; recording and logging never wait; a
//! client that does not get through its startup in time is closed.

mod auth;
mod frame;
mod handoff;
mod logger;
mod messages;
mod race;
mod recorder;
mod session;
mod split;
mod steps;
mod values;

pub use frame::{Frame, FrameDecoder, skip_client, skip_server};
pub use logger::{LogLines, log_to};
pub use race::{Race, Waits};
pub use recorder::{Recorded, Recorder, Sink, Stats, Writer, start as start_writer};
pub use session::{FaultFn, FaultHook, Session};
pub use steps::{Check, Seen, StepChecks, StepTracker};
pub use values::{MAX_PARAMS_TEXT, MAX_VALUE_TEXT, mark_cut};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::redact;
use handoff::{Link, Outbox, SharedOutbox};

/// Protocol codes of the packets that may open a connection.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// The first byte of a TLS ClientHello: a client trying TLS without asking.
const TLS_HANDSHAKE: u8 = 0x16;
/// Startup packets are small; anything larger is not PostgreSQL.
const MAX_STARTUP: usize = 10_000;
/// How long to wait for the upstream server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take from connecting to being authenticated, by
/// default: PostgreSQL's authentication_timeout (issue 15, item 13).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the accept loop waits, out of file descriptors and with no
/// spare one, before it tries again: a connection must end first.
const DESCRIPTORS_BACKOFF: Duration = Duration::from_millis(100);
const BUFFER: usize = 64 * 1024;
/// How long the client's side may go on once the server closed.
const SERVER_GONE_GRACE: Duration = Duration::from_secs(1);

/// The protocol the upstream server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    /// MySQL or MariaDB (`crate::capture::mysql`).
    Mysql,
}

/// Where the real server is.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl Upstream {
    /// From a `postgres://` or `postgresql://` URL, or a `mysql://` or
    /// `mariadb://` one; the user, password and database in it are the
    /// client's business and are not used.
    pub fn from_url(url: &str) -> Result<Upstream, String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("--upstream {}: not a URL ({e})", redact::url(url)))?;
        let (protocol, default_port) = match parsed.scheme() {
            "postgres" | "postgresql" => (Protocol::Postgres, 5432),
            "mysql" | "mariadb" => (Protocol::Mysql, 3306),
            _ => {
                return Err(format!(
                    "--upstream {}: the proxy relays PostgreSQL and MySQL/MariaDB; give a \
                     postgres:// or mysql:// URL",
                    redact::url(url)
                ));
            }
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("127.0.0.1")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Upstream {
            host,
            port: parsed.port().unwrap_or(default_port),
            protocol,
        })
    }

    pub fn describe(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether a PostgreSQL server answers at the address: a TCP connect, then
    /// an SSLRequest (protocol 3.0, "SSLRequest": Int32(8) Int32(80877103)),
    /// which every server answers with one byte, `S` or `N`, before any
    /// authentication. It needs no user or database, so it fails only when
    /// no PostgreSQL server is there. The error says why, in a few words.
    pub async fn probe(&self) -> Result<(), String> {
        if self.protocol == Protocol::Mysql {
            return crate::capture::mysql::probe(self).await;
        }
        let exchange = async {
            let mut server = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| e.to_string())?;
            let mut request = Vec::with_capacity(8);
            request.extend_from_slice(&8_u32.to_be_bytes());
            request.extend_from_slice(&SSL_REQUEST.to_be_bytes());
            server
                .write_all(&request)
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = [0_u8; 1];
            match server.read(&mut answer).await {
                Ok(1) if matches!(answer[0], b'S' | b'N') => Ok(()),
                Ok(0) => Err("it closed the connection without answering: not PostgreSQL?".into()),
                Ok(_) => Err(format!(
                    "it answered a PostgreSQL SSLRequest with {:?}: not PostgreSQL?",
                    char::from(answer[0])
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())),
        }
    }
}

/// The upstream URL with host and port replaced, for the wrapped command.
pub fn url_through(url: &str, addr: SocketAddr) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("--upstream: not a URL ({e})"))?;
    parsed
        .set_host(Some(&addr.ip().to_string()))
        .map_err(|e| format!("--upstream: {e}"))?;
    parsed
        .set_port(Some(addr.port()))
        .map_err(|()| "--upstream: this URL cannot have a port".to_owned())?;
    Ok(parsed.to_string())
}

/// Messages about connections go here (the CLI prints them on stderr, see
/// [`log_to`]). Called on the relay's thread: it must never wait.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// A running proxy: accepts connections until told to stop.
#[derive(Debug)]
pub struct Proxy {
    /// One listener, or one per application instance (see
    /// [`Proxy::with_instances`]).
    listeners: Vec<TcpListener>,
    /// The listeners name the instance of whoever connects through them.
    instances: bool,
    upstream: Upstream,
    recorder: Recorder,
    fault: Option<FaultHook>,
    checks: Option<StepChecks>,
    race: Option<Race>,
    startup_timeout: Duration,
}

impl Proxy {
    pub async fn bind(
        addr: SocketAddr,
        upstream: Upstream,
        recorder: Recorder,
    ) -> std::io::Result<Proxy> {
        Ok(Proxy {
            listeners: vec![TcpListener::bind(addr).await?],
            instances: false,
            upstream,
            recorder,
            fault: None,
            checks: None,
            race: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        })
    }

    /// One listener per application instance, `n` in all: the first is the
    /// one bound, the others on free ports of the same address. A
    /// connection through the Kth is of instance K: its events say so, and
    /// the steps it follows are its instance's (`run --race-instances N`).
    pub async fn with_instances(mut self, n: usize) -> std::io::Result<Self> {
        let ip = self.listeners[0].local_addr()?.ip();
        while self.listeners.len() < n {
            self.listeners
                .push(TcpListener::bind(SocketAddr::new(ip, 0)).await?);
        }
        self.instances = true;
        Ok(self)
    }

    /// Race mode: every statement goes to the race's scheduler before it is
    /// sent, and waits when it says so. Only then does the relay delay traffic.
    pub fn with_race(mut self, race: Option<Race>) -> Self {
        self.race = race;
        self
    }

    /// Closes a client that has not got through its startup and
    /// authentication within `timeout` (`--startup-timeout`).
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Runs `checks` when a step ends, before the next step's first
    /// statement reaches the server.
    pub fn with_checks(mut self, checks: Option<StepChecks>) -> Self {
        self.checks = checks;
        self
    }

    /// Makes the statements the hook picks fail in the server instead of
    /// running (`--inject-fault`). Only then does the relay rewrite traffic.
    pub fn with_fault(mut self, hook: Option<FaultHook>) -> Self {
        self.fault = hook;
        self
    }

    /// The (first) listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// Every listener's address, instance 1's first.
    pub fn local_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(TcpListener::local_addr).collect()
    }

    /// Serves until `stop` resolves, then waits up to `grace` for open
    /// connections to end and closes the rest. Every recorder handle is gone
    /// when this returns, so the writer can finish.
    pub async fn serve(self, stop: impl Future<Output = ()>, grace: Duration, log: Log) {
        let Proxy {
            listeners,
            instances,
            upstream,
            recorder,
            fault,
            checks,
            race,
            startup_timeout,
        } = self;
        let mut connections = JoinSet::new();
        let mut next_conn: u64 = 1;
        // Without faults or checks, connections hand their messages to the
        // writer through one outbox (see `handoff`), flushed now and then.
        let outbox = (fault.is_none()
            && checks.is_none()
            && race.is_none()
            && upstream.protocol == Protocol::Postgres)
            .then(|| Outbox::shared(recorder.clone()));
        let flusher = outbox.clone().map(|outbox| {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(handoff::FLUSH_EVERY).await;
                    handoff::lock(&outbox).flush();
                }
            })
        });
        // A descriptor kept free for the moment the others run out: closed,
        // it lets the accept loop take one more client and tell it "too
        // many connections" rather than leave it waiting (issue 15, item 13).
        let mut spare = spare_descriptor();
        let mut short_of_descriptors = false;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                (index, accepted) = accept_any(&listeners) => match accepted {
                    Ok((client, peer)) => {
                        short_of_descriptors = false;
                        let conn = next_conn;
                        next_conn += 1;
                        let upstream = upstream.clone();
                        let recorder = recorder.clone();
                        let log = log.clone();
                        let fault = fault.clone();
                        let checks = checks.clone();
                        let race = race.clone();
                        let outbox = outbox.clone();
                        let instance = instances.then_some(index as u64 + 1);
                        connections.spawn(async move {
                            let observing =
                                Observing { recorder, fault, checks, race, instance, outbox };
                            let served = match upstream.protocol {
                                Protocol::Postgres => serve_client(
                                    client, conn, &upstream, observing, startup_timeout,
                                )
                                .await,
                                Protocol::Mysql => crate::capture::mysql::serve_client(
                                    client, conn, &upstream, observing, startup_timeout,
                                )
                                .await,
                            };
                            if let Err(message) = served {
                                log(format!("connection {conn} from {peer}: {message}"));
                            }
                        });
                    }
                    Err(e) if out_of_descriptors(&e) => {
                        if !short_of_descriptors {
                            short_of_descriptors = true;
                            log(format!(
                                "cannot accept a connection: {e}; clients are told \"too many \
                                 connections\" until others close (raise the limit: ulimit -n)"
                            ));
                        }
                        // accept reports EMFILE also when no client waits:
                        // only a client taken on the spare descriptor is
                        // progress; otherwise wait for a connection to end.
                        let refused = spare.take().and_then(|descriptor| {
                            drop(descriptor);
                            // Polled once, here: no other task may take the
                            // descriptor just freed.
                            let mut cx = Context::from_waker(Waker::noop());
                            let waiting = listeners[index].poll_accept(&mut cx);
                            spare = spare_descriptor();
                            match waiting {
                                Poll::Ready(Ok((client, _))) => Some(client),
                                _ => None,
                            }
                        });
                        match refused {
                            Some(client) => {
                                Stats::add(&recorder.stats().refused, 1);
                                connections.spawn(refuse_busy(client, startup_timeout));
                            }
                            None => {
                                tokio::time::sleep(DESCRIPTORS_BACKOFF).await;
                                spare = spare.or_else(spare_descriptor);
                            }
                        }
                    }
                    Err(e) => {
                        log(format!("cannot accept a connection: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listeners);
        // What the connections still running are cut off in from here on is
        // the stop's doing (issue 13, defect 11).
        recorder
            .stats()
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        drop(recorder);
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                next = connections.join_next() => if next.is_none() { break },
            }
        }
        // Aborted connections drop their sessions, which record what was pending.
        connections.shutdown().await;
        if let Some(flusher) = flusher {
            flusher.abort();
            let _ = flusher.await;
        }
        if let Some(outbox) = outbox {
            // Aborted directions drop their links (which append the close of
            // their connection) when the runtime next gets to them.
            let deadline = Instant::now() + Duration::from_secs(1);
            while Arc::strong_count(&outbox) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            handoff::lock(&outbox).flush();
        }
    }
}

/// How a connection is observed: by the writer, through the outbox, or on
/// the relay (with faults or step checks).
#[derive(Debug)]
pub(crate) struct Observing {
    pub(crate) recorder: Recorder,
    pub(crate) fault: Option<FaultHook>,
    pub(crate) checks: Option<StepChecks>,
    pub(crate) race: Option<Race>,
    /// The application instance of the listener it came through.
    pub(crate) instance: Option<u64>,
    pub(crate) outbox: Option<SharedOutbox>,
}

/// The next connection on any of the listeners, with the listener's index.
async fn accept_any(
    listeners: &[TcpListener],
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for (index, listener) in listeners.iter().enumerate() {
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await
}

/// One client, from its first byte to its last.
async fn serve_client(
    mut client: TcpStream,
    conn: u64,
    upstream: &Upstream,
    observing: Observing,
    startup_timeout: Duration,
) -> Result<(), String> {
    let Observing {
        recorder,
        fault,
        checks,
        race,
        instance,
        outbox,
    } = observing;
    let _ = client.set_nodelay(true);
    let opened = Instant::now();
    let started = tokio::time::timeout(
        startup_timeout,
        start_session(&mut client, upstream, recorder.stats()),
    )
    .await;
    let (server, application_name) = match started {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(message)) => return Err(message),
        // As PostgreSQL does at its authentication_timeout: closed, unanswered.
        Err(_) => {
            return Err(format!(
                "closed: not through its startup and authentication within {} s \
                 (--startup-timeout)",
                startup_timeout.as_secs_f64()
            ));
        }
    };
    if let Some(outbox) = outbox {
        let link = Arc::new(Link::open(
            conn,
            outbox,
            application_name.as_deref(),
            opened,
        ));
        relay_handing_over(client, server, link).await;
        return Ok(());
    }
    let stats = recorder.stats().clone();
    let rewriting = fault.is_some();
    let session = Arc::new(Mutex::new(SessionGuard(
        Session::new(conn, application_name, opened)
            .with_fault(fault)
            .with_checks(checks)
            .with_instance(instance)
            .with_race(race),
        recorder,
    )));
    if rewriting {
        relay_rewriting(client, server, &session).await;
    } else {
        relay(client, server, &session).await;
    }
    let undecoded = lock(&session).0.counts.undecoded;
    Stats::add(&stats.undecoded_frames, undecoded);
    Ok(())
}

/// What opened a connection.
#[derive(Debug)]
enum Startup {
    /// A StartupMessage (length included).
    Session(Vec<u8>),
    /// A CancelRequest, for the server.
    Cancel(Vec<u8>),
    /// The client left before saying anything.
    Closed,
}

/// Reads the packets that open a connection: SSLRequest and GSSENCRequest
/// are answered `N` (the proxy speaks plain PostgreSQL) and the next one is
/// read; a TLS handshake without asking is refused.
async fn read_opening(client: &mut TcpStream, stats: &Stats) -> Result<Startup, String> {
    loop {
        let mut first = [0u8; 1];
        if client.peek(&mut first).await.map_err(|e| e.to_string())? == 0 {
            return Ok(Startup::Closed);
        }
        if first[0] == TLS_HANDSHAKE {
            Stats::add(&stats.refused, 1);
            return Err(
                "refused a direct TLS handshake: flowaudit's proxy speaks plain \
                        PostgreSQL; connect with sslmode=disable or sslmode=prefer, and \
                        without sslnegotiation=direct"
                    .into(),
            );
        }
        let packet = read_startup(client).await?;
        let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                client.write_all(b"N").await.map_err(|e| e.to_string())?;
            }
            CANCEL_REQUEST => return Ok(Startup::Cancel(packet)),
            _ if code >> 16 == 3 => return Ok(Startup::Session(packet)),
            _ => {
                let frame = messages::fatal_error(
                    "08P01",
                    &format!(
                        "flowaudit: unsupported protocol version {}.{}",
                        code >> 16,
                        code & 0xffff
                    ),
                );
                let _ = client.write_all(&frame).await;
                return Err(format!("unsupported protocol version code {code}"));
            }
        }
    }
}

/// A connection up to the end of its authentication: the startup packet,
/// the connection to the server, the authentication exchange. The server
/// and the client's `application_name`, or `None` when the connection
/// ended on its own (a cancel request, a failed login).
async fn start_session(
    client: &mut TcpStream,
    upstream: &Upstream,
    stats: &Stats,
) -> Result<Option<(TcpStream, Option<String>)>, String> {
    let startup = match read_opening(client, stats).await? {
        Startup::Session(packet) => packet,
        Startup::Cancel(packet) => {
            // The server looks the key up itself; relay and hang up.
            if let Ok(Ok(mut up)) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                TcpStream::connect((upstream.host.as_str(), upstream.port)),
            )
            .await
            {
                let _ = up.write_all(&packet).await;
                let _ = up.shutdown().await;
            }
            return Ok(None);
        }
        Startup::Closed => return Ok(None),
    };
    let application_name = startup_parameter(&startup, "application_name");
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
                Ok(Err(e)) if out_of_descriptors(&e) => ("53300", too_many_connections(&e)),
                Ok(Err(e)) => (
                    "08001",
                    format!(
                        "flowaudit: cannot reach the database server at {}: {e}",
                        upstream.describe()
                    ),
                ),
                _ => (
                    "08001",
                    format!(
                        "flowaudit: cannot reach the database server at {}: no answer in {} s",
                        upstream.describe(),
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ),
            };
            let frame = messages::fatal_error(code, &message);
            let _ = client.write_all(&frame).await;
            let _ = client.shutdown().await;
            return Err(message);
        }
    };
    let _ = server.set_nodelay(true);
    Stats::add(&stats.connections, 1);
    server
        .write_all(&startup)
        .await
        .map_err(|e| e.to_string())?;
    match auth::authenticate(client, &mut server).await? {
        auth::Auth::Accepted => Ok(Some((server, application_name))),
        auth::Auth::Closed => Ok(None),
    }
}

/// Whether an error is the process (EMFILE) or the system (ENFILE) being
/// out of file descriptors.
pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error()
        .is_some_and(|code| code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32)
}

/// What a client hears when the proxy is out of descriptors: PostgreSQL's
/// "too many clients" SQLSTATE, 53300.
fn too_many_connections(e: &std::io::Error) -> String {
    format!("flowaudit: too many connections: the proxy is out of file descriptors ({e})")
}

/// A descriptor to give back when the others run out.
fn spare_descriptor() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// A client accepted on the spare descriptor: it hears "too many
/// connections" (53300) after its startup packet, as from PostgreSQL. It
/// holds the only spare descriptor: a few seconds at most.
async fn refuse_busy(mut client: TcpStream, startup_timeout: Duration) {
    let stats = Stats::default();
    let wait = startup_timeout.min(Duration::from_secs(5));
    let opening = tokio::time::timeout(wait, read_opening(&mut client, &stats)).await;
    if let Ok(Ok(Startup::Session(_))) = opening {
        let e = std::io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        let frame = messages::fatal_error("53300", &too_many_connections(&e));
        let _ = client.write_all(&frame).await;
        let _ = client.shutdown().await;
    }
}

/// A session observed on the relay, and where its statements go.
#[derive(Debug)]
struct SessionGuard(Session, Recorder);

impl SessionGuard {
    /// Hands over the statements observed so far.
    fn record(&mut self) {
        for recorded in self.0.take() {
            self.1.record(recorded);
        }
    }
}

impl Drop for SessionGuard {
    /// Records what is still pending when the connection goes, however it goes.
    fn drop(&mut self) {
        let by_stop = self.1.stats().stopping();
        self.0.close(Instant::now(), by_stop);
        self.record();
    }
}

pub(crate) fn lock<T>(session: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while observing must not stop the relay: take the state as it is.
    session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copies bytes both ways until either side closes, and hands a copy of each
/// chunk's messages to the writer, which observes them (see [`handoff`]).
/// The client's messages are handed over before they are forwarded, so that
/// an answer is never observed before its request; the server's are
/// forwarded first.
///
/// Each direction is a task of its own, woken only by its own socket: polled
/// together in one task, every wake-up also polled the idle direction's
/// socket, which cost a measurable part of the relay's time per statement.
async fn relay_handing_over(client: TcpStream, server: TcpStream, link: Arc<Link>) {
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let mut directions = JoinSet::new();
    let up_link = link.clone();
    directions.spawn(async move {
        let mut up = FrameDecoder::new(skip_client);
        pump(
            client_r,
            server_w,
            |chunk, _| {
                up_link.messages(true, &mut up, chunk);
                Write::Chunk
            },
            |_| {},
            Vec::new,
        )
        .await;
        Direction::Upward
    });
    directions.spawn(async move {
        let mut down = FrameDecoder::new(skip_server);
        pump(
            server_r,
            client_w,
            |_, _| Write::Chunk,
            |chunk| link.messages(false, &mut down, chunk),
            Vec::new,
        )
        .await;
        Direction::Downward
    });
    // Once one direction ends, the other may finish (as in `both_ways`);
    // dropping the set aborts what is left.
    match directions.join_next().await {
        Some(Ok(Direction::Upward)) => {
            let _ = directions.join_next().await;
        }
        _ => {
            let _ = tokio::time::timeout(SERVER_GONE_GRACE, directions.join_next()).await;
        }
    }
    directions.shutdown().await;
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Upward,
    Downward,
}

/// Copies bytes both ways until either side closes, observing them on the
/// relay: with step checks, whose statement must wait for the checks of the
/// step before it, and in race mode, whose writes the race may hold. The client's bytes are observed before they are
/// forwarded, so that an answer is never observed before its request; the
/// server's are forwarded first.
async fn relay(client: TcpStream, server: TcpStream, session: &Mutex<SessionGuard>) {
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let mut up = FrameDecoder::new(skip_client);
    let mut down = FrameDecoder::new(skip_server);
    let checking = lock(session).0.has_checks();
    let upward = pump(
        client_r,
        server_w,
        |chunk, _| {
            if !up.lost_sync() {
                let mut guard = lock(session);
                guard.0.begin_chunk(Instant::now());
                up.feed(chunk, |f| guard.0.client_frame(f));
                guard.record();
            }
            Write::Chunk
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
            if !down.lost_sync() {
                let mut guard = lock(session);
                guard.0.begin_chunk(Instant::now());
                down.feed(chunk, |f| guard.0.server_frame(f));
                guard.record();
            }
        },
        Vec::new,
    );
    both_ways(upward, downward).await;
}

/// The relay with fault injection: both directions go message by message, so
/// that the statement chosen to fail can be replaced and the answers to what
/// the proxy added kept from the client. Rows, COPY data and messages longer
/// than the observer keeps go on in pieces as they come (see
/// [`FrameDecoder::feed_relaying`]). Slower than [`relay`], and only used
/// when a fault is asked for.
async fn relay_rewriting(client: TcpStream, server: TcpStream, session: &Mutex<SessionGuard>) {
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let mut up = FrameDecoder::new(skip_client);
    let mut down = FrameDecoder::new(skip_server);
    let upward = pump(
        client_r,
        server_w,
        |chunk, out| {
            let mut guard = lock(session);
            guard.0.begin_chunk(Instant::now());
            up.feed_relaying(chunk, out, |f, out| guard.0.client_frame_rewriting(f, out));
            guard.record();
            Write::Buffer
        },
        |_| {},
        || lock(session).0.due_checks(),
    );
    let downward = pump(
        server_r,
        client_w,
        |chunk, out| {
            let mut guard = lock(session);
            guard.0.begin_chunk(Instant::now());
            down.feed_relaying(chunk, out, |f, out| guard.0.server_frame_forwarding(f, out));
            guard.record();
            Write::Buffer
        },
        |_| {},
        Vec::new,
    );
    both_ways(upward, downward).await;
}

/// What a pump writes for a chunk it read.
#[derive(Debug)]
pub(crate) enum Write {
    /// The chunk as read.
    Chunk,
    /// What `before` put in the buffer.
    Buffer,
}

/// One direction: read a chunk, let `before` see it (and fill the buffer when
/// it rewrites), await the checks `gate` says are due, write, let `after` see
/// it; at the end, close the write side.
pub(crate) async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut before: impl FnMut(&[u8], &mut Vec<u8>) -> Write,
    mut after: impl FnMut(&[u8]),
    mut gate: impl FnMut() -> Vec<Check>,
) {
    let mut buf = vec![0u8; BUFFER];
    let mut out = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        out.clear();
        let bytes = match before(chunk, &mut out) {
            Write::Chunk => chunk,
            Write::Buffer => &out[..],
        };
        for check in gate() {
            check.await;
        }
        if to.write_all(bytes).await.is_err() {
            break;
        }
        after(chunk);
        if out.capacity() > 1024 * 1024 {
            // A 16 MB statement held once does not stay held.
            out = Vec::new();
        }
    }
    let _ = to.shutdown().await;
}

/// Runs both directions until the server's side ends. A client that shut
/// down its write side (its end of the stream, passed on to the server)
/// still gets every answer to what it sent, however long they take, as on a
/// direct connection: the server closes once it has answered (issue 15,
/// item 14). A server that closed leaves the client's side a moment.
pub(crate) async fn both_ways(
    upward: impl Future<Output = ()>,
    downward: impl Future<Output = ()>,
) {
    tokio::pin!(upward, downward);
    tokio::select! {
        () = &mut upward => downward.await,
        () = &mut downward => {
            let _ = tokio::time::timeout(SERVER_GONE_GRACE, upward).await;
        }
    }
}

/// Reads one length-prefixed startup packet (length included).
async fn read_startup(client: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    client
        .read_exact(&mut len)
        .await
        .map_err(|e| format!("closed during startup: {e}"))?;
    let n = u32::from_be_bytes(len) as usize;
    if !(8..=MAX_STARTUP).contains(&n) {
        let frame = messages::fatal_error("08P01", "flowaudit: invalid startup packet length");
        let _ = client.write_all(&frame).await;
        return Err(format!(
            "invalid startup packet length {n}: not a PostgreSQL client"
        ));
    }
    let mut packet = vec![0u8; n];
    packet[..4].copy_from_slice(&len);
    client
        .read_exact(&mut packet[4..])
        .await
        .map_err(|e| format!("closed during startup: {e}"))?;
    Ok(packet)
}

/// A parameter of the StartupMessage (name/value pairs after the version).
fn startup_parameter(packet: &[u8], name: &str) -> Option<String> {
    let mut r = messages::Reader::new(packet.get(8..)?);
    while let Some(key) = r.cstr() {
        if key.is_empty() {
            break;
        }
        let value = r.cstr()?;
        if key == name {
            return (!value.is_empty()).then(|| value.into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_and_redaction() {
        let up = Upstream::from_url("postgres://app:s3cret@db.example:6543/shop").expect("valid");
        assert_eq!(up.describe(), "db.example:6543");
        assert_eq!(
            Upstream::from_url("postgresql:///shop")
                .expect("valid")
                .describe(),
            "127.0.0.1:5432"
        );
        let my = Upstream::from_url("mysql://root@localhost/x").expect("valid");
        assert_eq!(
            (my.describe(), my.protocol),
            ("localhost:3306".into(), Protocol::Mysql)
        );
        assert_eq!(
            Upstream::from_url("mariadb://db:3307")
                .expect("valid")
                .protocol,
            Protocol::Mysql
        );
        assert!(Upstream::from_url("redis://localhost").is_err());
        let shown = redact::url("postgres://app:s3cret@db.example:6543/shop?password=s3cret");
        assert!(!shown.contains("s3cret"), "{shown}");
        let through = url_through(
            "postgres://app:s3cret@db.example:6543/shop?sslmode=disable",
            "127.0.0.1:40000".parse().expect("addr"),
        )
        .expect("valid");
        assert_eq!(
            through,
            "postgres://app:s3cret@127.0.0.1:40000/shop?sslmode=disable"
        );
    }

    #[test]
    fn startup_parameters_are_read() {
        let mut packet = vec![0, 0, 0, 0, 0, 3, 0, 0];
        packet.extend_from_slice(b"user\0app\0application_name\0shop\0\0");
        assert_eq!(
            startup_parameter(&packet, "application_name").as_deref(),
            Some("shop")
        );
        assert_eq!(startup_parameter(&packet, "database"), None);
    }
}
