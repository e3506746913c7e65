//! Graphviz `dot`: a record-like HTML table per table (its name, then its key
//! columns, each a port), an edge from each child column to its parent's;
//! declared relationships solid, implied ones dashed.

use std::fmt::Write;

use super::{key_columns, tables};
use crate::schema::SchemaReview;
use crate::schema::relations::{Origin, shown};

pub fn render(review: &SchemaReview) -> String {
    let schema = &review.schema;
    let mut out = String::from(
        "digraph schema {\n    graph [rankdir=LR, fontname=\"Helvetica\"];\n    \
         node [shape=plaintext, fontname=\"Helvetica\"];\n    \
         edge [fontname=\"Helvetica\", fontsize=10, arrowhead=normal];\n",
    );
    let shown_tables = tables(review);
    for t in &shown_tables {
        let name = schema.shown(&t.schema, &t.name);
        let _ = write!(
            out,
            "    {} [label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\">\
             <tr><td bgcolor=\"lightgrey\"><b>{}</b></td></tr>",
            quoted(&name),
            html(&name)
        );
        for (column, data_type, marks) in key_columns(t, &review.relationships) {
            let _ = write!(
                out,
                "<tr><td port=\"{}\" align=\"left\">{} <i>{}</i> {}</td></tr>",
                html(&port(column)),
                html(column),
                html(data_type),
                marks.join(", ")
            );
        }
        out.push_str("</table>>];\n");
    }
    for r in &review.relationships {
        if !shown_tables.iter().any(|t| t.qualified() == r.parent) {
            continue;
        }
        let (Some(c), Some(p)) = (r.columns.first(), r.parent_columns.first()) else {
            continue;
        };
        let style = if r.origin == Origin::Declared {
            "solid"
        } else {
            "dashed"
        };
        let mut label = r.columns.join(", ");
        if r.origin != Origin::Declared {
            label.push_str(" (implied)");
        }
        let _ = writeln!(
            out,
            "    {}:{} -> {}:{} [style={style}, label={}];",
            quoted(&shown(schema, &r.child)),
            quoted(&port(c)),
            quoted(&shown(schema, &r.parent)),
            quoted(&port(p)),
            quoted(&label)
        );
    }
    out.push_str("}\n");
    out
}

/// A port name: column names lowercased (ports are case-sensitive).
fn port(column: &str) -> String {
    column.to_lowercase()
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(super::html("<a & b>"), "&lt;a &amp; b&gt;");
    }
}
