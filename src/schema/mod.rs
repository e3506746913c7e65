//! DBA review of a schema's relationships: introspect a PostgreSQL, MySQL /
//! MariaDB or SQLite database through sqlx ([`introspect`]), derive the
//! declared and implied relationships ([`relations`]), search for orphan rows
//! where nothing enforces them ([`orphans`]), and run the schema rules
//! ([`lint`]) under the rule files' settings and allow-lists. [`review`] is
//! the entry point for every command that reviews a database.

pub mod diagram;
pub mod introspect;
pub mod joins;
pub mod lint;
pub mod model;
pub mod orphans;
pub mod relations;
pub mod report;
pub mod touched;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::model::Finding;
use crate::report::AllowedFinding;
use crate::rules::{RuleConfig, RuleSetup};

pub use introspect::SchemaFilter;
pub use model::Schema;
pub use relations::{JoinPair, Relationship};
pub use touched::Touched;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("catalogue query failed ({query}): {message}")]
    Query { query: String, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("[rules.{rule}]: {message}")]
    Settings { rule: &'static str, message: String },
}

/// What to review and how.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    pub filter: SchemaFilter,
    /// Only these tables (names as a trace writes them, `orders` or
    /// `public.orders`); `None`: every table.
    pub tables: Option<BTreeSet<String>>,
    /// Column pairs a trace joined on, which imply relationships.
    pub joins: Vec<JoinPair>,
    /// Bound on every statement, and on connecting.
    pub timeout: Duration,
}

impl Default for ReviewOptions {
    fn default() -> Self {
        Self {
            filter: SchemaFilter::default(),
            tables: None,
            joins: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The outcome of a review.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReview {
    /// The URL, password hidden.
    pub database: String,
    pub schema: Schema,
    /// The tables reviewed (qualified names), sorted.
    pub reviewed: Vec<String>,
    pub relationships: Vec<Relationship>,
    pub findings: Vec<Finding>,
    pub allowed: Vec<AllowedFinding>,
    pub notes: Vec<String>,
}

/// Reviews the database at `url` (blocking: runs its own tokio runtime).
pub fn review(
    url: &str,
    options: &ReviewOptions,
    config: &RuleConfig,
) -> Result<SchemaReview, SchemaError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SchemaError::Runtime)?;
    runtime.block_on(review_async(url, options, config))
}

/// As [`review`], inside a running tokio runtime.
pub async fn review_async(
    url: &str,
    options: &ReviewOptions,
    config: &RuleConfig,
) -> Result<SchemaReview, SchemaError> {
    let mut conn = introspect::Conn::open(url, options.timeout).await?;
    let result = review_on(&mut conn, url, options, config).await;
    conn.close().await;
    result
}

async fn review_on(
    conn: &mut introspect::Conn,
    url: &str,
    options: &ReviewOptions,
    config: &RuleConfig,
) -> Result<SchemaReview, SchemaError> {
    let schema = introspect::introspect(conn, &options.filter).await?;
    let reviewed: Vec<String> = schema
        .tables
        .iter()
        .filter(|t| {
            options.tables.as_ref().is_none_or(|wanted| {
                wanted.iter().any(|w| {
                    w.eq_ignore_ascii_case(&t.name) || w.eq_ignore_ascii_case(&t.qualified())
                })
            })
        })
        .map(model::Table::qualified)
        .collect();
    let relationships: Vec<Relationship> = relations::relationships(&schema, &options.joins)
        .into_iter()
        .filter(|r| reviewed.contains(&r.child))
        .collect();

    let mut rules = Vec::new();
    for (meta, build) in lint::SCHEMA_RULES {
        let Some(entry) = config.rules.get(meta.id).filter(|e| e.enabled) else {
            continue;
        };
        let setup = RuleSetup {
            severity: entry.severity,
            settings: entry.settings.clone(),
            budgets: &config.budgets,
            baseline: None,
        };
        let rule = build(&setup).map_err(|e| SchemaError::Settings {
            rule: meta.id,
            message: e.to_string(),
        })?;
        rules.push(rule);
    }

    let mut notes = Vec::new();
    let orphans = match config.rules.get(crate::rules::orphan_rows::META.id) {
        Some(entry) if entry.enabled => {
            let limits = crate::rules::orphan_rows::limits(&entry.settings).map_err(|e| {
                SchemaError::Settings {
                    rule: crate::rules::orphan_rows::META.id,
                    message: e.to_string(),
                }
            })?;
            orphans::search(conn, &schema, &relationships, |_| true, limits).await?
        }
        _ => Vec::new(),
    };
    for check in &orphans {
        if let orphans::Outcome::Skipped { reason } = &check.outcome {
            notes.push(format!("orphan rows not searched: {reason}"));
        }
    }

    let cx = lint::Context {
        schema: &schema,
        relationships: &relationships,
        tables: &reviewed,
        orphans: &orphans,
    };
    let mut all = Vec::new();
    for rule in &rules {
        rule.check(&cx, &mut all);
    }
    let (findings, allowed) = apply_allows(all, config);
    Ok(SchemaReview {
        database: crate::redact::url(url),
        schema,
        reviewed,
        relationships,
        findings,
        allowed,
        notes,
    })
}

/// Sets aside the findings an unexpired `[[allow]]` matches, and sorts.
pub fn apply_allows(all: Vec<Finding>, config: &RuleConfig) -> (Vec<Finding>, Vec<AllowedFinding>) {
    let mut findings = Vec::new();
    let mut allowed = Vec::new();
    for f in all {
        match config
            .allows
            .iter()
            .filter(|a| !a.expired(config.today))
            .find(|a| a.matches(&f))
        {
            Some(a) => allowed.push(AllowedFinding {
                finding: f,
                reason: a.reason.clone(),
                file: a.file.clone(),
            }),
            None => findings.push(f),
        }
    }
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    allowed.sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));
    (findings, allowed)
}
