//! `repeated-query`: the same statement with the same parameters, again.

use foldhash::{HashMap, HashMapExt, HashSet};

use super::{
    DISTINCT_CAP, Rule, RuleMeta, RuleSetup, Statement, TxnSpread, documented_rule, thousands,
};
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: "repeated-query",
    default_severity: Severity::Warning,
    summary: "the same statement with the same parameters run again in a step",
    doc: RepeatedQuery::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags a statement that a step runs `min_repeats` times or more (default
    /// 2) with the same fingerprint and the same parameters (bind values and
    /// literals), on any of the step's connections. Transaction control, SET
    /// and markers are never repeats, and neither are runs that each sit in
    /// their own explicit transaction (a benchmark's or batch job's loop).
    /// A fingerprint that `n-plus-one` reports in a step is left to it: its
    /// finding counts the runs that repeated a value.
    ///
    /// ## Why is this bad?
    /// The second run returns what the first already returned: a wasted round
    /// trip, and often the sign of a lookup inside a loop (the current user
    /// loaded again for every item).
    ///
    /// ## Example
    /// ```sql
    /// select * from users where id = $1;   -- $1 = 42
    /// insert into cart_items …;
    /// select * from users where id = $1;   -- $1 = 42 again
    /// ```
    ///
    /// ## How to fix
    /// Load the row once and pass it along, or memoise it for the request
    /// (an identity map, a request-scoped cache).
    ///
    /// ## Settings
    /// `min_repeats` (integer, default 2): runs with the same values that count.
    pub struct RepeatedQuery {
        severity: Severity,
        settings: Settings,
        steps: HashMap<usize, (StepKey, HashMap<u64, Group>)>,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    min_repeats: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { min_repeats: 2 }
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let settings: Settings = setup.settings()?;
    // A repeat takes a second run; 0 or 1 would flag every query (issue 15).
    if settings.min_repeats < 2 {
        return Err(serde::de::Error::custom(format!(
            "min_repeats: {} is too small: at least 2 runs make a repeat",
            settings.min_repeats
        )));
    }
    Ok(Box::new(RepeatedQuery {
        severity: setup.severity,
        settings,
        steps: HashMap::new(),
    }))
}

#[derive(Debug)]
struct Group {
    hash: u64,
    text: String,
    /// The run of the step (see `Statement::instance`) that `runs` counts.
    instance: u64,
    /// Runs per parameter set in that run of the step, for at most
    /// `DISTINCT_CAP` sets.
    runs: HashMap<u64, u64>,
    /// What the step's finished runs showed: value sets repeated, their runs,
    /// the most runs of one value set.
    repeated: (u64, u64, u64),
    examples: Vec<String>,
    spread: TxnSpread,
}

impl Group {
    /// Adds the repeats of the step's run under way to the totals, and forgets it.
    fn tally(&mut self, min: u64) {
        for &n in self.runs.values() {
            if n >= min {
                self.repeated.0 += 1;
                self.repeated.1 += n;
                self.repeated.2 = self.repeated.2.max(n);
            }
        }
        self.runs.clear();
    }
}

impl Rule for RepeatedQuery {
    fn observe(&mut self, s: &Statement<'_>) {
        // Transaction control, settings and a driver's housekeeping repeat by
        // design (a DEALLOCATE ALL after every rollback).
        if s.fingerprint.kind.is_bookkeeping() {
            return;
        }
        let group = self
            .steps
            .entry(s.step)
            .or_insert_with(|| (s.key.clone(), HashMap::new()))
            .1
            .entry(s.fingerprint.hash)
            .or_insert_with(|| Group {
                hash: s.fingerprint.hash,
                text: s.fingerprint.text.clone(),
                instance: s.instance,
                runs: HashMap::new(),
                repeated: (0, 0, 0),
                examples: Vec::new(),
                spread: TxnSpread::default(),
            });
        group.spread.observe(s);
        if group.instance != s.instance {
            // A new run of the step: a value seen in an earlier run is not a repeat.
            group.tally(self.settings.min_repeats);
            group.instance = s.instance;
        }
        let known = group.runs.len();
        let runs = match group.runs.get_mut(&s.values) {
            Some(n) => {
                *n += 1;
                *n
            }
            None if known < DISTINCT_CAP => {
                group.runs.insert(s.values, 1);
                1
            }
            None => return,
        };
        if runs == self.settings.min_repeats && group.examples.len() < 3 {
            group.examples.push(s.example());
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let min = self.settings.min_repeats;
        // Issue 13, defect 9: the statements of a loop that `n-plus-one`
        // reported (it finished before this rule, see `Rule::finish`) are its
        // finding, which counts their repeats; one loop, one finding.
        let loops: HashSet<(&str, &str, &str)> = out
            .iter()
            .filter(|f| f.rule == super::n_plus_one::META.id)
            .filter_map(|f| {
                Some((
                    f.flow.as_str(),
                    f.step.as_str(),
                    f.fingerprint_hash.as_deref()?,
                ))
            })
            .collect();
        let mut found = Vec::new();
        for (key, groups) in self.steps.values_mut() {
            for group in groups.values_mut() {
                group.tally(min);
                let (sets, runs, most) = group.repeated;
                if sets == 0 || group.spread.independent_units() {
                    continue;
                }
                let hash = format!("{:016x}", group.hash);
                if loops.contains(&(key.flow.as_str(), key.step.as_str(), hash.as_str())) {
                    continue;
                }
                let message = if sets == 1 {
                    format!("ran {}× with the same values", thousands(runs))
                } else {
                    format!(
                        "{} value sets each ran more than once: {} runs, up to {}× the same values",
                        thousands(sets),
                        thousands(runs),
                        thousands(most)
                    )
                };
                found.push(Finding {
                    location: None,
                    driver: None,
                    rule: META.id,
                    severity: self.severity,
                    flow: key.flow.clone(),
                    step: key.step.clone(),
                    message,
                    fingerprint: Some(group.text.clone()),
                    fingerprint_hash: Some(hash),
                    count: runs,
                    examples: group.examples.clone(),
                    help: "run it once and reuse the result (pass the row along, or memoise it \
                           for the request)"
                        .to_owned(),
                });
            }
        }
        out.append(&mut found);
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    #[test]
    fn fires_on_the_same_values_twice() {
        let f = audit(
            events(&[
                (1, "select * from users where id = $1", &["42"], Some(1)),
                (
                    1,
                    "insert into cart_items (user_id) values ($1)",
                    &["42"],
                    Some(1),
                ),
                (2, "select * from users where id = $1", &["42"], Some(1)),
            ]),
            "",
        );
        let r = fired(&f, "repeated-query");
        assert_eq!(r.len(), 1, "{f:#?}");
        assert_eq!(r[0].count, 2);
        assert_eq!(r[0].message, "ran 2× with the same values");
        assert_eq!(
            r[0].fingerprint.as_deref(),
            Some("select * from users where id = ?")
        );
    }

    #[test]
    fn silent_on_different_values_and_on_transaction_control() {
        let f = audit(
            events(&[
                (1, "select * from users where id = $1", &["1"], Some(1)),
                (1, "select * from users where id = $1", &["2"], Some(1)),
                (1, "BEGIN", &[], None),
                (1, "COMMIT", &[], None),
                (1, "BEGIN", &[], None),
                (1, "COMMIT", &[], None),
                (1, "SET search_path = public", &[], None),
                (1, "SET search_path = public", &[], None),
            ]),
            "",
        );
        assert!(fired(&f, "repeated-query").is_empty(), "{f:#?}");
    }

    #[test]
    fn literal_values_and_threshold() {
        let rows = [
            (1, "select * from users where id = 42", &[][..], Some(1)),
            (1, "select * from users where id = 42", &[][..], Some(1)),
        ];
        assert_eq!(fired(&audit(events(&rows), ""), "repeated-query").len(), 1);
        let f = audit(events(&rows), "[rules.repeated-query]\nmin_repeats = 3\n");
        assert!(fired(&f, "repeated-query").is_empty());
    }

    #[test]
    fn the_same_values_in_separate_runs_of_a_step_are_not_repeats() {
        let rows = [
            (1, "SET flowaudit.step = 'cart'", &[][..], None),
            (1, "select * from users where id = $1", &["42"][..], Some(1)),
            (1, "SET flowaudit.step = 'cart'", &[][..], None),
            (1, "select * from users where id = $1", &["42"][..], Some(1)),
        ];
        assert!(fired(&audit(events(&rows), ""), "repeated-query").is_empty());
        let mut twice = rows.to_vec();
        twice.push((1, "select * from users where id = $1", &["42"][..], Some(1)));
        let f = audit(events(&twice), "");
        let r = fired(&f, "repeated-query");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].count, 2);
    }

    /// Issue 13, defect 9: one loop, one finding. An N+1 loop whose values
    /// repeat is the n-plus-one finding (which counts the repeats), not a
    /// repeated-query as well; a plain repeated lookup still is one.
    #[test]
    fn repeats_inside_a_reported_loop_are_the_loops_finding() {
        let mut rows: Vec<(u64, String, Vec<String>, Option<u64>)> = vec![(
            1,
            "select id from products order by id limit 24".to_owned(),
            vec![],
            Some(24),
        )];
        // 24 runs over 21 values: 0, 1 and 2 come again.
        for i in 0..24u64 {
            rows.push((
                1,
                "select * from inventory where product_id = $1".to_owned(),
                vec![(i % 21).to_string()],
                Some(1),
            ));
        }
        for _ in 0..2 {
            rows.push((
                1,
                "select * from users where id = $1".to_owned(),
                vec!["42".to_owned()],
                Some(1),
            ));
        }
        let params: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.2.iter().map(String::as_str).collect())
            .collect();
        let tuples: Vec<(u64, &str, &[&str], Option<u64>)> = rows
            .iter()
            .zip(&params)
            .map(|(r, p)| (r.0, r.1.as_str(), p.as_slice(), r.3))
            .collect();
        let f = audit(events(&tuples), "");
        let n = fired(&f, "n-plus-one");
        assert_eq!(n.len(), 1, "{f:#?}");
        assert!(
            n[0].message
                .ends_with("; 3 of its 24 runs repeated a value"),
            "{}",
            n[0].message
        );
        let r = fired(&f, "repeated-query");
        assert_eq!(r.len(), 1, "{f:#?}");
        assert_eq!(
            r[0].fingerprint.as_deref(),
            Some("select * from users where id = ?")
        );
        // With n-plus-one off, the loop's repeats are repeated-query's again.
        let f = audit(events(&tuples), "[rules.n-plus-one]\nenabled = false\n");
        assert_eq!(fired(&f, "repeated-query").len(), 2, "{f:#?}");
    }

    #[test]
    fn disabled_rule_is_silent() {
        let rows = [
            (1, "select 1", &[][..], Some(1)),
            (1, "select 1", &[][..], Some(1)),
        ];
        let f = audit(events(&rows), "[rules.repeated-query]\nenabled = false\n");
        assert!(f.is_empty());
    }
}
