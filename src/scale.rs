//! Scale comparison (`flowaudit compare SMALL LARGE`, issue 8): two traces of
//! the same flows run with different amounts of data. A fingerprint whose
//! count in a step grows with the data is an N+1 proven by scale; one whose
//! count stays the same passes, however high it is. Steps are matched by flow
//! and step name, fingerprints by their stable hash.

use crate::model::{Finding, Severity};
use crate::report::Report;
use crate::rules::RuleConfig;

const N_PLUS_ONE: &str = "n-plus-one";

/// The large run's report, with its `n-plus-one` findings replaced by what
/// scale proves: one finding per fingerprint whose count grew.
pub fn compare(config: &RuleConfig, small: &Report, large: Report) -> Report {
    let mut report = large;
    let entry = config.rules.get(N_PLUS_ONE);
    let severity = entry.map_or(Severity::Error, |e| e.severity);
    let enabled = entry.is_none_or(|e| e.enabled);

    let mut grown = Vec::new();
    let mut notes = Vec::new();
    for flow in &report.flows {
        for step in &flow.steps {
            let Some(before) = small
                .flows
                .iter()
                .filter(|f| f.name == flow.name)
                .flat_map(|f| &f.steps)
                .find(|s| s.name == step.name)
            else {
                notes.push(format!(
                    "{} › {} ran only in the large trace: not compared",
                    flow.name, step.name
                ));
                continue;
            };
            for (hash, now) in &step.fingerprints {
                let (text, after) = (&now.text, &now.count);
                let was = before.fingerprints.get(hash).map_or(0, |c| c.count);
                // A `flowaudit_allow='n-plus-one'` tag on its statements silences it here too.
                let allowed = now.allows.iter().any(|a| a == N_PLUS_ONE);
                if *after > was && enabled && !allowed {
                    grown.push(Finding {
                        location: None,
                        driver: None,
                        rule: N_PLUS_ONE,
                        severity,
                        flow: flow.name.clone(),
                        step: step.name.clone(),
                        message: format!(
                            "grows with the data: {} at the small size, {} at the large",
                            crate::rules::plural(was, "run", "runs"),
                            crate::rules::thousands(*after),
                        ),
                        fingerprint: Some(text.clone()),
                        fingerprint_hash: Some(hash.clone()),
                        count: *after,
                        examples: Vec::new(),
                        help: "load the rows in one query (… WHERE col = ANY(?) or IN (…)), a \
                               JOIN, or the ORM's eager loading, so the count stays the same \
                               whatever the data"
                            .to_owned(),
                    });
                }
            }
        }
    }
    for flow in &small.flows {
        for step in &flow.steps {
            let in_large = report
                .flows
                .iter()
                .any(|f| f.name == flow.name && f.steps.iter().any(|s| s.name == step.name));
            if !in_large {
                notes.push(format!(
                    "{} › {} ran only in the small trace: not compared",
                    flow.name, step.name
                ));
            }
        }
    }

    // Scale decides N+1 here: the single-run heuristic's verdicts give way.
    report.findings.retain(|f| f.rule != N_PLUS_ONE);
    report.allowed.retain(|a| a.finding.rule != N_PLUS_ONE);
    let today = config.today;
    for f in grown {
        match config
            .allows
            .iter()
            .find(|a| !a.expired(today) && a.matches(&f))
        {
            Some(a) => report.allowed.push(crate::report::AllowedFinding {
                finding: f,
                reason: a.reason.clone(),
                file: a.file.clone(),
            }),
            None => report.findings.push(f),
        }
    }
    report
        .findings
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    report
        .allowed
        .sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));
    report.notes.extend(notes);

    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count() as u64;
    report.summary.errors = count(Severity::Error);
    report.summary.warnings = count(Severity::Warning);
    report.summary.infos = count(Severity::Info);
    report.summary.allowed = report.allowed.len() as u64;
    report
}

/// Each step's fingerprints counted in both runs, for the HTML report's
/// chart: the steps of the large run in its order, each fingerprint of
/// either run with its two counts.
pub fn comparison(
    small: &Report,
    large: &Report,
    names: (&str, &str),
) -> crate::report::Comparison {
    let mut steps = Vec::new();
    for flow in &large.flows {
        for step in &flow.steps {
            let before = small
                .flows
                .iter()
                .filter(|f| f.name == flow.name)
                .flat_map(|f| &f.steps)
                .find(|s| s.name == step.name);
            let Some(before) = before else { continue };
            let mut fingerprints: Vec<(String, String, u64, u64)> = step
                .fingerprints
                .iter()
                .filter(|(_, c)| c.query)
                .map(|(hash, c)| {
                    let was = before.fingerprints.get(hash).map_or(0, |b| b.count);
                    (hash.clone(), c.text.clone(), was, c.count)
                })
                .collect();
            fingerprints.extend(
                before
                    .fingerprints
                    .iter()
                    .filter(|(hash, c)| c.query && !step.fingerprints.contains_key(*hash))
                    .map(|(hash, c)| (hash.clone(), c.text.clone(), c.count, 0)),
            );
            fingerprints.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
            steps.push(crate::report::ComparedStep {
                flow: flow.name.clone(),
                step: step.name.clone(),
                fingerprints,
            });
        }
    }
    crate::report::Comparison {
        small: names.0.to_owned(),
        large: names.1.to_owned(),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::audit_events;
    use crate::model::Event;

    fn run(config: &RuleConfig, products: usize, batched: bool) -> Report {
        run_tagged(config, products, batched, "")
    }

    fn run_tagged(config: &RuleConfig, products: usize, batched: bool, tag: &str) -> Report {
        let mut events = vec![
            Event {
                sql: "SET flowaudit.step = 'browse'".into(),
                ..Event::default()
            },
            Event {
                sql: "select * from products".into(),
                rows: Some(products as u64),
                ..Event::default()
            },
        ];
        if batched {
            events.push(Event {
                sql: "select * from stock where id = any($1)".into(),
                ..Event::default()
            });
        }
        for i in 0..if batched { 0 } else { products } {
            events.push(Event {
                sql: format!("select * from stock where id = {i}{tag}"),
                ..Event::default()
            });
        }
        audit_events(config, events).expect("audit")
    }

    #[test]
    fn growth_is_an_n_plus_one_and_constant_counts_pass() {
        let config = RuleConfig::builtin().expect("defaults");
        let small = run(&config, 8, false);
        let large = run(&config, 24, false);
        let report = compare(&config, &small, large);
        let found: Vec<(&str, &str)> = report
            .findings
            .iter()
            .map(|f| (f.rule, f.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [(
                "n-plus-one",
                "grows with the data: 8 runs at the small size, 24 at the large"
            )]
        );
        let report = compare(&config, &run(&config, 8, true), run(&config, 24, true));
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        // A loop its application marks as meant is not judged.
        let tag = " /*flowaudit_allow='n-plus-one'*/";
        let report = compare(
            &config,
            &run_tagged(&config, 8, false, tag),
            run_tagged(&config, 24, false, tag),
        );
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        // The same loop at the same size is constant: it passes.
        let report = compare(&config, &run(&config, 8, false), run(&config, 8, false));
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }
}
