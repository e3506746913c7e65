//! Rule files that say nonsense are refused when they load (issue 15): exit
//! code 2, the message naming the file and the key, before anything is
//! audited or any database is opened.

use std::process::Command;

/// Runs `flowaudit analyze` on a one-line trace with one rule file holding
/// `text`; returns the exit code, stderr and the rule file's path.
fn analyze_with(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("nonsense.toml");
    std::fs::write(&rules, text).expect("rule file");
    let trace = dir.path().join("t.jsonl");
    std::fs::write(&trace, "{\"sql\": \"SELECT 1\"}\n").expect("trace");
    let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .arg("analyze")
        .arg(&trace)
        .arg("--rules")
        .arg(&rules)
        .arg("--skip-invariants")
        .output()
        .expect("flowaudit runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rules.display().to_string(),
    )
}

/// Each file is refused with exit 2 and a message holding its path and
/// every one of `says`.
fn refused(text: &str, says: &[&str]) {
    let (code, err, path) = analyze_with(text);
    assert_eq!(code, Some(2), "{text}\n{err}");
    assert!(err.contains(&path), "names the file: {err}");
    for s in says {
        assert!(err.contains(s), "{text}\nsays {s:?}: {err}");
    }
}

#[test]
fn thresholds_that_make_no_sense_are_refused() {
    refused(
        "[rules.n-plus-one]\nmin_repeats = 0\n",
        &[
            "[rules.n-plus-one]",
            "min_repeats: 0 is too small: at least 2",
        ],
    );
    refused(
        "[rules.n-plus-one]\nmin_repeats = 1\n",
        &["[rules.n-plus-one]", "min_repeats: 1 is too small"],
    );
    refused(
        "[rules.repeated-query]\nmin_repeats = 0\n",
        &["[rules.repeated-query]", "min_repeats: 0 is too small"],
    );
    refused(
        "[rules.connection-churn]\nmin_connections = 0\n",
        &[
            "[rules.connection-churn]",
            "min_connections: 0 is too small",
        ],
    );
    refused(
        "[rules.n-plus-one]\nmin_repeats = -3\n",
        &["[rules.n-plus-one]", "-3"],
    );
    // The smallest sensible values pass.
    let (code, err, _) = analyze_with(
        "[rules.n-plus-one]\nmin_repeats = 2\n[rules.repeated-query]\nmin_repeats = 2\n\
         [rules.connection-churn]\nmin_connections = 2\n",
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_severity_that_is_no_severity_lists_the_accepted_ones() {
    for text in [
        "[rules.n-plus-one]\nseverity = 3\n",
        "[rules.n-plus-one]\nseverity = \"fatal\"\n",
        "[[invariant]]\nname = \"x\"\nsql = \"SELECT 1\"\nseverity = 3\n",
    ] {
        refused(
            text,
            &[
                "severity",
                "expected one of \"error\", \"warning\", \"info\"",
            ],
        );
        let (_, err, _) = analyze_with(text);
        assert!(!err.contains("unit variant"), "{err}");
    }
}

#[test]
fn an_invariant_name_declared_twice_in_a_file_is_refused() {
    refused(
        "[[invariant]]\nname = \"stock\"\nsql = \"SELECT 1\"\n\
         [[invariant]]\nname = \"stock\"\nsql = \"SELECT 2\"\n",
        &["[[invariant]] \"stock\" name: declared twice in this file"],
    );
}

#[test]
fn an_example_whose_trace_is_not_a_trace_is_refused() {
    refused(
        "[[example]]\nname = \"loop\"\ntrace = \"not json\"\nfires = []\n",
        &["[[example]] \"loop\" trace: line 1: not a trace event"],
    );
    refused(
        "[[example]]\nname = \"loop\"\ntrace = '''\n{\"sql\": \"SELECT 1\"}\n{\"params\": []}\n'''\nfires = []\n",
        &["[[example]] \"loop\" trace: line 2: a trace line needs a string field \"sql\""],
    );
}

#[test]
fn an_invariant_timeout_beyond_an_hour_is_refused_at_load() {
    // PostgreSQL refused it only when connecting, without naming the file.
    refused(
        "[[invariant]]\nname = \"slow\"\nsql = \"SELECT 1\"\ntimeout_ms = 99999999999\n",
        &["[[invariant]] \"slow\" timeout_ms: 99999999999 is out of range: from 1 to 3600000"],
    );
    refused(
        "[[invariant]]\nname = \"slow\"\nsql = \"SELECT 1\"\ntimeout_ms = 0\n",
        &["[[invariant]] \"slow\" timeout_ms: 0 is out of range"],
    );
}

#[test]
fn an_invariant_that_writes_is_refused_at_load() {
    refused(
        "[[invariant]]\nname = \"wipe\"\nsql = \"SELECT 1 AS one; DELETE FROM stock\"\n",
        &["[[invariant]] \"wipe\" sql: refused: read as PostgreSQL, it is 2 statements"],
    );
}
