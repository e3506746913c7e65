//! The client corpus (tests/corpus/, its contract in tests/corpus/README.md):
//! small real applications on the drivers and ORMs people use, each running
//! the shop's journey in a shipped variant with planted defects and a fixed
//! variant with none. Every PostgreSQL application runs through `flowaudit
//! run` in front of a throwaway cluster that logs every statement, so one run
//! gives three captures (the proxy's trace, the stderr log, the csvlog). Every
//! MariaDB application runs through `flowaudit run --upstream mysql://…` with
//! the server's general query log on, and again straight on the server with
//! the log on: three captures again (the MySQL proxy's trace, the general log
//! of that run, the general log of the direct run), and the proxy's trace
//! holds the statements its run's general log shows, each event with the
//! transaction status the server reported (issue 17).
//!
//! For every application, variant and capture this checks (issue 13):
//! - shipped: each planted defect found at its step with the right rule and
//!   count, and no other error or warning;
//! - fixed: no error and no warning;
//! - each step's `queries` equal to the application's own counter, every
//!   difference named in [`DIFFERENCES`] with its reason;
//! - the same findings and per-step counts from every capture of a run;
//! - the journey did its work (one order of 29,600 cents, the stock taken).
//!
//! The README's accuracy table is the one this run renders: the test fails
//! when they differ, and writes the new table to target/corpus-table.md.
//!
//! Needs tests/corpus/setup.sh to have run (the Python venv, Node modules):
//! without them it says so and skips, except with CI=true, where it fails.

mod support;

#[path = "corpus/rust/sqlx_shop.rs"]
mod sqlx_shop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::server_logs::{GeneralLog, LoggingCluster, mysql};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    Postgres,
    MariaDb,
}

#[derive(Debug, Clone, Copy)]
enum Program {
    /// A script under tests/corpus/python, run by the corpus venv.
    Python(&'static str),
    /// A script under tests/corpus/node.
    Node(&'static str),
    /// tests/corpus/rust/sqlx_shop.rs, in this test binary.
    Sqlx,
}

#[derive(Debug)]
struct App {
    /// What the README's table calls it.
    stack: &'static str,
    server: Server,
    program: Program,
}

const APPS: [App; 9] = [
    App {
        stack: "SQLAlchemy 2 ORM, psycopg 3",
        server: Server::Postgres,
        program: Program::Python("sqlalchemy_shop.py"),
    },
    App {
        stack: "psycopg 3 (pipeline, executemany)",
        server: Server::Postgres,
        program: Program::Python("psycopg_shop.py"),
    },
    App {
        stack: "asyncpg",
        server: Server::Postgres,
        program: Program::Python("asyncpg_shop.py"),
    },
    App {
        stack: "Django 5 ORM, psycopg 3",
        server: Server::Postgres,
        program: Program::Python("django_shop.py"),
    },
    App {
        stack: "node-postgres (pg)",
        server: Server::Postgres,
        program: Program::Node("pg_shop.js"),
    },
    App {
        stack: "Knex on pg",
        server: Server::Postgres,
        program: Program::Node("knex_shop.js"),
    },
    App {
        stack: "sqlx (Rust)",
        server: Server::Postgres,
        program: Program::Sqlx,
    },
    App {
        stack: "PyMySQL (autocommit off)",
        server: Server::MariaDb,
        program: Program::Python("pymysql_shop.py"),
    },
    App {
        stack: "mysql2 (Node)",
        server: Server::MariaDb,
        program: Program::Node("mysql2_shop.js"),
    },
];

/// The defects every shipped variant plants (tests/corpus/README.md):
/// (rule, step, count).
const PLANTED: [(&str, &str, u64); 4] = [
    // One stock lookup per product of the 24.
    ("n-plus-one", "browse", 24),
    // The user looked up again for each of the 2 cart lines.
    ("repeated-query", "add_to_cart", 2),
    // One run of checkout whose writes commit separately.
    ("non-atomic-write", "checkout", 1),
    // The stock of each of the 2 lines read, then written as computed.
    ("unlocked-read-modify-write", "checkout", 2),
];

/// Findings on a shipped variant beyond the planted ones that are right
/// about the application's code: (program, rule, step, count, why).
const ALSO_RIGHT: &[(&str, &str, &str, u64, &str)] = &[
    (
        "asyncpg_shop.py",
        "non-atomic-write",
        "add_to_cart",
        1,
        "asyncpg has no implicit transaction: the shipped cart and lines commit one by one",
    ),
    (
        "django_shop.py",
        "non-atomic-write",
        "add_to_cart",
        1,
        "Django autocommits: the shipped get_or_create of the cart and each line commit on their own",
    ),
    (
        "pg_shop.js",
        "non-atomic-write",
        "add_to_cart",
        1,
        "the shipped add_to_cart creates the cart and inserts each line in autocommit",
    ),
    (
        "knex_shop.js",
        "non-atomic-write",
        "add_to_cart",
        1,
        "the shipped add_to_cart creates the cart and inserts each line in autocommit",
    ),
    (
        "mysql2_shop.js",
        "non-atomic-write",
        "add_to_cart",
        1,
        "the shipped add_to_cart creates the cart and inserts each line in autocommit",
    ),
];

/// Where a step's `queries` (statements that are not transaction control,
/// session settings or driver housekeeping) differ from the application's
/// own counter: (program, variant, step, wire − counter, why).
const DIFFERENCES: &[(&str, &str, &str, i64, &str)] = &[
    (
        "psycopg_shop.py",
        "shipped",
        "checkout",
        1,
        "the cart's 2 lines deleted by one executemany: one call, an Execute per line on the wire",
    ),
    (
        "psycopg_shop.py",
        "fixed",
        "add_to_cart",
        1,
        "the 2 lines inserted by one executemany in a pipeline: an Execute per line",
    ),
    (
        "psycopg_shop.py",
        "fixed",
        "checkout",
        1,
        "the 2 order items inserted by one executemany in a pipeline: an Execute per line",
    ),
    (
        "sqlalchemy_shop.py",
        "fixed",
        "add_to_cart",
        1,
        "the 2 lines inserted by one executemany: psycopg sends an Execute per line",
    ),
    (
        "asyncpg_shop.py",
        "shipped",
        "checkout",
        1,
        "the cart's 2 lines deleted by one executemany: an Execute per line",
    ),
    (
        "asyncpg_shop.py",
        "fixed",
        "add_to_cart",
        3,
        "the 2 lines by one executemany (+1), and asyncpg's introspection of bigint[] the first \
         time a statement takes one: `SELECT current_setting('jit'), set_config('jit', 'off', \
         false)` and the typeinfo query (+2); the `SELECT set_config('jit', $1, false)` that \
         turns JIT back on is a session setting, not a query",
    ),
    (
        "asyncpg_shop.py",
        "fixed",
        "checkout",
        1,
        "the 2 order items inserted by one executemany: an Execute per line",
    ),
    (
        "pymysql_shop.py",
        "shipped",
        "checkout",
        1,
        "the cart's 2 lines deleted by one executemany, which PyMySQL runs once per line \
         (it rewrites only INSERT … VALUES into one statement)",
    ),
    (
        "django_shop.py",
        "shipped",
        "register",
        -2,
        "Django's counter records the BEGIN and COMMIT that get_or_create wraps its INSERT in",
    ),
    (
        "django_shop.py",
        "shipped",
        "add_to_cart",
        -2,
        "Django's counter records the BEGIN and COMMIT that get_or_create wraps the cart's INSERT in",
    ),
    (
        "django_shop.py",
        "shipped",
        "checkout",
        -2,
        "Django's counter records the BEGIN and COMMIT that delete() wraps the cart's DELETE in",
    ),
    (
        "django_shop.py",
        "fixed",
        "register",
        -2,
        "Django's counter records the BEGIN and COMMIT that get_or_create wraps its INSERT in",
    ),
    (
        "django_shop.py",
        "fixed",
        "add_to_cart",
        -4,
        "Django's counter records atomic()'s BEGIN and COMMIT and get_or_create's SAVEPOINT and RELEASE",
    ),
    (
        "django_shop.py",
        "fixed",
        "checkout",
        -2,
        "Django's counter records atomic()'s BEGIN and COMMIT",
    ),
    (
        "pg_shop.js",
        "fixed",
        "add_to_cart",
        -2,
        "the wrapper counts BEGIN and COMMIT, which are query() calls in node-postgres",
    ),
    (
        "pg_shop.js",
        "fixed",
        "checkout",
        -2,
        "the wrapper counts BEGIN and COMMIT, which are query() calls in node-postgres",
    ),
    (
        "knex_shop.js",
        "shipped",
        "register",
        1,
        "Knex runs `select version()` on its first pooled connection, outside its query event",
    ),
    (
        "knex_shop.js",
        "fixed",
        "register",
        1,
        "Knex runs `select version()` on its first pooled connection, outside its query event",
    ),
    (
        "knex_shop.js",
        "fixed",
        "add_to_cart",
        -2,
        "Knex's query event reports the transaction's BEGIN; and COMMIT;",
    ),
    (
        "knex_shop.js",
        "fixed",
        "checkout",
        -2,
        "Knex's query event reports the transaction's BEGIN; and COMMIT;",
    ),
];

fn program_name(p: Program) -> &'static str {
    match p {
        Program::Python(f) | Program::Node(f) => f,
        Program::Sqlx => "sqlx",
    }
}

fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (CI=true: the corpus must run)");
    }
    eprintln!("skipped: {reason}");
}

fn corpus() -> PathBuf {
    Path::new(ROOT).join("tests/corpus")
}

/// What one capture of one run reported.
#[derive(Debug)]
struct Capture {
    name: &'static str,
    report: Value,
}

/// One application's run in one variant.
#[derive(Debug)]
struct Run {
    fixed: bool,
    counter: BTreeMap<String, u64>,
    captures: Vec<Capture>,
}

/// The sqlx application, started by [`corpus_applications_give_exact_findings_on_every_capture`]
/// as a child of `flowaudit run` (this binary with `--ignored --exact
/// sqlx_application`). Not a test of its own.
#[test]
#[ignore = "the corpus's sqlx application: started by the corpus test under flowaudit run"]
fn sqlx_application() {
    let (Ok(url), Ok(variant), Ok(counts)) = (
        std::env::var("DATABASE_URL"),
        std::env::var("CORPUS_VARIANT"),
        std::env::var("CORPUS_COUNTS"),
    ) else {
        panic!("DATABASE_URL, CORPUS_VARIANT and CORPUS_COUNTS must be set");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = runtime.block_on(sqlx_shop::main(&url, variant == "fixed", &counts)) {
        panic!("the sqlx shop failed: {e}");
    }
}

fn command(app: &App, fixed: bool, counts: &Path) -> Command {
    let variant = if fixed { "fixed" } else { "shipped" };
    let mut c = match app.program {
        Program::Python(file) => {
            let mut c = Command::new(corpus().join(".venv/bin/python"));
            c.arg(corpus().join("python").join(file));
            c
        }
        Program::Node(file) => {
            let mut c = Command::new("node");
            c.arg(corpus().join("node").join(file));
            c
        }
        Program::Sqlx => {
            let mut c = Command::new(std::env::current_exe().expect("test binary"));
            c.args(["--ignored", "--exact", "sqlx_application", "--nocapture"]);
            c.env("CORPUS_VARIANT", variant)
                .env("CORPUS_COUNTS", counts);
            return c;
        }
    };
    c.args(["--variant", variant, "--counts"]).arg(counts);
    c
}

fn flowaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowaudit"))
}

fn read_json(path: &Path, what: &str) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{what}: {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

fn analyze(log: &Path, input: &str, out: &Path) -> Value {
    let status = flowaudit()
        .args([
            "analyze",
            // ./rules holds the demo's invariants; the corpus gives no --database.
            "--skip-invariants",
            "--input",
            input,
            "--format",
            "json",
            "--fail-on",
            "never",
        ])
        .arg("--output")
        .arg(out)
        .arg(log)
        .status()
        .expect("flowaudit analyze runs");
    assert_eq!(status.code(), Some(0), "analyze {}", log.display());
    read_json(out, "analyze report")
}

fn counter_of(path: &Path) -> BTreeMap<String, u64> {
    let counts = read_json(path, "the application's counts");
    counts["steps"]
        .as_object()
        .expect("counts have steps")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
        .collect()
}

/// The PostgreSQL run: `flowaudit run` in front of the logging cluster.
fn run_postgres(
    cluster: &mut LoggingCluster,
    app: &App,
    fixed: bool,
    dir: &Path,
) -> Result<Run, String> {
    let db = format!(
        "corpus_{}_{}",
        program_name(app.program).replace(['.', '-'], "_"),
        if fixed { "fixed" } else { "shipped" }
    );
    cluster.psql(
        "postgres",
        &["-c", &format!("DROP DATABASE IF EXISTS {db}")],
    );
    cluster.psql("postgres", &["-c", &format!("CREATE DATABASE {db}")]);
    for file in ["schema.sql", "seed.sql"] {
        let path = Path::new(ROOT).join("tests/workloads/shop_pg").join(file);
        cluster.psql(&db, &["-f", path.to_str().expect("path")]);
    }
    let from = cluster.mark();
    let counts = dir.join("counts.json");
    let out = flowaudit()
        .args([
            "run",
            "--skip-invariants",
            "--upstream",
            &cluster.url(&db),
            "--trace",
        ])
        .arg(dir.join("trace.jsonl"))
        .args(["--format", "json", "--fail-on", "never", "--output"])
        .arg(dir.join("proxy.json"))
        .arg("--")
        .args(command_line(&command(app, fixed, &counts)))
        .envs(
            command(app, fixed, &counts)
                .get_envs()
                .filter_map(|(k, v)| Some((k, v?))),
        )
        .output()
        .expect("flowaudit run starts");
    let to = cluster.mark();
    if out.status.code() != Some(0) {
        return Err(format!(
            "flowaudit run exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let journey = cluster.psql(
        &db,
        &["-c", "SELECT (SELECT count(*) || ':' || coalesce(sum(total_cents), 0) FROM orders) \
                 || ' ' || (SELECT string_agg(stock::text, ',' ORDER BY product_id) FROM inventory WHERE product_id IN (7, 19)) \
                 || ' ' || (SELECT count(*) FROM cart_items)"],
    );
    check_journey(&journey)?;
    let (stderr_log, csv_log) = cluster.slice(from, to, &db, dir);
    let captures = vec![
        Capture {
            name: "proxy",
            report: read_json(&dir.join("proxy.json"), "run report"),
        },
        Capture {
            name: "pg-stderr",
            report: analyze(&stderr_log, "pg-stderr", &dir.join("stderr.json")),
        },
        Capture {
            name: "pg-csv",
            report: analyze(&csv_log, "pg-csv", &dir.join("csv.json")),
        },
    ];
    cluster.psql(
        "postgres",
        &["-c", &format!("DROP DATABASE {db} WITH (FORCE)")],
    );
    Ok(Run {
        fixed,
        counter: counter_of(&counts),
        captures,
    })
}

/// The program and its arguments, for `flowaudit run -- …`.
fn command_line(c: &Command) -> Vec<std::ffi::OsString> {
    std::iter::once(c.get_program().to_owned())
        .chain(c.get_args().map(ToOwned::to_owned))
        .collect()
}

/// "orders:total stock7,stock19 cart_items" after the journey: one order of
/// 2 × 8900 + 2 × 5900 cents, products 7 and 19 down from 4 and 5 by 2, the
/// cart empty.
fn check_journey(state: &str) -> Result<(), String> {
    if state.trim() == "1:29600 2,3 0" {
        Ok(())
    } else {
        Err(format!(
            "the journey left {state:?}, not one order of 29600 cents, stock 2,3 and an empty cart"
        ))
    }
}

/// A database of the corpus's MariaDB schema, named `db`.
fn mariadb_shop(db: &str) {
    let setup = mysql(&[
        "-e",
        &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"),
    ]);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let schema = Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", db])
        .stdin(std::fs::File::open(corpus().join("schema/mysql.sql")).expect("schema"))
        .output()
        .expect("mysql runs");
    assert!(
        schema.status.success(),
        "{}",
        String::from_utf8_lossy(&schema.stderr)
    );
}

/// What the journey left in `db` (see [`check_journey`]); the database is
/// dropped.
fn mariadb_journey(db: &str) -> String {
    let state = mysql(&[
        "-D",
        db,
        "-e",
        "SELECT CONCAT((SELECT CONCAT(count(*), ':', coalesce(sum(total_cents), 0)) FROM orders), ' ', \
         (SELECT GROUP_CONCAT(stock ORDER BY product_id) FROM inventory WHERE product_id IN (7, 19)), ' ', \
         (SELECT count(*) FROM cart_items))",
    ]);
    let _ = mysql(&["-e", &format!("DROP DATABASE {db}")]);
    String::from_utf8_lossy(&state.stdout).into_owned()
}

/// The MariaDB runs: the application straight on the server with the
/// general log on, then under `flowaudit run --upstream mysql://…` with the
/// general log on again. Three captures: the proxy's report, the general log of
/// the proxied run and that of the direct run. The proxy's trace must hold
/// the statements its run's general log shows, connection by connection,
/// each with the transaction status the server reported.
fn run_mariadb(app: &App, fixed: bool, dir: &Path) -> Result<Run, String> {
    let db = format!(
        "corpus_{}_{}_{}",
        program_name(app.program).replace(['.', '-'], "_"),
        if fixed { "fixed" } else { "shipped" },
        std::process::id()
    );
    let failed = |who: &str, out: &std::process::Output| {
        format!(
            "{who} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let counts = dir.join("counts.json");
    let direct = format!("{db}_direct");
    mariadb_shop(&direct);
    let general = GeneralLog::start();
    let out = command(app, fixed, &counts)
        .env(
            "DATABASE_URL",
            format!("mysql://root@127.0.0.1:3306/{direct}"),
        )
        .output()
        .expect("the application starts");
    let direct_log = dir.join("general.log");
    general.finish(&direct, &direct_log);
    let journey = mariadb_journey(&direct);
    if !out.status.success() {
        return Err(failed("the application", &out));
    }
    check_journey(&journey)?;
    let counter = counter_of(&counts);

    let proxied = format!("{db}_proxied");
    mariadb_shop(&proxied);
    let trace = dir.join("trace.jsonl");
    let general = GeneralLog::start();
    let app_command = command(app, fixed, &counts);
    let out = flowaudit()
        .args([
            "run",
            "--skip-invariants",
            "--upstream",
            &format!("mysql://root@127.0.0.1:3306/{proxied}"),
            "--trace",
        ])
        .arg(&trace)
        .args(["--format", "json", "--fail-on", "never", "--output"])
        .arg(dir.join("proxy.json"))
        .arg("--")
        .args(command_line(&app_command))
        .envs(app_command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .expect("flowaudit run starts");
    let proxied_log = dir.join("general-proxied.log");
    general.finish(&proxied, &proxied_log);
    let journey = mariadb_journey(&proxied);
    if out.status.code() != Some(0) {
        return Err(failed("flowaudit run", &out));
    }
    check_journey(&journey)?;
    let events = support::mysql::read_trace(&trace);
    let log_text = std::fs::read_to_string(&proxied_log).expect("general log");
    let traced = support::mysql::traced_statements(&events);
    let logged = support::mysql::logged_statements(&log_text);
    if traced != logged {
        return Err(format!(
            "the proxy recorded other statements than its run's general log shows:\n\
             proxy: {traced:#?}\ngeneral log: {logged:#?}"
        ));
    }
    if let Some(e) = events.iter().find(|e| {
        e["source"] != "mysql-proxy" || !matches!(e["txn"].as_str(), Some("idle" | "open"))
    }) {
        return Err(format!(
            "an event without the proxy's source or transaction status: {e}"
        ));
    }

    let proxied_counter = counter_of(&counts);
    if counter != proxied_counter {
        return Err(format!(
            "the application counted {counter:?} directly, {proxied_counter:?} through the proxy"
        ));
    }
    Ok(Run {
        fixed,
        counter,
        captures: vec![
            Capture {
                name: "mysql-proxy",
                report: read_json(&dir.join("proxy.json"), "run report"),
            },
            Capture {
                name: "mysql-general of the proxied run",
                report: analyze(
                    &proxied_log,
                    "mysql-general",
                    &dir.join("general-proxied.json"),
                ),
            },
            Capture {
                name: "mysql-general",
                report: analyze(&direct_log, "mysql-general", &dir.join("general.json")),
            },
        ],
    })
}

/// (rule, step, count) of the findings at warning or error, sorted.
fn serious(report: &Value) -> Vec<(String, String, u64)> {
    let mut out: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("error" | "warning")))
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["step"].as_str().unwrap_or_default().to_owned(),
                f["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every finding as (rule, severity, step, count), sorted: what every capture
/// of one run must agree on.
fn all_findings(report: &Value) -> Vec<(String, String, String, u64)> {
    let mut out: Vec<_> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["severity"].as_str().unwrap_or_default().to_owned(),
                f["step"].as_str().unwrap_or_default().to_owned(),
                f["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// step → (statements, queries) of flow `shop`.
fn steps(report: &Value) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for flow in report["flows"].as_array().expect("flows") {
        for s in flow["steps"].as_array().expect("steps") {
            let name = format!(
                "{}{}",
                if flow["name"] == "shop" {
                    ""
                } else {
                    "(flow) "
                },
                s["name"].as_str().unwrap_or_default()
            );
            out.insert(
                name,
                (
                    s["statements"].as_u64().unwrap_or_default(),
                    s["queries"].as_u64().unwrap_or_default(),
                ),
            );
        }
    }
    out
}

/// Checks one capture of one run; returns (planted found, serious findings
/// on fixed, counts equal) and pushes what is wrong to `failures`.
fn judge(
    app: &App,
    run: &Run,
    capture: &Capture,
    failures: &mut Vec<String>,
) -> (usize, usize, bool) {
    let variant = if run.fixed { "fixed" } else { "shipped" };
    let what = format!("{} · {variant} · {}", app.stack, capture.name);
    let found = serious(&capture.report);
    let mut planted_found = 0;
    if run.fixed {
        if !found.is_empty() {
            failures.push(format!(
                "{what}: errors or warnings on the fixed variant: {found:?}"
            ));
        }
    } else {
        let planted: Vec<(String, String, u64)> = PLANTED
            .iter()
            .map(|(r, s, c)| (r.to_string(), s.to_string(), *c))
            .collect();
        for p in &planted {
            if found.contains(p) {
                planted_found += 1;
            } else {
                failures.push(format!("{what}: planted {p:?} not found; found {found:?}"));
            }
        }
        let extra: Vec<_> = found
            .iter()
            .filter(|f| !planted.contains(f))
            .filter(|f| {
                !ALSO_RIGHT.iter().any(|a| {
                    a.0 == program_name(app.program) && a.1 == f.0 && a.2 == f.1 && a.3 == f.2
                })
            })
            .collect();
        if !extra.is_empty() {
            failures.push(format!(
                "{what}: findings beyond the planted ones: {extra:?}"
            ));
        }
    }
    let steps = steps(&capture.report);
    let mut equal = true;
    // The journey's steps: what a driver or ORM sends before the first
    // marker (connection set-up) is in no step and no counter.
    let names: std::collections::BTreeSet<&String> = steps
        .keys()
        .filter(|s| !s.starts_with('('))
        .chain(run.counter.keys())
        .collect();
    for step in names {
        let queries = steps.get(step).map_or(0, |s| s.1) as i64;
        let counter = run.counter.get(step).copied().unwrap_or(0) as i64;
        let explained = DIFFERENCES
            .iter()
            .find(|d| d.0 == program_name(app.program) && d.1 == variant && d.2 == step)
            .map_or(0, |d| d.3);
        if queries != counter + explained {
            equal = false;
            failures.push(format!(
                "{what}: step {step}: {queries} queries, the counter says {counter}{}",
                if explained != 0 {
                    format!(" (+{explained} explained)")
                } else {
                    String::new()
                }
            ));
        }
    }
    let serious_on_fixed = if run.fixed { found.len() } else { 0 };
    (planted_found, serious_on_fixed, equal)
}

#[test]
fn corpus_applications_give_exact_findings_on_every_capture() {
    let venv = corpus().join(".venv/bin/python");
    let node = corpus().join("node/node_modules");
    if !venv.exists() || !node.exists() {
        return skip("the corpus is not installed: run tests/corpus/setup.sh");
    }
    let Some(mut cluster) = LoggingCluster::start() else {
        return skip("no PostgreSQL server programs under /usr/lib/postgresql");
    };
    if !mysql(&["-e", "select 1"]).status.success() {
        return skip("MariaDB does not answer on 127.0.0.1:3306");
    }
    let only = std::env::var("CORPUS_ONLY").ok();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for app in &APPS {
        if only
            .as_deref()
            .is_some_and(|o| !program_name(app.program).contains(o))
        {
            continue;
        }
        let mut runs = Vec::new();
        for fixed in [false, true] {
            let dir = tempfile::tempdir().expect("temp dir");
            let run = match app.server {
                Server::Postgres => run_postgres(&mut cluster, app, fixed, dir.path()),
                Server::MariaDb => run_mariadb(app, fixed, dir.path()),
            };
            match run {
                Ok(run) => runs.push(run),
                Err(e) => failures.push(format!(
                    "{} · {}: {e}",
                    app.stack,
                    if fixed { "fixed" } else { "shipped" }
                )),
            }
            if std::env::var("CORPUS_KEEP").is_ok() {
                let keep = Path::new(ROOT).join("target/corpus").join(format!(
                    "{}-{}",
                    program_name(app.program),
                    if fixed { "fixed" } else { "shipped" }
                ));
                let _ = std::fs::create_dir_all(&keep);
                for entry in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
                }
            }
        }
        // Every capture of a run agrees with the first (the proxy),
        // and a log is read whole.
        for run in &runs {
            for capture in &run.captures {
                let notes = capture.report["notes"].to_string();
                if notes.contains("not understood)") || notes.contains("not understood (") {
                    failures.push(format!(
                        "{} · {}: lines of the {} capture were not understood: {notes}",
                        app.stack,
                        if run.fixed { "fixed" } else { "shipped" },
                        capture.name
                    ));
                }
            }
            let first = &run.captures[0];
            for other in &run.captures[1..] {
                if all_findings(&other.report) != all_findings(&first.report) {
                    failures.push(format!(
                        "{} · {}: {} and {} disagree on findings:\n  {:?}\n  {:?}",
                        app.stack,
                        if run.fixed { "fixed" } else { "shipped" },
                        first.name,
                        other.name,
                        all_findings(&first.report),
                        all_findings(&other.report)
                    ));
                }
                if steps(&other.report) != steps(&first.report) {
                    failures.push(format!(
                        "{} · {}: {} and {} disagree on per-step counts: {:?} / {:?}",
                        app.stack,
                        if run.fixed { "fixed" } else { "shipped" },
                        first.name,
                        other.name,
                        steps(&first.report),
                        steps(&other.report)
                    ));
                }
            }
        }
        let captures: Vec<&'static str> = runs
            .first()
            .map_or(vec![], |r| r.captures.iter().map(|c| c.name).collect());
        for (i, name) in captures.iter().enumerate() {
            let mut planted = 0;
            let mut on_fixed = 0;
            let mut equal = true;
            for run in &runs {
                let (p, f, e) = judge(app, run, &run.captures[i], &mut failures);
                planted += p;
                on_fixed += f;
                equal &= e;
            }
            table.push(format!(
                "| {} | {name} | {planted} / {} | {on_fixed} | {} |",
                app.stack,
                PLANTED.len(),
                if equal && runs.len() == 2 {
                    "equal"
                } else {
                    "differ"
                }
            ));
        }
    }
    let rendered = format!(
        "| stack | capture | planted defects found | errors and warnings on the fixed variant | per-step queries = the framework's counter, each difference explained |\n|---|---|---|---|---|\n{}\n",
        table.join("\n")
    );
    println!("{rendered}");
    if only.is_none() {
        let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
        if !readme.contains(&format!(
            "<!-- corpus-table -->\n{rendered}<!-- /corpus-table -->"
        )) {
            let out = Path::new(ROOT).join("target/corpus-table.md");
            let _ = std::fs::write(&out, &rendered);
            failures.push(format!(
                "README.md does not hold this run's accuracy table (written to {})",
                out.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
