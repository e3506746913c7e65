//! `slow-query`: statements slower than a threshold.

use foldhash::{HashMap, HashMapExt};

use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule, thousands};
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: "slow-query",
    default_severity: Severity::Warning,
    summary: "a statement slower than its threshold",
    doc: SlowQuery::DOC,
    build,
    judges_transactions: false,
};

/// Slow runs whose durations are kept per fingerprint and step for the median.
const SAMPLE_CAP: usize = 10_000;

documented_rule! {
    /// ## What it does
    /// Flags statements whose `duration_us` exceeds `max_duration_ms` (default
    /// 100), once per fingerprint and step, with how many runs were slow, the
    /// worst time and the median of the slow runs. Statements without a
    /// duration are not judged, nor those the proxy's stop cut off.
    ///
    /// ## Why is this bad?
    /// A user flow is as slow as the statements it waits for; a statement over
    /// 100 ms on test data is usually far slower on production data.
    ///
    /// ## Example
    /// ```sql
    /// select * from orders where lower(email) = $1;   -- 340 ms: no index on lower(email)
    /// ```
    ///
    /// ## How to fix
    /// Look at its plan (`EXPLAIN (ANALYZE, BUFFERS)`): add the index it lacks,
    /// select fewer rows or columns, or move the work out of the user's path.
    ///
    /// ## Settings
    /// `max_duration_ms` (number, default 100): the threshold.
    pub struct SlowQuery {
        severity: Severity,
        threshold_us: u64,
        threshold_ms: f64,
        groups: HashMap<(usize, u64), Group>,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    max_duration_ms: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_duration_ms: 100.0,
        }
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let settings: Settings = setup.settings()?;
    if settings.max_duration_ms.is_nan() || settings.max_duration_ms < 0.0 {
        return Err(serde::de::Error::custom(
            "max_duration_ms: must be a number of 0 or more",
        ));
    }
    Ok(Box::new(SlowQuery {
        severity: setup.severity,
        threshold_us: (settings.max_duration_ms * 1000.0) as u64,
        threshold_ms: settings.max_duration_ms,
        groups: HashMap::new(),
    }))
}

#[derive(Debug)]
struct Group {
    key: StepKey,
    text: String,
    runs: u64,
    slow: Vec<u64>,
    slow_runs: u64,
    worst: u64,
    example: String,
}

impl Rule for SlowQuery {
    fn observe(&mut self, s: &Statement<'_>) {
        let Some(d) = s.event.duration_us else { return };
        if s.event.cut_by_stop {
            // Its time is the proxy's, up to its stop (issue 13, defect 11).
            return;
        }
        let group = self
            .groups
            .entry((s.step, s.fingerprint.hash))
            .or_insert_with(|| Group {
                key: s.key.clone(),
                text: s.fingerprint.text.clone(),
                runs: 0,
                slow: Vec::new(),
                slow_runs: 0,
                worst: 0,
                example: String::new(),
            });
        group.runs += 1;
        if d <= self.threshold_us {
            return;
        }
        group.slow_runs += 1;
        if group.slow.len() < SAMPLE_CAP {
            group.slow.push(d);
        }
        if d > group.worst {
            group.worst = d;
            group.example = s.example();
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for ((_, hash), group) in &mut self.groups {
            let key = &group.key;
            if group.slow_runs == 0 {
                continue;
            }
            group.slow.sort_unstable();
            let median = group.slow[group.slow.len() / 2];
            out.push(Finding {
                location: None,
                driver: None,
                rule: META.id,
                severity: self.severity,
                flow: key.flow.clone(),
                step: key.step.clone(),
                message: match (group.runs, group.slow_runs) {
                    (1, _) => format!(
                        "its one run took over {} ms: {}",
                        self.threshold_ms,
                        crate::report::duration(group.worst)
                    ),
                    (runs, 1) => format!(
                        "1 of {} runs took over {} ms: {}",
                        thousands(runs),
                        self.threshold_ms,
                        crate::report::duration(group.worst)
                    ),
                    (runs, slow) => format!(
                        "{} of {} runs took over {} ms: worst {}, median of the slow runs {}",
                        thousands(slow),
                        thousands(runs),
                        self.threshold_ms,
                        crate::report::duration(group.worst),
                        crate::report::duration(median),
                    ),
                },
                fingerprint: Some(group.text.clone()),
                fingerprint_hash: Some(format!("{hash:016x}")),
                count: group.slow_runs,
                examples: vec![group.example.clone()],
                help: "read its plan (EXPLAIN (ANALYZE, BUFFERS)): add the missing index, \
                       fetch fewer rows or columns, or move the work off the user's path"
                    .to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Event;
    use crate::rules::testing::{audit, fired};

    fn timed(sql: &str, us: u64) -> Event {
        Event {
            sql: sql.into(),
            duration_us: Some(us),
            ..Event::default()
        }
    }

    #[test]
    fn reports_count_worst_and_median_once_per_fingerprint() {
        let f = audit(
            vec![
                timed("select * from orders where id = 1", 50_000),
                timed("select * from orders where id = 2", 150_000),
                timed("select * from orders where id = 3", 340_000),
                timed("select * from orders where id = 4", 200_000),
                timed("select 1", 10),
                Event {
                    sql: "select 2".into(),
                    ..Event::default()
                },
            ],
            "",
        );
        let s = fired(&f, "slow-query");
        assert_eq!(s.len(), 1, "{f:#?}");
        assert_eq!(s[0].count, 3);
        assert_eq!(
            s[0].message,
            "3 of 4 runs took over 100 ms: worst 340.0 ms, median of the slow runs 200.0 ms"
        );
        assert_eq!(
            s[0].examples,
            vec!["select * from orders where id = 3".to_owned()]
        );
    }

    /// Issue 14: one run, or one slow run, is told in the singular.
    #[test]
    fn one_run_is_told_in_the_singular() {
        let message = |durations: &[u64]| {
            let events = durations
                .iter()
                .map(|us| timed("select * from orders where id = 1", *us))
                .collect();
            let f = audit(events, "");
            fired(&f, "slow-query")[0].message.clone()
        };
        assert_eq!(
            message(&[150_000]),
            "its one run took over 100 ms: 150.0 ms"
        );
        assert_eq!(
            message(&[150_000, 1_000]),
            "1 of 2 runs took over 100 ms: 150.0 ms"
        );
    }

    #[test]
    fn threshold_is_configurable_and_validated() {
        let f = audit(
            vec![timed("select 1", 20_000)],
            "[rules.slow-query]\nmax_duration_ms = 10\n",
        );
        assert_eq!(fired(&f, "slow-query").len(), 1);
        let f = audit(vec![timed("select 1", 20_000)], "");
        assert!(fired(&f, "slow-query").is_empty());
        let e =
            crate::rules::RuleConfig::builtin_with("[rules.slow-query]\nmax_duration_ms = -1\n")
                .expect_err("negative threshold");
        assert!(e.to_string().contains("max_duration_ms"), "{e}");
    }
}
