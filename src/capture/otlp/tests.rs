use serde_json::{Value, json};

use super::json::ExportTraceServiceRequest;
use super::reader::{OtlpError, OtlpReader};
use super::*;

const T1: &str = "0af7651916cd43dd8448eb211c80319c";
const T2: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Attributes in OTLP JSON from (key, value) pairs: strings, integers, booleans.
fn attrs(pairs: &[(&str, Value)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => json!({ "stringValue": s }),
                    Value::Bool(b) => json!({ "boolValue": b }),
                    // The protobuf JSON mapping writes int64 as a string.
                    Value::Number(n) => json!({ "intValue": n.to_string() }),
                    Value::Array(items) => json!({ "arrayValue": { "values": items
                        .iter()
                        .map(|i| json!({ "stringValue": i.as_str().expect("strings") }))
                        .collect::<Vec<_>>() } }),
                    other => panic!("no attribute of {other}"),
                };
                json!({ "key": k, "value": value })
            })
            .collect(),
    )
}

fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    start_us: u64,
    a: &[(&str, Value)],
) -> Value {
    json!({
        "traceId": trace, "spanId": id, "parentSpanId": parent, "name": name,
        "startTimeUnixNano": (1_700_000_000_000_000 + start_us) * 1000,
        "endTimeUnixNano": ((1_700_000_000_000_000 + start_us + 250) * 1000).to_string(),
        "attributes": attrs(a), "status": {}
    })
}

fn request(service: &str, spans: Vec<Value>) -> ResourceSpans {
    request_from(service, "test", spans)
}

/// Spans of the instrumentation scope `scope`.
fn request_from(service: &str, scope: &str, spans: Vec<Value>) -> ResourceSpans {
    let line = json!({ "resourceSpans": [{
        "resource": { "attributes": attrs(&[("service.name", json!(service))]) },
        "scopeSpans": [{ "scope": { "name": scope }, "spans": spans }]
    }]});
    let mut r: ExportTraceServiceRequest = serde_json::from_value(line).expect("a request");
    r.resource_spans.remove(0)
}

fn db(trace: &str, id: &str, parent: &str, sql: &str, start_us: u64) -> Value {
    span(
        trace,
        id,
        parent,
        "SELECT",
        start_us,
        &[
            ("db.system", json!("postgresql")),
            ("db.statement", json!(sql)),
        ],
    )
}

/// The statements ready now.
fn drained(a: &mut Assembler) -> Vec<Event> {
    let mut out = Vec::new();
    a.drain(&mut out);
    out
}

/// The statements of everything pushed: the input ends.
fn finished(a: &mut Assembler) -> Vec<Event> {
    a.finish();
    drained(a)
}

#[test]
fn children_first_are_held_until_the_root_then_in_start_order() {
    let mut a = Assembler::new(Options::default());
    // The statements end (and are exported) before their handler and the request.
    a.push(
        request(
            "shop",
            vec![
                db(T1, "c2", "h1", "select 2", 30),
                db(T1, "c1", "h1", "select 1", 20),
            ],
        ),
        Some(1),
    );
    a.push(
        request(
            "shop",
            vec![span(
                T1,
                "h1",
                "r1",
                "handler",
                10,
                &[("http.route", json!("/browse"))],
            )],
        ),
        Some(2),
    );
    assert!(drained(&mut a).is_empty(), "nothing before the root");
    assert_eq!(a.open_traces(), 1);
    a.push(
        request("shop", vec![span(T1, "r1", "", "GET /browse", 0, &[])]),
        Some(3),
    );
    // The root is in, and the trace still waits: a batch sent at the same
    // time as the root's may come after it, with a statement of the request.
    assert!(drained(&mut a).is_empty(), "the trace waits after its root");
    a.push(
        request("shop", vec![db(T1, "c3", "h1", "select 3", 40)]),
        Some(4),
    );
    a.finish();
    let first = a.pop().expect("an event");
    assert_eq!(first.1, Some(1), "the line its span was read at");
    let events: Vec<Event> = std::iter::once(first.0).chain(drained(&mut a)).collect();
    assert_eq!(
        events.iter().map(|e| e.sql.as_str()).collect::<Vec<_>>(),
        ["select 1", "select 2", "select 3"]
    );
    assert_eq!(
        events[2].step.as_deref(),
        Some("/browse"),
        "the late span too"
    );
    assert_eq!(a.open_traces(), 0);
    assert_eq!((a.stats().traces_closed, a.stats().late_spans), (1, 0));
    let e = &events[0];
    assert_eq!(e.flow.as_deref(), Some("shop"));
    assert_eq!(e.step.as_deref(), Some("/browse"));
    assert_eq!(e.source.as_deref(), Some("otlp"));
    assert_eq!(e.ts.as_deref(), Some("2023-11-14T22:13:20.000020Z"));
    assert_eq!(e.duration_us, Some(250));
    assert_eq!(e.conn, events[1].conn, "one handler, one connection");
    assert_eq!(a.stats().statements, 3);
}

#[test]
fn both_semantic_conventions_and_the_mysql_dialect() {
    let mut a = Assembler::new(Options::default());
    a.push(
        request(
            "svc",
            vec![
                span(
                    T1,
                    "c1",
                    "r1",
                    "SELECT",
                    1,
                    &[
                        ("db.system.name", json!("mysql")),
                        ("db.query.text", json!("select 1")),
                        ("db.response.returned_rows", json!(3)),
                    ],
                ),
                span(
                    T1,
                    "c2",
                    "r1",
                    "SELECT",
                    2,
                    &[
                        ("db.system", json!("mariadb")),
                        ("db.statement", json!("select 2")),
                        ("db.rows_affected", json!(4)),
                    ],
                ),
                span(
                    T1,
                    "c3",
                    "r1",
                    "connect",
                    3,
                    &[("db.system", json!("postgresql"))],
                ),
                span(T1, "r1", "", "job", 0, &[]),
            ],
        ),
        None,
    );
    let events = finished(&mut a);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0].sql.as_str(), events[0].rows),
        ("select 1", Some(3))
    );
    assert_eq!(
        (events[1].sql.as_str(), events[1].rows),
        ("select 2", Some(4))
    );
    for e in &events {
        assert_eq!(e.source.as_deref(), Some("otlp-mysql"));
        assert_eq!(
            crate::rules::units::Dialect::of(e),
            crate::rules::units::Dialect::MySql
        );
        // No route: the root span's name.
        assert_eq!(e.step.as_deref(), Some("job"));
    }
    assert_eq!(a.stats().database_spans, 3);
    assert_eq!(a.stats().without_text, 1);
}

#[test]
fn parameters_by_key_number_or_from_the_python_instrumentation() {
    let mut a = Assembler::new(Options::default());
    a.push(
        request(
            "svc",
            vec![
                span(
                    T1,
                    "c1",
                    "r1",
                    "q",
                    1,
                    &[
                        ("db.query.text", json!("select $1, $2, $3")),
                        ("db.query.parameter.10", json!("ten")),
                        ("db.query.parameter.2", json!(2)),
                        ("db.query.parameter.0", json!(true)),
                    ],
                ),
                span(
                    T1,
                    "c2",
                    "r1",
                    "q",
                    2,
                    &[
                        ("db.query.text", json!("select $1")),
                        ("db.query.parameter.$2", json!("b")),
                        ("db.query.parameter.$1", json!("a")),
                    ],
                ),
                span(
                    T1,
                    "c3",
                    "r1",
                    "q",
                    3,
                    &[
                        ("db.statement", json!("select %s, %s")),
                        ("db.statement.parameters", json!("('x', None)")),
                    ],
                ),
                span(
                    T1,
                    "c4",
                    "r1",
                    "q",
                    4,
                    &[
                        ("db.statement", json!("insert %s")),
                        ("db.statement.parameters", json!("[(1,), (2,)]")),
                    ],
                ),
                span(
                    T1,
                    "c5",
                    "r1",
                    "q",
                    5,
                    &[
                        ("db.statement", json!("select $1, $2")),
                        ("db.postgresql.values", json!(["7", "corpus@example.com"])),
                    ],
                ),
                span(T1, "r1", "", "job", 0, &[]),
            ],
        ),
        None,
    );
    let params: Vec<_> = finished(&mut a).into_iter().map(|e| e.params).collect();
    let some =
        |v: &[Option<&str>]| Some(v.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>());
    assert_eq!(
        params,
        [
            some(&[Some("true"), Some("2"), Some("ten")]),
            some(&[Some("a"), Some("b")]),
            some(&[Some("x"), None]),
            None,
            some(&[Some("7"), Some("corpus@example.com")]),
        ]
    );
}

/// Placeholders with no values recorded (most instrumentations' default):
/// the values are unknown, so that no two statements are taken for repeats
/// with equal values. Literals, or recorded values, are known.
#[test]
fn placeholders_without_recorded_values_have_them_unknown() {
    let mut a = Assembler::new(Options::default());
    a.push(
        request(
            "svc",
            vec![
                db(
                    T1,
                    "c1",
                    "r1",
                    "SELECT stock FROM inventory WHERE product_id = ?",
                    1,
                ),
                db(T1, "c2", "r1", "SELECT * FROM t WHERE id = $1", 2),
                db(T1, "c3", "r1", "INSERT INTO t VALUES (%s, %(name)s)", 3),
                db(
                    T1,
                    "c4",
                    "r1",
                    "SELECT * FROM t WHERE id = 7 AND note = '?'",
                    4,
                ),
                span(
                    T1,
                    "c5",
                    "r1",
                    "q",
                    5,
                    &[
                        ("db.query.text", json!("SELECT * FROM t WHERE id = $1")),
                        ("db.query.parameter.0", json!("7")),
                    ],
                ),
                span(T1, "r1", "", "job", 0, &[]),
            ],
        ),
        None,
    );
    let unknown: Vec<bool> = finished(&mut a)
        .into_iter()
        .map(|e| e.params_dropped)
        .collect();
    assert_eq!(unknown, [true, true, true, false, false]);
}

/// Node's SDK stamps starts to the millisecond: statements that start in
/// the same one keep the order their spans arrived in (the order they
/// ended), not that of their text, where COMMIT would come before the
/// INSERT it commits.
#[test]
fn equal_starts_keep_the_order_of_arrival() {
    let mut a = Assembler::new(Options::default());
    a.push(
        request(
            "svc",
            vec![
                db(T1, "c1", "r1", "BEGIN", 1_000),
                db(T1, "c2", "r1", "INSERT INTO t VALUES (1)", 2_000),
                db(T1, "c3", "r1", "INSERT INTO t VALUES (2)", 3_000),
                db(T1, "c4", "r1", "COMMIT", 3_000),
                db(T1, "c5", "r1", "DELETE FROM t", 3_000),
                span(T1, "r1", "", "job", 0, &[]),
            ],
        ),
        None,
    );
    let sql: Vec<String> = finished(&mut a).into_iter().map(|e| e.sql).collect();
    assert_eq!(
        sql,
        [
            "BEGIN",
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t VALUES (2)",
            "COMMIT",
            "DELETE FROM t"
        ]
    );
}

/// asyncpg's instrumentation makes a span of each fetch from a cursor: the
/// later fetches of one cursor go on reading its portal, with other
/// statements in between, and are one statement with the first, until the
/// transaction ends. Other scopes' spans so named are left as they are.
#[test]
fn asyncpg_cursor_fetches_are_one_statement_until_the_transaction_ends() {
    let fetch = |id: &str, start: u64, rows: u64| {
        span(
            T1,
            id,
            "r1",
            "CURSOR: SELECT",
            start,
            &[
                ("db.system", json!("postgresql")),
                ("db.statement", json!("SELECT id FROM products ORDER BY id")),
                ("db.response.returned_rows", json!(rows)),
            ],
        )
    };
    let spans = || {
        vec![
            db(T1, "b1", "r1", "BEGIN", 1_000),
            fetch("f1", 2_000, 10),
            db(
                T1,
                "s1",
                "r1",
                "SELECT stock FROM inventory WHERE id = 1",
                3_000,
            ),
            fetch("f2", 4_000, 10),
            fetch("f3", 5_000, 4),
            db(T1, "c1", "r1", "COMMIT", 6_000),
            db(T1, "b2", "r1", "BEGIN", 7_000),
            fetch("f4", 8_000, 10),
            db(T1, "c2", "r1", "ROLLBACK", 9_000),
            span(T1, "r1", "", "job", 0, &[]),
        ]
    };
    let mut a = Assembler::new(Options::default());
    a.push(
        request_from("svc", "opentelemetry.instrumentation.asyncpg", spans()),
        None,
    );
    let events = finished(&mut a);
    let shown: Vec<(&str, Option<u64>, Option<u64>)> = events
        .iter()
        .map(|e| (e.sql.split(' ').next().unwrap_or(""), e.rows, e.duration_us))
        .collect();
    assert_eq!(
        shown,
        [
            ("BEGIN", None, Some(250)),
            ("SELECT", Some(24), Some(750)),
            ("SELECT", None, Some(250)),
            ("COMMIT", None, Some(250)),
            ("BEGIN", None, Some(250)),
            ("SELECT", Some(10), Some(250)),
            ("ROLLBACK", None, Some(250)),
        ]
    );
    assert_eq!(a.stats().cursor_fetches_folded, 2);
    assert_eq!(a.stats().statements, 7);

    let mut other = Assembler::new(Options::default());
    other.push(request_from("svc", "test", spans()), None);
    assert_eq!(finished(&mut other).len(), 9, "every fetch a statement");
    assert!(ends_transaction("commit;") && ends_transaction("ROLLBACK"));
    assert!(!ends_transaction("ROLLBACK TO SAVEPOINT a") && !ends_transaction("COMMITTED"));
}

/// A Python DB-API driver's instrumentation records no BEGIN and no
/// `commit()`: its statements' transactions are unknown. Node's pg
/// instrumentation records them as queries, as does a scope not known.
#[test]
fn python_dbapi_instrumentations_leave_transactions_unknown() {
    for (scope, unknown) in [
        ("opentelemetry.instrumentation.psycopg", true),
        ("opentelemetry.instrumentation.psycopg2", true),
        ("opentelemetry.instrumentation.sqlalchemy", true),
        ("opentelemetry.instrumentation.asyncpg", false),
        ("@opentelemetry/instrumentation-pg", false),
        ("", false),
    ] {
        assert_eq!(hides_transactions(scope), unknown, "{scope}");
        let mut a = Assembler::new(Options::default());
        a.push(
            request_from(
                "svc",
                scope,
                vec![
                    db(T1, "c1", "r1", "insert 1", 1),
                    span(T1, "r1", "", "job", 0, &[]),
                ],
            ),
            None,
        );
        let events = finished(&mut a);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].txn_unknown, unknown, "{scope}");
    }
}

#[test]
fn error_status_is_a_failed_statement() {
    let mut a = Assembler::new(Options::default());
    let mut failed = span(
        T1,
        "c1",
        "r1",
        "INSERT",
        1,
        &[
            ("db.statement", json!("insert into t values (1)")),
            ("db.response.status_code", json!("23505")),
            ("error.type", json!("UniqueViolation")),
        ],
    );
    failed["status"] = json!({ "code": "STATUS_CODE_ERROR", "message": "duplicate key" });
    let mut typed = span(
        T1,
        "c2",
        "r1",
        "INSERT",
        2,
        &[
            ("db.statement", json!("insert into t values (2)")),
            ("error.type", json!("UniqueViolation")),
        ],
    );
    typed["status"] = json!({ "code": 2 });
    let fine = db(T1, "c3", "r1", "select 1", 3);
    a.push(
        request(
            "svc",
            vec![failed, typed, fine, span(T1, "r1", "", "job", 0, &[])],
        ),
        None,
    );
    let errors: Vec<_> = finished(&mut a).into_iter().map(|e| e.error).collect();
    assert_eq!(
        errors,
        [
            Some(SqlError {
                code: "23505".into(),
                message: "duplicate key".into()
            }),
            Some(SqlError {
                code: "UniqueViolation".into(),
                message: String::new()
            }),
            None,
        ]
    );
}

#[test]
fn flowaudit_attributes_win_then_step_from_rules_then_the_route() {
    let spans = || {
        vec![
            db(T1, "c1", "h1", "select 1", 3),
            span(
                T1,
                "h1",
                "r1",
                "handler browse_page",
                2,
                &[("http.route", json!("/browse")), ("tenant", json!("acme"))],
            ),
            span(
                T1,
                "r1",
                "",
                "GET /browse",
                1,
                &[("flowaudit.flow", json!("checkout"))],
            ),
            db(T2, "c2", "h2", "select 2", 3),
            span(
                T2,
                "h2",
                "r2",
                "handler",
                2,
                &[("flowaudit.step", json!("pay"))],
            ),
            span(
                T2,
                "r2",
                "",
                "POST /pay",
                1,
                &[("http.route", json!("/pay"))],
            ),
        ]
    };
    let run = |step_from: &[&str]| -> Vec<(Option<String>, Option<String>)> {
        let mut a = Assembler::new(Options {
            step_from: step_from
                .iter()
                .map(|s| s.parse().expect("a rule"))
                .collect(),
            ..Options::default()
        });
        a.push(request("shop", spans()), None);
        finished(&mut a)
            .into_iter()
            .map(|e| (e.flow, e.step))
            .collect()
    };
    let s = |f: &str, st: &str| (Some(f.to_owned()), Some(st.to_owned()));
    assert_eq!(run(&[]), [s("checkout", "/browse"), s("shop", "pay")]);
    assert_eq!(
        run(&["attr:tenant"]),
        [s("checkout", "acme"), s("shop", "pay")]
    );
    assert_eq!(
        run(&["name:^handler (\\w+)_page$"]),
        [s("checkout", "browse"), s("shop", "pay")]
    );
    // A rule that finds nothing falls through to the next, then the default.
    assert_eq!(
        run(&["attr:missing", "name:^GET"]),
        [s("checkout", "GET /browse"), s("shop", "pay")]
    );
    for bad in ["route", "attr:", "name:("] {
        assert!(bad.parse::<StepFrom>().is_err(), "{bad}");
    }
}

/// A trace waits after its root until `max_rooted_traces` later traces
/// found theirs; a span that comes after that is audited on its own and
/// counted.
#[test]
fn a_rooted_trace_waits_for_later_roots_then_late_spans_are_counted() {
    let mut a = Assembler::new(Options {
        max_rooted_traces: 1,
        ..Options::default()
    });
    let trace = |t: &str, sql: &str| {
        request(
            "shop",
            vec![
                db(t, "c1", "r1", sql, 2),
                span(
                    t,
                    "r1",
                    "",
                    "GET /browse",
                    0,
                    &[("http.route", json!("/browse"))],
                ),
            ],
        )
    };
    a.push(trace(T1, "select 1"), None);
    assert!(drained(&mut a).is_empty(), "T1 waits");
    a.push(trace(T2, "select 2"), None);
    let first = drained(&mut a);
    assert_eq!(first.len(), 1, "T2's root hands T1 out");
    assert_eq!(first[0].sql, "select 1");
    // T1's last statement, too late: on its own, with no step.
    a.push(
        request("shop", vec![db(T1, "c9", "r1", "select 9", 3)]),
        None,
    );
    let rest = finished(&mut a);
    let shown: Vec<(&str, Option<&str>)> = rest
        .iter()
        .map(|e| (e.sql.as_str(), e.step.as_deref()))
        .collect();
    assert_eq!(shown, [("select 2", Some("/browse")), ("select 9", None)]);
    assert_eq!(a.stats().late_spans, 1);
    assert_eq!(a.stats().traces_closed, 2);
}

#[test]
fn a_trace_never_closed_is_handed_out_at_the_end_and_the_oldest_beyond_the_cap() {
    let mut a = Assembler::new(Options {
        max_open_traces: 1,
        ..Options::default()
    });
    a.push(
        request(
            "shop",
            vec![
                db(T1, "c1", "h1", "select 1", 2),
                span(T1, "h1", "r1", "handler", 1, &[]),
            ],
        ),
        None,
    );
    assert!(drained(&mut a).is_empty());
    // A second open trace: the first is handed out, as far as it is known.
    a.push(
        request("shop", vec![db(T2, "c2", "h2", "select 2", 2)]),
        None,
    );
    let first = drained(&mut a);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].sql, "select 1");
    assert_eq!(
        first[0].step.as_deref(),
        Some("handler"),
        "the topmost span known"
    );
    assert_eq!(first[0].flow.as_deref(), Some("shop"));
    assert_eq!(a.stats().traces_evicted, 1);
    assert_eq!(a.open_traces(), 1);
    a.finish();
    let last = drained(&mut a);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].step, None, "no ancestor known: no step");
    assert_eq!(a.stats().traces_unclosed, 1);
    assert_eq!(a.open_traces(), 0);
}

#[test]
fn connections_named_by_attributes_or_one_per_parent() {
    let mut a = Assembler::new(Options::default());
    let pooled = |id: &str, parent: &str, port: i64, start: u64| {
        span(
            T1,
            id,
            parent,
            "q",
            start,
            &[
                ("db.query.text", json!("select 1")),
                ("server.address", json!("db")),
                ("network.local.port", json!(port)),
            ],
        )
    };
    a.push(
        request(
            "svc",
            vec![
                db(T1, "c1", "h1", "select 1", 1),
                db(T1, "c2", "h2", "select 2", 2),
                db(T1, "c3", "h2", "select 3", 3),
                pooled("c4", "h1", 50000, 4),
                pooled("c5", "h2", 50000, 5),
                pooled("c6", "h2", 50001, 6),
                span(T1, "h1", "r1", "a", 0, &[]),
                span(T1, "h2", "r1", "b", 0, &[]),
                span(T1, "r1", "", "job", 0, &[]),
            ],
        ),
        None,
    );
    let conns: Vec<u64> = finished(&mut a)
        .iter()
        .map(|e| e.conn.expect("conn"))
        .collect();
    assert_eq!(conns.len(), 6);
    assert_ne!(conns[0], conns[1], "two handlers");
    assert_eq!(conns[1], conns[2], "one handler");
    assert_eq!(conns[3], conns[4], "one local port, whatever the handler");
    assert_ne!(conns[4], conns[5]);
    assert!(conns.iter().all(|c| *c < 1 << 40));
}

fn read(text: &[u8]) -> (Result<Vec<Event>, OtlpError>, Vec<String>) {
    let input: Box<dyn std::io::BufRead> = Box::new(std::io::Cursor::new(text.to_vec()));
    let mut reader = OtlpReader::new(input, std::path::Path::new("t.json"), Options::default());
    let events = reader
        .by_ref()
        .map(|r| r.map(|(e, _)| e))
        .collect::<Result<Vec<_>, _>>();
    (events, reader.notes(false))
}

fn line(spans: Vec<Value>) -> String {
    json!({ "resourceSpans": [{ "scopeSpans": [{ "spans": spans }] }] }).to_string()
}

#[test]
fn reader_names_the_malformed_line_and_counts_a_truncated_last_one() {
    let good = line(vec![
        db(T1, "c1", "r1", "select 1", 1),
        span(T1, "r1", "", "job", 0, &[]),
    ]);
    let text = format!("{good}\n\n{{\"resourceSpans\": 1}}\n{good}\n");
    let (events, _) = read(text.as_bytes());
    let err = events.expect_err("malformed").to_string();
    assert!(
        err.starts_with("t.json:3: not an OTLP JSON request"),
        "{err}"
    );
    for bad in [
        "not json",
        "[1,2]",
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{}]}]}]}",
    ] {
        let (events, _) = read(format!("{good}\n{bad}\n").as_bytes());
        assert!(
            events.expect_err(bad).to_string().starts_with("t.json:2:"),
            "{bad}"
        );
    }
    // A file still being written: its last line is cut short.
    let text = format!("{good}\n{}", &good[..good.len() / 2]);
    let (events, notes) = read(text.as_bytes());
    assert_eq!(events.expect("read").len(), 1);
    assert_eq!(
        notes,
        [
            "t.json: read as otlp-json: 2 lines, 2 spans, 1 database spans, 1 statements",
            "t.json:2: truncated last line, no line end (not read)"
        ]
    );
}

#[test]
fn detection_recognises_a_request_line_only() {
    assert!(reader::recognises(&line(vec![])));
    assert!(!reader::recognises(r#"{"sql":"select 1"}"#));
    assert!(!reader::recognises("2024-01-01 LOG:  statement: select 1"));
}
