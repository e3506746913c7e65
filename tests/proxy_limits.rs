//! The proxy against clients that misbehave on purpose, spoken to by hand on
//! raw sockets (tests/support/raw_pg.rs): values that render to megabytes,
//! absurd message lengths, idle and half-closed connections, too many
//! connections, a stderr nobody reads, a proxy killed outright. Memory is
//! measured as the proxy process's peak resident size (VmHWM), never with
//! timings; the few time bounds here detect stalls of many seconds.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::pg::{self, TestDb, psql, text};
use support::raw_pg::{
    self, NUMERIC_OID, PasswordCluster, ProxyChild, Raw, Spawn, bind_binary, error_code, execute,
    numeric_binary, parse, query, startup_packet, sync,
};

fn upstream() -> String {
    format!("postgres://postgres@{}/test", pg::PG_ADDR)
}

const MIB: u64 = 1024;

/// KiB as MiB, for messages.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until `done` or `deadline`; false when the deadline passed.
fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Reads server messages up to ReadyForQuery without keeping their bodies
/// (a 200 MB row must not cost the test 200 MB); the tags seen, in order.
fn tags_until_ready(c: &mut Raw) -> std::io::Result<Vec<u8>> {
    let mut tags = Vec::new();
    loop {
        let mut head = [0u8; 5];
        c.stream.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as u64 - 4;
        std::io::copy(&mut (&mut c.stream).take(len), &mut std::io::sink())?;
        tags.push(head[0]);
        if head[0] == b'Z' {
            return Ok(tags);
        }
    }
}

/// Issue 15, item 6: an 8-byte binary numeric with the largest weight and
/// display scale PostgreSQL accepts renders to 147 KB of text. Three named
/// portals of 300 such values each held 130 MB before; the text kept is
/// capped per value and per statement, with a mark where it was cut.
#[test]
fn binary_numerics_of_absurd_size_are_cut_and_memory_stays_small() {
    if !pg::available("numeric bind values") {
        return;
    }
    let db = TestDb::new("numeric");
    let proxy = ProxyChild::start(&upstream(), &Spawn::default());
    let mut c = Raw::connect(proxy.addr, Duration::from_secs(60)).expect("connect");
    c.login("postgres", &db.name).expect("login");
    // 1 · 10000^32767 with 16383 decimals: "1", 131,068 zeros, ".", 16,383 zeros.
    let huge = numeric_binary(i16::MAX, 0x3FFF, &[1]);
    let n = 300;
    let mut batch = parse("absurd", "select 'absurd numerics'", &vec![NUMERIC_OID; n]);
    for portal in ["p1", "p2", "p3"] {
        batch.extend(bind_binary(portal, "absurd", &vec![huge.clone(); n]));
    }
    for portal in ["p1", "p2", "p3"] {
        batch.extend(execute(portal));
    }
    batch.extend(sync());
    assert!(batch.len() < 20_000, "{} bytes sent", batch.len());
    c.send(&batch).expect("send");
    let answers = c.until_ready().expect("answers");
    let errors: Vec<Option<String>> = answers
        .iter()
        .filter(|(tag, _)| *tag == b'E')
        .map(|(_, body)| error_code(body))
        .collect();
    assert!(errors.is_empty(), "the server refused: {errors:?}");
    // The writer observes on its own thread: wait for its events, watching
    // the peak meanwhile.
    let bound = 60 * MIB;
    let mut peak = 0;
    let recorded = wait_until(Duration::from_secs(60), || {
        peak = proxy.vm_hwm_kib();
        peak > bound || proxy.trace_text().matches("absurd numerics").count() >= 3
    });
    eprintln!("peak memory of the proxy: {:.1} MiB", mib(peak));
    assert!(
        peak <= bound,
        "the proxy's peak memory reached {:.1} MiB (bound {:.0} MiB)",
        mib(peak),
        mib(bound)
    );
    drop(c);
    let stopped = proxy.stop();
    let (trace, stderr) = (stopped.trace, stopped.stderr);
    assert!(recorded || trace.contains("absurd numerics"), "{stderr}");
    let events: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|e: &serde_json::Value| e["sql"] == "select 'absurd numerics'")
        .collect();
    assert_eq!(events.len(), 3, "{stderr}");
    let params = events[0]["params"].as_array().expect("params");
    assert_eq!(params.len(), n, "every value has its place");
    let first = params[0].as_str().expect("text");
    assert!(first.starts_with("10000"), "{}", &first[..40]);
    assert!(
        first.ends_with(&format!(
            "…[truncated {} bytes]",
            131_069 + 1 + 16_383 - 4096
        )),
        "the cut is marked with what it left out: …{}",
        &first[first.len() - 40..]
    );
    let last = params[n - 1].as_str().expect("text");
    assert_eq!(
        last,
        format!("…[truncated {} bytes]", 131_069 + 1 + 16_383),
        "past the statement's budget only the mark is kept"
    );
    let line = trace
        .lines()
        .find(|l| l.contains("absurd numerics"))
        .expect("line");
    assert!(
        line.len() < 200 * 1024,
        "a trace line of {} bytes",
        line.len()
    );
}

/// Issue 15, item 7: before authentication the client's messages are small
/// (PostgreSQL reads a password, SASL or GSS answer of at most
/// PG_MAX_AUTH_TOKEN_LENGTH, 65535 bytes). A client that announces a 2 GB
/// password message is answered with an error and closed, holding nothing,
/// also with --inject-fault (whose relay used to buffer the whole message).
#[test]
fn an_absurd_password_message_is_refused_before_authentication() {
    if !pg::available("authentication limits") {
        return;
    }
    let Some(cluster) = PasswordCluster::start() else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "initdb is required in CI"
        );
        eprintln!("skipping: no initdb under /usr/lib/postgresql");
        return;
    };
    for args in [
        &["--allow-empty", "--inject-fault", "nowhere:1"][..],
        &["--allow-empty"][..],
    ] {
        let proxy = ProxyChild::start(
            &cluster.url(),
            &Spawn {
                args,
                ..Spawn::default()
            },
        );
        let mut c = Raw::connect(proxy.addr, Duration::from_secs(30)).expect("connect");
        c.send(&startup_packet("postgres", "postgres"))
            .expect("startup");
        let (tag, body) = c.message().expect("the server asks for a password");
        assert_eq!(tag, b'R');
        assert_eq!(&body[..4], &10_u32.to_be_bytes(), "AuthenticationSASL");
        // A PasswordMessage said to be 2,000,000,000 bytes long, and 256 MB of it.
        let mut writer = c.stream.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            let mut head = vec![b'p'];
            head.extend_from_slice(&2_000_000_000_i32.to_be_bytes());
            writer.write_all(&head)?;
            let piece = vec![b'x'; 1024 * 1024];
            for _ in 0..256 {
                writer.write_all(&piece)?;
            }
            Ok::<(), std::io::Error>(())
        });
        let answer = c.message();
        let peak = proxy.vm_hwm_kib();
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
        eprintln!("{args:?}: peak memory of the proxy: {:.1} MiB", mib(peak));
        assert!(
            peak <= 60 * MIB,
            "{args:?}: the proxy's peak memory was {:.1} MiB",
            mib(peak)
        );
        let (tag, body) = answer.expect("an answer to the oversized message");
        assert_eq!(tag, b'E', "{args:?}");
        assert_eq!(error_code(&body).as_deref(), Some("08P01"), "{args:?}");
        assert!(
            raw_pg::error_field(&body, b'M').is_some_and(|m| m.contains("invalid message length")),
            "{:?}",
            raw_pg::error_field(&body, b'M')
        );
        let stderr = proxy.stop().stderr;
        assert!(stderr.contains("invalid message length"), "{stderr}");
    }
}

/// Issue 15, item 7: with --inject-fault the relay goes message by message,
/// and it held each message whole: a 200 MB row took it to 600 MB. Rows,
/// COPY data and messages longer than the observer keeps now pass in pieces.
#[test]
fn with_faults_large_rows_and_statements_pass_in_pieces() {
    if !pg::available("fault-mode relay") {
        return;
    }
    let db = TestDb::new("faultpieces");
    let proxy = ProxyChild::start(
        &upstream(),
        &Spawn {
            args: &["--inject-fault", "nowhere:1"],
            ..Spawn::default()
        },
    );
    let mut c = Raw::connect(proxy.addr, Duration::from_secs(120)).expect("connect");
    c.login("postgres", &db.name).expect("login");
    c.send(&query("select repeat('x', 200000000) as big"))
        .expect("send");
    let tags = tags_until_ready(&mut c).expect("the row");
    assert_eq!(tags, b"TDCZ", "{:?}", String::from_utf8_lossy(&tags));
    // A 40 MB statement: longer than the 16 MB the observer keeps.
    let long = format!("select length('{}') as n", "y".repeat(40 * 1024 * 1024));
    c.send(&query(&long)).expect("send");
    let answers = c.until_ready().expect("answers");
    let row = answers.iter().find(|(tag, _)| *tag == b'D').expect("a row");
    assert!(row.1.ends_with(b"41943040"), "{:?}", row.1);
    let peak = proxy.vm_hwm_kib();
    drop(c);
    let stopped = proxy.stop();
    let (trace, stderr) = (stopped.trace, stopped.stderr);
    eprintln!("peak memory of the proxy: {:.1} MiB", mib(peak));
    assert!(
        peak <= 80 * MIB,
        "the proxy's peak memory was {:.1} MiB",
        mib(peak)
    );
    assert!(trace.contains("select repeat('x', 200000000)"), "{stderr}");
    assert!(trace.contains("select length('yyyy"), "{stderr}");
}

/// Issue 15, item 12: messages about connections went to stderr on the
/// relay's thread; with stderr a pipe nobody reads, the first write that did
/// not fit froze every connection. They go through a bounded queue to a
/// thread of their own now, dropped (and counted) when it is full.
#[test]
fn a_stderr_nobody_reads_never_stalls_the_relay() {
    if !pg::available("logging without blocking") {
        return;
    }
    let db = TestDb::new("stderr");
    let proxy = ProxyChild::start(
        &upstream(),
        &Spawn {
            stderr_unread: true,
            ..Spawn::default()
        },
    );
    // Each of these makes the proxy log a line of some 100 bytes: far more
    // than the 64 KiB a pipe holds and the lines its queue does.
    let mut bad = 0;
    for _ in 0..2500 {
        // A stalled proxy stops accepting: its backlog fills, and connecting
        // times out (loopback drops a SYN now and then: 1 s to retry it).
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(3))
        else {
            break;
        };
        let _ = s.write_all(&[0, 0, 0, 1, 0, 0, 0, 0]);
        bad += 1;
    }
    let started = Instant::now();
    let answered = (|| {
        let mut c = Raw::connect(proxy.addr, Duration::from_secs(5))?;
        c.login("postgres", &db.name)?;
        c.send(&query("select 'still answering'"))?;
        c.until_ready()
    })();
    let took = started.elapsed();
    // Time for the proxy to see the last bad connections, before stderr is read.
    std::thread::sleep(Duration::from_secs(1));
    let mut proxy = proxy;
    proxy.read_stderr();
    let stopped = proxy.stop();
    let stderr = &stopped.stderr;
    let answers = answered.unwrap_or_else(|e| {
        panic!("after {bad} bad connections a good client got no answer in {took:?}: {e}")
    });
    assert!(answers.iter().any(|(tag, _)| *tag == b'D'));
    assert!(
        stderr.contains("invalid startup packet length"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stopped
            .report
            .contains("messages about connections were not printed"),
        "the report counts the lines dropped ({bad} bad connections, {} lines printed): {}",
        stderr.matches("invalid startup packet length").count(),
        stopped.report
    );
}

/// Issue 15, item 13: a client that connects and sends nothing, or stops
/// halfway through its startup packet, is closed after --startup-timeout
/// (PostgreSQL: authentication_timeout), instead of holding a descriptor
/// forever.
#[test]
fn connections_that_never_start_are_closed_after_the_startup_timeout() {
    if !pg::available("startup timeout") {
        return;
    }
    let proxy = ProxyChild::start(
        &upstream(),
        &Spawn {
            args: &["--startup-timeout", "1", "--allow-empty"],
            ..Spawn::default()
        },
    );
    let mut silent = Raw::connect(proxy.addr, Duration::from_secs(20)).expect("connect");
    let mut halfway = Raw::connect(proxy.addr, Duration::from_secs(20)).expect("connect");
    halfway.send(&[0, 0, 0, 40, 0, 3]).expect("send");
    for (what, c) in [("silent", &mut silent), ("halfway", &mut halfway)] {
        let ended = c.drain();
        assert!(
            ended.is_ok(),
            "the {what} connection was not closed by the proxy: {ended:?}"
        );
    }
    let stderr = proxy.stop().stderr;
    assert!(stderr.contains("startup"), "{stderr}");
}

/// Issue 15, item 13: out of file descriptors, the proxy neither spins nor
/// dies: a client beyond the limit hears "too many connections" (SQLSTATE
/// 53300, as PostgreSQL says it), and once others close, clients are served
/// again.
#[test]
fn out_of_descriptors_clients_are_refused_cleanly_and_served_again_later() {
    if !pg::available("descriptor exhaustion") {
        return;
    }
    let db = TestDb::new("nofile");
    let proxy = ProxyChild::start(
        &upstream(),
        &Spawn {
            nofile: Some(40),
            ..Spawn::default()
        },
    );
    let mut idle = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let mut c = Raw::connect(proxy.addr, Duration::from_secs(10)).expect("connect");
        c.send(&startup_packet("postgres", &db.name))
            .expect("startup");
        match c.until_ready_or_end() {
            Ok(answers) => match answers.iter().find(|(tag, _)| *tag == b'E') {
                Some((_, body)) => {
                    refused = Some((i, error_code(body)));
                    break;
                }
                None => idle.push(c),
            },
            Err(e) => panic!("connection {i} was neither served nor refused: {e}"),
        }
    }
    let (at, code) = refused.expect("a connection beyond the limit is refused");
    assert!(at >= 5, "only {at} connections were served");
    assert_eq!(code.as_deref(), Some("53300"));
    // More refusals do not make it spin or die.
    for _ in 0..5 {
        let mut c = Raw::connect(proxy.addr, Duration::from_secs(10)).expect("connect");
        c.send(&startup_packet("postgres", &db.name))
            .expect("startup");
        let answers = c.until_ready_or_end().expect("an answer");
        let codes: Vec<Option<String>> = answers
            .iter()
            .filter(|(tag, _)| *tag == b'E')
            .map(|(_, body)| error_code(body))
            .collect();
        assert_eq!(codes, vec![Some("53300".to_owned())]);
    }
    idle.truncate(idle.len() - 3);
    let mut out = None;
    let served = wait_until(Duration::from_secs(10), || {
        let o = psql(
            &proxy.addr.port().to_string(),
            &db.name,
            &["-Atc", "select 'served again'"],
        );
        let ok = String::from_utf8_lossy(&o.stdout).trim() == "served again";
        out = Some(o);
        ok
    });
    assert!(served, "{}", text(out.as_ref().expect("psql ran")));
    drop(idle);
    let stopped = proxy.stop();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
}

/// Issue 15, item 14: a client that sends a query and shuts down its write
/// side still gets the answer, however long it takes, as on a direct
/// connection (the relay gave the server 5 s).
#[test]
fn a_half_closed_client_gets_an_answer_that_takes_six_seconds() {
    if !pg::available("half-closed clients") {
        return;
    }
    let db = TestDb::new("halfclose");
    let proxy = ProxyChild::start(&upstream(), &Spawn::default());
    let mut c = Raw::connect(proxy.addr, Duration::from_secs(30)).expect("connect");
    c.login("postgres", &db.name).expect("login");
    c.send(&query("select pg_sleep(6), 'slept' as done"))
        .expect("send");
    c.shutdown_write().expect("shutdown");
    let mut tags = Vec::new();
    let mut row = Vec::new();
    while let Ok((tag, body)) = c.message() {
        if tag == b'D' {
            row = body;
        }
        tags.push(tag);
    }
    assert_eq!(tags, b"TDCZ", "{:?}", String::from_utf8_lossy(&tags));
    assert!(row.ends_with(b"slept"));
    assert!(proxy.stop().trace.contains("pg_sleep(6)"));
}

/// Issue 15, item 15: the trace writer kept up to 1 MB of trace in memory
/// until the end: a killed proxy left an empty file. It writes at least
/// every second now.
#[test]
fn a_killed_proxy_leaves_what_it_recorded_a_second_before() {
    if !pg::available("trace flushing") {
        return;
    }
    let db = TestDb::new("killed");
    let proxy = ProxyChild::start(&upstream(), &Spawn::default());
    let script: String = (1..=300)
        .map(|i| format!("select {i} as recorded_before_the_kill;\n"))
        .collect();
    let out = psql(
        &proxy.addr.port().to_string(),
        &db.name,
        &["-q", "-c", &script],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(1500));
    let trace = proxy.kill();
    assert_eq!(
        trace.matches("recorded_before_the_kill").count(),
        300,
        "{} bytes of trace",
        trace.len()
    );
    for line in trace.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines");
    }
}
