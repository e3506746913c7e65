//! A step's timeline as inline SVG: every statement a bar on a time axis,
//! one lane per connection, with its transactions as bands behind. A step
//! with too many statements gets one lane per fingerprint with its count
//! instead. A statement carries the numbers of the findings about it
//! (`data-f`), and an N+1's source query carries `data-src`. The page's
//! script highlights them when a finding is clicked.
//!
//! Without the script each bar still tells its SQL, bind values, rows and
//! duration on hover, through its SVG `<title>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::esc;
use crate::model::Finding;
use crate::report::duration;
use crate::report::timeline::{Bar, StepTimeline};

/// Drawing units: the SVG's width, the label column, a lane's height and
/// the axis above the lanes.
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 92.0;
const RIGHT: f64 = 990.0;
const LANE: f64 = 26.0;
const AXIS: f64 = 24.0;

/// Transaction control: a finding's example that names only `BEGIN` does
/// not pick one statement out of many; its transaction's band does.
const CONTROL: [&str; 6] = [
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "START TRANSACTION",
    "END",
    "ABORT",
];

/// Writes the step's timeline figure, with `findings` (their numbers in the
/// report, and themselves) linked to the statements they are about; returns
/// the numbers of the findings that mark something in it.
pub fn figure(
    body: &mut String,
    t: &StepTimeline,
    findings: &[(usize, &Finding)],
    step_no: usize,
) -> BTreeSet<usize> {
    let _ = writeln!(
        body,
        "<figure class=\"timeline\" id=\"timeline-{step_no}\">"
    );
    let marked = if t.summarised {
        lanes(body, t, findings)
    } else {
        statements(body, t, findings)
    };
    let caption = if t.summarised {
        format!(
            "{} statements, more than one report draws one by one: a lane per fingerprint \
             with its count, from its first run to the end of its last.",
            crate::rules::thousands(t.statements)
        )
    } else {
        let conns: BTreeSet<u64> = t.bars.iter().map(|b| b.conn).collect();
        format!(
            "{} on {} {}{}. Bands behind the statements are explicit transactions.",
            match t.bars.len() {
                1 => "1 statement".to_owned(),
                n => format!("{} statements", crate::rules::thousands(n as u64)),
            },
            conns.len(),
            if conns.len() == 1 {
                "connection"
            } else {
                "connections"
            },
            if t.clocked {
                format!(" over {}", duration(t.span_us))
            } else {
                ", in the order they ran (the source gave no times)".to_owned()
            }
        )
    };
    let _ = writeln!(body, "<figcaption>{}</figcaption>", esc(&caption));
    body.push_str("</figure>\n");
    marked
}

/// How to read the timelines, shown once above them.
pub const LEGEND: &str = "<ul class=\"legend\" aria-label=\"Legend\">\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"st\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> statement</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"st key-hl\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> a selected finding's statement</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"st key-src\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> the query that drove an N+1</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"st failed\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/><path class=\"x\" d=\"M5 2l8 8M13 2l-8 8\"/></svg> failed</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"band committed\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> transaction committed</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"band rolled-back\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> rolled back</li>\
<li><svg width=\"18\" height=\"12\" aria-hidden=\"true\"><rect class=\"band open\" x=\"1\" y=\"1\" width=\"16\" height=\"10\"/></svg> open at the step's end</li>\
</ul>\n";

/// The SVG's opening, with the hatching that marks rolled-back bands in
/// print and for readers who do not tell the colours apart.
fn open_svg(body: &mut String, height: f64, label: &str) {
    let _ = writeln!(
        body,
        "<svg class=\"tl\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMinYMin meet\">\n\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" \
         class=\"hatch\"/></pattern></defs>",
        esc(label)
    );
}

/// Which findings each bar (and each transaction) is about.
struct Links {
    /// Per bar: the findings about it.
    of: Vec<Vec<usize>>,
    /// Per bar: the N+1 findings it drove.
    drove: Vec<Vec<usize>>,
    /// Per transaction: the findings about one of its statements that name
    /// no fingerprint (the transaction rules).
    txn: BTreeMap<u64, Vec<usize>>,
}

fn links(bars: &[Bar], findings: &[(usize, &Finding)]) -> Links {
    let mut of = vec![Vec::new(); bars.len()];
    let mut drove = vec![Vec::new(); bars.len()];
    let mut txn: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    // Each distinct statement once: a loop's thousand runs are one text
    // each, but the examples are few.
    let mut by_example: std::collections::HashMap<&str, Vec<usize>> =
        std::collections::HashMap::new();
    for (i, b) in bars.iter().enumerate() {
        by_example.entry(b.example.as_str()).or_default().push(i);
    }
    for &(n, f) in findings {
        let mut mine: BTreeSet<usize> = BTreeSet::new();
        if let Some(hash) = &f.fingerprint_hash {
            mine.extend(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| &b.fingerprint == hash)
                    .map(|(i, _)| i),
            );
        }
        // Each place in an example where a statement may stand is looked
        // up: the cost follows the examples, not the step's statements.
        for e in &f.examples {
            for part in statements_in(e) {
                let Some(at) = by_example.get(part) else {
                    continue;
                };
                if !CONTROL.contains(&part.trim_end_matches(';').to_ascii_uppercase().as_str()) {
                    mine.extend(at);
                }
            }
        }
        if f.fingerprint_hash.is_none() {
            for &i in &mine {
                if let Some(id) = bars[i].txn {
                    let list = txn.entry(id).or_default();
                    if !list.contains(&n) {
                        list.push(n);
                    }
                }
            }
        }
        for i in mine {
            of[i].push(n);
        }
        if let Some(driver) = &f.driver {
            for (i, b) in bars.iter().enumerate() {
                if &b.fingerprint == driver {
                    drove[i].push(n);
                }
            }
        }
    }
    Links { of, drove, txn }
}

/// The places in a finding's example `text` where a statement (as
/// [`crate::rules::Statement::example`] writes it) may stand: the whole of
/// it, or a piece that the rules' wording puts around it (`[label] `,
/// `read: `, `; `, `  -- failed, then: `), never a prefix of a longer
/// value. A piece starts at the text's start or after a space, `]` or `;`,
/// and ends at its end or before two spaces or a `;`.
fn statements_in(text: &str) -> impl Iterator<Item = &str> {
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, _)| i == 0 || text[..i].ends_with([' ', ']', ';']))
        .map(|(i, _)| i)
        .collect();
    let mut ends: Vec<usize> = text
        .char_indices()
        .filter(|&(i, _)| text[i..].starts_with("  ") || text[i..].starts_with(';'))
        .map(|(i, _)| i)
        .collect();
    ends.push(text.len());
    starts.into_iter().flat_map(move |start| {
        let ends = ends.clone();
        ends.into_iter()
            .filter(move |&end| end > start)
            .map(move |end| &text[start..end])
    })
}

fn attr(name: &str, numbers: &[usize]) -> String {
    if numbers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = numbers.iter().map(usize::to_string).collect();
    format!(" {name}=\"{}\"", list.join(" "))
}

/// Every statement on its connection's lane.
fn statements(
    body: &mut String,
    t: &StepTimeline,
    findings: &[(usize, &Finding)],
) -> BTreeSet<usize> {
    let conns: Vec<u64> = t
        .bars
        .iter()
        .map(|b| b.conn)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lane_of = |conn: u64| conns.binary_search(&conn).unwrap_or(0);
    let height = AXIS + LANE * conns.len() as f64 + 6.0;
    open_svg(
        body,
        height,
        &format!(
            "Timeline of {} statements on {} connections",
            t.bars.len(),
            conns.len()
        ),
    );
    let plot = RIGHT - LABEL;
    let clocked = t.clocked && t.span_us > 0;
    let n = t.bars.len().max(1) as f64;
    let span = t.span_us.max(1) as f64;
    // Where a bar starts and how wide it is: by time when the source gave
    // times, else by its place in the order the statements ran.
    let place = |i: usize, b: &Bar| -> (f64, f64) {
        if clocked {
            let x = LABEL + b.start_us as f64 / span * plot;
            let w = (b.duration_us as f64 / span * plot).max(1.5);
            (x, w.min(RIGHT - x).max(1.0))
        } else {
            let slot = plot / n;
            (LABEL + i as f64 * slot, (slot * 0.8).max(1.0))
        }
    };
    axis(body, t, conns.len());
    for (lane, conn) in conns.iter().enumerate() {
        let y = AXIS + LANE * lane as f64;
        let _ = writeln!(
            body,
            "<text class=\"lane-label\" x=\"4\" y=\"{:.1}\">conn {conn}</text>\
             <line class=\"lane-line\" x1=\"{LABEL}\" x2=\"{RIGHT}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            y + 17.0,
            y + LANE,
            y + LANE
        );
    }
    let links = links(&t.bars, findings);
    // Transactions first, behind their statements.
    for band in &t.bands {
        let lane = lane_of(band.conn);
        let y = AXIS + LANE * lane as f64 + 2.0;
        let (x, x_end) = if clocked {
            (
                LABEL + band.start_us as f64 / span * plot,
                LABEL + band.end_us as f64 / span * plot,
            )
        } else {
            // Its first and last statement's places.
            let mine: Vec<usize> = t
                .bars
                .iter()
                .enumerate()
                .filter(|(_, b)| b.txn == Some(band.txn))
                .map(|(i, _)| i)
                .collect();
            let first = mine.first().map_or(0, |&i| i);
            let last = mine.last().map_or(0, |&i| i);
            let (x, _) = place(first, &t.bars[first]);
            let (lx, lw) = place(last, &t.bars[last]);
            (x, lx + lw)
        };
        let w = (x_end - x).max(3.0);
        let class = match band.outcome {
            crate::report::timeline::Outcome::Committed => "committed",
            crate::report::timeline::Outcome::RolledBack => "rolled-back",
            crate::report::timeline::Outcome::Open => "open",
        };
        let _ = writeln!(
            body,
            "<rect class=\"band {class}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\"{}>\
             <title>{}</title></rect>",
            x - 1.0,
            LANE - 4.0,
            attr("data-f", links.txn.get(&band.txn).map_or(&[][..], |v| v)),
            esc(&format!(
                "transaction {}: {} statement{}, {}",
                band.outcome.as_str(),
                band.statements,
                if band.statements == 1 { "" } else { "s" },
                duration(band.end_us - band.start_us)
            ))
        );
    }
    for (i, b) in t.bars.iter().enumerate() {
        let lane = lane_of(b.conn);
        let y = AXIS + LANE * lane as f64 + 8.0;
        let (x, w) = place(i, b);
        let mut class = String::from("st");
        if b.error.is_some() {
            class.push_str(" failed");
        }
        let mut tip = b.example.clone();
        let mut facts = Vec::new();
        if let Some(r) = b.rows {
            facts.push(format!("{r} row{}", if r == 1 { "" } else { "s" }));
        }
        if b.timed {
            facts.push(duration(b.duration_us));
        }
        facts.push(format!("conn {}", b.conn));
        facts.push(format!("statement {}", b.seq + 1));
        let _ = write!(tip, "\n{}", facts.join(" · "));
        if let Some(e) = &b.error {
            let _ = write!(tip, "\nfailed: {e}");
        }
        let _ = writeln!(
            body,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"14\" \
             data-i=\"{i}\"{}{}><title>{}</title></rect>",
            attr("data-f", &links.of[i]),
            attr("data-src", &links.drove[i]),
            esc(&tip)
        );
        if b.error.is_some() {
            let (cx, cy) = (x + w / 2.0, y + 7.0);
            let _ = writeln!(
                body,
                "<path class=\"x\" d=\"M{:.1} {:.1}l8 8M{:.1} {:.1}l-8 8\"/>",
                cx - 4.0,
                cy - 4.0,
                cx + 4.0,
                cy - 4.0
            );
        }
    }
    loops(body, t, findings, &lane_of, &place);
    links
        .of
        .iter()
        .chain(&links.drove)
        .chain(links.txn.values())
        .flatten()
        .copied()
        .collect()
}

/// An N+1's loop drawn against its source: a line from the query that drove
/// it to a bracket over the loop's runs.
fn loops(
    body: &mut String,
    t: &StepTimeline,
    findings: &[(usize, &Finding)],
    lane_of: &dyn Fn(u64) -> usize,
    place: &dyn Fn(usize, &Bar) -> (f64, f64),
) {
    for &(n, f) in findings {
        let (Some(hash), Some(driver)) = (&f.fingerprint_hash, &f.driver) else {
            continue;
        };
        let runs: Vec<usize> = (0..t.bars.len())
            .filter(|&i| &t.bars[i].fingerprint == hash)
            .collect();
        let (Some(&first), Some(&last)) = (runs.first(), runs.last()) else {
            continue;
        };
        let Some(source) = (0..t.bars.len())
            .rfind(|&i| &t.bars[i].fingerprint == driver && t.bars[i].seq < t.bars[first].seq)
        else {
            continue;
        };
        let (sx, sw) = place(source, &t.bars[source]);
        let (fx, _) = place(first, &t.bars[first]);
        let (lx, lw) = place(last, &t.bars[last]);
        let source_y = AXIS + LANE * lane_of(t.bars[source].conn) as f64 + 8.0;
        let loop_y = AXIS + LANE * lane_of(t.bars[first].conn) as f64 + 4.0;
        let _ = writeln!(
            body,
            "<g class=\"loop\" data-f=\"{n}\"><path d=\"M{:.1} {source_y:.1}V{loop_y:.1}H{:.1}\
             M{fx:.1} {:.1}V{loop_y:.1}H{:.1}V{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">N+1 ×{}</text></g>",
            sx + sw / 2.0,
            fx,
            loop_y + 3.0,
            lx + lw,
            loop_y + 3.0,
            (lx + lw + 3.0).min(RIGHT - 50.0),
            loop_y + 3.0,
            crate::rules::thousands(runs.len() as u64)
        );
    }
}

/// The time axis above the lanes: a few round ticks.
fn axis(body: &mut String, t: &StepTimeline, lanes: usize) {
    let bottom = AXIS + LANE * lanes as f64;
    let _ = writeln!(
        body,
        "<line class=\"axis\" x1=\"{LABEL}\" x2=\"{RIGHT}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        AXIS - 2.0,
        AXIS - 2.0
    );
    if !t.clocked || t.span_us == 0 {
        let _ = writeln!(
            body,
            "<text class=\"tick\" x=\"{LABEL}\" y=\"14\">{}</text>",
            if t.summarised {
                "runs of each fingerprint, against the most run →"
            } else {
                "statements in the order they ran →"
            }
        );
        return;
    }
    let span = t.span_us.max(1);
    let step = tick_step(span);
    let plot = RIGHT - LABEL;
    let mut at = 0;
    while at <= span {
        let x = LABEL + at as f64 / span as f64 * plot;
        // The last label ends at the plot's edge rather than past it.
        let anchor = if x > RIGHT - 40.0 { "end" } else { "start" };
        let _ = writeln!(
            body,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{bottom:.1}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"14\" text-anchor=\"{anchor}\">{}</text>",
            AXIS - 6.0,
            tick_label(at, step)
        );
        at += step;
    }
}

/// A tick's time, with as many decimals as the interval between ticks needs
/// (`0.1 ms` twice would say nothing).
fn tick_label(at: u64, step: u64) -> String {
    let decimals = |unit: u64| match step % unit {
        0 => 0,
        r if r % (unit / 10).max(1) == 0 => 1,
        r if r % (unit / 100).max(1) == 0 => 2,
        _ => 3,
    };
    if at == 0 {
        "0".to_owned()
    } else if step < 1_000 {
        format!("{at} µs")
    } else if step < 1_000_000 {
        format!("{:.*} ms", decimals(1_000), at as f64 / 1e3)
    } else {
        format!("{:.*} s", decimals(1_000_000), at as f64 / 1e6)
    }
}

/// A round interval (1, 2 or 5 × 10ⁿ µs) giving at most six ticks.
fn tick_step(span: u64) -> u64 {
    let mut unit = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = unit * m;
            if span / step <= 5 {
                return step;
            }
        }
        unit *= 10;
    }
}

/// A step too large to draw one by one: a lane per fingerprint.
fn lanes(body: &mut String, t: &StepTimeline, findings: &[(usize, &Finding)]) -> BTreeSet<usize> {
    let mut marked = BTreeSet::new();
    let height = AXIS + LANE * t.lanes.len() as f64 + 6.0;
    open_svg(
        body,
        height,
        &format!(
            "Timeline of {} statements as {} fingerprint lanes",
            t.statements,
            t.lanes.len()
        ),
    );
    axis(body, t, t.lanes.len());
    let plot = RIGHT - LABEL;
    let span = t.span_us.max(1) as f64;
    let max = t.lanes.iter().map(|l| l.count).max().unwrap_or(1).max(1) as f64;
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = AXIS + LANE * i as f64;
        let (x, w) = if t.clocked && t.span_us > 0 {
            let x = LABEL + lane.first_us as f64 / span * plot;
            let end = LABEL + lane.end_us as f64 / span * plot;
            (x, (end - x).max(2.0))
        } else {
            // No times: the bar's length is its count against the largest.
            (LABEL, (lane.count as f64 / max * plot).max(2.0))
        };
        let of: Vec<usize> = findings
            .iter()
            .filter(|(_, f)| {
                !lane.fingerprint.is_empty()
                    && f.fingerprint_hash.as_deref() == Some(lane.fingerprint.as_str())
            })
            .map(|(n, _)| *n)
            .collect();
        let drove: Vec<usize> = findings
            .iter()
            .filter(|(_, f)| {
                !lane.fingerprint.is_empty()
                    && f.driver.as_deref() == Some(lane.fingerprint.as_str())
            })
            .map(|(n, _)| *n)
            .collect();
        marked.extend(of.iter().chain(&drove));
        let text = if lane.fingerprint.is_empty() {
            "(the other fingerprints)".to_owned()
        } else {
            lane.text.clone()
        };
        let mut tip = format!(
            "{text}\n{} run{} · {} in all",
            crate::rules::thousands(lane.count),
            if lane.count == 1 { "" } else { "s" },
            duration(lane.total_us)
        );
        if lane.errors > 0 {
            let _ = write!(tip, " · {} failed", crate::rules::thousands(lane.errors));
        }
        let shown: String = text.chars().take(120).collect();
        let _ = writeln!(
            body,
            "<text class=\"lane-label\" x=\"4\" y=\"{:.1}\">×{}</text>\
             <rect class=\"st lane{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"18\" \
             data-i=\"{i}\"{}{}><title>{}</title></rect>\
             <text class=\"lane-text\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 17.0,
            crate::rules::thousands(lane.count),
            if lane.errors > 0 { " failed" } else { "" },
            y + 4.0,
            attr("data-f", &of),
            attr("data-src", &drove),
            esc(&tip),
            LABEL + 4.0,
            y + 17.0,
            esc(&shown)
        );
    }
    marked
}

#[cfg(test)]
mod tests {
    fn names(text: &str, statement: &str) -> bool {
        super::statements_in(text).any(|part| part == statement)
    }

    #[test]
    fn names_whole_statements_only() {
        let s = "SELECT * FROM t WHERE id = $1  -- params: '1'";
        assert!(names(s, s));
        assert!(names(&format!("[write] {s}"), s));
        assert!(names(&format!("BEGIN; {s}  (sent in step a)"), s));
        assert!(!names(&format!("{s}2'"), s), "a longer parameter");
        assert!(!names(
            "SELECT * FROM t WHERE id = $1  -- params: '1', '2'",
            s
        ));
        assert!(!names("xSELECT 1", "SELECT 1"));
        assert!(!names("anything", ""));
    }

    #[test]
    fn tick_labels_tell_ticks_apart() {
        use super::tick_label;
        assert_eq!(tick_label(0, 50), "0");
        assert_eq!(tick_label(100, 50), "100 µs");
        assert_eq!(tick_label(1_000, 500), "1000 µs");
        assert_eq!(tick_label(1_500, 500), "1500 µs");
        assert_eq!(tick_label(2_000, 1_000), "2 ms");
        assert_eq!(tick_label(4_000, 2_000), "4 ms");
        assert_eq!(tick_label(5_000_000, 1_000_000), "5 s");
        assert_eq!(tick_label(500_000, 100_000), "500 ms");
        assert_eq!(tick_label(1_500_000, 500_000), "1500 ms");
    }

    #[test]
    fn ticks_are_round_and_few() {
        for span in [1, 7, 999, 1_000, 12_345, 1_000_000, 987_654_321] {
            let step = super::tick_step(span);
            assert!(span / step <= 5, "{span}: {step}");
            let digits = step.to_string();
            assert!(
                ["1", "2", "5"].contains(&digits.trim_end_matches('0')),
                "{step}"
            );
        }
    }
}
