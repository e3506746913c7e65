//! `invariant-violated`: a data invariant from a rule file returned rows.
//! The check itself runs in [`crate::invariants`], against the database; this
//! file holds the rule's documentation and place in the catalogue.

use super::units::NoSettings;
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: super::INVARIANT_VIOLATED,
    default_severity: Severity::Error,
    summary: "a data invariant from a rule file returned rows",
    doc: InvariantViolated::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Runs the `[[invariant]]` queries of the rule files against the
    /// database and reports each one that returns rows: every row is a
    /// violation. The finding carries the first rows (at most 10) and their
    /// count. Invariants run after each step (`when = "after-step"`, limited
    /// to `steps` when given) or once at the end (`when = "end"`): in `demo`
    /// on the shop's database, in `analyze` when `--database URL` is given.
    /// flowaudit runs them on its own read-only connection, each bounded by a
    /// statement timeout; an invariant whose SQL fails or times out stops the
    /// run (exit code 2) naming its file and name.
    ///
    /// ## Why is this bad?
    /// The trace shows what the application did; the data shows what it left
    /// behind. An order whose total differs from its items, stock that went
    /// negative or an order without items is a defect users see, whatever
    /// the statements looked like.
    ///
    /// ## Example
    /// ```toml
    /// [[invariant]]
    /// name = "stock-never-negative"
    /// sql = "SELECT product_id, stock FROM inventory WHERE stock < 0"
    /// ```
    ///
    /// ## How to fix
    /// Find the step after which the invariant first failed (with
    /// `when = "after-step"`), and make that step's writes keep it: one
    /// transaction, guarded updates, constraints the database enforces
    /// (CHECK, FOREIGN KEY) where it can.
    pub struct InvariantViolated {}
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(InvariantViolated {}))
}

impl Rule for InvariantViolated {
    fn observe(&mut self, _: &Statement<'_>) {}
    fn finish(&mut self, _: &mut Vec<Finding>) {}
}
