//! `query-budget`: a flow or step over the statement budget its rule file sets.

use foldhash::{HashMap, HashMapExt};

use super::{Budget, Rule, RuleMeta, RuleSetup, Statement, documented_rule, thousands};
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: "query-budget",
    default_severity: Severity::Error,
    summary: "a flow or step over its budget of statements",
    doc: QueryBudget::DOC,
    build,
    judges_transactions: false,
};

/// The step name a flow-wide budget's finding carries.
pub const WHOLE_FLOW: &str = "(all steps)";

documented_rule! {
    /// ## What it does
    /// Compares each flow and step with the budgets declared in rule files:
    ///
    /// ```toml
    /// [[budget]]
    /// flow = "checkout"
    /// step = "browse"          # leave out to budget the whole flow
    /// max_statements = 10      # statements, markers excluded
    /// max_queries = 8          # statements that are not BEGIN/COMMIT/SET…
    /// ```
    ///
    /// and reports every one that ran more, with the actual count and the
    /// budget. A budget whose flow or step ran nothing is reported as info, so
    /// that a renamed step does not silently stop being checked.
    ///
    /// ## Why is this bad?
    /// A page or job that used to run 10 statements and now runs 40 is slower
    /// and loads the database more; a budget in CI catches it in the change
    /// that caused it.
    ///
    /// ## Example
    /// A budget of 10 statements for `checkout › browse`, and a change that
    /// adds a lookup per product: 27 statements, 17 over.
    ///
    /// ## How to fix
    /// Remove the extra statements (batch them, eager-load, cache), or raise
    /// the budget in the same change, with the reason, if the growth is meant.
    pub struct QueryBudget {
        severity: Severity,
        budgets: Vec<Budget>,
        /// The step's names and its (statements, queries), per step id.
        counts: HashMap<usize, (StepKey, u64, u64)>,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoSettings {}
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(QueryBudget {
        severity: setup.severity,
        budgets: setup.budgets.to_vec(),
        counts: HashMap::new(),
    }))
}

impl Rule for QueryBudget {
    fn observe(&mut self, s: &Statement<'_>) {
        if self.budgets.is_empty() {
            return;
        }
        let c = self
            .counts
            .entry(s.step)
            .or_insert_with(|| (s.key.clone(), 0, 0));
        c.1 += 1;
        c.2 += u64::from(s.is_query());
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for b in &self.budgets {
            let where_ = match &b.step {
                Some(step) => format!("step {} › {step}", b.flow),
                None => format!("flow {}", b.flow),
            };
            let step = b.step.clone().unwrap_or_else(|| WHOLE_FLOW.to_owned());
            let mut matched = false;
            let (mut statements, mut queries) = (0, 0);
            for (key, s, q) in self.counts.values() {
                if key.flow == b.flow && b.step.as_ref().is_none_or(|step| *step == key.step) {
                    matched = true;
                    statements += s;
                    queries += q;
                }
            }
            if !matched {
                out.push(Finding {
                    location: None,
                    driver: None,
                    rule: META.id,
                    severity: Severity::Info,
                    flow: b.flow.clone(),
                    step,
                    message: format!("the budget for {where_} ({}) matched no statements", b.file),
                    fingerprint: None,
                    fingerprint_hash: None,
                    count: 0,
                    examples: Vec::new(),
                    help: "check the flow and step names in the budget against the report"
                        .to_owned(),
                });
                continue;
            };
            for (what, actual, max) in [
                ("statements", statements, b.max_statements),
                ("queries", queries, b.max_queries),
            ] {
                let Some(max) = max else { continue };
                if actual <= max {
                    continue;
                }
                out.push(Finding {
                    location: None,
                    driver: None,
                    rule: META.id,
                    severity: self.severity,
                    flow: b.flow.clone(),
                    step: step.clone(),
                    message: format!(
                        "{where_} ran {} {what}, over its budget of {} by {} ({})",
                        thousands(actual),
                        thousands(max),
                        thousands(actual - max),
                        b.file
                    ),
                    fingerprint: None,
                    fingerprint_hash: None,
                    count: actual,
                    examples: Vec::new(),
                    help: "remove the extra statements (batch, eager-load, cache), or raise the \
                           budget with the reason if the growth is meant"
                        .to_owned(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    fn journey() -> Vec<crate::model::Event> {
        events(&[
            (1, "SET flowaudit.flow = 'shop'", &[], None),
            (1, "SET flowaudit.step = 'browse'", &[], None),
            (1, "BEGIN", &[], None),
            (1, "select 1", &[], Some(1)),
            (1, "select 2", &[], Some(1)),
            (1, "COMMIT", &[], None),
            (1, "SET flowaudit.step = 'pay'", &[], None),
            (1, "select 3", &[], Some(1)),
        ])
    }

    #[test]
    fn step_over_budget_counts_statements_without_markers() {
        let f = audit(
            journey(),
            "[[budget]]\nflow = \"shop\"\nstep = \"browse\"\nmax_statements = 3\n",
        );
        let b = fired(&f, "query-budget");
        assert_eq!(b.len(), 1, "{f:#?}");
        assert_eq!(b[0].count, 4);
        assert!(
            b[0].message
                .starts_with("step shop › browse ran 4 statements, over its budget of 3 by 1"),
            "{}",
            b[0].message
        );
    }

    #[test]
    fn within_budget_and_queries_exclude_transaction_control() {
        let f = audit(
            journey(),
            "[[budget]]\nflow = \"shop\"\nstep = \"browse\"\nmax_statements = 4\nmax_queries = 2\n",
        );
        assert!(fired(&f, "query-budget").is_empty(), "{f:#?}");
        let f = audit(
            journey(),
            "[[budget]]\nflow = \"shop\"\nstep = \"browse\"\nmax_queries = 1\n",
        );
        assert_eq!(fired(&f, "query-budget")[0].count, 2);
    }

    #[test]
    fn flow_budget_covers_every_step() {
        let f = audit(
            journey(),
            "[[budget]]\nflow = \"shop\"\nmax_statements = 4\n",
        );
        let b = fired(&f, "query-budget");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].count, 5);
        assert_eq!(b[0].step, super::WHOLE_FLOW);
    }

    #[test]
    fn budget_for_a_step_that_never_ran_is_info() {
        let f = audit(
            journey(),
            "[[budget]]\nflow = \"shop\"\nstep = \"brows\"\nmax_statements = 4\n",
        );
        let b = fired(&f, "query-budget");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].severity, crate::model::Severity::Info);
    }
}
