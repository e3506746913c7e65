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
        .args([
            "analyze",
            "empty.jsonl",
            "--allow-empty",
            "--fail-on",
            "info",
        ])
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

/// Issue 14: a gate that read nothing has proved nothing.
#[test]
fn empty_trace_is_exit_2_unless_allowed() {
    let err = stderr_of(flowaudit().args(["analyze", "empty.jsonl"]), 2);
    assert!(
        err.contains("no statement was read from empty.jsonl") && err.contains("--allow-empty"),
        "{err}"
    );
    let out = stdout_of(
        flowaudit().args(["analyze", "empty.jsonl", "--allow-empty"]),
        0,
    );
    assert!(out.contains("no statements were captured"), "{out}");
    let out = stdout_of(
        flowaudit().args([
            "analyze",
            "empty.jsonl",
            "--allow-empty",
            "--format",
            "json",
        ]),
        0,
    );
    assert!(out.contains("\"statements\": 0"), "{out}");
    // One file with statements is enough.
    flowaudit()
        .args([
            "analyze",
            "empty.jsonl",
            "checkout.jsonl",
            "--fail-on",
            "never",
        ])
        .assert()
        .code(0);
}

#[test]
fn rules_takes_a_file_as_well_as_a_directory() {
    let from = |rules: &str| {
        stdout_of(
            flowaudit().args([
                "analyze",
                "checkout.jsonl",
                "--format",
                "json",
                "--fail-on",
                "never",
                "--rules",
                rules,
            ]),
            0,
        )
    };
    let dir = from("rules-budget");
    assert!(dir.contains("rules-budget/budget.toml"), "{dir}");
    assert_eq!(from("rules-budget/budget.toml"), dir);
}

/// Issue 14: invariants that nothing checks are not skipped silently.
#[test]
fn invariants_without_database_are_exit_2_unless_skipped() {
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/shop.toml");
    let err = stderr_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--rules", shop]),
        2,
    );
    assert!(
        err.contains("shop.toml declares")
            && err.contains("[[invariant]] but no --database was given")
            && err.contains("--skip-invariants"),
        "{err}"
    );
    flowaudit()
        .args([
            "analyze",
            "checkout.jsonl",
            "--rules",
            shop,
            "--skip-invariants",
        ])
        .assert()
        .code(1);
    // Rule files without invariants need no database.
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--rules", "rules-budget"])
        .assert()
        .code(1);
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

/// The checkout fixture with `edit` applied to its lines, written to `dir`.
fn checkout_variant(dir: &std::path::Path, name: &str, edit: impl Fn(&mut Vec<String>)) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/checkout.jsonl"
    ))
    .expect("fixture");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write variant");
    path.display().to_string()
}

/// The line of the browse step's inventory lookup for one product.
fn inventory_line(lines: &[String], product: &str) -> usize {
    let params = format!("\"params\": [\"{product}\"]");
    lines
        .iter()
        .position(|l| l.contains("\\\"inventory\\\"") && l.contains(&params))
        .expect("inventory lookup in the fixture")
}

#[test]
fn baseline_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = dir.path().join("baseline.json");
    // Writing the baseline: today's findings become known, the run passes.
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--write-baseline"])
        .arg(&baseline)
        .assert()
        .code(0);
    let written = std::fs::read_to_string(&baseline).expect("baseline written");
    insta::assert_snapshot!("baseline_file", written);

    // Unchanged: exit 0, the old findings shown as known.
    let out = stdout_of(
        flowaudit()
            .args(["analyze", "checkout.jsonl", "--baseline"])
            .arg(&baseline),
        0,
    );
    assert!(
        out.contains("known from the baseline (not failing):"),
        "{out}"
    );
    assert!(
        out.contains("0 errors · 0 warnings · 0 infos · 3 known"),
        "{out}"
    );
    assert!(!out.contains("tighten"), "{out}");

    // One more query in browse: a regression of the step, with the query it added.
    let more = checkout_variant(dir.path(), "more.jsonl", |lines| {
        let i = inventory_line(lines, "8");
        let extra = lines[i].replace("[\"8\"]", "[\"9\"]");
        lines.insert(i + 1, extra);
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &more, "--format", "json", "--baseline"])
            .arg(&baseline),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let messages: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "query-count-regression")
        .map(|f| f["message"].as_str().expect("message"))
        .collect();
    assert_eq!(
        messages,
        [
            "step checkout › browse ran 11 queries, the baseline has 10 (+1): +1× select \
          inventory.stock from inventory where inventory.product_id = ? limit ?"
        ]
    );
    // Nine lookups for eight rows is no longer "once per row", but it is still
    // the loop after that query (a server log, without row counts, must say
    // the same: issue 13, defect 10): the three findings are known.
    assert_eq!(v["summary"]["known"], 3);
    let n_plus_one = v["known"]
        .as_array()
        .expect("known findings")
        .iter()
        .find(|f| f["rule"] == "n-plus-one")
        .map(|f| f["message"].as_str().unwrap_or_default().to_owned())
        .expect("the n-plus-one is known");
    assert!(
        n_plus_one.contains("different values, after: "),
        "{n_plus_one}"
    );

    // One query fewer: exit 0, and a note to tighten the baseline.
    let fewer = checkout_variant(dir.path(), "fewer.jsonl", |lines| {
        let i = inventory_line(lines, "8");
        lines.remove(i);
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &fewer, "--baseline"])
            .arg(&baseline),
        0,
    );
    assert!(
        out.contains("better than the baseline; tighten it with --write-baseline:"),
        "{out}"
    );
    assert!(
        out.contains(
            "checkout › browse: 9 queries, the baseline has 10 (−1): −1× select\n   inventory.stock"
        ),
        "{out}"
    );
    let json = stdout_of(
        flowaudit()
            .args(["analyze", &fewer, "--format", "json", "--baseline"])
            .arg(&baseline),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(
        v["tighten"][0],
        "checkout › browse: 9 queries, the baseline has 10 (−1): −1× select inventory.stock from \
         inventory where inventory.product_id = ? limit ?"
    );
    assert_eq!(v["flows"][0]["steps"][1]["baseline_statements"], 10);
    assert_eq!(v["flows"][0]["steps"][1]["baseline_queries"], 10);
    let tighten = format!(
        "to tighten the baseline, run the same command with --write-baseline {}",
        baseline.display()
    );
    assert!(
        v["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| *n == tighten.as_str()),
        "{}",
        v["notes"]
    );
    let sarif = stdout_of(
        flowaudit()
            .args(["analyze", &fewer, "--format", "sarif", "--baseline"])
            .arg(&baseline),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&sarif).expect("valid JSON");
    let states: Vec<&str> = v["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["baselineState"].as_str().expect("baselineState"))
        .collect();
    assert_eq!(states, ["unchanged"; 3]);
    let md = stdout_of(
        flowaudit()
            .args(["analyze", &fewer, "--format", "markdown", "--baseline"])
            .arg(&baseline),
        0,
    );
    insta::assert_snapshot!(
        "markdown_against_baseline",
        md.replace(&fewer, "fewer.jsonl")
            .replace(&baseline.display().to_string(), "baseline.json")
    );

    // A repeat inside the known N+1 loop is that loop's finding (issue 13,
    // defect 9): the n-plus-one finding counts it and stays known.
    let in_loop = checkout_variant(dir.path(), "in-loop.jsonl", |lines| {
        let i = inventory_line(lines, "3");
        lines[i] = lines[i].replace("[\"3\"]", "[\"2\"]");
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &in_loop, "--fail-on", "warning", "--baseline"])
            .arg(&baseline),
        0,
    );
    assert!(!out.contains("repeated-query · checkout › browse"), "{out}");
    assert!(
        out.contains("1\n   of its 8 runs repeated a value"),
        "{out}"
    );
    assert!(
        out.contains("0 errors · 0 warnings · 0 infos · 3 known"),
        "{out}"
    );

    // A new finding fails while the old ones stay known: the second cart
    // item inserted again with the first one's values.
    let repeat = checkout_variant(dir.path(), "repeat.jsonl", |lines| {
        for line in lines.iter_mut() {
            *line = line.replace("[\"1\", \"5\", \"2\"]", "[\"1\", \"3\", \"2\"]");
        }
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &repeat, "--fail-on", "warning", "--baseline"])
            .arg(&baseline),
        1,
    );
    // At the trace line of its first run (issue 14).
    assert!(
        out.contains(&format!(
            " warn   repeated-query · checkout › add_to_cart\n        at {repeat}:20\n        \
             insert into cart_items"
        )),
        "{out}"
    );
    assert!(
        out.contains("n-plus-one · checkout › browse — query ran 8×"),
        "{out}"
    );
    assert!(
        out.contains("0 errors · 1 warning · 0 infos · 3 known"),
        "{out}"
    );
}

#[test]
fn bad_baseline_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("b.json");
    std::fs::write(&path, "{\"version\": 1}").expect("write");
    let err = stderr_of(
        flowaudit()
            .args(["analyze", "checkout.jsonl", "--baseline"])
            .arg(&path),
        2,
    );
    assert!(
        err.contains(&format!("baseline {}", path.display())),
        "{err}"
    );
    assert!(err.contains("missing field `flows`"), "{err}");
    let err = stderr_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--baseline", "nope.json"]),
        2,
    );
    assert!(err.contains("cannot read baseline nope.json"), "{err}");
}

#[test]
fn sarif_report() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--format", "sarif"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["version"], "2.1.0");
    let results = v["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    for r in results {
        let fp = r["partialFingerprints"]["flowauditFinding/v1"]
            .as_str()
            .expect("partial fingerprint");
        assert_eq!(fp.len(), 16);
    }
    // Each rule's help is its documentation (`rules explain`); it is checked
    // here and left out of the snapshot, so that editing a rule's docs does
    // not churn this one.
    let rules = v["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    assert_eq!(rules.len(), flowaudit::rules::REGISTRY.len());
    let mut shown = out.clone();
    for rule in rules {
        let id = rule["id"].as_str().expect("id");
        let explained = stdout_of(flowaudit().args(["rules", "explain", id]), 0);
        for key in ["text", "markdown"] {
            let help = rule["help"][key].as_str().expect("help");
            assert!(help.contains("## What it does"), "{id}: {help}");
            assert!(explained.contains(help.trim()), "{id}: {explained}");
            let quoted = serde_json::to_string(help).expect("serialises");
            shown = shown.replace(&quoted, "\"(the rule's documentation)\"");
        }
    }
    insta::assert_snapshot!(shown);
}

/// Issue 14: a finding points at the code its first example came from, as
/// the statement's sqlcommenter tags name it (`file`/`line` a physical
/// location, `controller`/`action` a logical one), else at the trace line it
/// was read from; never at a made-up line 1. `.ci/run` validates this SARIF
/// with the SARIF multitool.
#[test]
fn findings_point_at_the_code_the_tags_name() {
    let out = stdout_of(
        flowaudit().args(["analyze", "tagged.jsonl", "--format", "sarif"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let results = v["runs"][0]["results"].as_array().expect("results");
    let of = |rule: &str| {
        results
            .iter()
            .find(|r| r["ruleId"] == rule)
            .unwrap_or_else(|| panic!("{rule} in {out}"))
    };
    let physical = |r: &serde_json::Value| {
        let p = &r["locations"][0]["physicalLocation"];
        (
            p["artifactLocation"]["uri"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            p["region"]["startLine"].as_u64(),
        )
    };
    // file='app%2Fshop%2Fbrowse.py',line='42' on the lookups.
    let n_plus_one = of("n-plus-one");
    assert_eq!(
        physical(n_plus_one),
        ("app/shop/browse.py".to_owned(), Some(42))
    );
    // Where the first of them was read, beside it.
    let related = &n_plus_one["relatedLocations"][0]["physicalLocation"];
    assert_eq!(related["artifactLocation"]["uri"], "tagged.jsonl");
    assert_eq!(related["region"]["startLine"], 4);
    assert_eq!(n_plus_one["properties"]["framework"], "django:5.0");
    // controller='cart',action='add' on the writes: a logical location, and
    // the trace line of the first write.
    let non_atomic = of("non-atomic-write");
    let logical = &non_atomic["locations"][0]["logicalLocations"][0];
    assert_eq!(logical["fullyQualifiedName"], "cart#add");
    assert_eq!(logical["name"], "add");
    assert_eq!(physical(non_atomic), ("tagged.jsonl".to_owned(), Some(11)));
    // No tags: the trace line of the statement.
    assert_eq!(
        physical(of("slow-query")),
        ("tagged.jsonl".to_owned(), Some(10))
    );
    assert!(!out.contains("\"startLine\": 1\n"), "{out}");

    // The JSON report carries the same location; the text reports show it.
    let json = stdout_of(
        flowaudit().args(["analyze", "tagged.jsonl", "--format", "json"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let first = &v["findings"][0];
    assert_eq!(first["rule"], "n-plus-one");
    assert_eq!(
        first["location"],
        serde_json::json!({"file": "app/shop/browse.py", "line": 42,
            "framework": "django:5.0", "db_driver": "psycopg",
            "input": "tagged.jsonl", "input_line": 4})
    );
    let table = stdout_of(flowaudit().args(["analyze", "tagged.jsonl"]), 1);
    assert!(
        table.contains("        at app/shop/browse.py:42\n"),
        "{table}"
    );
    assert!(
        table.contains("        at cart#add (tagged.jsonl:11)\n"),
        "{table}"
    );
    // Every write of non-atomic-write with its unit, not one "e.g.".
    assert!(
        table.contains("2 in autocommit\n        [autocommit] INSERT INTO \"cart_items\""),
        "{table}"
    );
    assert!(
        table.contains("        [autocommit] UPDATE \"carts\" SET"),
        "{table}"
    );
    let markdown = stdout_of(
        flowaudit().args(["analyze", "tagged.jsonl", "--format", "markdown"]),
        1,
    );
    assert!(
        markdown.contains("\n  at app/shop/browse.py:42\n"),
        "{markdown}"
    );
    assert!(markdown.contains("\n  at tagged.jsonl:10\n"), "{markdown}");
}

#[test]
fn junit_report() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--format", "junit"]),
        1,
    );
    // One failure per finding at or above --fail-on (default error).
    assert_eq!(out.matches("<failure ").count(), 1, "{out}");
    insta::assert_snapshot!(out);
    let out = stdout_of(
        flowaudit().args([
            "analyze",
            "checkout.jsonl",
            "--format",
            "junit",
            "--fail-on",
            "warning",
        ]),
        1,
    );
    assert_eq!(out.matches("<failure ").count(), 3, "{out}");
}

#[test]
fn markdown_report() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--format", "markdown"]),
        1,
    );
    insta::assert_snapshot!(out);
}

#[test]
fn compare_proves_n_plus_one_by_scale() {
    // A loop over the products: 8 lookups with 8 products, 24 with 24.
    let out = stdout_of(
        flowaudit().args(["compare", "scale/loop-8.jsonl", "scale/loop-24.jsonl"]),
        1,
    );
    assert!(
        out.contains("grows with the data: 8 runs at the small size, 24 at the large"),
        "{out}"
    );
    insta::assert_snapshot!(out);
    // The ten banner lookups of `home` look like an N+1 in one run, but their
    // count does not grow with the data: compare passes them.
    let single = stdout_of(flowaudit().args(["analyze", "scale/loop-24.jsonl"]), 1);
    assert!(single.contains("n-plus-one · shop › home"), "{single}");
    assert!(!out.contains("shop › home"), "{out}");
    // The batched shop: constant counts, exit 0.
    let out = stdout_of(
        flowaudit().args([
            "compare",
            "scale/batched-8.jsonl",
            "scale/batched-24.jsonl",
            "--format",
            "json",
        ]),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(0), "{out}");
    let err = stderr_of(
        flowaudit().args(["compare", "scale/loop-8.jsonl", "no-such.jsonl"]),
        2,
    );
    assert!(err.contains("cannot read trace no-such.jsonl"), "{err}");
}

#[test]
fn expired_allowances_stop_applying_and_reports_say_so() {
    let out = stdout_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--rules", "rules-expired"]),
        1,
    );
    // The table wraps lines; compare the words.
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "note: an [[allow]] in rules-expired/expired.toml expired on 2000-01-31 and no \
             longer applies (slow-query)"
        ),
        "{out}"
    );
    assert!(
        out.contains(" warn   slow-query · checkout › checkout"),
        "{out}"
    );
    assert!(
        flat.contains("repeated-query · checkout › add_to_cart — the user lookup is memoised"),
        "{out}"
    );
    let md = stdout_of(
        flowaudit().args([
            "analyze",
            "checkout.jsonl",
            "--rules",
            "rules-expired",
            "--format",
            "markdown",
        ]),
        1,
    );
    assert!(
        md.contains("> note: an \\[\\[allow\\]\\] in rules-expired/expired.toml"),
        "{md}"
    );
}

#[test]
fn inline_allow_tag_silences_a_rule_for_its_statements() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tagged = checkout_variant(dir.path(), "tagged.jsonl", |lines| {
        for line in lines.iter_mut() {
            if line.contains("\\\"inventory\\\".\\\"stock\\\"") {
                *line = line.replace("LIMIT 1\"", "LIMIT 1 /*flowaudit_allow='n-plus-one'*/\"");
            }
        }
    });
    let out = stdout_of(
        flowaudit().args(["analyze", &tagged, "--format", "json"]),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(rules, ["repeated-query", "slow-query"], "{out}");
    // The statements still count.
    assert_eq!(v["flows"][0]["steps"][1]["statements"], 10);
}

#[test]
fn writing_a_baseline_keeps_regressions_against_the_old_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old = dir.path().join("old.json");
    let new = dir.path().join("new.json");
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--write-baseline"])
        .arg(&old)
        .assert()
        .code(0);
    let more = checkout_variant(dir.path(), "more.jsonl", |lines| {
        let i = inventory_line(lines, "8");
        let extra = lines[i].replace("[\"8\"]", "[\"9\"]");
        lines.insert(i + 1, extra);
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &more, "--baseline"])
            .arg(&old)
            .arg("--write-baseline")
            .arg(&new),
        1,
    );
    assert!(out.contains("error  query-count-regression"), "{out}");
    let written = std::fs::read_to_string(&new).expect("written");
    assert!(!written.contains("query-count-regression"), "{written}");
    assert!(written.contains("\"statements\": 11"), "{written}");
    // The new baseline accepts the new counts.
    flowaudit()
        .args(["analyze", &more, "--baseline"])
        .arg(&new)
        .assert()
        .code(0);
}

/// Issue 14: the fixed code (the N+1 replaced by one `= ANY($1)` query, a
/// SAVEPOINT around the order items, the user lookup and the slow statement
/// written differently in ways the fingerprint ignores) against the baseline
/// of the shipped code passes, and says what it added, removed and fixed.
#[test]
fn fixed_code_passes_against_the_shipped_baseline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for name in ["checkout.jsonl", "checkout-fixed.jsonl"] {
        std::fs::copy(format!("{fixtures}/{name}"), dir.path().join(name)).expect("copy");
    }
    let in_dir = |args: &[&str]| {
        let mut cmd = flowaudit();
        cmd.current_dir(dir.path()).args(args);
        cmd
    };
    in_dir(&[
        "analyze",
        "checkout.jsonl",
        "--write-baseline",
        "baseline.json",
    ])
    .assert()
    .code(0);

    let fixed = [
        "analyze",
        "checkout-fixed.jsonl",
        "--baseline",
        "baseline.json",
    ];
    let out = stdout_of(&mut in_dir(&fixed), 0);
    insta::assert_snapshot!(out);

    let json = stdout_of(
        &mut in_dir(&[&fixed[..], &["--format", "json"]].concat()),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["findings"], serde_json::json!([]), "{json}");
    assert_eq!(
        v["tighten"],
        serde_json::json!([
            "checkout › browse: 3 queries, the baseline has 10 (−7): +1× select \
             inventory.product_id, inventory.stock from inventory where inventory.product_id = \
             any(?); −8× select inventory.stock from inventory where inventory.product_id = ? \
             limit ?",
            "fixed: n-plus-one · checkout › browse (select inventory.stock from inventory where \
             inventory.product_id = ? limit ?)",
        ])
    );
    // The user lookup and the sleep were rewritten in ways the fingerprint
    // ignores (case, quoting, spacing, a literal): still the known findings.
    let known: Vec<&str> = v["known"]
        .as_array()
        .expect("known")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule"))
        .collect();
    assert_eq!(known, ["repeated-query", "slow-query"]);
    // Two more statements in checkout (the SAVEPOINT and its RELEASE), the
    // same queries: nothing to say.
    let checkout = &v["flows"][0]["steps"][3];
    assert_eq!(
        (
            &checkout["statements"],
            &checkout["baseline_statements"],
            &checkout["queries"],
            &checkout["baseline_queries"]
        ),
        (
            &serde_json::json!(10),
            &serde_json::json!(8),
            &serde_json::json!(6),
            &serde_json::json!(6)
        )
    );
    // Improvements are no findings: even --fail-on info passes.
    in_dir(&[&fixed[..], &["--fail-on", "info"]].concat())
        .assert()
        .code(0);

    // Recorded as the note says, the tighter baseline has nothing left to tighten.
    in_dir(&[&fixed[..], &["--write-baseline", "baseline.json"]].concat())
        .assert()
        .code(0);
    let out = stdout_of(&mut in_dir(&fixed), 0);
    assert!(!out.contains("tighten"), "{out}");
    // And the shipped code now fails against it, listing what came back.
    let out = stdout_of(
        &mut in_dir(&["analyze", "checkout.jsonl", "--baseline", "baseline.json"]),
        1,
    );
    assert!(
        out.contains("ran 10 queries, the baseline has 3 (+7): +8×\n        select"),
        "{out}"
    );
    // The N+1 fixed is no longer known: it would fail again.
    assert!(
        out.contains(" error  n-plus-one · checkout › browse"),
        "{out}"
    );
}

/// Issue 14: `tolerance` lets a step's queries rise that far above the
/// baseline, not further.
#[test]
fn query_count_tolerance_from_a_rules_dir() {
    let (dir, baseline) = checkout_baseline();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    let lookups = |n: usize| {
        checkout_variant(dir.path(), &format!("more-{n}.jsonl"), |lines| {
            let i = inventory_line(lines, "8");
            for k in 0..n {
                let extra = lines[i].replace("[\"8\"]", &format!("[\"{}\"]", 9 + k));
                lines.insert(i + 1, extra);
            }
        })
    };
    let (one, two) = (lookups(1), lookups(2));
    for tolerance in ["1", "\"10%\""] {
        std::fs::write(
            rules.join("ci.toml"),
            format!("[rules.query-count-regression]\ntolerance = {tolerance}\n"),
        )
        .expect("rule file");
        let run = |trace: &str, code| {
            stdout_of(
                flowaudit()
                    .args(["analyze", trace, "--format", "json", "--rules"])
                    .arg(&rules)
                    .arg("--baseline")
                    .arg(&baseline),
                code,
            )
        };
        // browse: 10 queries in the baseline; 11 is within 1 (and 10%).
        run(&one, 0);
        let out = run(&two, 1);
        assert!(
            out.contains(&format!(
                "ran 12 queries, the baseline has 10 (+2, over the tolerance of {})",
                tolerance.trim_matches('"')
            )),
            "{out}"
        );
    }
}

/// Issue 14: a baseline step the run lacks (renamed here) is `missing-step`,
/// an info: seen, not failing by default.
#[test]
fn a_renamed_step_is_a_missing_step() {
    let (dir, baseline) = checkout_baseline();
    let renamed = checkout_variant(dir.path(), "renamed.jsonl", |lines| {
        for line in lines.iter_mut() {
            *line = line.replace("step = 'register'", "step = 'signup'");
        }
    });
    let out = stdout_of(
        flowaudit()
            .args(["analyze", &renamed, "--baseline"])
            .arg(&baseline),
        0,
    );
    assert!(
        out.contains(
            " info   missing-step · checkout › register\n        step checkout › register did \
             not run; the baseline has it at 2 queries\n        (4 statements)"
        ),
        "{out}"
    );
    flowaudit()
        .args(["analyze", &renamed, "--fail-on", "info", "--baseline"])
        .arg(&baseline)
        .assert()
        .code(1);
}

/// A temporary directory holding `baseline.json`, the baseline of
/// tests/fixtures/checkout.jsonl.
fn checkout_baseline() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline = dir.path().join("baseline.json");
    flowaudit()
        .args(["analyze", "checkout.jsonl", "--write-baseline"])
        .arg(&baseline)
        .assert()
        .code(0);
    (dir, baseline)
}
