//! Whole CLI runs on the fixture traces under tests/fixtures/, snapshotted as
//! users see them. Runs happen inside tests/fixtures so that messages carry
//! short relative paths and no `./rules` directory is picked up.

use assert_cmd::Command;
use predicates::prelude::*;

fn flowaudit() -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    cmd
}

fn stdout_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().stdout.clone();
    String::from_utf8(out).expect("utf-8 output")
}

fn stderr_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().stderr.clone();
    String::from_utf8(out).expect("utf-8 output")
}

#[test]
fn analyze_table_report() {
    let out = stdout_of(flowaudit().args(["analyze", "checkout.jsonl"]), 1);
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn analyze_json_report() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--format", "json"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["version"], 1);
    assert_eq!(v["summary"]["statements"], 26);
    insta::assert_snapshot!(out);
}

#[test]
fn fail_on_decides_the_exit_code() {
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--fail-on", "never"])
        .assert()
        .code(0);
    // Budget file allows the only slow query; warnings remain (repeated-query).
    flowaudit()
        .args([
            "analyze",
            "checkout.jsonl",
            "--fail-on",
            "warning",
            "--rules",
            "rules-budget",
        ])
        .assert()
        .code(1);
    flowaudit()
        .args(["analyze", "empty.jsonl", "--fail-on", "info"])
        .assert()
        .code(0);
}

#[test]
fn budgets_and_allowances_from_a_rules_dir() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--rules", "rules-budget"]),
        1,
    );
    assert!(
        out.contains("step checkout › browse ran 10 statements, over its budget of 5 by 5"),
        "{out}"
    );
    assert!(
        out.contains("the checkout fixture waits on purpose"),
        "{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn output_file_receives_the_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.json");
    let out = stdout_of(
        flowaudit()
            .args(["analyze", "checkout.jsonl", "--format", "json", "--output"])
            .arg(&path),
        1,
    );
    assert!(out.is_empty());
    let text = std::fs::read_to_string(&path).expect("report written");
    assert!(text.contains("\"n-plus-one\""));
}

#[test]
fn malformed_line_is_exit_2_with_file_and_line() {
    let err = stderr_of(flowaudit().args(["analyze", "malformed.jsonl"]), 2);
    assert!(err.contains("malformed.jsonl:3: "), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn missing_file_is_exit_2() {
    let err = stderr_of(flowaudit().args(["analyze", "no-such-trace.jsonl"]), 2);
    assert!(
        err.contains("cannot read trace no-such-trace.jsonl"),
        "{err}"
    );
}

#[test]
fn invalid_rule_file_is_exit_2_naming_file_and_key() {
    let err = stderr_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--rules", "rules-invalid"]),
        2,
    );
    assert!(
        err.contains("rules-invalid/bad.toml: [rules.n-plus-one]: unknown field `max_repeats`"),
        "{err}"
    );
}

#[test]
fn missing_rules_dir_is_exit_2() {
    let err = stderr_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--rules", "no-such-dir"]),
        2,
    );
    assert!(err.contains("no-such-dir"), "{err}");
}

#[test]
fn empty_trace_says_nothing_was_captured() {
    let out = stdout_of(flowaudit().args(["analyze", "empty.jsonl"]), 0);
    assert!(out.contains("no statements were captured"), "{out}");
    let out = stdout_of(
        flowaudit().args(["analyze", "empty.jsonl", "--format", "json"]),
        0,
    );
    assert!(out.contains("\"statements\": 0"), "{out}");
}

#[test]
fn bad_arguments_are_exit_2() {
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--format", "xml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'xml'"));
    flowaudit().args(["analyze"]).assert().code(2);
    flowaudit().arg("frobnicate").assert().code(2);
    flowaudit()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("analyze"));
}

#[test]
fn rules_list_and_explain() {
    let out = stdout_of(flowaudit().args(["rules", "list"]), 0);
    insta::assert_snapshot!(out);
    let out = stdout_of(flowaudit().args(["rules", "explain", "n-plus-one"]), 0);
    for section in [
        "## What it does",
        "## Why is this bad?",
        "## Example",
        "## How to fix",
    ] {
        assert!(out.contains(section), "{out}");
    }
    let err = stderr_of(flowaudit().args(["rules", "explain", "n-plus-two"]), 2);
    assert!(err.contains("no rule has the id `n-plus-two`"), "{err}");
    assert!(err.contains("known rules: n-plus-one"), "{err}");
}

#[test]
fn several_files_keep_their_connections_apart() {
    // The same trace twice: connection 1 of each file is a different connection.
    let out = stdout_of(
        flowaudit().args([
            "analyze",
            "checkout.jsonl",
            "checkout.jsonl",
            "--format",
            "json",
        ]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let browse = &v["flows"][0]["steps"][1];
    assert_eq!(browse["name"], "browse");
    assert_eq!(browse["connections"], 2);
    assert_eq!(browse["statements"], 20);
}
