//! The JSON report (DESIGN.md, "The JSON report"): the whole [`Report`],
//! pretty-printed, with a trailing newline.

use super::Report;

pub fn render(report: &Report) -> String {
    // Serialising plain structs with string keys cannot fail.
    let mut text =
        serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
