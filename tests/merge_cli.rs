//! `flowaudit merge` as users run it (issue 20): reports written by
//! `analyze --format json` from the fixture traces, merged, rendered, gated;
//! and the errors, each with exit code 2, naming the file and where.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn flowaudit() -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    cmd
}

fn output(cmd: &mut Command, code: i32) -> (String, String) {
    let out = cmd.assert().code(code).get_output().clone();
    (
        String::from_utf8(out.stdout).expect("utf-8 output"),
        String::from_utf8(out.stderr).expect("utf-8 output"),
    )
}

/// `analyze TRACE --format json --output DIR/NAME.json`.
fn report_of(trace: &str, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    flowaudit()
        .args(["analyze", trace, "--format", "json", "--fail-on", "never"])
        .arg("--output")
        .arg(&path)
        .assert()
        .code(0);
    path
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn step_counts(report: &serde_json::Value) -> Vec<(String, u64, u64)> {
    report["flows"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_owned(),
                s["statements"].as_u64().expect("statements"),
                s["queries"].as_u64().expect("queries"),
            )
        })
        .collect()
}

#[test]
fn two_shards_merge_into_one_report_whatever_their_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = report_of("checkout.jsonl", dir.path(), "a.json");
    let b = report_of("checkout-fixed.jsonl", dir.path(), "b.json");
    let (ab, _) = output(
        flowaudit()
            .arg("merge")
            .arg(&a)
            .arg(&b)
            .args(["--format", "json"]),
        1,
    );
    let (ba, _) = output(
        flowaudit()
            .arg("merge")
            .arg(&b)
            .arg(&a)
            .args(["--format", "json"]),
        1,
    );
    assert_eq!(ab, ba, "the order of the arguments changed the report");

    let read = |p: &Path| json(&std::fs::read_to_string(p).expect("report written"));
    let (ra, rb, merged) = (read(&a), read(&b), json(&ab));
    // Both traces ran the same four steps: each count is the sum.
    let sums: Vec<(String, u64, u64)> = step_counts(&ra)
        .into_iter()
        .zip(step_counts(&rb))
        .map(|((name, s1, q1), (other, s2, q2))| {
            assert_eq!(name, other);
            (name, s1 + s2, q1 + q2)
        })
        .collect();
    assert_eq!(step_counts(&merged), sums);
    let statements = |r: &serde_json::Value| r["summary"]["statements"].as_u64().expect("count");
    assert_eq!(statements(&merged), statements(&ra) + statements(&rb));
    // The slow query ran in both: one finding, its counts added.
    let slow = |r: &serde_json::Value| -> Vec<u64> {
        r["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["rule"] == "slow-query")
            .map(|f| f["count"].as_u64().expect("count"))
            .collect()
    };
    assert_eq!(slow(&ra).len(), 1);
    assert_eq!(slow(&rb).len(), 1);
    assert_eq!(slow(&merged), [slow(&ra)[0] + slow(&rb)[0]]);

    let (table, _) = output(flowaudit().arg("merge").arg(&a).arg(&b), 1);
    insta::assert_snapshot!(table);
}

#[test]
fn fail_on_gates_the_merged_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = report_of("checkout.jsonl", dir.path(), "a.json");
    let fixed = report_of("checkout-fixed.jsonl", dir.path(), "b.json");
    // checkout.jsonl has an N+1 (an error); the fixed trace only warnings.
    output(flowaudit().arg("merge").arg(&a).arg(&fixed), 1);
    output(flowaudit().arg("merge").arg(&fixed), 0);
    output(
        flowaudit()
            .arg("merge")
            .arg(&fixed)
            .args(["--fail-on", "warning"]),
        1,
    );
    output(
        flowaudit()
            .arg("merge")
            .arg(&a)
            .arg(&fixed)
            .args(["--fail-on", "never"]),
        0,
    );
}

#[test]
fn one_report_is_rendered_again_unchanged_and_in_every_format() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = report_of("checkout.jsonl", dir.path(), "a.json");
    let (again, _) = output(
        flowaudit().arg("merge").arg(&a).args(["--format", "json"]),
        1,
    );
    assert_eq!(again, std::fs::read_to_string(&a).expect("report written"));
    for format in ["table", "sarif", "junit", "markdown", "html"] {
        let out = dir.path().join(format!("merged.{format}"));
        let (stdout, _) = output(
            flowaudit()
                .arg("merge")
                .arg(&a)
                .arg(&a)
                .args(["--format", format, "--output"])
                .arg(&out),
            1,
        );
        assert_eq!(stdout, "", "{format}: --output writes the file only");
        let text = std::fs::read_to_string(&out).expect("written");
        assert!(text.contains("n-plus-one"), "{format}: {text}");
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_file_and_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = report_of("checkout.jsonl", dir.path(), "good.json");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("written");
        path
    };
    let text = std::fs::read_to_string(&good).expect("report written");
    let cases: Vec<(Vec<PathBuf>, String)> = vec![
        (
            Vec::new(),
            "flowaudit: error: no report to merge\n  hint: give".to_owned(),
        ),
        (
            vec![good.clone(), dir.path().join("absent.json")],
            format!(
                "flowaudit: error: cannot read report {}: No such file",
                dir.path().join("absent.json").display()
            ),
        ),
        (
            vec![write("cut.json", &text[..text.len() / 2])],
            format!(
                "flowaudit: error: {}:",
                dir.path().join("cut.json").display()
            ),
        ),
        (
            vec![write(
                "v2.json",
                &text.replacen("\"version\": 1", "\"version\": 2", 1),
            )],
            format!(
                "flowaudit: error: {}: a version 2 report; this flowaudit reads version 1\n  \
                 hint: merge reports written by the same flowaudit version",
                dir.path().join("v2.json").display()
            ),
        ),
        (
            vec![write(
                "rule.json",
                &text.replacen("\"n-plus-one\"", "\"n-plus-two\"", 1),
            )],
            format!(
                "flowaudit: error: {}:",
                dir.path().join("rule.json").display()
            ),
        ),
        (
            vec![write("trace.jsonl", "{\"sql\": \"select 1\"}\n")],
            "no object with a \"version\"".to_owned(),
        ),
    ];
    for (files, expected) in cases {
        let (stdout, stderr) = output(flowaudit().arg("merge").args(&files), 2);
        assert_eq!(stdout, "");
        assert!(
            stderr.contains(&expected),
            "{files:?}: expected {expected:?} in {stderr:?}"
        );
        assert!(stderr.contains("\n  hint: "), "{stderr}");
    }
    // The position: the cut file ends inside the report, the bad id on its line.
    let (_, stderr) = output(
        flowaudit().arg("merge").arg(dir.path().join("rule.json")),
        2,
    );
    let line = text
        .lines()
        .position(|l| l.contains("\"n-plus-one\""))
        .expect("an N+1 in the fixture")
        + 1;
    assert!(
        stderr.contains(&format!(":{line}:")) && stderr.contains("unknown rule id \"n-plus-two\""),
        "{stderr}"
    );
}
