//! The ER diagram as one inline `<svg>` element, for the HTML report: a box
//! per table (its name, then its key columns with their type and PK / FK / UK
//! marks), an edge from each child column to its parent's column, declared
//! relationships solid and implied ones dashed, laid out by [`super::layout`];
//! and the review's findings marked on their tables and columns by a badge
//! whose symbol tells the severity ("!" error, "▲" warning, "i" info).
//!
//! What the report's script and style sheet can hold on to:
//! - a table: `<g class="er-table" id="er-<slug>" data-table="<shown name>">`
//!   (ids from [`table_ids`]); in it each key column,
//!   `<g class="er-column" data-column="<name>">`;
//! - a relationship: `<g class="er-edge">` (`class="er-edge implied"` when
//!   implied) with `data-child` and `data-parent`, the two tables' ids;
//! - a badge: `<g class="er-finding error|warning|info">`;
//! - `data-findings="0 3"` on every element a finding marks, indices into
//!   `review.findings`: a table lists all of its findings; a column, its
//!   edge and its badge those about that relationship (the finding's
//!   fingerprint is the relationship's `describe`, as the schema rules
//!   write it); the header badge the table's other findings.
//!
//! Styles are presentation attributes, so that the SVG reads the same opened
//! alone or printed; colours are Okabe–Ito's (told apart by colour-blind
//! readers) and never the only cue: implied edges are dashed, severities
//! have symbols. Nothing is loaded from anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::layout::{self, MARGIN, Rect};
use super::{key_columns, tables};
use crate::model::Severity;
use crate::report::html::esc;
use crate::schema::SchemaReview;
use crate::schema::lint::SCHEMA_FLOW;
use crate::schema::relations::Origin;

/// Pixels per character of the 12px monospace text (DejaVu Sans Mono,
/// Menlo and Consolas all advance about 0.6 em).
const CHAR_W: f64 = 7.2;
/// Pixels per character of the 10px edge labels.
const LABEL_CHAR_W: f64 = 6.0;
const HEADER_H: f64 = 24.0;
const ROW_H: f64 = 20.0;
/// Space under the last row.
const FOOT_H: f64 = 6.0;
const PAD: f64 = 8.0;
/// Room for a badge at the right of a header or row.
const BADGE_W: f64 = 20.0;
const MIN_BOX_W: f64 = 100.0;
/// How far a self-reference's loop reaches right of its box.
const LOOP: f64 = 36.0;

const FONT: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace";
// Okabe–Ito, and greys.
const BLUE: &str = "#0072B2";
const ORANGE: &str = "#E69F00";
const VERMILLION: &str = "#D55E00";
const SKY: &str = "#56B4E9";
const INK: &str = "#1A1A1A";
const GREY: &str = "#595959";
const LINE: &str = "#4D4D4D";
const HEADER_FILL: &str = "#E6E6E6";

/// The ER diagram as one `<svg>` element, for the HTML report.
pub fn render(review: &SchemaReview) -> String {
    let diagram = Diagram::new(review);
    diagram.svg()
}

/// Each shown table's element id, in the order of [`super::tables`]: (its
/// shown name, `er-` and the name as a slug, numbered when two names give
/// the same slug).
pub fn table_ids(review: &SchemaReview) -> Vec<(String, String)> {
    let mut used = BTreeSet::new();
    tables(review)
        .iter()
        .map(|t| {
            let name = review.schema.shown(&t.schema, &t.name);
            let base = format!("er-{}", slug(&name));
            let mut id = base.clone();
            let mut n = 2;
            while !used.insert(id.clone()) {
                id = format!("{base}-{n}");
                n += 1;
            }
            (name, id)
        })
        .collect()
}

/// A table's box: what it shows and the findings that mark it.
struct Node<'a> {
    name: String,
    id: String,
    rows: Vec<Row<'a>>,
    /// Every finding about the table.
    findings: Vec<usize>,
    /// The findings about no one relationship of it (its header badge).
    table_findings: Vec<usize>,
    /// Widths of the rows' name, type and marks columns.
    name_w: f64,
    type_w: f64,
    size: (f64, f64),
}

struct Row<'a> {
    name: &'a str,
    data_type: &'a str,
    marks: String,
    findings: Vec<usize>,
}

/// A relationship between two shown tables.
struct Edge {
    child: usize,
    parent: usize,
    child_row: Option<usize>,
    parent_row: Option<usize>,
    implied: bool,
    label: String,
    title: String,
    findings: Vec<usize>,
}

struct Diagram<'a> {
    review: &'a SchemaReview,
    nodes: Vec<Node<'a>>,
    edges: Vec<Edge>,
    column_gap: f64,
    layout: layout::Layout,
}

impl<'a> Diagram<'a> {
    fn new(review: &'a SchemaReview) -> Self {
        let schema = &review.schema;
        let shown = tables(review);
        let ids = table_ids(review);
        let index: BTreeMap<String, usize> = shown
            .iter()
            .enumerate()
            .map(|(i, t)| (t.qualified(), i))
            .collect();
        let mut nodes: Vec<Node<'a>> = shown
            .iter()
            .zip(ids)
            .map(|(t, (name, id))| Node {
                name,
                id,
                rows: key_columns(t, &review.relationships)
                    .into_iter()
                    .map(|(name, data_type, marks)| Row {
                        name,
                        data_type,
                        marks: marks.join(", "),
                        findings: Vec::new(),
                    })
                    .collect(),
                findings: Vec::new(),
                table_findings: Vec::new(),
                name_w: 0.0,
                type_w: 0.0,
                size: (0.0, 0.0),
            })
            .collect();

        // Findings onto tables, columns and relationships.
        let described: Vec<String> = review
            .relationships
            .iter()
            .map(|r| r.describe(schema))
            .collect();
        let mut relationship_findings: Vec<Vec<usize>> = vec![Vec::new(); described.len()];
        for (i, f) in review.findings.iter().enumerate() {
            if f.flow != SCHEMA_FLOW {
                continue;
            }
            let Some(v) = nodes.iter().position(|n| n.name == f.step) else {
                continue;
            };
            nodes[v].findings.push(i);
            let about = review.relationships.iter().enumerate().find(|(k, r)| {
                f.fingerprint.as_deref() == Some(described[*k].as_str())
                    && index.get(&r.child) == Some(&v)
            });
            let mut on_a_row = false;
            if let Some((k, r)) = about {
                relationship_findings[k].push(i);
                for row in &mut nodes[v].rows {
                    if r.columns.iter().any(|c| c.eq_ignore_ascii_case(row.name)) {
                        row.findings.push(i);
                        on_a_row = true;
                    }
                }
            }
            if !on_a_row {
                nodes[v].table_findings.push(i);
            }
        }

        let mut edges = Vec::new();
        for (k, r) in review.relationships.iter().enumerate() {
            let (Some(&child), Some(&parent)) = (index.get(&r.child), index.get(&r.parent)) else {
                continue;
            };
            let row = |v: usize, column: Option<&String>| {
                column.and_then(|c| {
                    nodes[v]
                        .rows
                        .iter()
                        .position(|row| row.name.eq_ignore_ascii_case(c))
                })
            };
            let implied = r.origin != Origin::Declared;
            let mut label = r.columns.join(", ");
            let mut title = described[k].clone();
            if implied {
                label.push_str(" (implied)");
                title.push_str(match r.origin {
                    Origin::Trace => " (implied by a trace's joins)",
                    _ => " (implied by its name)",
                });
            }
            edges.push(Edge {
                child,
                parent,
                child_row: row(child, r.columns.first()),
                parent_row: row(parent, r.parent_columns.first()),
                implied,
                label,
                title,
                findings: relationship_findings[k].clone(),
            });
        }

        for node in &mut nodes {
            node.measure();
        }
        let widest_label = edges
            .iter()
            .map(|e| width(&e.label, LABEL_CHAR_W))
            .fold(0.0, f64::max);
        let column_gap = (widest_label + 36.0).clamp(96.0, 240.0);
        let sizes: Vec<(f64, f64)> = nodes.iter().map(|n| n.size).collect();
        let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.parent, e.child)).collect();
        let layout = layout::layout(&sizes, &pairs, column_gap);
        Diagram {
            review,
            nodes,
            edges,
            column_gap,
            layout,
        }
    }

    fn svg(&self) -> String {
        let boxes = &self.layout.boxes;
        let mut labels_right = self.layout.width;
        let mut body = String::new();
        body.push_str("<g class=\"er-edges\">\n");
        for e in &self.edges {
            labels_right = labels_right.max(self.edge(&mut body, e));
        }
        body.push_str("</g>\n");
        if let Some(top) = self.layout.unrelated_top.filter(|_| !self.edges.is_empty()) {
            let _ = writeln!(
                body,
                "<text class=\"er-caption\" x=\"{}\" y=\"{}\" fill=\"{GREY}\">Tables with no \
                 relationship</text>",
                num(MARGIN),
                num(top - 14.0)
            );
        }
        body.push_str("<g class=\"er-tables\">\n");
        for (node, rect) in self.nodes.iter().zip(boxes) {
            self.table(&mut body, node, rect);
        }
        body.push_str("</g>\n");
        if self.nodes.is_empty() {
            let _ = writeln!(
                body,
                "<text x=\"{}\" y=\"{}\" fill=\"{GREY}\">No tables</text>",
                num(MARGIN),
                num(MARGIN)
            );
        }

        let width = labels_right.max(200.0).ceil();
        let height = self.layout.height.ceil();
        let implied = self.edges.iter().filter(|e| e.implied).count();
        let label = format!(
            "Entity-relationship diagram: {} {}, {} {} ({implied} implied), {} {}",
            self.nodes.len(),
            plural(self.nodes.len(), "table", "tables"),
            self.edges.len(),
            plural(self.edges.len(), "relationship", "relationships"),
            self.review.findings.len(),
            plural(self.review.findings.len(), "finding", "findings"),
        );
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"er-diagram\" viewBox=\"0 0 {w} \
             {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{label}\" \
             font-family=\"{FONT}\" font-size=\"12\" fill=\"{INK}\">",
            w = num(width),
            h = num(height),
            label = esc(&label),
        );
        let _ = writeln!(out, "<title>{}</title>", esc(&label));
        // Marker ids have `_` after `er`, table ids `-`: a table named
        // `arrow` cannot take a marker's id.
        out.push_str("<defs>\n");
        for (id, colour) in [("er_arrow", BLUE), ("er_arrow_implied", ORANGE)] {
            // The parent end: an arrowhead into the parent's column.
            let _ = writeln!(
                out,
                "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
                 markerWidth=\"8\" markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" \
                 orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{colour}\"/></marker>"
            );
        }
        for (id, colour) in [("er_many", BLUE), ("er_many_implied", ORANGE)] {
            // The child end: a crow's foot (many child rows to one parent).
            let _ = writeln!(
                out,
                "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"0\" refY=\"5\" \
                 markerWidth=\"10\" markerHeight=\"10\" markerUnits=\"userSpaceOnUse\" \
                 orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 M0,5 L10,5\" fill=\"none\" \
                 stroke=\"{colour}\" stroke-width=\"1.2\"/></marker>"
            );
        }
        out.push_str("</defs>\n");
        out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"#FFFFFF\"/>\n");
        out.push_str(&body);
        out.push_str("</svg>\n");
        out
    }

    /// Writes one relationship; returns how far right its drawing reaches.
    fn edge(&self, out: &mut String, e: &Edge) -> f64 {
        let boxes = &self.layout.boxes;
        let (c, p) = (&boxes[e.child], &boxes[e.parent]);
        let yc = row_y(c, e.child_row);
        let yp = row_y(p, e.parent_row);
        let (path, label_x, label_y, anchor, room) = if e.child == e.parent {
            // A loop out of the right side and back.
            let (y1, y2) = if (yc - yp).abs() < 8.0 {
                (yc + 5.0, yp - 5.0)
            } else {
                (yc, yp)
            };
            let r = c.right();
            (
                format!(
                    "M{} {} C{} {} {} {} {} {}",
                    num(r),
                    num(y1),
                    num(r + LOOP),
                    num(y1),
                    num(r + LOOP),
                    num(y2),
                    num(r),
                    num(y2)
                ),
                r + LOOP + 4.0,
                (y1 + y2) / 2.0 + 3.0,
                "start",
                self.column_gap - LOOP - 12.0,
            )
        } else {
            let (sx, ex, toward) = if c.x > p.x {
                (c.x, p.right(), -1.0)
            } else {
                (c.right(), p.x, 1.0)
            };
            let dx = ((ex - sx).abs() / 2.0).max(30.0) * toward;
            let path = format!(
                "M{} {} C{} {} {} {} {} {}",
                num(sx),
                num(yc),
                num(sx + dx),
                num(yc),
                num(ex - dx),
                num(yp),
                num(ex),
                num(yp)
            );
            let (label_x, anchor) = if toward < 0.0 {
                (sx - 12.0, "end")
            } else {
                (sx + 12.0, "start")
            };
            (path, label_x, yc - 4.0, anchor, self.column_gap - 24.0)
        };
        let label = fit(&e.label, room, LABEL_CHAR_W);
        let (colour, dashes, suffix) = if e.implied {
            (ORANGE, " stroke-dasharray=\"6 4\"", "_implied")
        } else {
            (BLUE, "", "")
        };
        let _ = writeln!(
            out,
            "<g class=\"er-edge{}\" data-child=\"{}\" data-parent=\"{}\"{}><title>{}</title>\
             <path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{dashes} \
             marker-start=\"url(#er_many{suffix})\" marker-end=\"url(#er_arrow{suffix})\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"10\" fill=\"{INK}\" \
             stroke=\"#FFFFFF\" stroke-width=\"3\" paint-order=\"stroke\">{}</text></g>",
            if e.implied { " implied" } else { "" },
            esc(&self.nodes[e.child].id),
            esc(&self.nodes[e.parent].id),
            findings_attr(&e.findings),
            esc(&e.title),
            num(label_x),
            num(label_y),
            esc(&label),
        );
        if anchor == "start" {
            label_x + width(&label, LABEL_CHAR_W) + 8.0
        } else {
            label_x
        }
    }

    fn table(&self, out: &mut String, node: &Node<'_>, b: &Rect) {
        let findings = &self.review.findings;
        let worst = node.findings.iter().map(|&i| findings[i].severity).max();
        let (stroke, stroke_w) = match worst {
            Some(s) => (severity_colour(s), "2"),
            None => (LINE, "1"),
        };
        let _ = writeln!(
            out,
            "<g class=\"er-table\" id=\"{}\" data-table=\"{}\"{}>",
            esc(&node.id),
            esc(&node.name),
            findings_attr(&node.findings)
        );
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"4\" fill=\"#FFFFFF\"/>\
             <path d=\"M{x} {hy} V{top} Q{x} {y} {xr} {y} H{xl} Q{r} {y} {r} {top} V{hy} Z\" \
             fill=\"{HEADER_FILL}\"/>",
            x = num(b.x),
            y = num(b.y),
            w = num(b.w),
            h = num(b.h),
            hy = num(b.y + HEADER_H),
            top = num(b.y + 4.0),
            xr = num(b.x + 4.0),
            xl = num(b.right() - 4.0),
            r = num(b.right()),
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>",
            num(b.x + PAD),
            num(b.y + HEADER_H / 2.0 + 4.0),
            esc(&node.name)
        );
        if !node.table_findings.is_empty() {
            self.badge(out, &node.table_findings, b.right(), b.y + HEADER_H / 2.0);
        }
        if !node.rows.is_empty() {
            let _ = writeln!(
                out,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{LINE}\"/>",
                num(b.x),
                num(b.right()),
                y = num(b.y + HEADER_H)
            );
        }
        let marks_x = b.right()
            - PAD
            - if node.findings.is_empty() {
                0.0
            } else {
                BADGE_W
            };
        for (k, row) in node.rows.iter().enumerate() {
            let y = row_y(b, Some(k));
            let _ = write!(
                out,
                "<g class=\"er-column\" data-column=\"{}\"{}><text x=\"{}\" y=\"{}\">{}</text>\
                 <text x=\"{}\" y=\"{}\" fill=\"{GREY}\" font-style=\"italic\">{}</text>",
                esc(row.name),
                findings_attr(&row.findings),
                num(b.x + PAD),
                num(y + 4.0),
                esc(row.name),
                num(b.x + PAD + node.name_w + 12.0),
                num(y + 4.0),
                esc(row.data_type),
            );
            if !row.marks.is_empty() {
                let _ = write!(
                    out,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-weight=\"bold\" \
                     fill=\"{GREY}\">{}</text>",
                    num(marks_x),
                    num(y + 4.0),
                    esc(&row.marks)
                );
            }
            if !row.findings.is_empty() {
                out.push('\n');
                self.badge(out, &row.findings, b.right(), y);
            }
            out.push_str("</g>\n");
        }
        let _ = writeln!(
            out,
            "<rect class=\"er-box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" \
             fill=\"none\" stroke=\"{stroke}\" stroke-width=\"{stroke_w}\"/>",
            num(b.x),
            num(b.y),
            num(b.w),
            num(b.h),
        );
        out.push_str("</g>\n");
    }

    /// A badge at the right end (`right`) of a header or row centred on `y`:
    /// the worst severity's symbol, the findings' messages as its title.
    fn badge(&self, out: &mut String, indices: &[usize], right: f64, y: f64) {
        let findings = &self.review.findings;
        let Some(worst) = indices.iter().map(|&i| findings[i].severity).max() else {
            return;
        };
        let (symbol, ink) = match worst {
            Severity::Error => ("!", "#FFFFFF"),
            Severity::Warning => ("▲", INK),
            Severity::Info => ("i", INK),
        };
        let title: Vec<String> = indices
            .iter()
            .map(|&i| {
                let f = &findings[i];
                format!("{} {}: {}", f.severity.as_str(), f.rule, f.message)
            })
            .collect();
        let cx = right - PAD - BADGE_W / 2.0 + 2.0;
        let _ = writeln!(
            out,
            "<g class=\"er-finding {}\"{}><title>{}</title><circle cx=\"{}\" cy=\"{}\" r=\"7\" \
             fill=\"{}\" stroke=\"{INK}\" stroke-width=\"0.5\"/><text x=\"{}\" y=\"{}\" \
             text-anchor=\"middle\" font-size=\"{}\" font-weight=\"bold\" fill=\"{ink}\">{symbol}\
             </text></g>",
            worst.as_str(),
            findings_attr(indices),
            esc(&title.join("\n")),
            num(cx),
            num(y),
            severity_colour(worst),
            num(cx),
            num(if worst == Severity::Warning {
                y + 3.0
            } else {
                y + 3.5
            }),
            if worst == Severity::Warning { 9 } else { 10 },
        );
    }
}

impl Node<'_> {
    /// Sizes the box from its text.
    fn measure(&mut self) {
        let badge = if self.findings.is_empty() {
            0.0
        } else {
            BADGE_W
        };
        self.name_w = self
            .rows
            .iter()
            .map(|r| width(r.name, CHAR_W))
            .fold(0.0, f64::max);
        self.type_w = self
            .rows
            .iter()
            .map(|r| width(r.data_type, CHAR_W))
            .fold(0.0, f64::max);
        let marks_w = self
            .rows
            .iter()
            .map(|r| width(&r.marks, CHAR_W))
            .fold(0.0, f64::max);
        let rows_w = if self.rows.is_empty() {
            0.0
        } else {
            PAD + self.name_w + 12.0 + self.type_w + 12.0 + marks_w + badge + PAD
        };
        let header_w = PAD + width(&self.name, CHAR_W) + 6.0 + badge + PAD;
        let w = rows_w.max(header_w).max(MIN_BOX_W).ceil();
        let h = if self.rows.is_empty() {
            HEADER_H
        } else {
            HEADER_H + self.rows.len() as f64 * ROW_H + FOOT_H
        };
        self.size = (w, h);
    }
}

/// The middle of a box's row `k`, or of its header.
fn row_y(b: &Rect, row: Option<usize>) -> f64 {
    match row {
        Some(k) => b.y + HEADER_H + 3.0 + k as f64 * ROW_H + ROW_H / 2.0,
        None => b.y + HEADER_H / 2.0,
    }
}

fn severity_colour(s: Severity) -> &'static str {
    match s {
        Severity::Error => VERMILLION,
        Severity::Warning => ORANGE,
        Severity::Info => SKY,
    }
}

/// ` data-findings="0 3"`, or nothing.
fn findings_attr(indices: &[usize]) -> String {
    if indices.is_empty() {
        return String::new();
    }
    let list: Vec<String> = indices.iter().map(usize::to_string).collect();
    format!(" data-findings=\"{}\"", list.join(" "))
}

/// A table name as an id: lowercase ASCII letters, digits and `_`, each run
/// of anything else one `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "table".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The estimated width of `text` at `per_char` pixels a character, wide
/// (East Asian, emoji) characters counting two.
fn width(text: &str, per_char: f64) -> f64 {
    text.chars()
        .map(|c| if wide(c) { 2.0 } else { 1.0 })
        .sum::<f64>()
        * per_char
}

fn wide(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1FAFF
        | 0x20000..=0x3FFFD)
}

/// `text` cut with "…" to fit `room` pixels.
fn fit(text: &str, room: f64, per_char: f64) -> String {
    if width(text, per_char) <= room {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = per_char; // the ellipsis
    for c in text.chars() {
        let w = if wide(c) { 2.0 } else { 1.0 } * per_char;
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// A coordinate to one decimal, without a trailing `.0`.
fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Finding;
    use crate::schema::lint::testing::{fk, schema, table};
    use crate::schema::model::Table;
    use crate::schema::relations::relationships;
    use proptest::prelude::*;

    fn review(tables: Vec<Table>, findings: Vec<Finding>) -> SchemaReview {
        let schema = schema(tables);
        SchemaReview {
            database: "postgres://db".into(),
            reviewed: schema.tables.iter().map(Table::qualified).collect(),
            relationships: relationships(&schema, &[]),
            schema,
            findings,
            allowed: vec![],
            notes: vec![],
        }
    }

    fn finding(severity: Severity, flow: &str, step: &str, subject: &str) -> Finding {
        Finding {
            rule: "some-rule",
            severity,
            flow: flow.into(),
            step: step.into(),
            message: format!("about {subject}"),
            fingerprint: Some(subject.into()),
            fingerprint_hash: None,
            count: 1,
            examples: vec![],
            help: String::new(),
            location: None,
            driver: None,
        }
    }

    /// customers ← orders ← order_items ⇠ products (implied by its name), and
    /// audit_log related to nothing.
    fn shop(findings: Vec<Finding>) -> SchemaReview {
        let mut orders = table("orders", &["id", "customer_id bigint"], &["id"]);
        orders
            .foreign_keys
            .push(fk(&["customer_id"], "customers", &["id"]));
        let mut items = table("order_items", &["id", "order_id", "product_id"], &["id"]);
        items
            .foreign_keys
            .push(fk(&["order_id"], "orders", &["id"]));
        review(
            vec![
                table("audit_log", &["at text", "what text"], &[]),
                table("customers", &["id", "email text"], &["id"]),
                items,
                orders,
                table("products", &["id"], &["id"]),
            ],
            findings,
        )
    }

    /// The value of `name="…"` in the opening tag `tag`.
    fn attr<'s>(tag: &'s str, name: &str) -> Option<&'s str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let len = tag[start..].find('"')?;
        Some(&tag[start..start + len])
    }

    /// The opening tags that carry `needle`.
    fn tags<'s>(svg: &'s str, needle: &str) -> Vec<&'s str> {
        svg.match_indices(needle)
            .map(|(at, _)| {
                let open = svg[..at].rfind('<').expect("inside a tag");
                let close = at + svg[at..].find('>').expect("tag closes");
                &svg[open..=close]
            })
            .collect()
    }

    /// How many relationships are drawn.
    fn edges(svg: &str) -> usize {
        tags(svg, "class=\"er-edge\"").len() + tags(svg, "class=\"er-edge implied\"").len()
    }

    fn boxes(svg: &str) -> Vec<Rect> {
        tags(svg, "class=\"er-box\"")
            .iter()
            .map(|t| {
                let n = |a| {
                    attr(t, a)
                        .expect("attribute")
                        .parse::<f64>()
                        .expect("number")
                };
                Rect {
                    x: n("x"),
                    y: n("y"),
                    w: n("width"),
                    h: n("height"),
                }
            })
            .collect()
    }

    /// Tags balanced, every `&` an entity, and no boxes overlapping or
    /// outside the viewBox; returns the boxes.
    fn assert_sound(svg: &str) -> Vec<Rect> {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(at) = rest.find('<') {
            let end = rest[at..].find('>').expect("tag closes") + at;
            let tag = &rest[at + 1..end];
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap_or_default();
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(closing), "unbalanced </{closing}>");
            } else if !tag.ends_with('/') {
                open.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed {open:?}");
        for (at, _) in svg.match_indices('&') {
            let entity = &svg[at..svg[at..].find(';').map_or(svg.len(), |e| at + e + 1)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
                "raw & at {at}: {entity}"
            );
        }
        assert!(!svg.contains("href"), "nothing linked");
        let svg_tag = tags(svg, "viewBox=")[0];
        let view: Vec<f64> = attr(svg_tag, "viewBox")
            .expect("viewBox")
            .split(' ')
            .map(|v| v.parse().expect("number"))
            .collect();
        let b = boxes(svg);
        for (i, r) in b.iter().enumerate() {
            assert!(
                r.x >= view[0] && r.y >= view[1] && r.right() <= view[2] && r.bottom() <= view[3],
                "box {r:?} outside {view:?}"
            );
            for s in &b[i + 1..] {
                assert!(!r.overlaps(s), "{r:?} overlaps {s:?}");
            }
        }
        b
    }

    #[test]
    fn every_table_has_a_box_and_none_overlap() {
        let svg = render(&shop(vec![]));
        assert_eq!(assert_sound(&svg).len(), 5);
        for id in [
            "er-audit_log",
            "er-customers",
            "er-order_items",
            "er-orders",
            "er-products",
        ] {
            assert_eq!(tags(&svg, &format!("id=\"{id}\"")).len(), 1, "{id}");
        }
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(
            "role=\"img\" aria-label=\"Entity-relationship diagram: 5 tables, 3 relationships \
             (1 implied), 0 findings\""
        ));
        // Key columns with their types and marks; email is no key.
        assert!(svg.contains(">customer_id</text>"));
        assert!(svg.contains(">bigint</text>"));
        assert!(svg.contains(">PK</text>") && svg.contains(">FK</text>"));
        assert!(!svg.contains(">email</text>"));
        // audit_log is related to nothing: below the others, with a caption.
        let b = boxes(&svg);
        assert!(b[1..].iter().all(|r| r.bottom() < b[0].y));
        assert!(svg.contains("Tables with no relationship"));
    }

    #[test]
    fn parents_are_left_of_children() {
        let b = boxes(&render(&shop(vec![])));
        let (customers, items, orders, products) = (b[1], b[2], b[3], b[4]);
        assert!(customers.x < orders.x && orders.x < items.x);
        assert!(products.x < items.x);
    }

    #[test]
    fn every_relationship_is_drawn_implied_ones_dashed() {
        let svg = render(&shop(vec![]));
        let declared = tags(&svg, "class=\"er-edge\"");
        let implied = tags(&svg, "class=\"er-edge implied\"");
        assert_eq!(declared.len(), 2);
        assert_eq!(implied.len(), 1);
        assert_eq!(attr(implied[0], "data-child"), Some("er-order_items"));
        assert_eq!(attr(implied[0], "data-parent"), Some("er-products"));
        let pairs: Vec<(&str, &str)> = declared
            .iter()
            .map(|t| {
                (
                    attr(t, "data-child").unwrap_or_default(),
                    attr(t, "data-parent").unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("er-order_items", "er-orders"),
                ("er-orders", "er-customers")
            ]
        );
        let dashed = tags(&svg, "stroke-dasharray");
        assert_eq!(dashed.len(), 1);
        assert_eq!(
            attr(dashed[0], "marker-end"),
            Some("url(#er_arrow_implied)")
        );
        assert!(svg.contains(">product_id (implied)</text>"));
        assert!(svg.contains(
            "<title>order_items(product_id) → products(id) (implied by its name)</title>"
        ));
        // Markers are defined once each.
        for id in ["er_arrow", "er_arrow_implied", "er_many", "er_many_implied"] {
            assert_eq!(svg.matches(&format!("<marker id=\"{id}\"")).count(), 1);
        }
    }

    #[test]
    fn self_references_and_cycles_are_drawn() {
        let mut employees = table("employees", &["id", "manager_id"], &["id"]);
        employees
            .foreign_keys
            .push(fk(&["manager_id"], "employees", &["id"]));
        let mut a = table("a", &["id", "b_ref"], &["id"]);
        a.foreign_keys.push(fk(&["b_ref"], "b", &["id"]));
        let mut b = table("b", &["id", "a_ref"], &["id"]);
        b.foreign_keys.push(fk(&["a_ref"], "a", &["id"]));
        let svg = render(&review(vec![a, b, employees], vec![]));
        let rects = assert_sound(&svg);
        assert_eq!(rects.len(), 3);
        assert_ne!(rects[0].x, rects[1].x, "a cycle's tables in two columns");
        let edges = tags(&svg, "class=\"er-edge\"");
        assert_eq!(edges.len(), 3);
        assert!(
            edges
                .iter()
                .any(|t| attr(t, "data-child") == Some("er-employees")
                    && attr(t, "data-parent") == Some("er-employees"))
        );
        // The loop leaves and enters the box's right side.
        let right = num(rects[2].right());
        assert!(svg.contains(&format!("<path d=\"M{right} ")));
    }

    #[test]
    fn names_are_escaped() {
        let mut odd = table("a<b&\"c", &["we<ird&'x"], &["we<ird&'x"]);
        odd.columns[0].data_type = "int<8>".into();
        let svg = render(&review(
            vec![odd],
            vec![finding(Severity::Error, "schema", "a<b&\"c", "a<b&\"c")],
        ));
        assert_sound(&svg);
        assert!(svg.contains(">a&lt;b&amp;&quot;c</text>"));
        assert!(svg.contains("data-table=\"a&lt;b&amp;&quot;c\""));
        assert!(svg.contains(">we&lt;ird&amp;&#39;x</text>"));
        assert!(svg.contains(">int&lt;8&gt;</text>"));
        assert!(svg.contains("id=\"er-a-b-c\""));
        assert!(svg.contains("about a&lt;b&amp;&quot;c"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn findings_mark_their_tables_columns_and_edges() {
        let about_orders = "orders(customer_id) → customers(id)";
        let svg = render(&shop(vec![
            finding(Severity::Warning, "schema", "audit_log", "audit_log"),
            finding(Severity::Error, "schema", "orders", about_orders),
            finding(Severity::Warning, "schema", "orders", about_orders),
            finding(Severity::Info, "schema", "products", "products"),
            // Another flow's finding on a step named like a table: not the schema's.
            finding(Severity::Error, "checkout", "orders", about_orders),
        ]));
        assert_sound(&svg);
        let orders = tags(&svg, "id=\"er-orders\"")[0];
        assert_eq!(attr(orders, "data-findings"), Some("1 2"));
        let column = tags(&svg, "data-column=\"customer_id\"");
        assert_eq!(column.len(), 1);
        assert_eq!(attr(column[0], "data-findings"), Some("1 2"));
        let edge = tags(&svg, "data-child=\"er-orders\"")[0];
        assert_eq!(attr(edge, "data-findings"), Some("1 2"));

        let badges = tags(&svg, "class=\"er-finding ");
        let marked: Vec<(&str, &str)> = badges
            .iter()
            .map(|t| {
                (
                    attr(t, "class").unwrap_or_default(),
                    attr(t, "data-findings").unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            marked,
            [
                ("er-finding warning", "0"),
                ("er-finding error", "1 2"),
                ("er-finding info", "3")
            ]
        );
        // Symbols, not colour alone; the messages as a title.
        for (class, symbol) in [("warning", "▲"), ("error", "!"), ("info", "i")] {
            let at = svg
                .find(&format!("class=\"er-finding {class}\""))
                .expect("badge");
            let badge = &svg[at..at + svg[at..].find("</g>").expect("closes")];
            assert!(badge.contains(&format!(">{symbol}</text>")), "{badge}");
        }
        assert!(svg.contains(&format!(
            "<title>error some-rule: about {about_orders}\nwarning some-rule: about {about_orders}</title>"
        )));
        // The other flow's finding, index 4, marks nothing.
        assert!(tags(&svg, "data-findings=").iter().all(|t| {
            !attr(t, "data-findings")
                .unwrap_or_default()
                .split(' ')
                .any(|i| i == "4")
        }));
        // Unmarked tables carry no list.
        assert_eq!(
            attr(tags(&svg, "id=\"er-customers\"")[0], "data-findings"),
            None
        );
    }

    #[test]
    fn output_is_deterministic() {
        let a = render(&shop(vec![finding(
            Severity::Info,
            "schema",
            "orders",
            "orders",
        )]));
        let b = render(&shop(vec![finding(
            Severity::Info,
            "schema",
            "orders",
            "orders",
        )]));
        assert_eq!(a, b);
    }

    #[test]
    fn an_empty_review_is_still_an_svg() {
        let svg = render(&review(vec![], vec![]));
        assert_sound(&svg);
        assert!(svg.contains("No tables"));
    }

    #[test]
    fn ids_are_unique() {
        let r = review(
            vec![
                table("a-b", &["id"], &["id"]),
                table("a.b", &["id"], &["id"]),
            ],
            vec![],
        );
        assert_eq!(
            table_ids(&r),
            [
                ("a-b".to_owned(), "er-a-b".to_owned()),
                ("a.b".to_owned(), "er-a-b-2".to_owned())
            ]
        );
    }

    #[test]
    fn tables_named_like_markers_keep_their_own_ids() {
        let mut many = table("many", &["id", "arrow_id"], &["id"]);
        many.foreign_keys.push(fk(&["arrow_id"], "arrow", &["id"]));
        let svg = render(&review(
            vec![table("arrow", &["id"], &["id"]), many],
            vec![],
        ));
        let ids: Vec<&str> = tags(&svg, " id=\"")
            .iter()
            .filter_map(|t| attr(t, "id"))
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "{ids:?}");
        assert!(svg.contains("marker-end=\"url(#er_arrow)\""));
    }

    #[test]
    fn labels_are_cut_to_fit_their_gap() {
        assert_eq!(fit("customer_id", 100.0, 6.0), "customer_id");
        assert_eq!(fit("customer_id", 30.0, 6.0), "cust…");
        assert_eq!(num(12.04), "12");
        assert_eq!(num(-0.25), "-0.3");
        assert_eq!(slug("Public.Order Items"), "public-order-items");
    }

    /// Tables `t000…` whose `tNNN_id` columns refer to others: declared
    /// when `declared`, else implied by the name.
    fn generated(n: usize, links: &[(usize, usize, bool)]) -> SchemaReview {
        let mut tables: Vec<Table> = (0..n)
            .map(|i| table(&format!("t{i:03}"), &["id", "note text"], &["id"]))
            .collect();
        for &(child, parent, declared) in links {
            let (child, parent) = (child % n, parent % n);
            let column = format!("t{parent:03}_id");
            let t = &mut tables[child];
            if t.column(&column).is_some() {
                continue;
            }
            t.columns.push(crate::schema::model::Column {
                name: column.clone(),
                data_type: "integer".into(),
                nullable: true,
            });
            if declared {
                t.foreign_keys
                    .push(fk(&[&column], &format!("t{parent:03}"), &["id"]));
            }
        }
        review(tables, vec![])
    }

    #[test]
    fn two_hundred_tables_lay_out_without_overlap() {
        let mut seed = 18u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % m) as usize
        };
        let links: Vec<(usize, usize, bool)> = (0..300)
            .map(|_| (next(180), next(180), next(3) > 0))
            .collect();
        let r = generated(200, &links);
        let svg = render(&r);
        assert_eq!(assert_sound(&svg).len(), 200);
        assert_eq!(edges(&svg), r.relationships.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_schemas_draw_every_table_and_relationship(
            n in 1usize..60,
            links in proptest::collection::vec((0usize..60, 0usize..60, any::<bool>()), 0..120),
        ) {
            let r = generated(n, &links);
            let svg = render(&r);
            prop_assert_eq!(assert_sound(&svg).len(), n);
            prop_assert_eq!(edges(&svg), r.relationships.len());
            prop_assert_eq!(
                tags(&svg, "class=\"er-edge implied\"").len(),
                r.relationships.iter().filter(|x| x.origin != Origin::Declared).count()
            );
        }
    }
}
