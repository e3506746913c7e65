//! OpenTelemetry traces as input (`analyze --input otlp-json`, issue 20): the
//! corpus's psycopg shop traced by the real SDK and
//! opentelemetry-instrumentation-psycopg into the Collector file exporter's
//! format (tests/corpus/python/otel_shop.py), audited, and compared with the
//! same application through the proxy. Plus the file-level behaviour that
//! needs no server: detection, gzip, a malformed line.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 and tests/corpus/setup.sh's venv:
//! without them the test says why and skips, except with CI=true.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::pg::{self, TestDb};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The shop's steps are requests `POST /<step>`: the step is the route's name.
const STEP_FROM: &str = r"name:^POST /(\w+)$";

fn flowaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowaudit"))
}

fn shop_db(tag: &str) -> TestDb {
    let db = TestDb::new(tag);
    for file in ["schema.sql", "seed.sql"] {
        let path = Path::new(ROOT).join("tests/workloads/shop_pg").join(file);
        let out = pg::psql(
            "5432",
            &db.name,
            &[
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                path.to_str().expect("path"),
            ],
        );
        assert!(out.status.success(), "{file}: {}", pg::text(&out));
    }
    db
}

fn analyze(files: &[&Path], extra: &[&str]) -> (Option<i32>, String, String) {
    let out = flowaudit()
        .args([
            "analyze",
            "--skip-invariants",
            "--format",
            "json",
            "--fail-on",
            "never",
        ])
        .args(extra)
        .args(files)
        .output()
        .expect("flowaudit runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(files: &[&Path], extra: &[&str]) -> Value {
    let (code, stdout, stderr) = analyze(files, extra);
    assert_eq!(code, Some(0), "analyze: {stderr}");
    serde_json::from_str(&stdout).expect("a JSON report")
}

/// (rule, step, fingerprint) of every finding.
fn findings(report: &Value) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["step"].as_str().unwrap_or("").to_owned(),
                f["fingerprint"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// (step, statements) of `flow`, by step name.
fn statements(report: &Value, flow: &str) -> Vec<(String, u64)> {
    let flows = report["flows"].as_array().expect("flows");
    let shop = flows
        .iter()
        .find(|f| f["name"] == flow)
        .unwrap_or_else(|| panic!("no flow {flow} in {report}"));
    let mut steps: Vec<(String, u64)> = shop["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_owned(),
                s["statements"].as_u64().expect("count"),
            )
        })
        .collect();
    steps.sort();
    steps
}

fn counter(path: &Path) -> Vec<(String, u64)> {
    let counts: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("counts")).expect("JSON");
    counts["steps"]
        .as_object()
        .expect("steps")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect()
}

/// The corpus venv with the OpenTelemetry packages, or why not.
fn otel_python() -> Option<PathBuf> {
    let python = pg::corpus_python("otlp shop")?;
    let ok = Command::new(&python)
        .args(["-c", "import opentelemetry.instrumentation.psycopg"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let reason = "the corpus venv lacks the OpenTelemetry packages (run tests/corpus/setup.sh)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("otlp shop: {reason} (required in CI)");
    }
    eprintln!("skipping otlp shop: {reason}");
    None
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("otlp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the traced shop (shipped) straight on a database of its own; returns
/// the OTLP file and the application's own counts per step.
fn traced_shop(
    python: &Path,
    dir: &Path,
    variant: &str,
    semconv: Option<&str>,
) -> (PathBuf, PathBuf) {
    let db = shop_db("otlp");
    let tag = format!("{variant}-{}", semconv.unwrap_or("old"));
    let otlp = dir.join(format!("shop-{tag}.json"));
    let counts = dir.join(format!("counts-{tag}.json"));
    let mut command = Command::new(python);
    command
        .arg(Path::new(ROOT).join("tests/corpus/python/otel_shop.py"))
        .args(["--variant", variant, "--counts"])
        .arg(&counts)
        .arg("--otlp")
        .arg(&otlp)
        .env("DATABASE_URL", db.url(pg::PG_ADDR))
        .env_remove("OTEL_SEMCONV_STABILITY_OPT_IN");
    if let Some(mode) = semconv {
        command.env("OTEL_SEMCONV_STABILITY_OPT_IN", mode);
    }
    let out = command.output().expect("python runs");
    assert!(out.status.success(), "otel_shop.py: {}", pg::text(&out));
    (otlp, counts)
}

/// Findings of the OTLP capture that the proxy's capture of the same run
/// does not have, and the other way round: (rule, step, why). Everything
/// else, the N+1 first, is equal.
const ONLY_OTLP: &[(&str, &str, &str)] = &[(
    "non-atomic-write",
    "add_to_cart",
    "psycopg's implicit BEGIN and its commit() are not spans: the cart and its lines, one \
     transaction on the wire, look like three autocommitted writes",
)];

#[test]
fn instrumented_shop_traces_give_the_proxys_findings() {
    if !pg::available("otlp shop") {
        return;
    }
    let Some(python) = otel_python() else { return };
    let dir = scratch("shop");

    // The older conventions (db.statement, db.system), the instrumentation's default.
    let (otlp, counts) = traced_shop(&python, &dir, "shipped", None);
    let text = std::fs::read_to_string(&otlp).expect("otlp file");
    assert!(text.contains("\"db.statement\"") && !text.contains("\"db.query.text\""));
    let from_otlp = report(&[&otlp], &["--step-from", STEP_FROM]);
    assert_eq!(
        statements(&from_otlp, "shop"),
        counter(&counts),
        "one span per execute()/executemany(), as the application counts"
    );
    let n_plus_one: Vec<_> = findings(&from_otlp)
        .into_iter()
        .filter(|f| f.0 == "n-plus-one")
        .collect();
    assert_eq!(
        n_plus_one,
        [(
            "n-plus-one".to_owned(),
            "browse".to_owned(),
            "select stock from inventory where product_id = ?".to_owned()
        )]
    );
    assert_eq!(from_otlp["sources"], serde_json::json!(["otlp"]));

    // The current conventions (db.query.text, db.system.name): the same audit.
    let (otlp_new, counts_new) = traced_shop(&python, &dir, "shipped", Some("database"));
    let text = std::fs::read_to_string(&otlp_new).expect("otlp file");
    assert!(text.contains("\"db.query.text\"") && !text.contains("\"db.statement\""));
    let from_new = report(&[&otlp_new], &["--step-from", STEP_FROM]);
    assert_eq!(statements(&from_new, "shop"), counter(&counts_new));
    assert_eq!(findings(&from_new), findings(&from_otlp));

    // Without --step-from the step is the route, `/browse`.
    let by_route = report(&[&otlp], &[]);
    assert!(
        findings(&by_route)
            .iter()
            .any(|f| f.0 == "n-plus-one" && f.1 == "/browse"),
        "{by_route}"
    );

    // The same application through the proxy.
    let db = shop_db("otlp_proxy");
    let proxy_counts = dir.join("counts-proxy.json");
    let proxy_report = dir.join("proxy.json");
    let out = flowaudit()
        .args(["run", "--skip-invariants", "--upstream"])
        .arg(db.url(pg::PG_ADDR))
        .args(["--format", "json", "--fail-on", "never", "--output"])
        .arg(&proxy_report)
        .arg("--")
        .arg(&python)
        .arg(Path::new(ROOT).join("tests/corpus/python/psycopg_shop.py"))
        .args(["--variant", "shipped", "--counts"])
        .arg(&proxy_counts)
        .output()
        .expect("flowaudit run starts");
    assert_eq!(out.status.code(), Some(0), "run: {}", pg::text(&out));
    let from_proxy: Value =
        serde_json::from_str(&std::fs::read_to_string(&proxy_report).expect("report"))
            .expect("JSON");
    let proxy = findings(&from_proxy);
    let traced = findings(&from_otlp);
    let n_plus_one_of = |set: &BTreeSet<(String, String, String)>| -> Vec<_> {
        set.iter()
            .filter(|f| f.0 == "n-plus-one")
            .cloned()
            .collect()
    };
    assert_eq!(n_plus_one_of(&traced), n_plus_one_of(&proxy));
    let only_otlp: Vec<(&str, &str)> = traced
        .difference(&proxy)
        .map(|f| (f.0.as_str(), f.1.as_str()))
        .collect();
    let only_proxy: Vec<_> = proxy.difference(&traced).collect();
    assert_eq!(
        only_otlp,
        ONLY_OTLP.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        "findings only the traces give"
    );
    assert!(
        only_proxy.is_empty(),
        "findings only the proxy gives: {only_proxy:?}"
    );

    // The fixed shop: no N+1, no repeated query; what the traces cannot see
    // is its transactions.
    let (otlp_fixed, counts_fixed) = traced_shop(&python, &dir, "fixed", None);
    let fixed = report(&[&otlp_fixed], &["--step-from", STEP_FROM]);
    assert_eq!(statements(&fixed, "shop"), counter(&counts_fixed));
    let fixed_findings: Vec<(&str, &str)> = fixed["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or(""),
                f["step"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        fixed_findings,
        FIXED_ONLY_OTLP
            .iter()
            .map(|d| (d.0, d.1))
            .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the traces of the fixed shop report that the proxy does not (it
/// reports nothing there): its transactions are invisible in the spans.
const FIXED_ONLY_OTLP: &[(&str, &str, &str)] = &[
    (
        "non-atomic-write",
        "add_to_cart",
        "the cart and its lines are one psycopg transaction (implicit BEGIN, one commit()), \
         neither of which is a span",
    ),
    (
        "non-atomic-write",
        "checkout",
        "conn.transaction()'s BEGIN and COMMIT are not spans",
    ),
];

/// A trace of one request: a handler span, a statement, the root last.
fn one_request_line() -> String {
    let t = "0af7651916cd43dd8448eb211c80319c";
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [
            {"traceId": t, "spanId": "c1", "parentSpanId": "h1", "name": "SELECT",
             "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000001000000",
             "attributes": [
                {"key": "db.system", "value": {"stringValue": "postgresql"}},
                {"key": "db.statement", "value": {"stringValue": "select 1"}}]},
            {"traceId": t, "spanId": "h1", "parentSpanId": "r1", "name": "handler",
             "startTimeUnixNano": "1699999999999000000", "endTimeUnixNano": "1700000000002000000",
             "attributes": [{"key": "http.route", "value": {"stringValue": "/orders"}}]},
            {"traceId": t, "spanId": "r1", "name": "GET /orders",
             "startTimeUnixNano": "1699999999998000000", "endTimeUnixNano": "1700000000003000000"}
        ]}]
    }]})
    .to_string()
}

#[test]
fn otlp_json_is_detected_gzip_too_and_a_bad_line_is_exit_2() {
    let dir = scratch("files");
    let plain = dir.join("spans.json");
    std::fs::write(&plain, format!("{}\n", one_request_line())).expect("write");
    let r = report(&[&plain], &[]);
    // The flow is the service, the step the route.
    assert_eq!(statements(&r, "api"), [("/orders".to_owned(), 1)]);
    assert!(
        r["notes"].as_array().expect("notes").iter().any(|n| n
            .as_str()
            .unwrap_or("")
            .contains("read as otlp-json (detected)")),
        "{r}"
    );

    let gz = dir.join("spans.json.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::default(),
    );
    writeln!(encoder, "{}", one_request_line()).expect("write");
    encoder.finish().expect("gzip");
    let from_gz = report(&[&gz], &[]);
    assert_eq!(from_gz["flows"], r["flows"]);

    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"resourceSpans\": [{{\"scopeSpans\": 7}}]}}\n",
            one_request_line()
        ),
    )
    .expect("write");
    let (code, _, stderr) = analyze(&[&bad], &["--input", "otlp-json"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: not an OTLP JSON request", bad.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, _, stderr) = analyze(&[&plain], &["--step-from", "route"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--step-from"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SDK's own OTLP/HTTP exporter (protobuf) sending the same shop's spans
/// to `flowaudit collect`: the findings and per-step counts equal those of
/// the file the Collector's format writes, and the application's own counts.
#[test]
fn the_sdks_otlp_http_exporter_to_collect_gives_the_files_findings() {
    use std::io::{BufRead, BufReader};
    if !pg::available("otlp shop through collect") {
        return;
    }
    let Some(python) = otel_python() else {
        return;
    };
    let dir = scratch("collect");
    let (file, _) = traced_shop(&python, &dir, "shipped", Some("database"));
    let from_file = report(&[&file], &["--step-from", STEP_FROM]);

    let collected = dir.join("collected.json");
    let mut collector = flowaudit()
        .args(["collect", "--listen", "127.0.0.1:0", "--skip-invariants"])
        .args(["--step-from", STEP_FROM, "--fail-on", "never"])
        .args(["--format", "json", "--output"])
        .arg(&collected)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flowaudit collect starts");
    let mut stderr = BufReader::new(collector.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("its first line");
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/v1/traces;"))
        .map(|w| w.trim_end_matches("/v1/traces;").to_owned())
        .unwrap_or_else(|| panic!("no endpoint in: {line}"));
    let db = shop_db("otlphttp");
    let counts = dir.join("counts-http.json");
    let out = Command::new(&python)
        .arg(Path::new(ROOT).join("tests/corpus/python/otel_shop.py"))
        .args(["--variant", "shipped", "--counts"])
        .arg(&counts)
        .args(["--otlp-http", &endpoint])
        .env("DATABASE_URL", db.url(pg::PG_ADDR))
        .env("OTEL_SEMCONV_STABILITY_OPT_IN", "database")
        .output()
        .expect("python runs");
    let pid = nix::unistd::Pid::from_raw(collector.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = collector.wait().expect("collect exits");
    assert!(out.status.success(), "otel_shop.py: {}", pg::text(&out));
    assert_eq!(status.code(), Some(0), "collect's exit");
    let from_collect: Value =
        serde_json::from_str(&std::fs::read_to_string(&collected).expect("the report"))
            .expect("JSON");
    assert_eq!(from_collect["sources"], serde_json::json!(["otlp"]));
    assert_eq!(findings(&from_collect), findings(&from_file));
    assert!(
        findings(&from_collect)
            .iter()
            .any(|(rule, step, _)| rule == "n-plus-one" && step == "browse"),
        "{from_collect:#}"
    );
    let mut app = counter(&counts);
    app.sort();
    assert_eq!(statements(&from_collect, "shop"), app);
    assert_eq!(
        statements(&from_collect, "shop"),
        statements(&from_file, "shop")
    );
}
