//! The HTML rendering of a schema review (issue 18): the summary, the ER
//! diagram as inline SVG ([`crate::schema::diagram::svg`]) with the findings
//! marked on their tables and columns, the relationships table and the
//! findings. A click on a finding marks its table in the diagram. The page
//! is the run report's ([`crate::report::html::page`]): self-contained, and
//! readable without its script.

use std::fmt::Write;

use super::{HEADER, row, summary};
use crate::report::html::{allowed, esc, finding, page};
use crate::rules::plural;
use crate::schema::SchemaReview;

pub fn render(review: &SchemaReview) -> String {
    let s = summary(review);
    let title = format!(
        "flowaudit schema: {}, {}, {}",
        plural(s.errors, "error", "errors"),
        plural(s.warnings, "warning", "warnings"),
        plural(s.infos, "info", "infos"),
    );
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<header><h1>flowaudit schema review</h1><p class=\"verdict\">{}</p></header>\n<main>",
        esc(&title["flowaudit schema: ".len()..])
    );
    body.push_str(
        "<section id=\"summary\" aria-labelledby=\"summary-h\">\n<h2 id=\"summary-h\">Summary</h2>\n\
         <dl class=\"summary\">\n",
    );
    let mut cell = |term: &str, value: String| {
        let _ = writeln!(body, "<div><dt>{term}</dt><dd>{value}</dd></div>");
    };
    cell(
        "Database",
        format!("<code>{}</code>", esc(&review.database)),
    );
    cell("Dialect", esc(review.schema.dialect.as_str()));
    cell("Tables", s.tables.to_string());
    cell(
        "Relationships",
        format!("{} ({} implied)", s.relationships, s.implied),
    );
    cell(
        "Findings",
        format!(
            "{} errors, {} warnings, {} info{}",
            s.errors,
            s.warnings,
            s.infos,
            if s.allowed > 0 {
                format!(", {} allowed", s.allowed)
            } else {
                String::new()
            }
        ),
    );
    body.push_str("</dl>\n");
    if !review.notes.is_empty() {
        body.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for note in &review.notes {
            let _ = writeln!(body, "<li>{}</li>", esc(note));
        }
        body.push_str("</ul>\n");
    }
    body.push_str("</section>\n");

    body.push_str(
        "<section aria-labelledby=\"er-h\">\n<h2 id=\"er-h\">Relationships</h2>\n\
         <figure class=\"er\" id=\"er\">\n",
    );
    body.push_str(&crate::schema::diagram::svg::render(review));
    body.push_str(
        "<figcaption>Each table with its key columns; declared relationships solid, implied \
         ones dashed. A badge marks a table or column with findings: ! error, ▲ warning, i \
         info. A finding's button marks its table.</figcaption>\n</figure>\n",
    );
    if !review.relationships.is_empty() {
        body.push_str("<table class=\"index\">\n<thead><tr>");
        for h in HEADER {
            let _ = write!(body, "<th scope=\"col\">{}</th>", esc(h));
        }
        body.push_str("</tr></thead>\n<tbody>\n");
        for r in &review.relationships {
            body.push_str("<tr>");
            for c in row(review, r) {
                let _ = write!(body, "<td>{}</td>", esc(&c));
            }
            body.push_str("</tr>\n");
        }
        body.push_str("</tbody>\n</table>\n");
    }
    body.push_str("</section>\n");

    body.push_str(
        "<section id=\"findings-index\" aria-labelledby=\"findings-h\">\n<h2 id=\"findings-h\">\
         Findings</h2>\n",
    );
    if review.findings.is_empty() {
        body.push_str("<p class=\"clean\">No findings.</p>\n");
    } else {
        body.push_str("<ol class=\"findings\">\n");
        for (n, f) in review.findings.iter().enumerate() {
            finding(&mut body, n, f, Some("er"));
        }
        body.push_str("</ol>\n");
    }
    body.push_str("</section>\n");
    if !review.allowed.is_empty() {
        body.push_str(
            "<section aria-labelledby=\"aside-h\">\n<h2 id=\"aside-h\">Allowed by rule files</h2>\n\
             <ul class=\"aside\">\n",
        );
        for a in &review.allowed {
            allowed(&mut body, a, false);
        }
        body.push_str("</ul>\n</section>\n");
    }
    crate::report::html::rules_section(&mut body, &review.findings);
    body.push_str("</main>\n");
    page(&title, &body)
}
