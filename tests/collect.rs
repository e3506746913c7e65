//! `flowaudit collect`: the OTLP/HTTP receiver, sent requests over real
//! HTTP/1.1 connections as exporters send them: JSON, protobuf, gzip; what
//! it refuses; stopping with SIGINT writes the report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use flowaudit::capture::otlp::proto;
use prost::Message;

struct Collector {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Collector {
    fn start(extra: &[&str]) -> Collector {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            .args(["collect", "--listen", "127.0.0.1:0", "--skip-invariants"])
            .args(["--format", "json", "--output"])
            .arg(dir.path().join("report.json"))
            .args(extra)
            .current_dir(dir.path())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowaudit collect starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("its first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in: {line}"))
            .to_owned();
        // The rest of stderr is read at the end.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            rest
        });
        Collector { child, addr, dir }
    }

    /// Sends one request; returns the status code and the body.
    fn post(&self, path: &str, content_type: &str, gzip: bool, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connects");
        let encoding = if gzip {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n{encoding}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(body).expect("body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {answer}"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    /// SIGINT, then the exit code and the JSON report.
    fn stop(mut self) -> (Option<i32>, Option<serde_json::Value>) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
        let status = self.child.wait().expect("exits");
        let report = std::fs::read_to_string(self.dir.path().join("report.json"))
            .ok()
            .map(|text| serde_json::from_str(&text).expect("a JSON report"));
        (status.code(), report)
    }
}

fn kv(key: &str, value: proto::Value) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value: Some(proto::AnyValue { value: Some(value) }),
    }
}

/// One request of a trace: `GET /products` listing 5 products, then one
/// stock lookup per product (an N+1), children first as exporters send them.
fn products_trace(trace: u8) -> proto::ExportTraceServiceRequest {
    let root_id = vec![trace, 0, 0, 0, 0, 0, 0, 1];
    let db = |n: u8, sql: String, start: u64, rows: Option<i64>| {
        let mut attributes = vec![
            kv("db.system.name", proto::Value::String("postgresql".into())),
            kv("db.query.text", proto::Value::String(sql)),
        ];
        if let Some(rows) = rows {
            attributes.push(kv("db.response.returned_rows", proto::Value::Int(rows)));
        }
        proto::Span {
            trace_id: vec![trace; 16],
            span_id: vec![trace, 0, 0, 0, 0, 0, 0, n + 2],
            parent_span_id: root_id.clone(),
            name: "SELECT".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 50_000,
            attributes,
            status: None,
        }
    };
    let base = 1_764_547_200_000_000_000 + u64::from(trace) * 1_000_000_000;
    let mut spans = vec![db(
        0,
        "select id from products".into(),
        base + 100_000,
        Some(5),
    )];
    for i in 0..5u8 {
        spans.push(db(
            i + 1,
            format!("select qty from stock where product_id = {i}"),
            base + 200_000 + u64::from(i) * 100_000,
            Some(1),
        ));
    }
    spans.push(proto::Span {
        trace_id: vec![trace; 16],
        span_id: root_id.clone(),
        parent_span_id: Vec::new(),
        name: "GET /products".into(),
        start_time_unix_nano: base,
        end_time_unix_nano: base + 900_000,
        attributes: vec![kv("http.route", proto::Value::String("/products".into()))],
        status: None,
    });
    proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(proto::Resource {
                attributes: vec![kv("service.name", proto::Value::String("shop".into()))],
            }),
            scope_spans: vec![proto::ScopeSpans { scope: None, spans }],
        }],
    }
}

/// The same request in OTLP JSON (hex ids, 64-bit integers as strings).
fn as_json(request: &proto::ExportTraceServiceRequest) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let value = |v: &Option<proto::AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(proto::Value::String(s)) => serde_json::json!({ "stringValue": s }),
        Some(proto::Value::Int(i)) => serde_json::json!({ "intValue": i.to_string() }),
        other => panic!("not in this test: {other:?}"),
    };
    let attrs = |a: &[proto::KeyValue]| -> Vec<serde_json::Value> {
        a.iter()
            .map(|kv| serde_json::json!({ "key": kv.key, "value": value(&kv.value) }))
            .collect()
    };
    let rs = &request.resource_spans[0];
    let spans: Vec<serde_json::Value> = rs.scope_spans[0]
        .spans
        .iter()
        .map(|s| {
            serde_json::json!({
                "traceId": hex(&s.trace_id), "spanId": hex(&s.span_id),
                "parentSpanId": hex(&s.parent_span_id), "name": s.name,
                "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                "endTimeUnixNano": s.end_time_unix_nano.to_string(),
                "attributes": attrs(&s.attributes),
            })
        })
        .collect();
    serde_json::json!({ "resourceSpans": [{
        "resource": { "attributes": attrs(&rs.resource.as_ref().expect("resource").attributes) },
        "scopeSpans": [{ "spans": spans }],
    }]})
    .to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn protobuf_json_and_gzip_requests_are_audited_as_they_arrive() {
    let collector = Collector::start(&[]);
    let json = "application/json";
    let protobuf = "application/x-protobuf";
    let (status, body) = collector.post(
        "/v1/traces",
        protobuf,
        false,
        &products_trace(1).encode_to_vec(),
    );
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, body) = collector.post(
        "/v1/traces",
        json,
        false,
        as_json(&products_trace(2)).as_bytes(),
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    let (status, _) = collector.post(
        "/v1/traces",
        protobuf,
        true,
        &gzip(&products_trace(3).encode_to_vec()),
    );
    assert_eq!(status, 200);
    let (status, _) = collector.post(
        "/v1/traces",
        json,
        true,
        &gzip(as_json(&products_trace(4)).as_bytes()),
    );
    assert_eq!(status, 200);
    // What it refuses, saying why; none of it stops the receiver.
    let (status, body) = collector.post("/v1/traces", protobuf, false, b"\xff\xff\xff");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an OTLP protobuf request"), "{body}");
    let (status, body) = collector.post("/v1/traces", json, false, b"{\"resourceSpans\": 3}");
    assert_eq!(status, 400, "{body}");
    let (status, _) = collector.post("/v1/metrics", protobuf, false, b"");
    assert_eq!(status, 404);
    let (status, _) = collector.post("/v1/traces", json, true, b"not gzip");
    assert_eq!(status, 400);

    let (code, report) = collector.stop();
    assert_eq!(code, Some(1), "an N+1 is an error");
    let report = report.expect("the report");
    assert_eq!(report["summary"]["statements"], 24, "{report:#}");
    assert_eq!(report["sources"], serde_json::json!(["otlp"]));
    let loops: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "n-plus-one")
        .collect();
    assert_eq!(loops.len(), 1, "{report:#}");
    assert_eq!(
        (&loops[0]["flow"], &loops[0]["step"], &loops[0]["count"]),
        (
            &serde_json::json!("shop"),
            &serde_json::json!("/products"),
            &serde_json::json!(20)
        )
    );
    let notes = report["notes"].to_string();
    // The request to /v1/metrics is answered 404, not counted.
    assert!(notes.contains("7 OTLP requests"), "{notes}");
    assert!(notes.contains("3 requests refused"), "{notes}");
    assert!(notes.contains("4 traces closed by their root"), "{notes}");
}

#[test]
fn a_run_that_received_nothing_is_exit_2_unless_allowed() {
    let (code, report) = Collector::start(&[]).stop();
    assert_eq!(code, Some(2));
    assert!(report.is_none());
    let (code, report) = Collector::start(&["--allow-empty"]).stop();
    assert_eq!(code, Some(0));
    assert_eq!(report.expect("report")["summary"]["statements"], 0);
}
