//! Runs the `[[example]]` traces of every shipped rule file: each must fire
//! exactly the rules it lists (STYLE.md, "Rule files are validated data").

use std::collections::BTreeSet;
use std::path::Path;

use flowaudit::audit::audit_events;
use flowaudit::rules::RuleConfig;
use flowaudit::rules::config::rule_files;
use flowaudit::trace::TraceReader;

#[test]
fn every_example_in_rules_fires_exactly_what_it_lists() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let files = rule_files(&dir).expect("rules/ is readable");
    assert!(!files.is_empty(), "rules/ has no rule files");
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let mut config = RuleConfig::builtin().expect("defaults are valid");
        config.add_file(file).expect("shipped rule files are valid");
        let own: Vec<_> = config
            .examples
            .iter()
            .filter(|e| e.file == file.display().to_string())
            .cloned()
            .collect();
        for example in own {
            let events: Vec<_> =
                TraceReader::new(example.trace.as_bytes(), Path::new(&example.name))
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{}: example trace: {e}", file.display()));
            let report = audit_events(&config, events).expect("rules build");
            let fired: BTreeSet<&str> = report.findings.iter().map(|f| f.rule).collect();
            let expected: BTreeSet<&str> = example.fires.iter().map(String::as_str).collect();
            if fired != expected {
                failures.push(format!(
                    "{}: example \"{}\": expected {expected:?}, fired {fired:?}",
                    file.display(),
                    example.name
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 5, "only {checked} examples ran");
}
