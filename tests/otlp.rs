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

/// (rule, step, fingerprint) of every finding but `slow-query`'s: a span
/// times a statement in the application, from the call to the result in
/// hand (its event loop, its pool and its driver included), the proxy on
/// the wire, so on a busy machine one capture may find a statement slow
/// that the other does not.
fn findings(report: &Value) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] != "slow-query")
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
    per_step(report, flow, "statements")
}

/// (step, queries: statements but transaction control and markers) of
/// `flow`, by step name.
fn queries(report: &Value, flow: &str) -> Vec<(String, u64)> {
    per_step(report, flow, "queries")
}

/// (step, the step's count `field`) of `flow`, by step name.
fn per_step(report: &Value, flow: &str, field: &str) -> Vec<(String, u64)> {
    let shop = report["flows"]
        .as_array()
        .expect("flows")
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
                s[field].as_u64().expect("count"),
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
    traced_app(python, dir, "psycopg", variant, semconv)
}

/// [`traced_shop`] of the corpus's `app` (`psycopg` or `asyncpg`).
fn traced_app(
    python: &Path,
    dir: &Path,
    app: &str,
    variant: &str,
    semconv: Option<&str>,
) -> (PathBuf, PathBuf) {
    let db = shop_db("otlp");
    let tag = format!("{app}-{variant}-{}", semconv.unwrap_or("old"));
    let otlp = dir.join(format!("shop-{tag}.json"));
    let counts = dir.join(format!("counts-{tag}.json"));
    let mut command = Command::new(python);
    command
        .arg(Path::new(ROOT).join("tests/corpus/python/otel_shop.py"))
        .args(["--app", app, "--variant", variant, "--counts"])
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

/// The rules that judge transactions: they leave alone the statements of a
/// Python DB-API driver's spans, whose BEGIN and `commit()` are not spans.
fn transaction_rules() -> Vec<&'static str> {
    flowaudit::rules::REGISTRY
        .iter()
        .filter(|m| m.judges_transactions)
        .map(|m| m.id)
        .collect()
}

/// The report's note that the transaction rules left statements alone.
fn unjudged_note(report: &Value) -> Option<String> {
    report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.contains("no BEGIN or COMMIT"))
        .map(str::to_owned)
}

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
    // psycopg's implicit BEGIN and its commit() are not spans: the traces
    // cannot tell the shop's transactions from autocommit, so the
    // transaction rules leave them alone and say so, rather than call the
    // cart and its lines (one transaction on the wire) non-atomic. Every
    // other finding is the proxy's.
    let judging = transaction_rules();
    let beyond_spans: BTreeSet<_> = proxy
        .iter()
        .filter(|f| judging.contains(&f.0.as_str()))
        .cloned()
        .collect();
    assert!(
        beyond_spans
            .iter()
            .any(|f| f.0 == "non-atomic-write" && f.1 == "checkout"),
        "the proxy sees the shipped checkout's autocommitted writes: {proxy:?}"
    );
    assert_eq!(
        traced,
        proxy.difference(&beyond_spans).cloned().collect(),
        "the traces give the proxy's findings but the transaction rules'"
    );
    let note = unjudged_note(&from_otlp).expect("a note on the statements left alone");
    assert!(
        note.starts_with(&format!(
            "{} statements came from",
            counter(&counts).iter().map(|c| c.1).sum::<u64>()
        )),
        "{note}"
    );

    // The fixed shop: no finding at all; before the transaction rules left
    // these statements alone, it had two false non-atomic-write errors.
    let (otlp_fixed, counts_fixed) = traced_shop(&python, &dir, "fixed", None);
    let fixed = report(&[&otlp_fixed], &["--step-from", STEP_FROM]);
    assert_eq!(statements(&fixed, "shop"), counter(&counts_fixed));
    assert_eq!(
        findings(&fixed),
        BTreeSet::new(),
        "the fixed shop's transactions are not taken for autocommit"
    );
    assert!(unjudged_note(&fixed).is_some(), "{}", fixed["notes"]);
    let _ = std::fs::remove_dir_all(&dir);
}

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
    if !pg::available("otlp shop through collect") {
        return;
    }
    let Some(python) = otel_python() else {
        return;
    };
    let dir = scratch("collect");
    let (file, _) = traced_shop(&python, &dir, "shipped", Some("database"));
    let from_file = report(&[&file], &["--step-from", STEP_FROM]);

    let (collector, endpoint) = start_collect(&dir.join("collected.json"));
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
    let from_collect = stop_collect(collector, &dir.join("collected.json"));
    assert!(out.status.success(), "otel_shop.py: {}", pg::text(&out));
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

/// Starts `flowaudit collect` on a free port, writing its JSON report to
/// `report`; returns it and the endpoint it printed.
fn start_collect(report: &Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut collector = flowaudit()
        .args(["collect", "--listen", "127.0.0.1:0", "--skip-invariants"])
        .args(["--step-from", STEP_FROM, "--fail-on", "never"])
        .args(["--format", "json", "--output"])
        .arg(report)
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
    (collector, endpoint)
}

/// Stops `collect` as a user does (SIGINT) and reads its report.
fn stop_collect(mut collector: std::process::Child, report: &Path) -> Value {
    let pid = nix::unistd::Pid::from_raw(collector.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = collector.wait().expect("collect exits");
    assert_eq!(status.code(), Some(0), "collect's exit");
    serde_json::from_str(&std::fs::read_to_string(report).expect("the report")).expect("JSON")
}

/// The corpus's Node modules with the OpenTelemetry packages, or why not.
fn otel_node() -> bool {
    let modules = Path::new(ROOT).join("tests/corpus/node/node_modules/@opentelemetry");
    let ok = modules.join("instrumentation-pg").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let reason =
        "node or the corpus's OpenTelemetry modules are missing (run tests/corpus/setup.sh)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("otlp node shop: {reason} (required in CI)");
    }
    eprintln!("skipping otlp node shop: {reason}");
    false
}

/// Where the traced Node shop sends its spans.
enum Export<'a> {
    File(&'a Path),
    Http(&'a str),
}

/// Runs the corpus's pg shop under @opentelemetry/instrumentation-pg on a
/// database of its own; returns the application's own counts per step.
fn traced_node_shop(dir: &Path, variant: &str, semconv: Option<&str>, export: Export) -> PathBuf {
    let db = shop_db("otlpnode");
    traced_node_app(dir, "pg", &db.url(pg::PG_ADDR), variant, semconv, export)
}

/// Runs the corpus's Node `app` (`pg` or `mysql2`) under its OpenTelemetry
/// instrumentation on the database at `url`; returns the application's own
/// counts per step.
fn traced_node_app(
    dir: &Path,
    app: &str,
    url: &str,
    variant: &str,
    semconv: Option<&str>,
    export: Export,
) -> PathBuf {
    let counts = dir.join(format!(
        "node-counts-{app}-{variant}-{}-{}.json",
        semconv.unwrap_or("old"),
        matches!(export, Export::Http(_))
    ));
    let mut command = Command::new("node");
    command
        .arg(Path::new(ROOT).join("tests/corpus/node/otel_shop.js"))
        .args(["--app", app, "--variant", variant, "--counts"])
        .arg(&counts)
        .env("DATABASE_URL", url)
        .env_remove("OTEL_SEMCONV_STABILITY_OPT_IN");
    match export {
        Export::File(path) => command.arg("--otlp").arg(path),
        Export::Http(endpoint) => command.args(["--otlp-http", endpoint]),
    };
    if let Some(mode) = semconv {
        command.env("OTEL_SEMCONV_STABILITY_OPT_IN", mode);
    }
    let out = command.output().expect("node runs");
    assert!(out.status.success(), "otel_shop.js: {}", pg::text(&out));
    counts
}

/// The same pg shop through the proxy (`flowaudit run`): its JSON report.
fn node_shop_through_the_proxy(dir: &Path, variant: &str) -> Value {
    let db = shop_db("otlpnode_proxy");
    let report = dir.join(format!("node-proxy-{variant}.json"));
    let out = flowaudit()
        .args(["run", "--skip-invariants", "--upstream"])
        .arg(db.url(pg::PG_ADDR))
        .args(["--format", "json", "--fail-on", "never", "--output"])
        .arg(&report)
        .arg("--")
        .arg("node")
        .arg(Path::new(ROOT).join("tests/corpus/node/pg_shop.js"))
        .args(["--variant", variant, "--counts"])
        .arg(dir.join(format!("node-proxy-counts-{variant}.json")))
        .output()
        .expect("flowaudit run starts");
    assert_eq!(out.status.code(), Some(0), "run: {}", pg::text(&out));
    serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON")
}

/// Node's pg instrumentation records BEGIN, COMMIT and ROLLBACK as the
/// queries they are, so its traces give every finding the proxy gives, the
/// transaction rules' too, on the shipped shop (N+1, a non-atomic checkout,
/// …) and on the fixed one (none); under both semantic conventions; through
/// a file in the Collector's format and through the SDK's OTLP/HTTP exporter
/// (JSON) to `flowaudit collect`.
#[test]
fn node_pg_instrumentation_gives_the_proxys_findings_transactions_too() {
    if !pg::available("otlp node shop") || !otel_node() {
        return;
    }
    let dir = scratch("node");
    for variant in ["shipped", "fixed"] {
        let proxy = node_shop_through_the_proxy(&dir, variant);
        let expected = findings(&proxy);
        if variant == "shipped" {
            for rule in ["n-plus-one", "non-atomic-write"] {
                assert!(
                    expected.iter().any(|f| f.0 == rule),
                    "the proxy finds {rule} in the shipped shop: {expected:?}"
                );
            }
        } else {
            assert!(expected.is_empty(), "the fixed shop: {expected:?}");
        }
        for semconv in [None, Some("database")] {
            let file = dir.join(format!("node-{variant}-{}.json", semconv.unwrap_or("old")));
            let counts = traced_node_shop(&dir, variant, semconv, Export::File(&file));
            let text = std::fs::read_to_string(&file).expect("otlp file");
            let field = if semconv.is_some() {
                "\"db.query.text\""
            } else {
                "\"db.statement\""
            };
            assert!(text.contains(field), "{variant}: no {field}");
            assert!(
                text.contains("\"db.postgresql.values\""),
                "bind values recorded"
            );
            let traced = report(&[&file], &["--step-from", STEP_FROM]);
            assert_eq!(traced["sources"], serde_json::json!(["otlp"]));
            let mut app = counter(&counts);
            app.sort();
            assert_eq!(statements(&traced, "shop"), app, "{variant} {semconv:?}");
            assert_eq!(
                findings(&traced),
                expected,
                "{variant} {semconv:?}: the traces' findings against the proxy's"
            );
            assert!(
                !traced["notes"]
                    .as_array()
                    .expect("notes")
                    .iter()
                    .any(|n| n.as_str().unwrap_or("").contains("no BEGIN or COMMIT")),
                "pg's transactions are seen: {}",
                traced["notes"]
            );
            if semconv.is_none() {
                // The SDK flushes its last batches at once at shutdown, so
                // the last request's own span may arrive before the batch
                // with its last statements: the same file with that span
                // moved to a line of its own before them gives the same
                // audit, with those statements in their trace (without the
                // wait after a root, they came too late for it).
                let swapped = dir.join(format!("node-{variant}-root-first.json"));
                std::fs::write(&swapped, root_first(&text, "POST /checkout")).expect("write");
                let reordered = report(&[&swapped], &["--step-from", STEP_FROM]);
                assert_eq!(findings(&reordered), expected, "{variant}, root first");
                assert_eq!(statements(&reordered, "shop"), app, "{variant}, root first");
                assert!(
                    !reordered["notes"]
                        .to_string()
                        .contains("arrived after their trace"),
                    "the trace waited for its last statements: {}",
                    reordered["notes"]
                );
            }
        }

        let (collector, endpoint) =
            start_collect(&dir.join(format!("node-collected-{variant}.json")));
        let counts = traced_node_shop(&dir, variant, None, Export::Http(&endpoint));
        let collected = stop_collect(
            collector,
            &dir.join(format!("node-collected-{variant}.json")),
        );
        let mut app = counter(&counts);
        app.sort();
        assert_eq!(
            statements(&collected, "shop"),
            app,
            "{variant} through collect"
        );
        assert_eq!(findings(&collected), expected, "{variant} through collect");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// asyncpg's instrumentation traces `execute()`, and asyncpg's
/// `conn.transaction()` sends BEGIN and COMMIT through it: the asyncpg
/// shop's traces give every finding the proxy gives, the transaction rules'
/// too, shipped and fixed. Its shipped browse reads the catalogue through a
/// cursor, whose every fetch is a span: they count as the one statement the
/// server ran.
#[test]
fn asyncpg_instrumentation_gives_the_proxys_findings_transactions_too() {
    if !pg::available("otlp asyncpg shop") {
        return;
    }
    let Some(python) = otel_python() else { return };
    let dir = scratch("asyncpg");
    for variant in ["shipped", "fixed"] {
        let db = shop_db("otlp_apg_proxy");
        let proxy_report = dir.join(format!("proxy-{variant}.json"));
        let out = flowaudit()
            .args(["run", "--skip-invariants", "--upstream"])
            .arg(db.url(pg::PG_ADDR))
            .args(["--format", "json", "--fail-on", "never", "--output"])
            .arg(&proxy_report)
            .arg("--")
            .arg(&python)
            .arg(Path::new(ROOT).join("tests/corpus/python/asyncpg_shop.py"))
            .args(["--variant", variant, "--counts"])
            .arg(dir.join(format!("proxy-counts-{variant}.json")))
            .output()
            .expect("flowaudit run starts");
        assert_eq!(out.status.code(), Some(0), "run: {}", pg::text(&out));
        let proxy: Value =
            serde_json::from_str(&std::fs::read_to_string(&proxy_report).expect("report"))
                .expect("JSON");
        let expected = findings(&proxy);
        if variant == "shipped" {
            for rule in ["n-plus-one", "non-atomic-write"] {
                assert!(
                    expected.iter().any(|f| f.0 == rule),
                    "the proxy finds {rule} in the shipped shop: {expected:?}"
                );
            }
        } else {
            assert!(expected.is_empty(), "the fixed shop: {expected:?}");
        }

        let (file, counts) = traced_app(&python, &dir, "asyncpg", variant, None);
        let traced = report(&[&file], &["--step-from", STEP_FROM]);
        assert_eq!(
            findings(&traced),
            expected,
            "{variant}: the traces' findings against the proxy's"
        );
        let mut app = counter(&counts);
        app.sort();
        assert_eq!(
            queries(&traced, "shop"),
            app,
            "{variant}: the application counts its queries, not BEGIN and COMMIT"
        );
        assert!(unjudged_note(&traced).is_none(), "{}", traced["notes"]);
        let folded = traced["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(Value::as_str)
            .any(|n| n.contains("asyncpg cursor fetches counted with the statement"));
        assert_eq!(folded, variant == "shipped", "{}", traced["notes"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `text` (OTLP JSON lines) with the span named `root` taken out of its
/// line and sent on a line of its own just before it: before the statements
/// that ended last, in the batch with it (a COMMIT), as two batches sent at
/// once can arrive. The statements keep their order.
fn root_first(text: &str, root: &str) -> String {
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let at = lines
        .iter()
        .position(|l| l.to_string().contains(&format!("\"name\":\"{root}\"")))
        .unwrap_or_else(|| panic!("no span {root}"));
    let mut alone = lines[at].clone();
    for (line, keep_root) in [(&mut lines[at], false), (&mut alone, true)] {
        for resource in line["resourceSpans"].as_array_mut().expect("resourceSpans") {
            for scope in resource["scopeSpans"].as_array_mut().expect("scopeSpans") {
                scope["spans"]
                    .as_array_mut()
                    .expect("spans")
                    .retain(|span| (span["name"] == root) == keep_root);
            }
        }
    }
    lines.insert(at, alone);
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The rules that compare bind values: blind where the spans recorded none.
const VALUE_RULES: &[&str] = &["repeated-query", "unlocked-read-modify-write"];

/// Node's mysql2 instrumentation records BEGIN (`START TRANSACTION`) and
/// COMMIT, and no bind values: against MariaDB, the traces give the proxy's
/// findings but those of the rules that compare values, which the note
/// names, and never a false repeat of statements whose values are unknown.
#[test]
fn node_mysql2_instrumentation_gives_the_proxys_findings_but_those_needing_values() {
    if !support::mysql::available("otlp mysql2 shop") || !otel_node() {
        return;
    }
    let dir = scratch("mysql2");
    for variant in ["shipped", "fixed"] {
        let proxied = support::mysql::TestDb::new("otlp_proxy");
        load_mysql_shop(&proxied.name);
        let proxy_report = dir.join(format!("proxy-{variant}.json"));
        let out = flowaudit()
            .args(["run", "--skip-invariants", "--upstream"])
            .arg(proxied.url(support::mysql::MARIADB_ADDR))
            .args(["--format", "json", "--fail-on", "never", "--output"])
            .arg(&proxy_report)
            .arg("--")
            .arg("node")
            .arg(Path::new(ROOT).join("tests/corpus/node/mysql2_shop.js"))
            .args(["--variant", variant, "--counts"])
            .arg(dir.join(format!("proxy-counts-{variant}.json")))
            .output()
            .expect("flowaudit run starts");
        assert_eq!(out.status.code(), Some(0), "run: {}", pg::text(&out));
        let proxy: Value =
            serde_json::from_str(&std::fs::read_to_string(&proxy_report).expect("report"))
                .expect("JSON");
        let expected = findings(&proxy);

        let traced_db = support::mysql::TestDb::new("otlp");
        load_mysql_shop(&traced_db.name);
        let file = dir.join(format!("mysql2-{variant}.json"));
        let counts = traced_node_app(
            &dir,
            "mysql2",
            &traced_db.url(support::mysql::MARIADB_ADDR),
            variant,
            None,
            Export::File(&file),
        );
        let traced = report(&[&file], &["--step-from", STEP_FROM]);
        assert_eq!(traced["sources"], serde_json::json!(["otlp-mysql"]));
        let mut app = counter(&counts);
        app.sort();
        assert_eq!(queries(&traced, "shop"), app, "{variant}");
        let needing_values: BTreeSet<_> = expected
            .iter()
            .filter(|f| VALUE_RULES.contains(&f.0.as_str()))
            .cloned()
            .collect();
        if variant == "shipped" {
            assert!(
                !needing_values.is_empty()
                    && expected.iter().any(|f| f.0 == "n-plus-one")
                    && expected.iter().any(|f| f.0 == "non-atomic-write"),
                "the proxy's findings on the shipped shop: {expected:?}"
            );
            assert!(
                traced["notes"]
                    .to_string()
                    .contains("bind values their source did not record"),
                "{}",
                traced["notes"]
            );
        } else {
            assert!(expected.is_empty(), "the fixed shop: {expected:?}");
        }
        assert_eq!(
            findings(&traced),
            expected.difference(&needing_values).cloned().collect(),
            "{variant}: the proxy's findings but those that compare values"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The corpus's MariaDB schema and catalogue in database `name`.
fn load_mysql_shop(name: &str) {
    let out = Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", name])
        .stdin(
            std::fs::File::open(Path::new(ROOT).join("tests/corpus/schema/mysql.sql"))
                .expect("schema"),
        )
        .output()
        .expect("mysql runs");
    assert!(out.status.success(), "{}", pg::text(&out));
}
