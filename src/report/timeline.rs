//! What the HTML report draws of each step (issue 18): its statements on a
//! time axis, one lane per connection, and its transactions as bands.
//!
//! The audit feeds it every statement when `--format html` asks for it. Its
//! memory is bounded whatever the run's length: a step keeps its statements
//! one by one up to [`STEP_DETAIL`] (and the run up to [`RUN_DETAIL`]); a
//! step with more drops them and is drawn as one lane per fingerprint with
//! its count, whose state is one entry per distinct fingerprint (at most
//! [`STEP_LANES`], the rest summed).

use foldhash::{HashMap, HashMapExt};

use crate::attribute::TxnOp;
use crate::model::{StepKey, TxnStatus};
use crate::rules::Statement;

/// Most statements one step draws one by one; a step with more is drawn as
/// per-fingerprint lanes.
pub const STEP_DETAIL: usize = 1_000;
/// Most statements the whole run draws one by one: what keeps a report of
/// many small steps under a few megabytes. It counts every statement ever
/// kept, also those of a step that later had too many and was summarised,
/// so that the work of keeping them is bounded too.
pub const RUN_DETAIL: usize = 10_000;
/// Most fingerprint lanes a step keeps; further fingerprints share one lane.
pub const STEP_LANES: usize = 40;
/// Most steps drawn: a run of more steps than anyone reads one by one
/// draws the first ones, and says so.
pub const STEPS_DRAWN: usize = 1_000;
/// Most characters of a fingerprint's text kept for its lane.
const SQL_CHARS: usize = 300;

/// One statement drawn as a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub seq: u64,
    pub conn: u64,
    /// Start, in µs from the step's first statement.
    pub start_us: u64,
    pub duration_us: u64,
    /// Whether the source gave the duration (else the bar is drawn at a
    /// minimal width).
    pub timed: bool,
    /// Fingerprint hash (16 hex digits), as findings name it.
    pub fingerprint: String,
    /// The statement as findings' examples show it: its text on one line
    /// without tags, cut to 160 characters, and its bind values. The
    /// timeline shows it on hover, and matches findings' examples with it.
    pub example: String,
    pub rows: Option<u64>,
    /// SQLSTATE and message of a failed statement.
    pub error: Option<String>,
    /// The explicit transaction it ran in (see [`Band`]).
    pub txn: Option<u64>,
}

/// How a transaction's part in a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    RolledBack,
    /// No COMMIT or ROLLBACK in the step: still open when the step ended.
    Open,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled back",
            Outcome::Open => "open at the step's end",
        }
    }
}

/// An explicit transaction's statements in one step, drawn behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub txn: u64,
    pub conn: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub statements: u64,
    pub outcome: Outcome,
}

/// One fingerprint of a step whose statements are too many to draw one by
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// Fingerprint hash; empty for the lane of the fingerprints beyond
    /// [`STEP_LANES`].
    pub fingerprint: String,
    pub text: String,
    pub count: u64,
    pub errors: u64,
    pub first_us: u64,
    pub end_us: u64,
    pub total_us: u64,
}

/// What one step draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTimeline {
    pub key: StepKey,
    /// Its statements, in the order they ran; empty when [`Self::lanes`]
    /// stands for them.
    pub bars: Vec<Bar>,
    pub bands: Vec<Band>,
    /// Per-fingerprint lanes, by first run; drawn when `bars` was dropped.
    pub lanes: Vec<Lane>,
    /// The statements were too many to draw one by one.
    pub summarised: bool,
    /// Statements of the step, and its span in µs.
    pub statements: u64,
    pub span_us: u64,
    /// Whether the times come from the source's timestamps (else the
    /// statements are laid end to end in the order they ran).
    pub clocked: bool,
}

/// Every step's timeline of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub steps: Vec<StepTimeline>,
}

impl Timeline {
    /// A step's timeline. A search: for a test or a few lookups; a report
    /// walks [`Self::steps`] in order.
    pub fn step(&self, flow: &str, step: &str) -> Option<&StepTimeline> {
        self.steps
            .iter()
            .find(|s| s.key.flow == flow && s.key.step == step)
    }
}

/// Builds a [`Timeline`] as statements are audited.
#[derive(Debug, Default)]
pub struct Recorder {
    steps: Vec<StepState>,
    /// Statements kept one by one over all steps, including those dropped
    /// since (see [`RUN_DETAIL`]).
    detailed: usize,
}

#[derive(Debug)]
struct StepState {
    key: StepKey,
    /// Absolute start of the step's first statement (µs since the epoch, or
    /// on the laid-end-to-end clock).
    origin: Option<i64>,
    /// The end of the latest statement, for statements without a time.
    cursor: i64,
    clocked: bool,
    end: i64,
    bars: Vec<Bar>,
    summarised: bool,
    /// Transaction id → its band, while the step draws bands.
    bands: HashMap<u64, Band>,
    lanes: HashMap<u64, (usize, Lane)>,
    other: Option<Lane>,
    statements: u64,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one audited statement of step number `statement.step`.
    pub fn observe(&mut self, statement: &Statement<'_>) {
        if statement.step >= STEPS_DRAWN {
            return;
        }
        while self.steps.len() <= statement.step {
            self.steps.push(StepState {
                key: statement.key.clone(),
                origin: None,
                cursor: 0,
                clocked: true,
                end: 0,
                bars: Vec::new(),
                summarised: false,
                bands: HashMap::new(),
                lanes: HashMap::new(),
                other: None,
                statements: 0,
            });
        }
        let event = statement.event;
        let step = &mut self.steps[statement.step];
        if step.statements == 0 {
            step.key = statement.key.clone();
        }
        step.statements += 1;
        let duration = event.duration_us.unwrap_or(0);
        let at = event.ts.as_deref().and_then(micros);
        let start = match at {
            Some(t) => t,
            None => {
                step.clocked = false;
                step.cursor
            }
        };
        let start = match step.origin {
            Some(origin) => start.max(origin),
            None => {
                step.origin = Some(start);
                start
            }
        };
        let end = start.saturating_add(i64::try_from(duration).unwrap_or(i64::MAX));
        step.cursor = step.cursor.max(end);
        step.end = step.end.max(end);
        let origin = step.origin.unwrap_or(start);
        let rel = u64::try_from(start - origin).unwrap_or(0);
        let rel_end = u64::try_from(end - origin).unwrap_or(0);

        // The per-fingerprint lanes are kept from the start, so that a step
        // that overflows is still drawn whole.
        let hash = statement.fingerprint.hash;
        let failed = u64::from(event.error.is_some());
        let next = step.lanes.len();
        let lane = match step.lanes.get_mut(&hash) {
            Some((_, lane)) => Some(lane),
            None if next < STEP_LANES => {
                let lane = Lane {
                    fingerprint: format!("{hash:016x}"),
                    text: cut(&statement.fingerprint.text, SQL_CHARS),
                    count: 0,
                    errors: 0,
                    first_us: rel,
                    end_us: rel_end,
                    total_us: 0,
                };
                Some(&mut step.lanes.entry(hash).or_insert((next, lane)).1)
            }
            None => None,
        };
        let lane = match lane {
            Some(lane) => lane,
            None => step.other.get_or_insert_with(|| Lane {
                fingerprint: String::new(),
                text: String::new(),
                count: 0,
                errors: 0,
                first_us: rel,
                end_us: rel_end,
                total_us: 0,
            }),
        };
        lane.count += 1;
        lane.errors += failed;
        lane.first_us = lane.first_us.min(rel);
        lane.end_us = lane.end_us.max(rel_end);
        lane.total_us += duration;

        if step.summarised {
            return;
        }
        if step.bars.len() >= STEP_DETAIL || self.detailed >= RUN_DETAIL {
            // Too many to draw one by one: the lanes stand for them.
            step.bars = Vec::new();
            step.bands = HashMap::new();
            step.summarised = true;
            return;
        }
        self.detailed += 1;
        if let Some(txn) = statement.txn {
            let band = step.bands.entry(txn).or_insert(Band {
                txn,
                conn: statement.conn,
                start_us: rel,
                end_us: rel_end,
                statements: 0,
                outcome: Outcome::Open,
            });
            band.statements += 1;
            band.end_us = band.end_us.max(rel_end);
            match statement.txn_op {
                // PostgreSQL answers a COMMIT of a failed transaction with
                // ROLLBACK; a COMMIT that failed committed nothing.
                Some(TxnOp::Commit)
                    if event.error.is_none() && event.txn != Some(TxnStatus::Failed) =>
                {
                    band.outcome = Outcome::Committed;
                }
                Some(TxnOp::Commit | TxnOp::Rollback) => band.outcome = Outcome::RolledBack,
                _ => {}
            }
        }
        step.bars.push(Bar {
            seq: statement.seq,
            conn: statement.conn,
            start_us: rel,
            duration_us: duration,
            timed: event.duration_us.is_some(),
            fingerprint: format!("{hash:016x}"),
            example: statement.example(),
            rows: event.rows,
            error: event
                .error
                .as_ref()
                .map(|e| cut(&format!("{} {}", e.code, e.message), 200)),
            txn: statement.txn,
        });
    }

    pub fn finish(self) -> Timeline {
        let steps = self
            .steps
            .into_iter()
            .filter(|s| s.statements > 0)
            .map(|s| {
                let mut lanes: Vec<(usize, Lane)> = s.lanes.into_values().collect();
                lanes.sort_by_key(|(order, _)| *order);
                let mut lanes: Vec<Lane> = lanes.into_iter().map(|(_, lane)| lane).collect();
                lanes.extend(s.other);
                let mut bands: Vec<Band> = s.bands.into_values().collect();
                bands.sort_by_key(|b| (b.start_us, b.txn));
                StepTimeline {
                    key: s.key,
                    bars: s.bars,
                    bands,
                    lanes,
                    summarised: s.summarised,
                    statements: s.statements,
                    span_us: u64::try_from(s.end - s.origin.unwrap_or(s.end)).unwrap_or(0),
                    clocked: s.clocked,
                }
            })
            .collect();
        Timeline { steps }
    }
}

/// An RFC 3339 time as µs since the epoch.
fn micros(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// `text` on one line, cut to `max` characters with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            if n >= max {
                out.push('…');
                return out;
            }
            out.push(' ');
            n += 1;
        }
        for c in word.chars() {
            if n >= max {
                out.push('…');
                return out;
            }
            out.push(c);
            n += 1;
        }
    }
    out
}
