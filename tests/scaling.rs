//! The scaling guard (issue 16): every input shape is audited at two sizes
//! 10× apart, and the larger may take at most 20× the CPU time of the
//! smaller. Linear work takes 10×, quadratic work 100×, so the margin holds
//! on a loaded machine while a quadratic path fails loudly.
//!
//! The time is the CPU time of this thread (`/proc/thread-self/schedstat`,
//! in nanoseconds), not the wall clock, so other processes on the machine
//! weigh little; each size is the median of 3 runs, and a shape over the
//! limit is measured once more before it fails. The smaller size is doubled
//! until it takes at least 50 ms, so that it is measurable.
//!
//! It means something only in a release build: under a debug `cargo test`
//! it says why it skips, unless FLOWAUDIT_SCALING=1. CI runs it with
//! `cargo test --release --test scaling`.

use std::io::{BufRead, Cursor};
use std::path::Path;
use std::time::{Duration, Instant};

use flowaudit::audit::Audit;
use flowaudit::capture::logs::{LogFormat, LogOptions, LogReader};
use flowaudit::capture::otlp::Options as OtlpOptions;
use flowaudit::capture::otlp::reader::OtlpReader;
use flowaudit::capture::proxy::{Frame, Session};
use flowaudit::rules::RuleConfig;
use flowaudit::trace::TraceReader;

/// The larger size's time over the smaller's at most (linear is 10).
const LIMIT: f64 = 20.0;
/// The smaller size is doubled until one run takes at least this long.
const MIN_SMALL: Duration = Duration::from_millis(50);
/// Statements of the smaller size to start from.
const START: usize = 20_000;
/// The smaller size is never doubled past this (a machine so fast that
/// this takes under 50 ms measures well enough anyway).
const MAX_START: usize = 320_000;

/// What one shape feeds: a trace, a server log in a format, or the messages
/// of one proxied connection.
enum Input {
    Trace(Vec<u8>),
    Log(LogFormat, Vec<u8>),
    /// OpenTelemetry spans in OTLP JSON, one request a line.
    Otlp(Vec<u8>),
    Proxy(Vec<(bool, u8, Vec<u8>)>),
}

struct Shape {
    name: &'static str,
    /// The input of about `n` statements.
    make: fn(usize) -> Input,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "many transactions in one step (pgbench)",
        make: pgbench,
    },
    Shape {
        name: "N+1 loops in many runs of a step",
        make: n_plus_one_runs,
    },
    Shape {
        name: "many short connections",
        make: short_connections,
    },
    Shape {
        name: "many steps",
        make: many_steps,
    },
    Shape {
        name: "one step with many distinct fingerprints",
        make: many_fingerprints,
    },
    Shape {
        name: "proxy observer: many transactions on one connection",
        make: proxy_transactions,
    },
    Shape {
        name: "PostgreSQL stderr log, short sessions",
        make: pg_stderr,
    },
    Shape {
        name: "PostgreSQL csvlog, short sessions",
        make: pg_csv,
    },
    Shape {
        name: "PostgreSQL jsonlog, short sessions",
        make: pg_json,
    },
    Shape {
        name: "MySQL general log, short sessions",
        make: mysql_general,
    },
    Shape {
        name: "OpenTelemetry spans, one trace per request",
        make: otlp_requests,
    },
];

// ---------------------------------------------------------------------------
// Traces: one JSON object a line, read by the trace reader.

fn line(out: &mut String, event: serde_json::Value) {
    out.push_str(&event.to_string());
    out.push('\n');
}

fn marker(out: &mut String, conn: u64, step: &str) {
    line(
        out,
        serde_json::json!({"sql": format!("SET flowaudit.step = '{step}'"), "conn": conn}),
    );
}

/// pgbench's TPC-B-like transaction, five at a time on eight connections,
/// all in one step.
fn pgbench(n: usize) -> Input {
    let mut out = String::new();
    marker(&mut out, 0, "bench");
    for t in 0..n / 7 {
        let conn = (t % 8) as u64 + 1;
        let aid = (t * 7919 % 100_000).to_string();
        for (sql, params) in [
            ("BEGIN", vec![]),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
                vec!["5".to_owned(), aid.clone()],
            ),
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                vec![aid.clone()],
            ),
            (
                "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
                vec!["5".to_owned(), (t % 10).to_string()],
            ),
            (
                "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
                vec!["5".to_owned(), "1".to_owned()],
            ),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
                vec![
                    (t % 10).to_string(),
                    "1".to_owned(),
                    aid.clone(),
                    "5".to_owned(),
                ],
            ),
            ("END", vec![]),
        ] {
            line(
                &mut out,
                serde_json::json!({"sql": sql, "params": params, "conn": conn,
                    "duration_us": 120, "rows": 1}),
            );
        }
    }
    Input::Trace(out.into_bytes())
}

/// A step run again and again (a marker each time), each run a list and a
/// lookup per row of it.
fn n_plus_one_runs(n: usize) -> Input {
    let mut out = String::new();
    for run in 0..n / 22 {
        marker(&mut out, 1, "browse");
        line(
            &mut out,
            serde_json::json!({"sql": "SELECT id FROM products ORDER BY id LIMIT 20",
                "conn": 1, "rows": 20, "duration_us": 300}),
        );
        for row in 0..20 {
            line(
                &mut out,
                serde_json::json!({"sql": "SELECT stock FROM inventory WHERE product_id = $1",
                    "params": [(run * 20 + row).to_string()], "conn": 1, "rows": 1,
                    "duration_us": 50}),
            );
        }
    }
    Input::Trace(out.into_bytes())
}

/// A new connection for every few statements (a pool that does not pool),
/// each with a transaction of reads and writes.
fn short_connections(n: usize) -> Input {
    let mut out = String::new();
    marker(&mut out, 0, "checkout");
    for c in 0..n / 5 {
        let conn = c as u64 + 1;
        let id = c.to_string();
        for (sql, params) in [
            ("BEGIN", vec![]),
            (
                "SELECT stock FROM inventory WHERE product_id = $1",
                vec![id.clone()],
            ),
            (
                "UPDATE inventory SET stock = $1 WHERE product_id = $2",
                vec!["3".to_owned(), id.clone()],
            ),
            ("INSERT INTO orders (user_id) VALUES ($1)", vec![id.clone()]),
            ("COMMIT", vec![]),
        ] {
            line(
                &mut out,
                serde_json::json!({"sql": sql, "params": params, "conn": conn,
                    "connect_us": 900, "duration_us": 80}),
            );
        }
    }
    Input::Trace(out.into_bytes())
}

/// Every few statements a new step, by sqlcommenter tags and markers.
fn many_steps(n: usize) -> Input {
    let mut out = String::new();
    for s in 0..n / 5 {
        marker(&mut out, 1, &format!("step-{s}"));
        for k in 0..4 {
            line(
                &mut out,
                serde_json::json!({"sql": format!("SELECT name FROM products WHERE id = $1 /*route='/p/{s}'*/"),
                    "params": [k.to_string()], "conn": 1, "duration_us": 40}),
            );
        }
    }
    Input::Trace(out.into_bytes())
}

/// One step whose statements are almost all different queries.
fn many_fingerprints(n: usize) -> Input {
    let mut out = String::new();
    marker(&mut out, 1, "report");
    for i in 0..n {
        line(
            &mut out,
            serde_json::json!({"sql": format!("SELECT c{i} FROM t{} WHERE k{} = $1", i % 97, i),
                "params": ["1"], "conn": 1 + (i % 4) as u64, "duration_us": 40}),
        );
    }
    Input::Trace(out.into_bytes())
}

// ---------------------------------------------------------------------------
// The proxy's observer, fed the messages of one connection without a network.

fn proxy_transactions(n: usize) -> Input {
    let query = |sql: &str| {
        let mut b = sql.as_bytes().to_vec();
        b.push(0);
        (true, b'Q', b)
    };
    let done = |tag: &str, status: u8| {
        let mut b = tag.as_bytes().to_vec();
        b.push(0);
        [(false, b'C', b), (false, b'Z', vec![status])]
    };
    let mut frames = vec![query("SET flowaudit.step = 'bench'")];
    frames.extend(done("SET", b'I'));
    for t in 0..n / 4 {
        frames.push(query("BEGIN"));
        frames.extend(done("BEGIN", b'T'));
        frames.push(query(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = {}",
            t % 100_000
        )));
        frames.extend(done("UPDATE 1", b'T'));
        frames.push(query(&format!(
            "INSERT INTO pgbench_history (aid, delta) VALUES ({}, 5)",
            t % 100_000
        )));
        frames.extend(done("INSERT 0 1", b'T'));
        frames.push(query("COMMIT"));
        frames.extend(done("COMMIT", b'I'));
    }
    Input::Proxy(frames)
}

// ---------------------------------------------------------------------------
// Server logs: sessions of a few statements each, as a pool of short
// connections logs them, with their connections and disconnections.

/// Sessions of five statements: (session number, statements).
fn sessions(n: usize) -> impl Iterator<Item = (usize, [String; 5])> {
    (0..n / 5).map(|s| {
        (
            s,
            [
                "BEGIN".to_owned(),
                format!(
                    "SELECT stock FROM inventory WHERE product_id = {}",
                    s % 1000
                ),
                format!(
                    "UPDATE inventory SET stock = stock - 1 WHERE product_id = {}",
                    s % 1000
                ),
                format!("INSERT INTO orders (user_id) VALUES ({s})"),
                "COMMIT".to_owned(),
            ],
        )
    })
}

const TS: &str = "2026-11-25 15:07:34.020 UTC";

fn pg_stderr(n: usize) -> Input {
    let mut out = String::new();
    for (s, statements) in sessions(n) {
        let pid = 10_000 + s;
        out.push_str(&format!(
            "{TS} [{pid}] postgres@shop LOG:  connection authorized: user=postgres database=shop\n"
        ));
        for sql in &statements {
            out.push_str(&format!(
                "{TS} [{pid}] postgres@shop LOG:  statement: {sql}\n"
            ));
            out.push_str(&format!(
                "{TS} [{pid}] postgres@shop LOG:  duration: 0.100 ms\n"
            ));
        }
        out.push_str(&format!(
            "{TS} [{pid}] postgres@shop LOG:  disconnection: session time: 0:00:00.010 \
             user=postgres database=shop host=[local]\n"
        ));
    }
    Input::Log(LogFormat::PgStderr, out.into_bytes())
}

fn pg_csv(n: usize) -> Input {
    let mut out = String::new();
    for (s, statements) in sessions(n) {
        let pid = 10_000 + s;
        let mut number = 0;
        let mut record = |message: &str| {
            number += 1;
            out.push_str(&format!(
                "{TS},\"postgres\",\"shop\",{pid},\"[local]\",6b06f9b6.{pid:x},{number},\"idle\",\
                 2026-11-25 15:07:34 UTC,3/2,0,LOG,00000,\"{message}\",,,,,,,,,\"psql\",\
                 \"client backend\",,0\n"
            ));
        };
        for sql in &statements {
            record(&format!("statement: {sql}"));
            record("duration: 0.100 ms");
        }
        record("disconnection: session time: 0:00:00.010 user=postgres database=shop host=[local]");
    }
    Input::Log(LogFormat::PgCsv, out.into_bytes())
}

fn pg_json(n: usize) -> Input {
    let mut out = String::new();
    for (s, statements) in sessions(n) {
        let pid = 10_000 + s;
        let mut number = 0;
        let mut record = |message: &str| {
            number += 1;
            line(
                &mut out,
                serde_json::json!({"timestamp": TS, "user": "postgres", "dbname": "shop",
                    "pid": pid, "session_id": format!("6b06f9b6.{pid:x}"), "line_num": number,
                    "error_severity": "LOG", "message": message, "application_name": "psql",
                    "backend_type": "client backend", "query_id": 0}),
            );
        };
        for sql in &statements {
            record(&format!("statement: {sql}"));
            record("duration: 0.100 ms");
        }
        record("disconnection: session time: 0:00:00.010 user=postgres database=shop host=[local]");
    }
    Input::Log(LogFormat::PgJson, out.into_bytes())
}

fn mysql_general(n: usize) -> Input {
    let mut out = String::from(
        "/usr/sbin/mariadbd, Version: 10.11.19-MariaDB-0+deb12u1 (Debian 12). started with:\n\
         Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\n\
         Time\t\t    Id Command\tArgument\n",
    );
    for (s, statements) in sessions(n) {
        let id = 100 + s;
        out.push_str(&format!(
            "\t\t    {id} Connect\troot@127.0.0.1 on shop using TCP/IP\n"
        ));
        for sql in &statements {
            out.push_str(&format!("\t\t    {id} Query\t{sql}\n"));
        }
        out.push_str(&format!("\t\t    {id} Quit\t\n"));
    }
    Input::Log(LogFormat::MysqlGeneral, out.into_bytes())
}

// ---------------------------------------------------------------------------
// Running and timing.

/// Audits the input; returns the statements audited (the proxy: observed).
/// `n / 10` requests, each a trace of 10 statements under a handler span
/// (one connection per request), exported in one line with their root.
fn otlp_requests(n: usize) -> Input {
    let mut out = String::new();
    for r in 0..n.div_ceil(10) {
        let trace = format!("{:032x}", r + 1);
        let root = format!("{:016x}", r * 16 + 1);
        let attr = |k: &str, v: String| serde_json::json!({"key": k, "value": {"stringValue": v}});
        let mut spans: Vec<serde_json::Value> = (0..10)
            .map(|i| {
                let start = 1_700_000_000_000_000_000u64 + (r as u64) * 1_000_000 + i * 1_000;
                serde_json::json!({
                    "traceId": trace, "spanId": format!("{:016x}", r * 16 + 2 + i as usize),
                    "parentSpanId": root, "name": "SELECT",
                    "startTimeUnixNano": start.to_string(),
                    "endTimeUnixNano": (start + 500).to_string(),
                    "attributes": [
                        attr("db.system", "postgresql".into()),
                        attr("db.statement", "SELECT stock FROM inventory WHERE product_id = %s".into()),
                        attr("db.statement.parameters", format!("({i},)")),
                    ]
                })
            })
            .collect();
        spans.push(serde_json::json!({
            "traceId": trace, "spanId": root, "name": format!("GET /step{}", r % 50),
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000001",
            "attributes": [attr("http.route", format!("/step{}", r % 50))]
        }));
        line(
            &mut out,
            serde_json::json!({"resourceSpans": [{
                "resource": {"attributes": [attr("service.name", "shop".into())]},
                "scopeSpans": [{"scope": {"name": "scaling"}, "spans": spans}]
            }]}),
        );
    }
    Input::Otlp(out.into_bytes())
}

fn run(input: &Input, config: &RuleConfig) -> u64 {
    match input {
        Input::Otlp(bytes) => {
            let mut audit = Audit::new(config).expect("built-in rules");
            let input: Box<dyn BufRead> = Box::new(Cursor::new(bytes.clone()));
            let mut reader =
                OtlpReader::new(input, Path::new("scaling.json"), OtlpOptions::default());
            while let Some(event) = reader.next() {
                audit.push(event.expect("generated spans read").0);
                while let Some(conn) = reader.take_closed() {
                    audit.connection_closed(conn);
                }
            }
            audit.finish().summary.statements
        }
        Input::Trace(bytes) => {
            let mut audit = Audit::new(config).expect("built-in rules");
            let reader =
                TraceReader::new(Cursor::new(bytes.as_slice()), Path::new("scaling.jsonl"));
            for event in reader {
                audit.push(event.expect("a generated trace is well formed"));
            }
            audit.finish().summary.statements
        }
        Input::Log(format, bytes) => {
            let mut audit = Audit::new(config).expect("built-in rules");
            let input: Box<dyn BufRead> = Box::new(Cursor::new(bytes.clone()));
            let mut reader = LogReader::new(
                input,
                Path::new("scaling.log"),
                *format,
                false,
                &LogOptions::default(),
            )
            .expect("a reader for the format");
            while let Some(event) = reader.next() {
                audit.push(event.expect("a generated log reads"));
                while let Some(conn) = reader.take_closed() {
                    audit.connection_closed(conn);
                }
            }
            audit.finish().summary.statements
        }
        Input::Proxy(frames) => {
            let mut session = Session::new(1, None, Instant::now());
            let mut observed = 0;
            for (from_client, tag, body) in frames {
                let frame = Frame {
                    tag: *tag,
                    body,
                    len: body.len(),
                    truncated: false,
                };
                if *from_client {
                    session.client_frame(frame);
                } else {
                    session.server_frame(frame);
                    observed += session.take().count() as u64;
                }
            }
            observed
        }
    }
}

/// CPU time of this thread so far. The scheduler's own account, in
/// nanoseconds; the wall clock where it is not available.
fn cpu_now(wall: Instant) -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or_else(|| wall.elapsed(), Duration::from_nanos)
}

/// The median CPU time of 3 runs, and the statements each audited.
fn measure(input: &Input, config: &RuleConfig) -> (Duration, u64) {
    let wall = Instant::now();
    let mut times = Vec::new();
    let mut statements = 0;
    for _ in 0..3 {
        let start = cpu_now(wall);
        statements = run(input, config);
        times.push(cpu_now(wall) - start);
    }
    times.sort();
    (times[1], statements)
}

/// Small and large sizes, their times and the ratio.
struct Measured {
    small: (usize, Duration, u64),
    large: (usize, Duration, u64),
    ratio: f64,
}

fn measure_shape(shape: &Shape, config: &RuleConfig) -> Measured {
    let mut n = START;
    let (small_time, small_statements) = loop {
        let (time, statements) = measure(&(shape.make)(n), config);
        if time >= MIN_SMALL || n >= MAX_START {
            break (time, statements);
        }
        n *= 2;
    };
    let (large_time, large_statements) = measure(&(shape.make)(10 * n), config);
    Measured {
        small: (n, small_time, small_statements),
        large: (10 * n, large_time, large_statements),
        ratio: large_time.as_secs_f64() / small_time.as_secs_f64().max(1e-9),
    }
}

fn report(shape: &Shape, m: &Measured) {
    println!(
        "{:<55} {:>8} stmts {:>9.1} ms | {:>8} stmts {:>9.1} ms | ratio {:>5.1}",
        shape.name,
        m.small.2,
        m.small.1.as_secs_f64() * 1e3,
        m.large.2,
        m.large.1.as_secs_f64() * 1e3,
        m.ratio
    );
}

#[test]
fn audit_time_grows_linearly_with_the_input() {
    if cfg!(debug_assertions) && std::env::var("FLOWAUDIT_SCALING").as_deref() != Ok("1") {
        eprintln!(
            "skipped: the scaling guard times a release build (cargo test --release --test \
             scaling); set FLOWAUDIT_SCALING=1 to run it in a debug build anyway"
        );
        return;
    }
    let only = std::env::var("FLOWAUDIT_SCALING_ONLY").ok();
    let config = RuleConfig::builtin().expect("built-in rules");
    let mut failed = Vec::new();
    println!("shape: small size (CPU time, median of 3) | 10x size | ratio (limit {LIMIT})");
    for shape in SHAPES {
        if only.as_deref().is_some_and(|o| !shape.name.contains(o)) {
            continue;
        }
        let mut m = measure_shape(shape, &config);
        report(shape, &m);
        // Ten times the statements went through: the generators did their
        // job and nothing was skipped.
        assert!(m.small.2 > 0, "{}: nothing audited", shape.name);
        assert!(
            m.large.2 >= 9 * m.small.2,
            "{}: {} statements at 10x the size of {}",
            shape.name,
            m.large.2,
            m.small.2
        );
        if m.ratio > LIMIT {
            println!("  over {LIMIT}: measuring once more");
            m = measure_shape(shape, &config);
            report(shape, &m);
            if m.ratio > LIMIT {
                failed.push(format!(
                    "{}: {:.1}x the time for 10x the input ({} → {} statements, {:.1} ms → \
                     {:.1} ms)",
                    shape.name,
                    m.ratio,
                    m.small.2,
                    m.large.2,
                    m.small.1.as_secs_f64() * 1e3,
                    m.large.1.as_secs_f64() * 1e3
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "not linear (more than {LIMIT}x the time for 10x the input):\n{}",
        failed.join("\n")
    );
}
