//! Rule files (`rules/*.toml`): which rules run, at what severity, with which
//! thresholds, what is allowed and why, and the query budgets. Every key is
//! documented in `rules/README.md`. Files deserialise with unknown keys
//! refused, and every error names the file and the key.
//!
//! Files load in order (the built-in `rules/default.toml` first, then each
//! `--rules DIR`'s `*.toml` sorted by name); a later file's key overrides an
//! earlier one's, while allowances, budgets and examples add up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::{REGISTRY, RuleSetup, meta};
use crate::date::Date;
use crate::invariants::MAX_TIMEOUT_MS;
use crate::invariants::check;
use crate::model::{Finding, Severity};
use crate::trace::{TraceError, TraceReader};

/// The shipped defaults, always loaded first.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");
const DEFAULT_PATH: &str = "<built-in>/rules/default.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// One rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: BTreeMap<String, toml::Table>,
    #[serde(default)]
    allow: Vec<AllowSpec>,
    #[serde(default)]
    budget: Vec<Budget>,
    #[serde(default)]
    example: Vec<Example>,
    #[serde(default)]
    invariant: Vec<Invariant>,
}

/// When an invariant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// After every step (or the steps listed in `steps`).
    #[default]
    AfterStep,
    /// Once, at the end of the run.
    End,
}

/// A data invariant: a query that returns the rows violating it (see
/// [`crate::invariants`]). A later file's invariant of the same name replaces
/// an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    pub name: String,
    pub sql: String,
    #[serde(default)]
    pub when: When,
    /// With `when = "after-step"`: only after these steps.
    pub steps: Option<Vec<String>>,
    /// Default: the severity of `[rules.invariant-violated]` (error).
    pub severity: Option<Severity>,
    /// The query's statement timeout in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
    /// The rule file that declared it.
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowSpec {
    rule: Option<String>,
    fingerprint: Option<String>,
    flow: Option<String>,
    step: Option<String>,
    reason: String,
    /// `YYYY-MM-DD`: from the day after, the allowance no longer applies.
    expires: Option<String>,
}

/// A query budget: `[[budget]] flow = "checkout" step = "browse" max_statements = 10`.
/// Without `step` it covers the whole flow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub flow: String,
    pub step: Option<String>,
    /// Statements, markers excluded.
    pub max_statements: Option<u64>,
    /// Statements that are not transaction control or session settings.
    pub max_queries: Option<u64>,
    /// Where the budget was declared, for the finding's message.
    #[serde(skip)]
    pub file: String,
}

/// A rule file's own example: a trace and the rules it must fire (exactly
/// those; `fires = []` means nothing may fire).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub name: String,
    /// JSON Lines, one event a line, as in a trace file.
    pub trace: String,
    pub fires: Vec<String>,
    #[serde(skip)]
    pub file: String,
}

/// An allowance: findings it matches are set aside with their reason.
#[derive(Debug, Clone)]
pub struct Allow {
    pub rule: Option<String>,
    pub fingerprint: Option<Regex>,
    pub flow: Option<String>,
    pub step: Option<String>,
    pub reason: String,
    pub file: String,
    /// The last day the allowance applies.
    pub expires: Option<Date>,
}

impl Allow {
    /// Whether the allowance has expired by `today`.
    pub fn expired(&self, today: Date) -> bool {
        self.expires.is_some_and(|last| today > last)
    }

    pub fn matches(&self, f: &Finding) -> bool {
        self.rule.as_deref().is_none_or(|r| r == f.rule)
            && self.flow.as_deref().is_none_or(|x| x == f.flow)
            && self.step.as_deref().is_none_or(|x| x == f.step)
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|re| f.fingerprint.as_deref().is_some_and(|fp| re.is_match(fp)))
    }
}

/// A rule's merged settings.
#[derive(Debug, Clone)]
pub struct RuleEntry {
    pub enabled: bool,
    pub severity: Severity,
    pub settings: toml::Table,
}

/// Everything the rule files said, merged.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub rules: BTreeMap<&'static str, RuleEntry>,
    pub allows: Vec<Allow>,
    pub budgets: Vec<Budget>,
    pub examples: Vec<Example>,
    /// Data invariants, by name in the order first declared.
    pub invariants: Vec<Invariant>,
    /// The files read, in order.
    pub files: Vec<String>,
    /// The day `expires` is judged against: today (UTC), set by tests.
    pub today: Date,
}

impl RuleConfig {
    fn empty() -> Self {
        let rules = REGISTRY
            .iter()
            .map(|m| {
                let entry = RuleEntry {
                    enabled: true,
                    severity: m.default_severity,
                    settings: toml::Table::new(),
                };
                (m.id, entry)
            })
            .collect();
        Self {
            rules,
            allows: Vec::new(),
            budgets: Vec::new(),
            examples: Vec::new(),
            invariants: Vec::new(),
            files: Vec::new(),
            today: Date::today(),
        }
    }

    /// The built-in defaults alone.
    pub fn builtin() -> Result<Self, ConfigError> {
        let mut config = Self::empty();
        config.add(Path::new(DEFAULT_PATH), DEFAULT_RULES)?;
        Ok(config)
    }

    /// The built-in defaults, then one more file's text (for tests and examples).
    pub fn builtin_with(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::builtin()?;
        config.add(Path::new("<inline>"), text)?;
        Ok(config)
    }

    /// The built-in defaults, then each path in turn: a rule file itself, or
    /// every `*.toml` of a directory.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut config = Self::builtin()?;
        for dir in dirs {
            for path in rule_files(dir)? {
                config.add_file(&path)?;
            }
        }
        Ok(config)
    }

    pub fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        self.add(path, &text)
    }

    /// Merges one file's text in, validating every key.
    pub fn add(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file: RuleFile = toml::from_str(text).map_err(|e| invalid(path, e.to_string()))?;
        let shown = path.display().to_string();

        for (id, table) in file.rules {
            let Some(m) = meta(&id) else {
                let known: Vec<&str> = REGISTRY.iter().map(|m| m.id).collect();
                return Err(invalid(
                    path,
                    format!(
                        "[rules.{id}]: no rule has this id; known rules: {}",
                        known.join(", ")
                    ),
                ));
            };
            let entry = self.rules.get_mut(m.id).ok_or_else(|| {
                invalid(
                    path,
                    format!("[rules.{id}]: rule missing from the registry"),
                )
            })?;
            let mut own = table;
            if let Some(v) = own.remove("enabled") {
                entry.enabled = v.as_bool().ok_or_else(|| {
                    invalid(
                        path,
                        format!("[rules.{id}] enabled: expected true or false"),
                    )
                })?;
            }
            if let Some(v) = own.remove("severity") {
                entry.severity = v
                    .try_into()
                    .map_err(|e| invalid(path, format!("[rules.{id}] severity: {e}")))?;
            }
            // Validate this file's keys on their own, so the error names this file.
            let alone = RuleSetup {
                severity: entry.severity,
                settings: own.clone(),
                budgets: &[],
                baseline: None,
            };
            (m.build)(&alone).map_err(|e| invalid(path, format!("[rules.{id}]: {e}")))?;
            entry.settings.extend(own);
        }

        for spec in file.allow {
            self.allows.push(allow(path, spec)?);
        }
        for mut budget in file.budget {
            if budget.max_statements.is_none() && budget.max_queries.is_none() {
                return Err(invalid(
                    path,
                    format!(
                        "[[budget]] for flow \"{}\": set max_statements or max_queries",
                        budget.flow
                    ),
                ));
            }
            budget.file.clone_from(&shown);
            self.budgets.push(budget);
        }
        for mut example in file.example {
            for id in &example.fires {
                if meta(id).is_none() {
                    return Err(invalid(
                        path,
                        format!(
                            "[[example]] \"{}\" fires: no rule has the id {id}",
                            example.name
                        ),
                    ));
                }
            }
            // Checked here, so that a broken example names its file and key
            // when the file loads, not in the test that runs it.
            let trace = TraceReader::new(example.trace.as_bytes(), Path::new("trace"));
            for event in trace {
                if let Err(e) = event {
                    let reason = match e {
                        TraceError::Malformed { line, reason, .. } => {
                            format!("line {line}: {reason}")
                        }
                        TraceError::Io { source, .. } => source.to_string(),
                    };
                    return Err(invalid(
                        path,
                        format!("[[example]] \"{}\" trace: {reason}", example.name),
                    ));
                }
            }
            example.file.clone_from(&shown);
            self.examples.push(example);
        }
        // Names declared in this file: a later file may replace an earlier
        // file's invariant, but one file declaring a name twice is a mistake.
        let mut names = std::collections::BTreeSet::new();
        for mut invariant in file.invariant {
            let name = invariant.name.trim();
            if name.is_empty() {
                return Err(invalid(
                    path,
                    "[[invariant]] name: give the invariant a name",
                ));
            }
            if invariant.sql.trim().trim_end_matches(';').trim().is_empty() {
                return Err(invalid(
                    path,
                    format!(
                        "[[invariant]] \"{name}\" sql: a query that returns the violating rows"
                    ),
                ));
            }
            if invariant.steps.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    path,
                    format!(
                        "[[invariant]] \"{name}\" steps: name at least one step, or leave it out"
                    ),
                ));
            }
            if let Some(ms) = invariant.timeout_ms
                && !(1..=MAX_TIMEOUT_MS).contains(&ms)
            {
                return Err(invalid(
                    path,
                    format!(
                        "[[invariant]] \"{name}\" timeout_ms: {ms} is out of range: \
                         from 1 to {MAX_TIMEOUT_MS} (one hour)"
                    ),
                ));
            }
            if invariant.when == When::End && invariant.steps.is_some() {
                return Err(invalid(
                    path,
                    format!("[[invariant]] \"{name}\" steps: only for when = \"after-step\""),
                ));
            }
            check::any_dialect(&invariant.sql).map_err(|reason| {
                invalid(
                    path,
                    format!("[[invariant]] \"{name}\" sql: refused: {reason}"),
                )
            })?;
            if !names.insert(invariant.name.clone()) {
                return Err(invalid(
                    path,
                    format!(
                        "[[invariant]] \"{name}\" name: declared twice in this file; \
                         give each invariant its own name"
                    ),
                ));
            }
            invariant.file.clone_from(&shown);
            match self
                .invariants
                .iter_mut()
                .find(|i| i.name == invariant.name)
            {
                Some(earlier) => *earlier = invariant,
                None => self.invariants.push(invariant),
            }
        }
        self.files.push(shown);
        Ok(())
    }
}

fn allow(path: &Path, spec: AllowSpec) -> Result<Allow, ConfigError> {
    if let Some(rule) = &spec.rule
        && meta(rule).is_none()
    {
        return Err(invalid(
            path,
            format!("[[allow]] rule: no rule has the id {rule}"),
        ));
    }
    if spec.fingerprint.is_none() && spec.step.is_none() && spec.flow.is_none() {
        return Err(invalid(
            path,
            "[[allow]]: name a fingerprint (regex), a flow or a step to allow",
        ));
    }
    if spec.reason.trim().is_empty() {
        return Err(invalid(path, "[[allow]] reason: say why this is allowed"));
    }
    let expires = spec
        .expires
        .as_deref()
        .map(|text| {
            Date::parse(text).ok_or_else(|| {
                invalid(
                    path,
                    format!("[[allow]] expires: \"{text}\" is not a date as YYYY-MM-DD"),
                )
            })
        })
        .transpose()?;
    let fingerprint = spec
        .fingerprint
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| invalid(path, format!("[[allow]] fingerprint: {e}")))?;
    Ok(Allow {
        rule: spec.rule,
        fingerprint,
        flow: spec.flow,
        step: spec.step,
        reason: spec.reason,
        file: path.display().to_string(),
        expires,
    })
}

/// The `*.toml` files of a rule directory, sorted by name; a path that is a
/// file is that one rule file, whatever its name ends with.
pub fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if dir.is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        RuleConfig::builtin_with(text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn defaults_load() {
        let c = RuleConfig::builtin().expect("defaults are valid");
        assert!(c.rules["n-plus-one"].enabled);
        assert_eq!(c.rules["n-plus-one"].severity, Severity::Error);
    }

    #[test]
    fn later_files_override_keys() {
        let c = RuleConfig::builtin_with(
            "[rules.n-plus-one]\nmin_repeats = 9\nseverity = \"warning\"\n[rules.slow-query]\nenabled = false\n",
        )
        .expect("valid");
        assert_eq!(c.rules["n-plus-one"].severity, Severity::Warning);
        assert_eq!(
            c.rules["n-plus-one"].settings["min_repeats"].as_integer(),
            Some(9)
        );
        assert!(!c.rules["slow-query"].enabled);
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_key() {
        let e = err("[rules.n-plus-one]\nmin_repeat = 3\n");
        assert!(
            e.starts_with("<inline>: [rules.n-plus-one]: unknown field `min_repeat`"),
            "{e}"
        );
        let e = err("[rules.n-plus-two]\n");
        assert!(e.contains("[rules.n-plus-two]: no rule has this id"), "{e}");
        let e = err("[[budgets]]\nflow = \"x\"\n");
        assert!(e.contains("unknown field `budgets`"), "{e}");
        let e = err("[[budget]]\nflow = \"x\"\nmax_statement = 3\n");
        assert!(e.contains("unknown field `max_statement`"), "{e}");
        let e = err("[rules.n-plus-one]\nseverity = \"fatal\"\n");
        assert!(e.contains("[rules.n-plus-one] severity"), "{e}");
        let e = err("[rules.n-plus-one]\nmin_repeats = \"many\"\n");
        assert!(e.contains("[rules.n-plus-one]"), "{e}");
    }

    #[test]
    fn allow_needs_a_reason_and_a_target() {
        let e = err("[[allow]]\nfingerprint = \"x\"\n");
        assert!(e.contains("missing field `reason`"), "{e}");
        let e = err("[[allow]]\nrule = \"n-plus-one\"\nreason = \"r\"\n");
        assert!(e.contains("name a fingerprint"), "{e}");
        let e = err("[[allow]]\nfingerprint = \"(\"\nreason = \"r\"\n");
        assert!(e.contains("[[allow]] fingerprint"), "{e}");
    }

    #[test]
    fn allow_expires_on_a_real_date() {
        let e = err("[[allow]]\nstep = \"s\"\nreason = \"r\"\nexpires = \"2026-02-30\"\n");
        assert!(
            e.contains("[[allow]] expires: \"2026-02-30\" is not a date"),
            "{e}"
        );
        let c = RuleConfig::builtin_with(
            "[[allow]]\nstep = \"s\"\nreason = \"r\"\nexpires = \"2026-03-01\"\n",
        )
        .expect("valid");
        let a = &c.allows[0];
        let day = |s| Date::parse(s).expect("date");
        assert!(!a.expired(day("2026-03-01")));
        assert!(a.expired(day("2026-03-02")));
    }

    #[test]
    fn budget_needs_a_limit() {
        let e = err("[[budget]]\nflow = \"x\"\n");
        assert!(e.contains("set max_statements or max_queries"), "{e}");
    }

    #[test]
    fn invariants_are_validated_and_replaced_by_name() {
        let e = err("[[invariant]]\nname = \"x\"\nsql = \" ; \"\n");
        assert!(e.contains("[[invariant]] \"x\" sql"), "{e}");
        let e = err("[[invariant]]\nname = \"x\"\nsql = \"select 1\"\nwhen = \"later\"\n");
        assert!(e.contains("unknown variant `later`"), "{e}");
        let e = err("[[invariant]]\nname = \"x\"\nsql = \"select 1\"\nsteps = []\n");
        assert!(e.contains("steps: name at least one step"), "{e}");
        let e = err("[[invariant]]\nname = \"x\"\nsql = \"select 1\"\nquery = \"y\"\n");
        assert!(e.contains("unknown field `query`"), "{e}");
        let mut c = RuleConfig::builtin_with(
            "[[invariant]]\nname = \"x\"\nsql = \"select 1\"\nsteps = [\"pay\"]\n",
        )
        .expect("valid");
        c.add(
            Path::new("b.toml"),
            "[[invariant]]\nname = \"x\"\nsql = \"select 2\"\nwhen = \"end\"\n",
        )
        .expect("valid");
        assert_eq!(c.invariants.len(), 1);
        assert_eq!(c.invariants[0].sql, "select 2");
        assert_eq!(c.invariants[0].when, When::End);
        assert_eq!(c.invariants[0].file, "b.toml");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let e = RuleConfig::load(&[PathBuf::from("/nonexistent/rules")]).expect_err("no dir");
        assert!(e.to_string().starts_with("/nonexistent/rules: "), "{e}");
    }
}
