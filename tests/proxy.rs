//! The proxy against the machine's real PostgreSQL server, driven by real
//! clients: psql, pgbench and sqlx.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::pg::{self, ProxyProcess, TestDb, pgbench, psql, psql_command, text, with_sql};

fn upstream() -> String {
    format!("postgres://postgres@{}/test", pg::PG_ADDR)
}

#[test]
fn psql_script_is_recorded_statement_by_statement() {
    if !pg::available("psql through the proxy") {
        return;
    }
    let db = TestDb::new("psql");
    let dir = tempfile::tempdir().expect("temp dir");
    let out_csv = dir.path().join("out.csv");
    let in_csv = dir.path().join("in.csv");
    std::fs::write(&in_csv, "10,ten\n11,eleven\n12,twelve\n").expect("write csv");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "SET flowaudit.step = 'setup';\n\
             create table items(id int primary key, name text);\n\
             insert into items select g, 'item ' || g from generate_series(1, 5) g;\n\
             SET flowaudit.step = 'work';\n\
             begin;\n\
             insert into items values (1, 'again');\n\
             select 1;\n\
             commit;\n\
             \\copy items to '{}' csv\n\
             \\copy items from '{}' csv\n\
             LISTEN events;\n\
             NOTIFY events, 'hello';\n",
            out_csv.display(),
            in_csv.display()
        ),
    )
    .expect("write script");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let run = psql(
        &port,
        &db.name,
        &["-f", script.to_str().expect("utf-8 path")],
    );
    // Several statements in one Query message: psql -c sends them as one.
    let multi = psql(
        &port,
        &db.name,
        &[
            "-c",
            "select count(*) from items; select 'a;b' as s; select 2",
        ],
    );
    // application_name set during the session is followed (ParameterStatus).
    let renamed = psql(
        &port,
        &db.name,
        &[
            "-c",
            "set application_name = 'reports'",
            "-c",
            "select 'renamed'",
        ],
    );
    let stopped = proxy.stop();
    assert!(renamed.status.success(), "{}", text(&renamed));
    assert_eq!(
        with_sql(&stopped.trace, "select 'renamed'")[0]["application_name"],
        "reports"
    );
    assert!(run.status.success(), "{}", text(&run));
    assert!(multi.status.success(), "{}", text(&multi));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("duplicate key"),
        "the error reached psql: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("Asynchronous notification \"events\""),
        "NOTIFY reached the listener: {}",
        text(&run)
    );
    assert_eq!(
        std::fs::read_to_string(&out_csv)
            .expect("copy out")
            .lines()
            .count(),
        5
    );
    assert_eq!(
        db.direct("select count(*) from items"),
        "8",
        "copy in stored 3 rows"
    );

    let trace = &stopped.trace;
    let dup = with_sql(trace, "values (1, 'again')");
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0]["error"]["code"], "23505");
    assert_eq!(dup[0]["txn"], "open");
    let aborted = with_sql(trace, "select 1");
    assert_eq!(aborted[0]["txn"], "failed");
    assert_eq!(aborted[0]["error"]["code"], "25P02");
    let commit = with_sql(trace, "commit");
    assert_eq!(commit[0]["txn"], "failed");
    assert!(commit[0].get("error").is_none());
    let copy_out = with_sql(trace, "TO STDOUT");
    assert_eq!(copy_out.len(), 1, "COPY out is one statement");
    assert_eq!(copy_out[0]["rows"], 5);
    let copy_in = with_sql(trace, "FROM STDIN");
    assert_eq!(copy_in[0]["rows"], 3);
    assert_eq!(with_sql(trace, "NOTIFY events").len(), 1);
    // The three statements of the one Query are three events, in order.
    let last_of_multi = trace
        .iter()
        .position(|e| e["sql"] == "select 2")
        .expect("the multi-statement query");
    let parts: Vec<&str> = trace[..=last_of_multi]
        .iter()
        .rev()
        .take(3)
        .map(|e| e["sql"].as_str().expect("sql"))
        .collect();
    assert_eq!(
        parts,
        vec![
            "select 2",
            "select 'a;b' as s",
            "select count(*) from items"
        ]
    );
    assert_eq!(trace[last_of_multi]["rows"], 1);
    // Steps come from the markers.
    let steps: Vec<&str> = stopped.report["flows"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(steps, vec!["setup", "work"]);
    assert_eq!(stopped.report["capture"]["dropped"], 0);
    assert_eq!(stopped.report["capture"]["connections"], 3);
    assert_eq!(stopped.code, Some(0));
}

#[test]
fn psql_output_is_the_same_through_the_proxy() {
    if !pg::available("transparency") {
        return;
    }
    let db = TestDb::new("same");
    db.direct("create table t(id int, v numeric, d timestamptz, b bytea, j jsonb)");
    db.direct(
        "insert into t select g, g / 7.0, '2026-01-01'::timestamptz + g * interval '1 hour', \
         decode(md5(g::text), 'hex'), jsonb_build_object('g', g) from generate_series(1, 2000) g",
    );
    let query = [
        "-c",
        "select * from t order by id",
        "-c",
        "select pg_typeof(1), 'x' || repeat('y', 100000)",
    ];
    let direct = psql("5432", &db.name, &query);
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let through = psql(&proxy.port(), &db.name, &query);
    let stopped = proxy.stop();
    assert!(direct.status.success(), "{}", text(&direct));
    assert_eq!(
        direct.stdout, through.stdout,
        "results differ through the proxy"
    );
    assert_eq!(direct.stderr, through.stderr);
    assert_eq!(
        with_sql(&stopped.trace, "from t order by id")[0]["rows"],
        2000
    );
}

/// pgbench's TPC-B-like script: seven statements a transaction.
const TPCB: [&str; 7] = [
    "BEGIN",
    "UPDATE pgbench_accounts",
    "SELECT abalance",
    "UPDATE pgbench_tellers",
    "UPDATE pgbench_branches",
    "INSERT INTO pgbench_history",
    "END",
];

fn processed(out: &std::process::Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed"))
        .unwrap_or_else(|| panic!("no transaction count in {stdout}"));
    line.split(':')
        .nth(1)
        .expect("count")
        .trim()
        .split('/')
        .next()
        .expect("n")
        .parse()
        .expect("number")
}

#[test]
fn pgbench_in_every_query_mode() {
    if !pg::available("pgbench through the proxy") {
        return;
    }
    let db = TestDb::new("pgbench");
    let init = ProxyProcess::start(&upstream(), &[]);
    let out = pgbench(&init.port(), &db.name, &["-i", "-q", "-s", "1"]);
    let stopped = init.stop();
    assert!(out.status.success(), "pgbench -i: {}", text(&out));
    // Each of pgbench's four tables is created through the proxy.
    for table in ["accounts", "branches", "history", "tellers"] {
        let created = stopped.trace.iter().any(|e| {
            e["sql"].as_str().is_some_and(|s| {
                s.to_ascii_lowercase()
                    .contains(&format!("create table pgbench_{table}"))
            })
        });
        assert!(created, "pgbench_{table} created: {}", stopped.trace_text);
    }

    for mode in ["simple", "extended", "prepared"] {
        let proxy = ProxyProcess::start(&upstream(), &[]);
        let out = pgbench(
            &proxy.port(),
            &db.name,
            &["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "40"],
        );
        let stopped = proxy.stop();
        assert!(out.status.success(), "pgbench -M {mode}: {}", text(&out));
        let n = processed(&out);
        assert_eq!(n, 160, "-M {mode}: every transaction processed");
        for statement in TPCB {
            let seen = stopped
                .trace
                .iter()
                .filter(|e| {
                    e["sql"]
                        .as_str()
                        .is_some_and(|s| s.trim_start().starts_with(statement))
                })
                .count() as u64;
            assert_eq!(
                seen, n,
                "-M {mode}: {statement} recorded once per transaction"
            );
        }
        assert!(
            stopped.trace.iter().all(|e| e.get("error").is_none()),
            "-M {mode}: no statement failed"
        );
        if mode != "simple" {
            let update = with_sql(&stopped.trace, "UPDATE pgbench_accounts");
            let params = update[0]["params"]
                .as_array()
                .expect("bind values recorded");
            assert_eq!(params.len(), 2, "-M {mode}: {}", update[0]);
        }
        let findings = stopped.report["findings"].as_array().expect("findings");
        assert!(
            !findings.iter().any(|f| f["rule"] == "n-plus-one"),
            "-M {mode}: independent transactions are not an N+1: {findings:#?}"
        );
        assert_eq!(stopped.report["capture"]["dropped"], 0);
        assert_eq!(
            stopped.report["capture"]["undecoded_frames"], 0,
            "-M {mode}"
        );
    }
}

#[test]
fn pgbench_pipelined_batches() {
    if !pg::available("a pipelined pgbench script") {
        return;
    }
    let db = TestDb::new("pipeline");
    db.direct("create table kv(k int primary key, v int)");
    db.direct("insert into kv select g, 0 from generate_series(1, 100) g");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("pipeline.sql");
    let mut f = std::fs::File::create(&script).expect("script");
    // Several batches before any answer, one with an error in the middle: the
    // server skips to the pipeline's Sync, and so must the observer.
    writeln!(
        f,
        "\\set k random(1, 100)\n\
         \\startpipeline\n\
         update kv set v = v + 1 where k = :k;\n\
         select v from kv where k = :k;\n\
         select (:k)::int * 2;\n\
         insert into kv values (1000 + :k, 0) on conflict (k) do update set v = kv.v + 1;\n\
         \\endpipeline\n\
         \\startpipeline\n\
         select v from kv where k = :k;\n\
         \\endpipeline"
    )
    .expect("write");
    drop(f);
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let out = pgbench(
        &proxy.port(),
        &db.name,
        &[
            "-n",
            "-M",
            "extended",
            "-c",
            "2",
            "-t",
            "25",
            "-f",
            script.to_str().expect("utf-8 path"),
        ],
    );
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(processed(&out), 50);
    assert_eq!(with_sql(&stopped.trace, "update kv").len(), 50);
    assert_eq!(with_sql(&stopped.trace, "select v from kv").len(), 100);
    assert_eq!(with_sql(&stopped.trace, "insert into kv").len(), 50);
    let updates = with_sql(&stopped.trace, "update kv");
    assert!(
        updates.iter().all(|e| e["rows"] == 1),
        "each update matched its row"
    );
    // The values follow the statements they were bound to, batch after batch.
    for e in with_sql(&stopped.trace, "select v from kv") {
        let k: u32 = e["params"][0]
            .as_str()
            .expect("param")
            .parse()
            .expect("int");
        assert!((1..=100).contains(&k), "{e}");
    }
    assert_eq!(db.direct("select sum(v) from kv where k <= 100"), "50");
}

#[test]
fn pipelined_error_skips_to_sync() {
    if !pg::available("an error inside a pipeline") {
        return;
    }
    let db = TestDb::new("pipefail");
    db.direct("create table kv(k int primary key, v int)");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("fail.sql");
    std::fs::write(
        &script,
        "\\startpipeline\n\
         insert into kv values (1, 1);\n\
         select 1 / 0;\n\
         insert into kv values (2, 2);\n\
         \\endpipeline\n",
    )
    .expect("script");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let out = pgbench(
        &proxy.port(),
        &db.name,
        &[
            "-n",
            "-M",
            "extended",
            "-c",
            "1",
            "-t",
            "1",
            "-f",
            script.to_str().expect("utf-8 path"),
        ],
    );
    // A second client on the same proxy afterwards still works.
    let after = psql(&proxy.port(), &db.name, &["-Atc", "select 41 + 1"]);
    let stopped = proxy.stop();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("division by zero"),
        "{}",
        text(&out)
    );
    assert_eq!(String::from_utf8_lossy(&after.stdout).trim(), "42");
    let trace = &stopped.trace;
    assert_eq!(with_sql(trace, "values (1, 1)").len(), 1);
    let failed = with_sql(trace, "1 / 0");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"]["code"], "22012");
    assert!(
        with_sql(trace, "values (2, 2)").is_empty(),
        "the server skipped the statement after the error; so does the trace"
    );
    assert_eq!(with_sql(trace, "41 + 1").len(), 1);
}

#[test]
fn sqlx_binds_transactions_and_rollback() {
    if !pg::available("sqlx through the proxy") {
        return;
    }
    let db = TestDb::new("sqlx");
    db.direct(
        "create table things(id bigint primary key, small smallint, n int, ratio float8, \
         real_ float4, ok bool, name text, at timestamp, raw bytea, amount numeric)",
    );
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let url = db.url(&proxy.addr.to_string());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("connect through the proxy");
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .and_then(|d| d.and_hms_micro_opt(14, 50, 44, 500_000))
            .expect("date");
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query(
            "insert into things (id, small, n, ratio, real_, ok, name, at, raw, amount) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::numeric)",
        )
        .bind(9_000_000_000_i64)
        .bind(7_i16)
        .bind(-42_i32)
        .bind(0.25_f64)
        .bind(1.5_f32)
        .bind(true)
        .bind("café")
        .bind(at)
        .bind(vec![0xde_u8, 0xad])
        .bind(Option::<String>::None)
        .execute(&mut *tx)
        .await
        .expect("insert");
        tx.commit().await.expect("commit");

        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("insert into things (id) values ($1)")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .expect("insert");
        let dup = sqlx::query("insert into things (id) values ($1)")
            .bind(1_i64)
            .execute(&mut *tx)
            .await;
        assert!(dup.is_err(), "duplicate key fails");
        tx.rollback().await.expect("rollback");

        let n: i64 = sqlx::query_scalar("select count(*) from things")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 1, "the rolled-back insert is gone");
        conn.close().await.expect("close");
    });
    let stopped = proxy.stop();
    let trace = &stopped.trace;
    let insert = with_sql(trace, "insert into things (id, small");
    assert_eq!(insert.len(), 1, "{}", stopped.trace_text);
    let params: Vec<serde_json::Value> = insert[0]["params"].as_array().expect("params").clone();
    assert_eq!(
        params,
        serde_json::json!([
            "9000000000",
            "7",
            "-42",
            "0.25",
            "1.5",
            "true",
            "café",
            "2026-11-25 14:50:44.5",
            "\\xdead",
            null
        ])
        .as_array()
        .expect("array")
        .clone()
    );
    assert_eq!(insert[0]["txn"], "open");
    assert_eq!(insert[0]["rows"], 1);
    let dups = with_sql(trace, "insert into things (id) values");
    assert_eq!(dups.len(), 2);
    assert!(dups[0].get("error").is_none());
    assert_eq!(dups[1]["error"]["code"], "23505");
    let rollback = with_sql(trace, "ROLLBACK");
    assert_eq!(rollback.len(), 1);
    assert_eq!(rollback[0]["txn"], "failed");
    assert_eq!(with_sql(trace, "COMMIT").len(), 1);
}

#[test]
fn killed_client_and_unreachable_upstream_leave_the_proxy_serving() {
    if !pg::available("failure handling") {
        return;
    }
    let db = TestDb::new("kill");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let mut sleeper = psql_command(&port, &db.name, &["-c", "select pg_sleep(20)"])
        .spawn()
        .expect("psql starts");
    std::thread::sleep(Duration::from_millis(700));
    sleeper.kill().expect("kill psql");
    let _ = sleeper.wait();
    let after = psql(&port, &db.name, &["-Atc", "select 'still here'"]);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout).trim(),
        "still here",
        "{}",
        text(&after)
    );

    // A cancel (Ctrl-C in psql) reaches the server through the proxy.
    let started = Instant::now();
    let cancelled = psql_command(&port, &db.name, &["-c", "select pg_sleep(20)"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql starts");
    std::thread::sleep(Duration::from_millis(700));
    let pid = nix::unistd::Pid::from_raw(cancelled.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let out = cancelled.wait_with_output().expect("psql ends");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the cancel stopped the sleep"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("canceling statement"),
        "{}",
        text(&out)
    );
    let stopped = proxy.stop();
    let sleeps = with_sql(&stopped.trace, "pg_sleep(20)");
    assert_eq!(sleeps.len(), 2, "{}", stopped.trace_text);
    assert!(
        sleeps.iter().any(|e| e["error"]["code"] == "57014"),
        "the cancelled one: {sleeps:?}"
    );
    assert!(
        sleeps.iter().any(|e| e["error"]["code"] == "08006"),
        "the killed one: {sleeps:?}"
    );

    // An upstream that refuses: the client gets a proper error, the proxy stays.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "postgres://postgres@{}/test",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    // --allow-empty: nothing reaches this upstream, and the report counts why.
    let proxy = ProxyProcess::start(&dead, &["--allow-empty"]);
    for _ in 0..2 {
        let out = psql(&proxy.port(), "test", &["-c", "select 1"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot reach the database server"),
            "{stderr}"
        );
    }
    let stopped = proxy.stop();
    assert_eq!(stopped.report["capture"]["refused"], 2);
    assert!(
        stopped.stderr.contains("cannot reach"),
        "{}",
        stopped.stderr
    );
}

/// Stopping the proxy while a client waits for an answer: the proxy still
/// ends within its grace period, and the statement cut off is in the trace
/// with the connection's error, along with what ran before it.
///
/// Issue 13, defect 11: the stop's own doing made findings, a slow query of
/// the cut statement's time up to the stop and an open transaction of the
/// one the stop ended. The cut statement is marked `cut_by_stop`, the rules
/// leave it alone, and the report says once how many the stop cut.
#[test]
fn stopping_the_proxy_mid_query_records_the_cut_statement_and_exits() {
    if !pg::available("stopping mid-query") {
        return;
    }
    let db = TestDb::new("stopmid");
    db.direct("create table t(id int)");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let mut waiting = psql_command(
        &port,
        &db.name,
        &[
            "-c",
            "select 'before the sleep'",
            "-c",
            "begin",
            "-c",
            "insert into t values (1)",
            "-c",
            "select pg_sleep(30)",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("psql starts");
    std::thread::sleep(Duration::from_millis(1000));
    let started = Instant::now();
    let stopped = proxy.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the proxy stopped within its grace period ({:?})",
        started.elapsed()
    );
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert_eq!(
        with_sql(&stopped.trace, "'before the sleep'").len(),
        1,
        "{}",
        stopped.trace_text
    );
    let cut = with_sql(&stopped.trace, "pg_sleep(30)");
    assert_eq!(cut.len(), 1, "{}", stopped.trace_text);
    assert_eq!(cut[0]["error"]["code"], "08006", "{:?}", cut[0]);
    assert_eq!(cut[0]["cut_by_stop"], true, "{:?}", cut[0]);
    assert_eq!(stopped.report["capture"]["dropped"], 0);
    let by_the_stop: Vec<&serde_json::Value> = stopped.report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| matches!(f["rule"].as_str(), Some("slow-query" | "open-transaction")))
        .collect();
    assert!(by_the_stop.is_empty(), "{by_the_stop:#?}");
    let notes = stopped.report["notes"].to_string();
    assert_eq!(
        notes
            .matches("1 statement was cut off by the proxy's stop")
            .count(),
        1,
        "{notes}"
    );
}

#[test]
fn ssl_and_gss_requests_are_declined_and_direct_tls_refused() {
    if !pg::available("SSL negotiation") {
        return;
    }
    use std::io::Read;
    // --allow-empty: no client here gets as far as a statement.
    let proxy = ProxyProcess::start(&upstream(), &["--allow-empty"]);
    for code in [80_877_103_u32, 80_877_104] {
        let mut s = std::net::TcpStream::connect(proxy.addr).expect("connect");
        let mut packet = 8_u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&code.to_be_bytes());
        s.write_all(&packet).expect("write");
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).expect("answer");
        assert_eq!(&answer, b"N");
    }
    // libpq with sslmode=require hears "no SSL" and says so.
    let out = Command::new("psql")
        .arg(format!(
            "postgres://postgres@127.0.0.1:{}/test?sslmode=require",
            proxy.port()
        ))
        .args(["-c", "select 1"])
        .output()
        .expect("psql runs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not support SSL"),
        "{}",
        text(&out)
    );
    // A TLS ClientHello without asking first is refused, with a message.
    let mut s = std::net::TcpStream::connect(proxy.addr).expect("connect");
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .expect("write");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing is answered to a TLS handshake");
    let stopped = proxy.stop();
    assert!(
        stopped.stderr.contains("direct TLS handshake"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn scram_password_login_passes_through_and_is_never_written() {
    if !pg::available("scram-sha-256 through the proxy") {
        return;
    }
    let Some(bin) = pg::server_bin() else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "initdb is required in CI"
        );
        eprintln!("skipping: no initdb under /usr/lib/postgresql");
        return;
    };
    // A throwaway cluster that asks for scram-sha-256 on TCP.
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let pwfile = dir.path().join("pw");
    let password = "s3cret-Pa55word";
    std::fs::write(&pwfile, password).expect("pwfile");
    let as_postgres = |program: &str| {
        let mut c = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        c.current_dir("/");
        c
    };
    if nix::unistd::geteuid().is_root() {
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        Command::new("chmod")
            .arg("755")
            .arg(dir.path())
            .status()
            .expect("chmod");
        Command::new("chown")
            .args(["postgres"])
            .arg(&pwfile)
            .status()
            .expect("chown");
    }
    let init = as_postgres("initdb")
        .args(["-A", "scram-sha-256", "-U", "postgres", "--pwfile"])
        .arg(&pwfile)
        .arg("-D")
        .arg(&data)
        .output()
        .expect("initdb");
    assert!(init.status.success(), "initdb: {}", text(&init));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let start = as_postgres("pg_ctl")
        .arg("-D")
        .arg(&data)
        .args(["-w", "-l"])
        .arg(dir.path().join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        ))
        .arg("start")
        .output()
        .expect("pg_ctl");
    assert!(start.status.success(), "pg_ctl start: {}", text(&start));
    let stop = || {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    };
    let proxy = ProxyProcess::start(&format!("postgres://127.0.0.1:{port}/postgres"), &[]);
    let login = |pw: &str| {
        psql_command(
            &proxy.port(),
            "postgres",
            &["-Atc", "select 'in as ' || current_user"],
        )
        .env("PGPASSWORD", pw)
        .output()
        .expect("psql runs")
    };
    let good = login(password);
    let bad = login("wrong");
    let stopped = proxy.stop();
    stop();
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "in as postgres",
        "{}",
        text(&good)
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"),
        "{}",
        text(&bad)
    );
    assert!(!stopped.trace_text.contains(password));
    assert!(!stopped.stderr.contains(password));
    let report = serde_json::to_string(&stopped.report).expect("json");
    assert!(!report.contains(password));
    assert_eq!(with_sql(&stopped.trace, "in as").len(), 1);
}

#[test]
fn run_wraps_psql_and_reports_its_steps() {
    if !pg::available("flowaudit run") {
        return;
    }
    let db = TestDb::new("run");
    db.direct("create table products(id int primary key, name text)");
    db.direct("create table stock(product_id int, qty int)");
    db.direct("insert into products select g, 'p' || g from generate_series(1, 8) g");
    db.direct("insert into stock select g, 10 from generate_series(1, 8) g");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("journey.sql");
    let mut sql = String::from(
        "SET flowaudit.flow = 'shop';\nSET flowaudit.step = 'browse';\n\
         select id, name from products order by id;\n",
    );
    for id in 1..=8 {
        sql.push_str(&format!("select qty from stock where product_id = {id};\n"));
    }
    sql.push_str(
        "SET flowaudit.step = 'checkout';\nupdate stock set qty = qty - 1 where product_id = 3;\n",
    );
    std::fs::write(&script, sql).expect("script");
    let trace = dir.path().join("trace.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args(["run", "--upstream", &db.url(pg::PG_ADDR), "--format", "json", "--trace"])
        .arg(&trace)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "test -n \"$PGPORT\" && psql -X -q -o /dev/null -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -f {}",
            script.display()
        ))
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an N+1 is an error: {}",
        text(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}): {}", text(&out)));
    let steps: Vec<(String, u64)> = report["flows"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_owned(),
                s["statements"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![("browse".to_owned(), 9), ("checkout".to_owned(), 1)]
    );
    assert_eq!(report["flows"][0]["name"], "shop");
    let n1: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "n-plus-one")
        .collect();
    assert_eq!(n1.len(), 1, "{report:#}");
    assert_eq!(n1[0]["step"], "browse");
    assert_eq!(
        std::fs::read_to_string(&trace)
            .expect("trace")
            .lines()
            .count(),
        13
    );

    // The command's failure comes first: exit 1 even with no findings.
    let failing = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &db.url(pg::PG_ADDR),
            "--",
            "psql",
            "-X",
            "-c",
            "select nonsense",
        ])
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    assert!(String::from_utf8_lossy(&failing.stderr).contains("psql exited with status 1"));
    // A command that does not exist is flowaudit's error: exit 2.
    let missing = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &db.url(pg::PG_ADDR),
            "--",
            "no-such-command-here",
        ])
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot run no-such-command-here"),
        "{}",
        text(&missing)
    );
}

/// The README's CI jobs: `flowaudit run` writes a baseline once, then gates
/// later runs on it, reporting as SARIF or JUnit.
#[test]
fn run_as_a_ci_gate_with_a_baseline() {
    if !pg::available("flowaudit run with a baseline") {
        return;
    }
    let db = TestDb::new("gate");
    db.direct("create table users(id int primary key, name text)");
    db.direct("insert into users select g, 'u' || g from generate_series(1, 3) g");
    let dir = tempfile::tempdir().expect("temp dir");
    let tests = |extra_lookups: u32| {
        let mut sql =
            String::from("SET flowaudit.step = 'profile';\nselect name from users where id = 1;\n");
        for _ in 0..extra_lookups {
            sql.push_str("select count(*) from users;\n");
        }
        let path = dir.path().join(format!("tests-{extra_lookups}.sql"));
        std::fs::write(&path, sql).expect("script");
        path
    };
    let baseline = dir.path().join("baseline.json");
    let run = |script: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            // As the README's CI recipes run it.
            .args([
                "run",
                "--upstream",
                &db.url(pg::PG_ADDR),
                "--params",
                "hash",
            ])
            .args(args)
            .args(["--", "psql", "-X", "-q", "-o", "/dev/null", "-f"])
            .arg(script)
            .current_dir(dir.path())
            .output()
            .expect("flowaudit run")
    };
    let write = run(
        &tests(0),
        &["--write-baseline", baseline.to_str().expect("path")],
    );
    assert_eq!(write.status.code(), Some(0), "{}", text(&write));
    let sarif = dir.path().join("flowaudit.sarif");
    let same = run(
        &tests(0),
        &[
            "--baseline",
            baseline.to_str().expect("path"),
            "--format",
            "sarif",
            "--output",
            sarif.to_str().expect("path"),
        ],
    );
    assert_eq!(same.status.code(), Some(0), "unchanged: {}", text(&same));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).expect("sarif")).expect("JSON");
    assert_eq!(log["version"], "2.1.0");
    let junit = dir.path().join("flowaudit.xml");
    let more = run(
        &tests(1),
        &[
            "--baseline",
            baseline.to_str().expect("path"),
            "--format",
            "junit",
            "--output",
            junit.to_str().expect("path"),
        ],
    );
    assert_eq!(
        more.status.code(),
        Some(1),
        "one more statement: {}",
        text(&more)
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("query-count-regression"), "{xml}");
}

#[test]
fn pgbench_with_a_connection_per_transaction_is_connection_churn() {
    if !pg::available("connection churn") {
        return;
    }
    let db = TestDb::new("churn");
    let init = pgbench("5432", &db.name, &["-i", "-q", "-s", "1"]);
    assert!(init.status.success(), "{}", text(&init));
    let proxy = ProxyProcess::start(&upstream(), &[]);
    // -C: a new connection for every transaction, one SELECT each.
    let out = pgbench(
        &proxy.port(),
        &db.name,
        &["-n", "-C", "-S", "-c", "2", "-t", "15"],
    );
    // The same work on two kept connections is not churn.
    let pooled = ProxyProcess::start(&upstream(), &[]);
    let kept = pgbench(
        &pooled.port(),
        &db.name,
        &["-n", "-S", "-c", "2", "-t", "15"],
    );
    let stopped = proxy.stop();
    let stopped_pooled = pooled.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert!(kept.status.success(), "{}", text(&kept));
    let churn: Vec<&serde_json::Value> = stopped.report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "connection-churn")
        .collect();
    assert_eq!(churn.len(), 1, "{:#}", stopped.report);
    let message = churn[0]["message"].as_str().expect("message");
    // pgbench's 30 transactions, plus its own connection that reads the scale.
    let conns: std::collections::BTreeSet<u64> = stopped
        .trace
        .iter()
        .map(|e| e["conn"].as_u64().expect("conn"))
        .collect();
    assert!(conns.len() >= 30, "{conns:?}");
    let expected = format!(
        "opened {} connections for {} statements",
        conns.len(),
        stopped.trace.len()
    );
    assert!(
        message.contains(&expected),
        "{message} (expected {expected})"
    );
    assert!(
        message.contains(&format!("spent connecting ({} measured)", conns.len())),
        "{message}"
    );
    assert!(
        !stopped_pooled.report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["rule"] == "connection-churn"),
        "{:#}",
        stopped_pooled.report
    );
}

#[test]
fn run_with_a_database_reviews_the_tables_the_command_touched() {
    if !pg::available("run --database") {
        return;
    }
    let db = TestDb::new("review");
    db.direct("create table customers(id int primary key, email text)");
    db.direct("create table orders(id int primary key, customer_id int)");
    db.direct("create table audit_log(at timestamptz, what text)");
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &db.url(pg::PG_ADDR),
            "--database",
            &db.url(pg::PG_ADDR),
        ])
        .args(["--format", "json", "--fail-on", "never", "--"])
        .args(["psql", "-X", "-q", "-o", "/dev/null", "-c"])
        .arg("select o.id, c.email from orders o join customers c on c.id = o.customer_id")
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let mut got: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["fingerprint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    got.sort();
    // orders.customer_id refers to customers without a constraint; audit_log
    // has no primary key but the command never touched it.
    assert_eq!(
        got,
        vec![(
            "missing-foreign-key".to_owned(),
            "orders(customer_id) → customers(id)".to_owned()
        )],
        "{report:#}"
    );
}

#[test]
fn injected_faults_fail_in_the_server_on_both_protocols() {
    if !pg::available("fault injection") {
        return;
    }
    let db = TestDb::new("fault");
    db.direct("create table paid(id int primary key)");
    // The extended protocol (sqlx): the 2nd statement of step `pay` fails.
    let proxy = ProxyProcess::start(&upstream(), &["--inject-fault", "pay:2"]);
    let url = db.url(&proxy.addr.to_string());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("SET flowaudit.step = 'pay'")
            .execute(&mut conn)
            .await
            .expect("marker");
        for id in 1..=3_i32 {
            let done = sqlx::query("insert into paid values ($1)")
                .bind(id)
                .execute(&mut conn)
                .await;
            match id {
                2 => {
                    let err = done.expect_err("the injected fault");
                    let code = err
                        .as_database_error()
                        .and_then(|e| e.code().map(|c| c.into_owned()));
                    assert_eq!(code.as_deref(), Some("FA001"), "{err}");
                }
                _ => {
                    done.expect("the other inserts run");
                }
            }
        }
        // The connection is still in step with the server.
        let n: i64 = sqlx::query_scalar("select count(*) from paid")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 2);
        conn.close().await.expect("close");
    });
    let stopped = proxy.stop();
    let failed = with_sql(&stopped.trace, "insert into paid");
    assert_eq!(failed.len(), 3);
    assert_eq!(failed[1]["error"]["code"], "FA001");
    assert_eq!(failed[1]["params"][0], "2");
    assert!(
        stopped.report["notes"]
            .to_string()
            .contains("injected fault pay:2"),
        "{}",
        stopped.report
    );
    assert_eq!(
        db.direct("select string_agg(id::text, ',' order by id) from paid"),
        "1,3"
    );

    // The simple protocol (psql), the step's first COMMIT: the transaction
    // is left failed, and psql's next statement ends it.
    let proxy = ProxyProcess::start(&upstream(), &["--inject-fault", "pay:commit"]);
    let out = psql(
        &proxy.port(),
        &db.name,
        &[
            "-c",
            "SET flowaudit.step = 'pay'",
            "-c",
            "begin; insert into paid values (10); commit;",
            "-c",
            "select count(*) from paid",
        ],
    );
    let stopped = proxy.stop();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("injected fault at pay:commit"),
        "{}",
        text(&out)
    );
    let commit = with_sql(&stopped.trace, "commit");
    assert_eq!(commit[0]["error"]["code"], "FA001");
    assert_eq!(
        db.direct("select count(*) from paid where id = 10"),
        "0",
        "the failed commit kept nothing"
    );

    // `run` takes the same option: psql stops at the injected error, so the
    // command fails (exit 1) and the report says where.
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &db.url(pg::PG_ADDR),
            "--inject-fault",
            "pay:1",
            "--format",
            "json",
            // ./rules (the crate's) holds the demo shop's invariants.
            "--skip-invariants",
        ])
        .args([
            "--",
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-o",
            "/dev/null",
        ])
        .args([
            "-c",
            "SET flowaudit.step = 'pay'",
            "-c",
            "insert into paid values (20)",
        ])
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(
        report["notes"]
            .to_string()
            .contains("in place of: insert into paid values (20)"),
        "{report:#}"
    );
    assert_eq!(db.direct("select count(*) from paid where id = 20"), "0");
}

#[test]
fn invariants_run_when_a_step_ends_before_the_next_one_starts() {
    if !pg::available("invariants through the proxy") {
        return;
    }
    let db = TestDb::new("invariant");
    db.direct("create table stock(item int primary key, qty int)");
    db.direct("insert into stock values (1, 5), (2, 5)");
    let rules = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        rules.path().join("stock.toml"),
        "[[invariant]]\nname = \"stock-never-negative\"\n\
         sql = \"SELECT item, qty FROM stock WHERE qty < 0 ORDER BY item\"\n",
    )
    .expect("rule file");
    let rules_dir = rules.path().to_str().expect("path").to_owned();
    let database = db.url(pg::PG_ADDR);
    let proxy = ProxyProcess::start(
        &upstream(),
        &["--rules", &rules_dir, "--database", &database],
    );
    // `oversell` leaves stock negative; `restock` repairs it right away. The
    // check after `oversell` must see the data as oversell left it.
    let out = psql(
        &proxy.port(),
        &db.name,
        &[
            "-c",
            "SET flowaudit.flow = 'shop'",
            "-c",
            "SET flowaudit.step = 'oversell'",
            "-c",
            "update stock set qty = qty - 7 where item = 2",
            "-c",
            "SET flowaudit.step = 'restock'",
            "-c",
            "update stock set qty = 5 where item = 2",
        ],
    );
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    let violated: Vec<&serde_json::Value> = stopped.report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "invariant-violated")
        .collect();
    assert_eq!(violated.len(), 1, "{:#}", stopped.report);
    assert_eq!(violated[0]["step"], "oversell");
    assert_eq!(violated[0]["count"], 1);
    let rows = violated[0]["examples"].to_string();
    assert!(rows.contains("-2"), "the offending row: {rows}");

    // An invariant whose query fails is flowaudit's error (exit 2), naming it.
    std::fs::write(
        rules.path().join("stock.toml"),
        "[[invariant]]\nname = \"broken\"\nsql = \"SELECT nope FROM stock\"\n",
    )
    .expect("rule file");
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &database,
            "--rules",
            &rules_dir,
            "--database",
            &database,
        ])
        .args([
            "--",
            "psql",
            "-X",
            "-q",
            "-c",
            "SET flowaudit.step = 'a'",
            "-c",
            "select 1",
        ])
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stock.toml") && stderr.contains("\"broken\""),
        "{stderr}"
    );
}

/// The one event of the trace whose SQL contains `needle`; fails unless
/// there is exactly one.
fn only<'a>(stopped: &'a pg::Stopped, needle: &str) -> &'a serde_json::Value {
    let found = with_sql(&stopped.trace, needle);
    assert_eq!(
        found.len(),
        1,
        "{needle}: expected exactly once in\n{}",
        stopped.trace_text
    );
    found[0]
}

/// Issue 13, defect 1: an Execute with a row limit answered by
/// PortalSuspended (asyncpg's `fetchrow` and `fetchval`, a cursor read in
/// parts) was never recorded, nor counted as lost. Each statement is one
/// event, with the rows fetched, whether the portal ends at its Sync, at a
/// Bind that reuses its name, at COMMIT, or is read to its end.
#[test]
fn asyncpg_row_limited_executes_are_recorded_once() {
    if !pg::available("asyncpg through the proxy") {
        return;
    }
    let Some(python) = pg::corpus_python("asyncpg through the proxy") else {
        return;
    };
    let db = TestDb::new("asyncpg");
    db.direct(
        "create table items(id int primary key, name text);
         insert into items select i, 'n' || i from generate_series(1, 10) i",
    );
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let script = r#"
import asyncio, os, asyncpg

async def main():
    c = await asyncpg.connect(os.environ["DATABASE_URL"])
    row = await c.fetchrow("select id, name from items where id = $1 /*fetchrow*/", 3)
    assert row["name"] == "n3", row
    n = await c.fetchval("select count(*) from items where id > $1 /*fetchval*/", 2)
    assert n == 8, n
    rows = await c.fetch("select id from items where id <= $1 /*fetch*/", 5)
    assert len(rows) == 5, rows
    async with c.transaction():
        cur = await c.cursor("select id from items where id > $1 order by id /*partly*/", 0)
        assert len(await cur.fetch(3)) == 3
        assert len(await cur.fetch(2)) == 2
    async with c.transaction():
        seen = 0
        async for r in c.cursor("select id from items where id >= $1 order by id /*prefetch*/", 1, prefetch=4):
            seen += 1
            if seen == 6:
                break
    async with c.transaction():
        cur = await c.cursor("select id from items where id > $1 order by id /*to the end*/", 0)
        assert len(await cur.fetch(4)) == 4
        assert len(await cur.fetch(100)) == 6
    async with c.transaction():
        # A lookup per row of a cursor still open: an N+1 loop.
        async for r in c.cursor("select id from items where id <= $1 order by id /*outer*/", 4, prefetch=2):
            await c.fetchval("select name from items where id = $1 /*inner*/", r["id"])
    async with c.transaction():
        # The unnamed portal, bound again inside one transaction.
        for i in (7, 8):
            await c.fetchval("select name from items where id = $1 /*in txn*/", i)
    await c.executemany(
        "insert into items values ($1, $2) /*executemany*/", [(11, "a"), (12, "b"), (13, "c")]
    )
    await c.close()

asyncio.run(main())
"#;
    pg::run_python(&python, script, &db.url(&proxy.addr.to_string()));
    let stopped = proxy.stop();
    let check = |needle: &str, params: serde_json::Value, rows: u64| {
        let event = only(&stopped, needle);
        assert_eq!(event["params"], params, "{needle}: {event}");
        assert_eq!(event["rows"], rows, "{needle}: {event}");
        assert!(event["error"].is_null(), "{needle}: {event}");
    };
    check("/*fetchrow*/", serde_json::json!(["3"]), 1);
    check("/*fetchval*/", serde_json::json!(["2"]), 1);
    check("/*fetch*/", serde_json::json!(["5"]), 5);
    check("/*partly*/", serde_json::json!(["0"]), 5);
    // Two prefetches of 4 rows, 6 of them read.
    check("/*prefetch*/", serde_json::json!(["1"]), 8);
    check("/*to the end*/", serde_json::json!(["0"]), 10);
    for (i, event) in with_sql(&stopped.trace, "/*in txn*/").iter().enumerate() {
        let id = (7 + i).to_string();
        assert_eq!(event["params"], serde_json::json!([id]), "{event}");
        assert_eq!(event["txn"], "open", "{event}");
    }
    assert_eq!(with_sql(&stopped.trace, "/*in txn*/").len(), 2);
    // The cursor ends after the lookups it fed, yet comes before them, as it
    // started before them: the rules see its rows first.
    check("/*outer*/", serde_json::json!(["4"]), 4);
    let order: Vec<&str> = stopped
        .trace
        .iter()
        .filter_map(|e| e["sql"].as_str())
        .filter(|s| s.contains("/*outer*/") || s.contains("/*inner*/"))
        .map(|s| {
            if s.contains("outer") {
                "outer"
            } else {
                "inner"
            }
        })
        .collect();
    assert_eq!(order, ["outer", "inner", "inner", "inner", "inner"]);
    let inserts = with_sql(&stopped.trace, "/*executemany*/");
    let params: Vec<&serde_json::Value> = inserts.iter().map(|e| &e["params"][0]).collect();
    assert_eq!(params, ["11", "12", "13"], "{}", stopped.trace_text);
    // Each statement before its transaction's COMMIT, in the transaction.
    let sqls: Vec<&str> = stopped
        .trace
        .iter()
        .filter_map(|e| e["sql"].as_str())
        .collect();
    let partly = sqls.iter().position(|s| s.contains("/*partly*/"));
    assert_eq!(
        partly.map(|i| sqls[i + 1]),
        Some("COMMIT"),
        "{}",
        stopped.trace_text
    );
    assert_eq!(stopped.report["capture"]["dropped"], 0);
    assert_eq!(stopped.report["capture"]["undecoded_frames"], 0);
}

/// Issue 13, defect 3: with psycopg 3, whose parameterised statements go as
/// Parse, Bind, Describe, Execute and Sync in one batch, the injected
/// statement failed in the client but was missing from the trace: the
/// relay kept back the client's own ParseComplete and BindComplete instead
/// of those of the statement it added. The failed statement is recorded with
/// FA001, and the write committed before it is reported, also in psycopg's
/// pipeline mode.
#[test]
fn injected_faults_with_psycopg3_record_the_failed_statement() {
    if !pg::available("fault injection with psycopg 3") {
        return;
    }
    let Some(python) = pg::corpus_python("fault injection with psycopg 3") else {
        return;
    };
    let db = TestDb::new("psyfault");
    db.direct("create table orders(id int primary key, note text)");
    let script = r#"
import os, sys, psycopg

pipelined = sys.argv[1] == "pipeline"
conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
conn.execute("SET flowaudit.step = 'checkout'")
first, second = (3, 4) if pipelined else (1, 2)
conn.execute("insert into orders values (%s, %s)", (first, "kept"))
try:
    if pipelined:
        with conn.pipeline():
            conn.execute("insert into orders values (%s, %s)", (second, "failed"))
    else:
        conn.execute("insert into orders values (%s, %s)", (second, "failed"))
    sys.exit("the injected fault did not fail")
except psycopg.Error as e:
    assert e.sqlstate == "FA001", (e.sqlstate, e)
# The connection is still in step with the server.
assert conn.execute("select count(*) from orders where id = %s", (first,)).fetchone()[0] == 1
conn.close()
"#;
    for mode in ["plain", "pipeline"] {
        let proxy = ProxyProcess::start(&upstream(), &["--inject-fault", "checkout:2"]);
        let out = Command::new(&python)
            .args(["-c", script, mode])
            .env("DATABASE_URL", db.url(&proxy.addr.to_string()))
            .output()
            .expect("python runs");
        let stopped = proxy.stop();
        assert!(out.status.success(), "{mode}: {}", text(&out));
        let inserts = with_sql(&stopped.trace, "insert into orders");
        assert_eq!(inserts.len(), 2, "{mode}: {}", stopped.trace_text);
        assert!(inserts[0]["error"].is_null(), "{mode}: {}", inserts[0]);
        assert_eq!(
            inserts[1]["error"]["code"], "FA001",
            "{mode}: {}",
            inserts[1]
        );
        assert_eq!(inserts[1]["params"][1], "failed", "{mode}: {}", inserts[1]);
        let partial: Vec<&serde_json::Value> = stopped.report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["rule"] == "partial-write-on-failure" && f["step"] == "checkout")
            .collect();
        assert_eq!(partial.len(), 1, "{mode}: {:#}", stopped.report);
    }
    assert_eq!(
        db.direct("select string_agg(id::text, ',' order by id) from orders"),
        "1,3"
    );
}

/// Issue 13, defect 2: a Bind over 16 MB was not decoded, and the Execute
/// after it was recorded with the previous statement's SQL and values; a
/// Query over 16 MB was forwarded but not recorded. Each is recorded once,
/// with the start of its text or values marked `…[truncated N bytes]`, and
/// the statement after it with its own SQL.
#[test]
fn oversized_query_and_bind_are_recorded_once_marked_truncated() {
    if !pg::available("oversized messages through the proxy") {
        return;
    }
    let Some(python) = pg::corpus_python("oversized messages through the proxy") else {
        return;
    };
    let db = TestDb::new("oversized");
    db.direct("create table blobs(id int, body text)");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let big = "x".repeat(17 * 1024 * 1024);
    let file = proxy.dir.path().join("big.sql");
    std::fs::write(
        &file,
        format!(
            "select 'before' /*before query*/;\n\
             select /*big query*/ length('{big}');\n\
             select 'after' /*after query*/;\n"
        ),
    )
    .expect("write the script");
    let out = psql(
        &proxy.port(),
        &db.name,
        &[
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-o",
            "/dev/null",
            "-f",
            &file.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let script = r#"
import os, psycopg
conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
conn.execute("select %s::int /*before bind*/", (1,))
conn.execute(
    "insert into blobs(body, id) values (%s, %s) /*big bind*/", ("y" * (17 * 1024 * 1024), 7)
)
assert conn.execute("select id from blobs where id = %s /*after bind*/", (7,)).fetchone() == (7,)
conn.close()
"#;
    pg::run_python(&python, script, &db.url(&proxy.addr.to_string()));
    let stopped = proxy.stop();
    let is_marked =
        |s: &str| s.contains("…[truncated ") && s.ends_with(" bytes]") && s.len() < 1024 * 1024;
    only(&stopped, "/*before query*/");
    let query = only(&stopped, "/*big query*/");
    let sql = query["sql"].as_str().expect("sql");
    assert!(
        sql.starts_with("select /*big query*/ length('xxx"),
        "{sql:.80}"
    );
    assert!(is_marked(sql), "{}", &sql[sql.len() - 80..]);
    assert_eq!(query["rows"], 1, "{}", query["rows"]);
    only(&stopped, "/*after query*/");

    only(&stopped, "/*before bind*/");
    let bind = only(&stopped, "/*big bind*/");
    let value = bind["params"][0].as_str().expect("the big value");
    assert!(
        value.starts_with("yyy") && is_marked(value),
        "{:.80}",
        value
    );
    assert_eq!(bind["params"][1], "…[truncated]", "the value after the cut");
    assert_eq!(bind["rows"], 1);
    assert!(bind["error"].is_null(), "{}", bind["error"]);
    let after = only(&stopped, "/*after bind*/");
    assert_eq!(after["params"], serde_json::json!(["7"]));
    assert_eq!(stopped.report["capture"]["undecoded_frames"], 0);
    assert_eq!(stopped.report["capture"]["dropped"], 0);
}

/// A psql session fed statement by statement: each call waits for the
/// output it expects, so that several sessions interleave in a known order.
struct Interactive {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Interactive {
    fn start(port: &str, db: &str) -> Interactive {
        use std::process::Stdio;
        let mut child = psql_command(port, db, &["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Interactive {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends `sql` and waits for its last line of output, `expect`.
    fn send(&mut self, sql: &str, expect: &str) {
        use std::io::BufRead;
        writeln!(self.stdin, "{sql}").expect("write to psql");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("psql output");
            assert!(n > 0, "psql ended before printing {expect:?}");
            if line.trim_end() == expect {
                return;
            }
        }
    }

    fn finish(self) {
        drop(self.stdin);
        let mut child = self.child;
        let status = child.wait().expect("psql exits");
        assert!(status.success(), "psql failed: {status:?}");
    }
}

/// The statements of a step in a JSON report, by step name.
fn step_statements(report: &serde_json::Value, step: &str) -> Option<u64> {
    report["flows"]
        .as_array()?
        .iter()
        .flat_map(|f| f["steps"].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == step)
        .and_then(|s| s["statements"].as_u64())
}

/// Issue 13, defect 6: a marker sets the step of its own connection. Two
/// psql sessions interleaved, each marking its own step, keep their steps;
/// a session that never marks follows the run's latest marker (a harness
/// marking steps on its own connection while another one runs the queries).
#[test]
fn markers_apply_to_their_own_connection() {
    if !pg::available("markers of two connections through the proxy") {
        return;
    }
    let db = TestDb::new("markers");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let mut a = Interactive::start(&port, &db.name);
    let mut b = Interactive::start(&port, &db.name);
    a.send("SET flowaudit.step = 'request_a';\nselect 'a1';", "a1");
    b.send("SET flowaudit.step = 'request_b';\nselect 'b1';", "b1");
    a.send("select 'a2';", "a2");
    b.send("select 'b2';", "b2");
    a.send("select 'a3';", "a3");
    a.finish();
    b.finish();

    // The harness marks with set_config, whose row tells that it ran.
    let mut harness = Interactive::start(&port, &db.name);
    let mut pool = Interactive::start(&port, &db.name);
    harness.send(
        "SELECT set_config('flowaudit.step', 'browse', false);",
        "browse",
    );
    pool.send("select 'p1';", "p1");
    pool.send("select 'p2';", "p2");
    harness.send(
        "SELECT set_config('flowaudit.step', 'cart', false);",
        "cart",
    );
    pool.send("select 'p3';", "p3");
    harness.finish();
    pool.finish();

    let stopped = proxy.stop();
    let report = &stopped.report;
    assert_eq!(step_statements(report, "request_a"), Some(3), "{report:#}");
    assert_eq!(step_statements(report, "request_b"), Some(2), "{report:#}");
    assert_eq!(step_statements(report, "browse"), Some(2), "{report:#}");
    assert_eq!(step_statements(report, "cart"), Some(1), "{report:#}");
}

/// issue 13, defect 4: SQLAlchemy with psycopg 3 casts every placeholder
/// (`WHERE inventory.product_id = $1::BIGINT`); its classic lost update
/// (`inv = s.get(Inventory, 7); inv.stock -= 2; s.commit()`) is reported.
#[test]
fn sqlalchemy_psycopg_lost_update_through_the_proxy_is_reported() {
    if !pg::available("SQLAlchemy through the proxy") {
        return;
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/.venv/bin/python");
    let has_stack = Command::new(python)
        .args(["-c", "import sqlalchemy, psycopg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_stack {
        let reason = "no Python with SQLAlchemy and psycopg in tests/corpus/.venv \
                      (run tests/corpus/setup.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason} (required in CI)");
        }
        eprintln!("skipping: {reason}");
        return;
    }
    let db = TestDb::new("sqla_lost_update");
    db.direct(
        "CREATE TABLE inventory (product_id bigint PRIMARY KEY, stock bigint NOT NULL); \
         INSERT INTO inventory VALUES (7, 10), (19, 10);",
    );
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let run = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/workloads/sqlalchemy_lost_update.py"
        ))
        .args([proxy.port(), db.name.clone()])
        .output()
        .expect("python runs");
    let stopped = proxy.stop();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        db.direct("SELECT stock FROM inventory WHERE product_id = 7"),
        "8"
    );
    // The casts are on the wire, as the issue says.
    let reads = with_sql(&stopped.trace, "WHERE inventory.product_id = $1::BIGINT");
    assert_eq!(reads.len(), 1, "{}", stopped.trace_text);
    let writes = with_sql(&stopped.trace, "UPDATE inventory SET stock=$1::BIGINT");
    assert_eq!(writes.len(), 1, "{}", stopped.trace_text);
    let found: Vec<_> = stopped.report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "unlocked-read-modify-write")
        .collect();
    assert_eq!(found.len(), 1, "{:#}", stopped.report);
    assert_eq!(found[0]["step"], "checkout");
}

/// A loopback address nobody listens on.
fn dead_addr() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    addr
}

/// Issue 14: `run` checks the upstream before it runs the command; a command
/// that ran against no database would pass having proved nothing, and may have
/// done its other work all the same.
#[test]
fn run_against_an_unreachable_upstream_is_exit_2_and_never_runs_the_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let touched = dir.path().join("ran");
    let addr = dead_addr();
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--upstream",
            &format!("postgres://postgres@{addr}/test"),
        ])
        .arg("--")
        .arg("touch")
        .arg(&touched)
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no PostgreSQL server answers at {addr}"))
            && err.contains("the command was not run"),
        "{err}"
    );
    assert!(!touched.exists(), "the command ran");
}

/// Issue 14: a --database that does not connect stops `run` before the command.
#[test]
fn run_with_an_unreachable_database_is_exit_2_and_never_runs_the_command() {
    if !pg::available("run --database checked first") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let touched = dir.path().join("ran");
    let addr = dead_addr();
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args(["run", "--upstream", &upstream(), "--database"])
        .arg(format!("postgres://postgres@{addr}/test"))
        .arg("--")
        .arg("touch")
        .arg(&touched)
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--database") && err.contains(&addr) && err.contains("not run"),
        "{err}"
    );
    assert!(!touched.exists(), "the command ran");
}

/// Issue 14: a command that never reached the proxy is exit 2, not a pass.
#[test]
fn run_and_proxy_that_record_nothing_are_exit_2_unless_allowed() {
    if !pg::available("run with no statement") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            .args(["run", "--upstream", &upstream()])
            .args(extra)
            .args(["--", "true"])
            .current_dir(dir.path())
            .output()
            .expect("flowaudit run")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no statement reached the proxy: does the command connect to $DATABASE_URL / PGHOST?"
        ) && err.contains("--allow-empty"),
        "{err}"
    );
    let out = run(&["--allow-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let proxy = ProxyProcess::start(&upstream(), &[]);
    let (code, stderr) = proxy.stop_without_report();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no statement reached the proxy: does the application connect"),
        "{stderr}"
    );
}

/// Issue 14: a fault whose step never ran, or ran too few statements, proved
/// nothing; the message lists the steps that ran.
#[test]
fn a_fault_that_never_fires_is_exit_2_listing_the_steps_that_ran() {
    if !pg::available("run --inject-fault that misses") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |fault: &str| {
        Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            .args(["run", "--upstream", &upstream(), "--inject-fault", fault])
            .args(["--", "psql", "-X", "-q", "-o", "/dev/null", "-c"])
            .arg("SET flowaudit.step = 'browse'; select 1; select 2")
            .current_dir(dir.path())
            .output()
            .expect("flowaudit run")
    };
    let out = run("pay:1");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--inject-fault pay:1 did not fire: step pay never ran")
            && err.contains("steps that ran: ")
            && err.contains("browse (2 statements)"),
        "{err}"
    );
    let out = run("browse:3");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step browse ran 2 statements, fewer than 3"),
        "{err}"
    );
    // Within the step's statements it fires: psql fails on it, so run is exit 1.
    let out = run("browse:2");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("injected fault at browse:2"),
        "{}",
        text(&out)
    );
}
