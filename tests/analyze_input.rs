//! `flowaudit analyze` on hostile input (issue 15): a file without newlines,
//! an over-long line in every format, a gzip bomb, and trace fields holding
//! nonsense. The binary runs under `prlimit --as` (address space), so a
//! reader that holds a whole line aborts (exit 134) instead of passing; a
//! normal analyze of the fixtures fits in 64 MB.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The address space `analyze` gets here: four times what reading the
/// fixtures needs, well under the inputs below.
const BOUND: u64 = 256 << 20;

/// Bytes of one over-long line: above [`BOUND`], so holding it fails.
const HUGE: usize = 300 << 20;

/// Above the 16 MiB line limit, for the tests that check what is reported.
const LONG: usize = 20 << 20;

fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (CI=true: a missing tool fails the test)");
    }
    eprintln!("skipped: {reason}");
}

fn have_prlimit() -> bool {
    Command::new("prlimit").arg("--version").output().is_ok()
}

/// `flowaudit ARGS` with at most `bound` bytes of address space.
fn analyze_limited(bound: u64, args: &[&str], file: &Path) -> Output {
    Command::new("prlimit")
        .arg(format!("--as={bound}"))
        .arg(assert_cmd::cargo::cargo_bin("flowaudit"))
        .arg("analyze")
        .args(["--skip-invariants", "--fail-on", "never"])
        .args(args)
        .arg(file)
        .output()
        .expect("prlimit runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `head`, then a line of `len` bytes made of `start`, `fill` and
/// `end`, written in pieces (the test does not hold it either), then `tail`.
fn write_with_long_line(path: &Path, head: &str, start: &str, len: usize, end: &str, tail: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(head.as_bytes()).expect("write");
    f.write_all(start.as_bytes()).expect("write");
    let piece = vec![b'x'; 1 << 20];
    let mut left = len.saturating_sub(start.len() + end.len());
    while left > 0 {
        let n = left.min(piece.len());
        f.write_all(&piece[..n]).expect("write");
        left -= n;
    }
    f.write_all(end.as_bytes()).expect("write");
    f.write_all(tail.as_bytes()).expect("write");
    f.flush().expect("flush");
}

fn report(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("json report")
}

fn notes(report: &serde_json::Value) -> String {
    report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// 300 MB without a newline: exit 2 in bounded memory, never an abort.
#[test]
fn a_file_without_newlines_costs_the_line_limit_not_its_size() {
    if !have_prlimit() {
        return skip("prlimit is not installed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one-line.log");
    write_with_long_line(&path, "", "", HUGE, "", "");

    // Detection samples the start of the file: in no format.
    let out = analyze_limited(BOUND, &[], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in any format flowaudit reads"),
        "{}",
        stderr(&out)
    );

    // Read as a server log: the line is reported with file:line and the limit.
    let out = analyze_limited(BOUND, &["--input", "pg-stderr"], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no statement was read"), "{err}");
    assert!(
        err.contains(&format!("first at {}:1", path.display())) && err.contains("16 MiB"),
        "{err}"
    );

    // Read as a trace: exit 2 naming the line and the limit.
    let out = analyze_limited(BOUND, &["--input", "jsonl"], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:1: ", path.display())) && err.contains("16 MiB"),
        "{err}"
    );
}

const PG: &str = "2026-11-25 14:54:35.877 UTC [7] u@d LOG:  statement: ";

fn csv_record(n: u32, message: &str) -> String {
    format!(
        "2026-11-25 14:54:35.877 UTC,\"u\",\"d\",7,\"[local]\",6b06f6ab.7,{n},\"idle\",\
         2026-11-25 14:54:35 UTC,3/2,0,LOG,00000,\"{message}\",,,,,,,,,\"app\",\
         \"client backend\",,0\n"
    )
}

fn json_record(message: &str) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-25 14:54:35.877 UTC\",\"pid\":7,\"session_id\":\"6b06f6ab.7\",\
         \"error_severity\":\"LOG\",\"message\":\"{message}\"}}\n"
    )
}

/// A statement over the limit, in the middle of each format's log: reported
/// as not understood with file:line and the limit, and the statements around
/// it are read. Format detection finds the format despite it.
#[test]
fn an_over_long_line_is_reported_and_the_statements_after_it_are_read() {
    if !have_prlimit() {
        return skip("prlimit is not installed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let logs: [(&str, String, String, &str, String, usize); 4] = [
        (
            "pg.log",
            format!("{PG}select 1\n"),
            format!("{PG}select '"),
            "'\n",
            format!("{PG}select 2\n"),
            HUGE,
        ),
        (
            "pg.csv",
            csv_record(1, "statement: select 1"),
            csv_record(2, "statement: select 'XXX")
                .split("XXX")
                .next()
                .unwrap_or_default()
                .to_owned(),
            "'\",,,,,,,,,\"app\",\"client backend\",,0\n",
            csv_record(3, "statement: select 2"),
            LONG,
        ),
        (
            "general.log",
            "\t\t    18 Query\tselect 1\n".to_owned(),
            "\t\t    18 Query\tselect '".to_owned(),
            "'\n",
            "\t\t    18 Query\tselect 2\n".to_owned(),
            LONG,
        ),
        (
            "pg.json",
            json_record("statement: select 1"),
            json_record("statement: select 'XXX")
                .split("XXX")
                .next()
                .unwrap_or_default()
                .to_owned(),
            "'\"}\n",
            json_record("statement: select 2"),
            LONG,
        ),
    ];
    for (name, head, start, end, tail, len) in logs {
        let path = dir.path().join(name);
        write_with_long_line(&path, &head, &start, len, end, &tail);
        let out = analyze_limited(BOUND, &["--format", "json"], &path);
        let report = report(&out);
        assert_eq!(report["summary"]["statements"], 2, "{name}: {report}");
        let notes = notes(&report);
        assert!(
            notes.contains(&format!("first at {}:2", path.display()))
                && notes.contains("line longer than 16 MiB"),
            "{name}: {notes}"
        );
        std::fs::remove_file(&path).expect("remove");
    }

    // A trace: every malformed line is exit 2, this one too, naming it.
    let path = dir.path().join("trace.jsonl");
    write_with_long_line(
        &path,
        "{\"sql\": \"select 1\"}\n",
        "{\"sql\": \"select '",
        LONG,
        "'\"}\n",
        "{\"sql\": \"select 2\"}\n",
    );
    let out = analyze_limited(BOUND, &[], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:2: ", path.display())) && err.contains("16 MiB"),
        "{err}"
    );
}

/// A gzip bomb: 512 MiB of zeros in about 512 KB (512 gzip members of 1 MiB
/// each, which gzip and flowaudit read as one stream).
fn gzip_bomb(path: &Path) {
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).expect("compress");
    let member = member.finish().expect("finish");
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for _ in 0..512 {
        f.write_all(&member).expect("write");
    }
    f.flush().expect("flush");
}

#[test]
fn a_gzip_bomb_is_read_in_bounded_memory() {
    if !have_prlimit() {
        return skip("prlimit is not installed");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("bomb.log.gz");
    gzip_bomb(&path);
    assert!(std::fs::metadata(&path).expect("meta").len() < 4 << 20);

    let out = analyze_limited(BOUND, &[], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in any format flowaudit reads"),
        "{}",
        stderr(&out)
    );

    let out = analyze_limited(BOUND, &["--input", "pg-stderr"], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("first at {}:1", path.display())) && err.contains("16 MiB"),
        "{err}"
    );
}

/// Issue 15, item 16: a trace field that holds nonsense is exit 2 naming the
/// file, the line and the key, like a missing `sql`.
#[test]
fn trace_fields_holding_nonsense_are_exit_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("ts", r#""ts": "not a time""#),
        ("ts", r#""ts": "2026-13-45T99:00:00Z""#),
        ("ts", r#""ts": 17"#),
        ("duration_us", r#""duration_us": -5"#),
        ("duration_us", r#""duration_us": 1.5"#),
        ("rows", r#""rows": "many""#),
        ("conn", r#""conn": -1"#),
        ("txn", r#""txn": "maybe""#),
        ("params", r#""params": "a""#),
        ("error", r#""error": "boom""#),
        ("flow", r#""flow": 3"#),
        ("cut_by_stop", r#""cut_by_stop": "yes""#),
    ];
    for (key, field) in cases {
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            format!(
                "{{\"sql\": \"select 1\", \"ts\": \"2026-11-25T10:00:00.001994Z\"}}\n\
                 {{\"sql\": \"select 2\", {field}}}\n"
            ),
        )
        .expect("write");
        let out = assert_cmd::Command::cargo_bin("flowaudit")
            .expect("binary")
            .args(["analyze", "--skip-invariants"])
            .arg(&path)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{field}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:2: key \"{key}\"", path.display())),
            "{field}: {err}"
        );
    }
    // A non-string sql names its key too.
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, "{\"sql\": [\"select 1\"]}\n").expect("write");
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args(["analyze", "--skip-invariants"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:1: key \"sql\"", path.display())),
        "{}",
        stderr(&out)
    );
}
