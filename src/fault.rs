//! Fault injection: make one statement of a step fail on purpose, so that a run
//! proves whether the step's writes roll back together.
//!
//! `--inject-fault STEP:N` fails the Nth statement of step STEP (counted in
//! trace order from 1, transaction control included, markers excluded: the
//! numbering a run without the fault shows); `--inject-fault STEP:commit`
//! fails the step's first COMMIT. The statement is not run: the database runs
//! a replacement that fails instead, so that its transaction state follows as
//! it would after a real error.
//!
//! - SQLite: [`SQLITE_FAILING_SQL`], a `json_extract` with an invalid JSON
//!   path. SQLite accepts it when preparing and fails when stepping it
//!   (`SQLITE_ERROR`, "bad JSON path" / "JSON path error near …", naming the
//!   fault), so the failure is a run-time error like a constraint violation:
//!   SQLite undoes that statement only and an open transaction stays open.
//! - PostgreSQL: [`POSTGRES_FAILING_SQL`], a `DO` block that raises SQLSTATE
//!   [`POSTGRES_SQLSTATE`] (`FA001`, in no class PostgreSQL itself uses); as
//!   after any error, an open transaction is aborted (`txn` = `failed`).
//! - MySQL/MariaDB: [`MYSQL_FAILING_SQL`], a `SIGNAL` of the same SQLSTATE
//!   (error 1644); InnoDB undoes that statement only.
//!
//! [`FaultSpec`] parses the option; [`FaultInjector`] counts a connection's
//! (or a run's) statements and says which one to fail.

use std::fmt;
use std::str::FromStr;

/// The SQLSTATE the PostgreSQL replacement raises.
pub const POSTGRES_SQLSTATE: &str = "FA001";

/// The PostgreSQL replacement statement; `{fault}` stands for the fault's
/// description (`checkout:3`), see [`FaultSpec::failing_sql_postgres`].
pub const POSTGRES_FAILING_SQL: &str = "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = 'FA001', MESSAGE = 'flowaudit: injected fault at {fault}'; END$$";

/// The MySQL/MariaDB replacement statement; `{fault}` as above. MariaDB
/// runs SIGNAL outside stored programs too; the client gets error 1644
/// (ER_SIGNAL_EXCEPTION) with SQLSTATE [`POSTGRES_SQLSTATE`]'s `FA001`, and
/// InnoDB undoes only that statement: an open transaction stays open.
pub const MYSQL_FAILING_SQL: &str =
    "SIGNAL SQLSTATE 'FA001' SET MESSAGE_TEXT = 'flowaudit: injected fault at {fault}'";

/// The SQLite replacement statement; `{fault}` as above.
pub const SQLITE_FAILING_SQL: &str =
    "SELECT json_extract('{}', 'flowaudit: injected fault at {fault}')";

/// Which statement of the step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAt {
    /// The Nth statement of the step, from 1.
    Nth(u32),
    /// The step's first COMMIT.
    Commit,
}

/// `STEP:N` or `STEP:commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub step: String,
    pub at: FaultAt,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("\"{0}\" is not STEP:N or STEP:commit (e.g. checkout:3)")]
    Shape(String),
    #[error("\"{0}\" names no step before the colon")]
    NoStep(String),
    #[error("\"{spec}\": \"{at}\" is neither a statement number (1, 2, …) nor \"commit\"")]
    At { spec: String, at: String },
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (step, at) = s
            .rsplit_once(':')
            .ok_or_else(|| FaultSpecError::Shape(s.to_owned()))?;
        let step = step.trim();
        if step.is_empty() {
            return Err(FaultSpecError::NoStep(s.to_owned()));
        }
        let at_text = at.trim();
        let at = if at_text.eq_ignore_ascii_case("commit") {
            FaultAt::Commit
        } else {
            match at_text.parse::<u32>() {
                Ok(n) if n >= 1 => FaultAt::Nth(n),
                _ => {
                    return Err(FaultSpecError::At {
                        spec: s.to_owned(),
                        at: at_text.to_owned(),
                    });
                }
            }
        };
        Ok(Self {
            step: step.to_owned(),
            at,
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            FaultAt::Nth(n) => write!(f, "{}:{n}", self.step),
            FaultAt::Commit => write!(f, "{}:commit", self.step),
        }
    }
}

impl FaultSpec {
    /// The SQLite statement that fails in place of the chosen one.
    pub fn failing_sql_sqlite(&self) -> String {
        SQLITE_FAILING_SQL.replace("{fault}", &quote_free(&self.to_string()))
    }

    /// The MySQL/MariaDB statement that fails in place of the chosen one.
    pub fn failing_sql_mysql(&self) -> String {
        MYSQL_FAILING_SQL.replace("{fault}", &quote_free(&self.to_string()))
    }

    /// The PostgreSQL statement that fails in place of the chosen one.
    pub fn failing_sql_postgres(&self) -> String {
        POSTGRES_FAILING_SQL.replace("{fault}", &quote_free(&self.to_string()))
    }
}

/// The text without quotes or dollar signs, safe inside the literals above.
fn quote_free(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '\'' | '$' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Counts statements per step and decides which one fails: once, the first
/// time the spec matches. One injector per run (the demo) or per connection
/// (a proxy), fed every statement in order.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    spec: FaultSpec,
    /// Statements of the spec's step so far.
    seen: u32,
    fired: bool,
}

impl FaultInjector {
    pub fn new(spec: FaultSpec) -> Self {
        Self {
            spec,
            seen: 0,
            fired: false,
        }
    }

    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    /// Whether the fault has been injected.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Called for every statement about to run, in order: true when this
    /// one must fail instead of running. Markers are not counted.
    pub fn decide(&mut self, step: &str, is_marker: bool, is_commit: bool) -> bool {
        if is_marker || self.fired || step != self.spec.step {
            return false;
        }
        self.seen += 1;
        let hit = match self.spec.at {
            FaultAt::Nth(n) => self.seen == n,
            FaultAt::Commit => is_commit,
        };
        self.fired = hit;
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nth_and_commit() {
        let s: FaultSpec = "checkout:3".parse().expect("valid");
        assert_eq!(s.step, "checkout");
        assert_eq!(s.at, FaultAt::Nth(3));
        assert_eq!(s.to_string(), "checkout:3");
        let s: FaultSpec = "pay:COMMIT".parse().expect("valid");
        assert_eq!(s.at, FaultAt::Commit);
        let s: FaultSpec = "a:b:2".parse().expect("the last colon splits");
        assert_eq!(s.step, "a:b");
    }

    #[test]
    fn refuses_bad_specs_with_the_reason() {
        let e = |s: &str| s.parse::<FaultSpec>().expect_err(s).to_string();
        assert!(e("checkout").contains("is not STEP:N"), "{}", e("checkout"));
        assert!(e(":3").contains("names no step"));
        assert!(e("checkout:0").contains("\"0\" is neither"));
        assert!(e("checkout:x").contains("\"x\" is neither"));
    }

    #[test]
    fn nth_counts_the_steps_statements_but_not_markers() {
        let mut f = FaultInjector::new("checkout:3".parse().expect("valid"));
        assert!(!f.decide("browse", false, false));
        assert!(!f.decide("checkout", false, false));
        assert!(!f.decide("checkout", true, false), "markers do not count");
        assert!(!f.decide("checkout", false, false));
        assert!(f.decide("checkout", false, false));
        assert!(f.fired());
        assert!(!f.decide("checkout", false, false), "once only");
    }

    #[test]
    fn commit_fails_the_first_commit_of_the_step() {
        let mut f = FaultInjector::new("checkout:commit".parse().expect("valid"));
        assert!(!f.decide("add", false, true));
        assert!(!f.decide("checkout", false, false));
        assert!(f.decide("checkout", false, true));
        assert!(!f.decide("checkout", false, true));
    }

    #[test]
    fn replacement_sql_names_the_fault() {
        let s: FaultSpec = "check'out:2".parse().expect("valid");
        assert_eq!(
            s.failing_sql_sqlite(),
            "SELECT json_extract('{}', 'flowaudit: injected fault at check_out:2')"
        );
        assert!(
            s.failing_sql_postgres().contains(
                "ERRCODE = 'FA001', MESSAGE = 'flowaudit: injected fault at check_out:2'"
            )
        );
    }
}
