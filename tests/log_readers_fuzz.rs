//! Property tests of the log and trace readers (issue 15): arbitrary bytes,
//! and real logs (tests/fixtures/) with one line damaged, fed to each reader
//! (pg-stderr, pg-csv, pg-json, mysql-general, the JSON Lines trace) and to
//! format detection. None may panic; every line is counted; nothing a reader
//! keeps is longer than its line limit allows, which the tests lower so that
//! cut lines come up; and one damaged line costs at most the statements it
//! touches, never the rest of the log.

use std::io::BufRead;
use std::path::Path;

use flowaudit::capture::logs::{self, LogFormat, LogOptions, LogReader, LogSummary};
use flowaudit::model::Event;
use flowaudit::trace::TraceReader;
use proptest::prelude::*;

const SERVER_LOGS: [LogFormat; 4] = [
    LogFormat::PgStderr,
    LogFormat::PgCsv,
    LogFormat::PgJson,
    LogFormat::MysqlGeneral,
];

fn options(prefix: &str, max_line: usize) -> LogOptions {
    LogOptions {
        log_line_prefix: prefix.to_owned(),
        max_line,
    }
}

fn read_log(bytes: &[u8], format: LogFormat, options: &LogOptions) -> (Vec<Event>, LogSummary) {
    let input: Box<dyn BufRead> = Box::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader =
        LogReader::new(input, Path::new("f.log"), format, false, options).expect("reader");
    let events = reader
        .by_ref()
        .map(|e| e.expect("in memory, no I/O error"))
        .collect();
    (events, reader.summary().clone())
}

/// Lines as the readers count them: each newline ends one, and bytes after
/// the last newline are one more.
fn line_count(bytes: &[u8]) -> u64 {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(!bytes.is_empty() && bytes.last() != Some(&b'\n'))
}

/// What every reader must do with any input.
fn check_bounds(bytes: &[u8], max_line: usize) {
    let lines = line_count(bytes);
    for format in SERVER_LOGS {
        let options = options(logs::DEFAULT_LOG_LINE_PREFIX, max_line);
        let (events, summary) = read_log(bytes, format, &options);
        assert_eq!(summary.lines, lines, "{format}");
        assert!(summary.statements <= lines, "{format}: {summary:?}");
        assert_eq!(summary.statements, events.len() as u64, "{format}");
        for e in &events {
            // A statement is at most one line or record of the limit; an
            // EXECUTE resolved to its PREPARE keeps the EXECUTE's comment.
            assert!(e.sql.len() <= 2 * max_line + 1, "{format}: {}", e.sql.len());
            for p in e.params.iter().flatten().flatten() {
                assert!(p.len() <= max_line, "{format}");
            }
        }
    }
    let mut read = 0;
    for item in TraceReader::new(bytes, Path::new("t.jsonl")).with_max_line(max_line) {
        read += 1;
        if let Ok(e) = item {
            assert!(e.sql.len() <= max_line);
        }
    }
    assert!(read <= lines);
}

/// Bytes that look like log lines often enough to reach the parsers' states.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..8),
        2 => Just(b"\n".to_vec()),
        2 => Just(b"\"".to_vec()),
        1 => Just(b",".to_vec()),
        1 => Just(b"\t".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"'".to_vec()),
        1 => Just(b"2026-11-25 14:54:35.877 UTC [7] u@d LOG:  statement: ".to_vec()),
        1 => Just(b"2026-11-25 14:54:35.877 UTC [7] u@d LOG:  duration: 1.5 ms".to_vec()),
        1 => Just(b"2026-11-25 14:54:35.877 UTC [7] u@d DETAIL:  parameters: $1 = '".to_vec()),
        1 => Just(b"2026-11-25 14:54:35.877 UTC [7] u@d ERROR:  42P01: x\n2026-11-25 14:54:35.877 UTC [7] u@d STATEMENT:  ".to_vec()),
        1 => Just(b"2026-11-25 14:54:35.877 UTC,\"u\",\"d\",7,,6b06f6ab.7,1,\"idle\",2026-11-25 14:54:35 UTC,3/2,0,LOG,00000,\"statement: ".to_vec()),
        1 => Just(b"\",,,,,,,,,\"app\",\"client backend\",,0\n".to_vec()),
        1 => Just(b"\t\t    18 Query\t".to_vec()),
        1 => Just(b"\t\t    18 Execute\t".to_vec()),
        1 => Just(b"EXECUTE q(1, 'x') /*step='s'*/".to_vec()),
        1 => Just(b"{\"sql\": \"select 1\", \"ts\": \"".to_vec()),
        1 => Just(b"{\"timestamp\":\"2026-11-25 14:54:35.877 UTC\",\"pid\":7,\"error_severity\":\"LOG\",\"message\":\"statement: ".to_vec()),
        1 => Just(b"select * from t where id = $1".to_vec()),
        1 => Just(vec![b'x'; 300]),
    ];
    prop::collection::vec(piece, 0..48).prop_map(|v| v.concat())
}

/// A real log the fixtures hold: its format, text, and the options it is
/// read with.
struct Fixture {
    format: LogFormat,
    text: Vec<u8>,
    options: LogOptions,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let default = logs::DEFAULT_LOG_LINE_PREFIX;
    [
        (LogFormat::PgStderr, "logs/pg-stderr.log", default),
        (
            LogFormat::PgStderr,
            "logs/pg-duration-custom-prefix.log",
            "%t [%p-%l] %q%u@%d %c app=%a ",
        ),
        (LogFormat::PgCsv, "logs/pg.csv", default),
        (LogFormat::PgJson, "logs/pg.json", default),
        (LogFormat::MysqlGeneral, "logs/mysql-general.log", default),
        (
            LogFormat::MysqlGeneral,
            "logs/mysql-two-sessions.log",
            default,
        ),
        (LogFormat::Jsonl, "checkout.jsonl", default),
    ]
    .into_iter()
    .map(|(format, name, prefix)| Fixture {
        format,
        text: std::fs::read(dir.join(name)).expect("fixture"),
        options: options(prefix, MAX),
    })
    .collect()
}

/// One change to one line.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize, usize),
    Replace(Vec<u8>),
    /// A run longer than the limit the tests read with.
    Lengthen(usize),
    Truncate(usize),
    Indent,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Quotes most often: one left open is the damage that costs most.
    let byte = prop::sample::select(vec![
        b'"', b'"', b'"', b'"', b',', b'\t', b'\'', b'{', b'}', b'\\', b':', b' ', b'x', b'\r',
        0xff, 0x00,
    ]);
    prop_oneof![
        (any::<usize>(), byte).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..40usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        prop::collection::vec(any::<u8>().prop_filter("one line", |&b| b != b'\n'), 0..80)
            .prop_map(Mutation::Replace),
        any::<usize>().prop_map(Mutation::Lengthen),
        any::<usize>().prop_map(Mutation::Truncate),
        Just(Mutation::Indent),
    ]
}

/// The limit the damage tests read with: above every fixture line.
const MAX: usize = 4096;

fn mutate(text: &[u8], index: usize, m: &Mutation) -> (Vec<u8>, u64) {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    // The last piece after a final newline is no line.
    let n = lines.len() - usize::from(text.last() == Some(&b'\n'));
    let i = index % n.max(1);
    let line = &mut lines[i];
    let at = |p: usize, len: usize| p % (len + 1);
    match m {
        Mutation::Insert(p, b) => {
            let p = at(*p, line.len());
            line.insert(p, *b);
        }
        Mutation::Delete(p, k) => {
            let p = at(*p, line.len());
            let end = (p + k).min(line.len());
            line.drain(p..end);
        }
        Mutation::Replace(bytes) => *line = bytes.clone(),
        Mutation::Lengthen(p) => {
            let p = at(*p, line.len());
            line.splice(p..p, std::iter::repeat_n(b'x', MAX + 1));
        }
        Mutation::Truncate(p) => {
            let p = at(*p, line.len());
            line.truncate(p);
        }
        Mutation::Indent => line.insert(0, b'\t'),
    }
    (lines.join(&b'\n'), i as u64 + 1)
}

/// Statements of `before` that `after` lacks (as a multiset of their SQL).
fn lost(before: &[Event], after: &[Event]) -> usize {
    let mut left: Vec<&str> = after.iter().map(|e| e.sql.as_str()).collect();
    let mut missing = 0;
    for e in before {
        match left.iter().position(|s| *s == e.sql) {
            Some(k) => {
                left.swap_remove(k);
            }
            None => missing += 1,
        }
    }
    missing
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any bytes: no panic, every line counted, nothing kept over the limit.
    #[test]
    fn any_bytes_are_read_within_the_limit(
        bytes in log_bytes(),
        max_line in prop::sample::select(vec![16usize, 64, 256, 4096]),
    ) {
        check_bounds(&bytes, max_line);
    }

    /// Detection looks at any bytes without panicking.
    #[test]
    fn detection_takes_any_bytes(bytes in log_bytes()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("any.log");
        std::fs::write(&path, &bytes).expect("write");
        match logs::detect(&path, &LogOptions::default()) {
            Ok(_) | Err(logs::LogError::UnknownFormat { .. }) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

}

proptest! {
    // Each case reads every fixture several times.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Each real log with one line damaged: the same bounds hold, detection
    /// still finds the format, and the damage costs at most two statements
    /// (the damaged one, and the one before when the damaged line now reads
    /// as its continuation); a damaged trace line is an error naming that
    /// line and no other.
    #[test]
    fn one_damaged_line_costs_at_most_its_statements(
        index in any::<usize>(),
        m in mutation(),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        for Fixture { format, text, options } in fixtures() {
            let (damaged, line) = mutate(&text, index, &m);
            check_bounds(&damaged, MAX);
            if format == LogFormat::Jsonl {
                for (i, item) in TraceReader::new(&damaged[..], Path::new("t.jsonl"))
                    .with_max_line(MAX)
                    .enumerate()
                {
                    if let Err(e) = item {
                        let named = e.to_string();
                        prop_assert!(named.starts_with(&format!("t.jsonl:{line}: ")), "{named}");
                        prop_assert_eq!(i as u64 + 1, line);
                    }
                }
                continue;
            }
            let (before, _) = read_log(&text, format, &options);
            let (after, summary) = read_log(&damaged, format, &options);
            let lost = lost(&before, &after);
            prop_assert!(lost <= 2, "{format}, line {line}, {m:?}: {lost} lost; {summary:?}");

            let path = dir.path().join("damaged.log");
            std::fs::write(&path, &damaged).expect("write");
            prop_assert_eq!(logs::detect(&path, &options).ok(), Some(format));
        }
    }
}

/// The fixtures read as they are: what the damage test compares with.
#[test]
fn fixtures_read_whole() {
    for f in fixtures() {
        if f.format == LogFormat::Jsonl {
            continue;
        }
        let (events, summary) = read_log(&f.text, f.format, &f.options);
        assert!(events.len() > 5, "{}: {summary:?}", f.format);
        // A truncated last line, or another program's line.
        assert!(
            summary.not_understood_lines() <= 1,
            "{}: {summary:?}",
            f.format
        );
    }
}
