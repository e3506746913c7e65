//! Recovers bind values from SQLite's expanded SQL.
//!
//! SQLite has no API that reads a bound value back from a prepared statement,
//! but `sqlite3_expanded_sql` returns the statement text with every host
//! parameter replaced by its value as an SQL literal. `sqlite3VdbeExpandSql`
//! copies the text between parameters verbatim, so walking the statement as
//! written and the expanded text side by side, the two differ exactly where a
//! parameter stands, and the literal found there is its value.
//!
//! Literal forms (sqlite3.c, `sqlite3VdbeExpandSql`): `NULL`, an integer, a
//! real (`%!.15g`), `'text'` with quotes doubled, `x'hex'` for a blob, and
//! `zeroblob(N)`. Values are listed once per occurrence of a parameter in the
//! text, which for `?` placeholders is the order they were bound in.

/// The bind values of `raw` as `expanded` shows them, `None` inside the list
/// for NULL; `None` if the two texts do not line up (then the caller keeps the
/// expanded text as the statement).
pub fn bind_values(raw: &str, expanded: &str) -> Option<Vec<Option<String>>> {
    let raw = raw.as_bytes();
    let exp = expanded.as_bytes();
    let (mut i, mut j) = (0, 0);
    let mut values = Vec::new();
    while i < raw.len() {
        if j < exp.len() && raw[i] == exp[j] {
            i += 1;
            j += 1;
            continue;
        }
        // No literal starts with a parameter sigil, so a difference here is a
        // parameter in `raw` and its value in `expanded`.
        if !matches!(raw[i], b'?' | b':' | b'@' | b'$') {
            return None;
        }
        i += 1;
        while i < raw.len() && (raw[i].is_ascii_alphanumeric() || raw[i] == b'_') {
            i += 1;
        }
        let (value, len) = literal(&expanded[j..])?;
        values.push(value);
        j += len;
    }
    (j == exp.len()).then_some(values)
}

/// The literal at the start of `text`: its value in text form and its length.
fn literal(text: &str) -> Option<(Option<String>, usize)> {
    let b = text.as_bytes();
    match b.first()? {
        b'\'' => {
            let mut value = String::new();
            let mut k = 1;
            loop {
                let rest = &text[k..];
                let q = rest.find('\'')?;
                value.push_str(&rest[..q]);
                k += q + 1;
                if text[k..].starts_with('\'') {
                    value.push('\'');
                    k += 1;
                } else {
                    return Some((Some(value), k));
                }
            }
        }
        b'x' if text.starts_with("x'") => {
            let end = text[2..].find('\'')? + 3;
            Some((Some(text[..end].to_owned()), end))
        }
        b'z' if text.starts_with("zeroblob(") => {
            let end = text.find(')')? + 1;
            Some((Some(text[..end].to_owned()), end))
        }
        _ if text.starts_with("NULL") => Some((None, 4)),
        _ => {
            let len = text
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
                .count();
            (len > 0).then(|| (Some(text[..len].to_owned()), len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &[&str]) -> Option<Vec<Option<String>>> {
        Some(v.iter().map(|s| Some((*s).to_owned())).collect())
    }

    #[test]
    fn numbers_text_and_null() {
        assert_eq!(
            bind_values(
                "SELECT * FROM t WHERE a = ? AND b = ? AND c IS ?",
                "SELECT * FROM t WHERE a = 42 AND b = 'it''s' AND c IS NULL"
            ),
            Some(vec![Some("42".into()), Some("it's".into()), None])
        );
        assert_eq!(
            bind_values(
                "INSERT INTO t VALUES (?1, ?2)",
                "INSERT INTO t VALUES (-1.5, x'00ff')"
            ),
            some(&["-1.5", "x'00ff'"])
        );
    }

    #[test]
    fn a_question_mark_inside_a_literal_is_not_a_parameter() {
        assert_eq!(
            bind_values(
                "SELECT '?' || name FROM t WHERE id = ?",
                "SELECT '?' || name FROM t WHERE id = 7"
            ),
            some(&["7"])
        );
        assert_eq!(bind_values("SELECT 1", "SELECT 1"), Some(vec![]));
    }

    #[test]
    fn text_that_does_not_line_up_is_refused() {
        assert_eq!(bind_values("SELECT ?", "SELECT 1 -- more"), None);
        assert_eq!(bind_values("SELECT a", "SELECT b"), None);
        assert_eq!(bind_values("SELECT ?", "SELECT 'open"), None);
    }
}
