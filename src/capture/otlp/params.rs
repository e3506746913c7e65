//! A database span's bind values: the `db.query.parameter.<key>` attributes
//! of the current semantic conventions, the `db.statement.parameters` that
//! the Python DB-API instrumentation writes with `capture_parameters` (the
//! arguments' `str()`: `('a@b', 7, None)`), or the `db.postgresql.values`
//! array that Node's `@opentelemetry/instrumentation-pg` writes with
//! `enhancedDatabaseReporting` (each value's text; it writes SQL NULL as the
//! text `null`, so the two cannot be told apart there).

use super::json::Span;

const PREFIX: &str = "db.query.parameter.";

/// The span's bind values in order, when it recorded them.
pub fn of_span(span: &Span) -> Option<Vec<Option<String>>> {
    let mut keyed: Vec<(&str, Option<String>)> = span
        .attributes
        .iter()
        .filter_map(|kv| Some((kv.key.strip_prefix(PREFIX)?, kv.value.text())))
        .collect();
    if !keyed.is_empty() {
        // `0`, `1`, … or `$1`, `$2`, … by number (so `10` after `9`); names
        // (`:id`, `@name`) by their text, after the numbers.
        keyed.sort_by(|a, b| order_key(a.0).cmp(&order_key(b.0)));
        return Some(keyed.into_iter().map(|(_, v)| v).collect());
    }
    if let Some(super::json::AnyValue::Array(values)) = span.attr("db.postgresql.values") {
        return Some(values.iter().map(super::json::AnyValue::text).collect());
    }
    span.attr("db.statement.parameters")
        .and_then(super::json::AnyValue::as_str)
        .and_then(python_sequence)
}

fn order_key(key: &str) -> (u8, u64, &str) {
    match key.trim_start_matches(['$', '?', ':', '@']).parse::<u64>() {
        Ok(n) => (0, n, key),
        Err(_) => (1, 0, key),
    }
}

/// The values of a Python tuple or list of plain values as `str()` writes it:
/// strings (`'…'`, `"…"`), integers, floats, `True`, `False`, `None`. Any
/// other value (a date, a `Decimal`, bytes, a nested tuple of
/// `executemany`, a dict of named parameters) makes the whole unknown: `None`.
pub fn python_sequence(text: &str) -> Option<Vec<Option<String>>> {
    let text = text.trim();
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .or_else(|| text.strip_prefix('[').and_then(|t| t.strip_suffix(']')))?;
    let mut values = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (value, after) = python_value(rest)?;
        values.push(value);
        rest = after.trim_start();
        match rest.strip_prefix(',') {
            Some(after_comma) => rest = after_comma.trim_start(),
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    Some(values)
}

/// One value at the start of `text`, and what follows it.
fn python_value(text: &str) -> Option<(Option<String>, &str)> {
    let first = text.chars().next()?;
    if first == '\'' || first == '"' {
        return python_string(text, first);
    }
    let end = text.find([',', ' ']).unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    let value = match word {
        "None" => None,
        "True" => Some("true".to_owned()),
        "False" => Some("false".to_owned()),
        number
            if !number.is_empty()
                && number.parse::<f64>().is_ok()
                && number
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b)) =>
        {
            Some(number.replace('_', ""))
        }
        _ => return None,
    };
    Some((value, rest))
}

/// A quoted string with Python's escapes.
fn python_string(text: &str, quote: char) -> Option<(Option<String>, &str)> {
    let mut out = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((Some(out), &text[1 + i + 1..])),
            '\\' => {
                let (_, escaped) = chars.next()?;
                match escaped {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    '\\' | '\'' | '"' => out.push(escaped),
                    'x' | 'u' | 'U' => {
                        let len = match escaped {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..len {
                            hex.push(chars.next()?.1);
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(values: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(values.iter().map(|v| v.map(str::to_owned)).collect())
    }

    #[test]
    fn python_tuples_and_lists_of_plain_values() {
        assert_eq!(python_sequence("(7,)"), some(&[Some("7")]));
        assert_eq!(python_sequence("()"), some(&[]));
        assert_eq!(
            python_sequence(r#"('it''s', "it's", 'a\'b\\c\n', -2.5, None, True, 1e3)"#),
            None,
            "two strings side by side are not one value"
        );
        assert_eq!(
            python_sequence(r#"("it's", 'a\'b\\c\n', -2.5, None, True, 1e3, 'é\xe9\u00e9')"#),
            some(&[
                Some("it's"),
                Some("a'b\\c\n"),
                Some("-2.5"),
                None,
                Some("true"),
                Some("1e3"),
                Some("ééé"),
            ])
        );
        assert_eq!(python_sequence("[1, 'x']"), some(&[Some("1"), Some("x")]));
    }

    #[test]
    fn anything_else_is_unknown() {
        for text in [
            "[(1, 2), (3, 4)]",
            "{'id': 1}",
            "(Decimal('1.5'),)",
            "(datetime.date(2024, 1, 1),)",
            "(b'x',)",
            "('open",
            "7",
            "(nan,)",
        ] {
            assert_eq!(python_sequence(text), None, "{text}");
        }
    }
}
