//! `compare`'s chart: per step, each fingerprint's count at the small and
//! the large data size, one line each (a slope chart). A line that climbs is
//! the growth that proves an N+1; a flat one is a count that does not depend
//! on the data, however high.

use std::fmt::Write;

use super::esc;
use crate::model::Finding;
use crate::report::Comparison;

/// Most fingerprints one step's chart draws: those that grew first, then
/// the most run.
const SHOWN: usize = 12;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 420.0;
const TOP: f64 = 34.0;
const PLOT: f64 = 220.0;

pub fn section(body: &mut String, comparison: &Comparison, findings: &[Finding]) {
    body.push_str(
        "<section id=\"growth\" aria-labelledby=\"growth-h\">\n<h2 id=\"growth-h\">Growth with \
         the data</h2>\n",
    );
    let _ = writeln!(
        body,
        "<p>Each line is a statement's count in a step, in the run with less data \
         (<code>{}</code>) and with more (<code>{}</code>). A line that climbs grows with the \
         data: an N+1 proven by scale.</p>",
        esc(&comparison.small),
        esc(&comparison.large)
    );
    let mut drawn = 0;
    for step in &comparison.steps {
        if step.fingerprints.is_empty() {
            continue;
        }
        drawn += 1;
        let grown = |hash: &str| {
            findings.iter().position(|f| {
                f.rule == "n-plus-one"
                    && f.flow == step.flow
                    && f.step == step.step
                    && f.fingerprint_hash.as_deref() == Some(hash)
            })
        };
        let mut lines: Vec<&(String, String, u64, u64)> = step.fingerprints.iter().collect();
        lines.sort_by_key(|(_, _, small, large)| (large <= small, std::cmp::Reverse(*large)));
        let left_out = lines.len().saturating_sub(SHOWN);
        lines.truncate(SHOWN);
        let max = lines
            .iter()
            .map(|(_, _, s, l)| (*s).max(*l))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let height = TOP + PLOT + 30.0;
        let _ = writeln!(
            body,
            "<figure class=\"chart\"><figcaption>{} <span class=\"sep\">›</span> {}{}</figcaption>\n\
             <svg class=\"growth\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" \
             height=\"{height}\" role=\"img\" aria-label=\"{}\">",
            esc(&step.flow),
            esc(&step.step),
            if left_out > 0 {
                format!(" ({left_out} more fingerprints not drawn)")
            } else {
                String::new()
            },
            esc(&format!(
                "Counts of {} statements of step {} at two data sizes",
                lines.len(),
                step.step
            ))
        );
        let y = |count: u64| TOP + PLOT - count as f64 / max * PLOT;
        let _ = writeln!(
            body,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
             <line class=\"axis\" x1=\"{RIGHT}\" x2=\"{RIGHT}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
             <text class=\"tick\" x=\"{LEFT}\" y=\"{:.1}\" text-anchor=\"middle\">small</text>\
             <text class=\"tick\" x=\"{RIGHT}\" y=\"{:.1}\" text-anchor=\"middle\">large</text>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
            TOP + PLOT,
            TOP + PLOT,
            TOP + PLOT + 18.0,
            TOP + PLOT + 18.0,
            LEFT - 8.0,
            TOP + 4.0,
            crate::rules::thousands(max as u64),
            LEFT - 8.0,
            TOP + PLOT + 4.0,
        );
        // Labels at the right end, moved apart so that none overlaps.
        let mut label_y: Vec<f64> = lines.iter().map(|(_, _, _, l)| y(*l)).collect();
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by(|&a, &b| label_y[a].total_cmp(&label_y[b]));
        let mut last = f64::MIN;
        for &i in &order {
            label_y[i] = label_y[i].max(last + 13.0);
            last = label_y[i];
        }
        // Then back up from the bottom: SHOWN labels fit in the plot's height.
        let mut next = TOP + PLOT + 13.0;
        for &i in order.iter().rev() {
            label_y[i] = label_y[i].min(next - 13.0);
            next = label_y[i];
        }
        for (i, (hash, text, small, large)) in lines.iter().enumerate() {
            let finding = grown(hash);
            let class = if finding.is_some() {
                "grew"
            } else if large > small {
                "up"
            } else {
                "flat"
            };
            let shown: String = text.chars().take(90).collect();
            let _ = writeln!(
                body,
                "<g class=\"line {class}\"{}><title>{}</title>\
                 <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{RIGHT}\" y2=\"{:.1}\"/>\
                 <circle cx=\"{LEFT}\" cy=\"{:.1}\" r=\"3\"/><circle cx=\"{RIGHT}\" cy=\"{:.1}\" r=\"3\"/>\
                 <text class=\"end\" x=\"{:.1}\" y=\"{:.1}\">{} → {}{}  {}</text></g>",
                finding.map_or_else(String::new, |n| format!(" data-f=\"{n}\"")),
                esc(&format!("{text}\nsmall: {small}, large: {large}")),
                y(*small),
                y(*large),
                y(*small),
                y(*large),
                RIGHT + 10.0,
                label_y[i] + 4.0,
                crate::rules::thousands(*small),
                crate::rules::thousands(*large),
                if finding.is_some() { " (N+1)" } else { "" },
                esc(&shown)
            );
        }
        body.push_str("</svg></figure>\n");
    }
    if drawn == 0 {
        body.push_str("<p class=\"clean\">No step ran in both traces.</p>\n");
    }
    body.push_str("</section>\n");
}
