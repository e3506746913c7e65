//! Splits the text of a simple Query into its statements, the way PostgreSQL's
//! lexer does: semicolons outside quotes, dollar quotes and comments end a
//! statement. The server answers each statement with its own CommandComplete,
//! so the observer needs them apart to record one event per statement.
//!
//! Statements that are only whitespace and comments are dropped, as the server
//! skips them without an answer.

/// The statements of `sql`, in order, each without its terminating semicolon
/// and trimmed of surrounding whitespace.
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    // Parenthesis depth: a semicolon inside parentheses (CREATE RULE … (a; b))
    // does not end the outer statement.
    let mut depth = 0i32;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                // E'…' strings take backslash escapes.
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && {
                    i < 2 || !is_ident(bytes[i - 2])
                };
                i = skip_quoted(bytes, i, b'\'', escapes);
                has_code = true;
                continue;
            }
            b'"' => {
                i = skip_quoted(bytes, i, b'"', false);
                has_code = true;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Block comments nest in PostgreSQL.
                let mut nest = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'$' if i == 0 || !is_ident(bytes[i - 1]) => {
                if let Some(end) = dollar_quote_end(bytes, i) {
                    i = end;
                    has_code = true;
                    continue;
                }
                has_code = true;
            }
            b'(' => {
                depth += 1;
                has_code = true;
            }
            b')' => {
                depth -= 1;
                has_code = true;
            }
            b';' if depth <= 0 => {
                if has_code {
                    out.push(sql[start..i].trim());
                }
                start = i + 1;
                has_code = false;
                depth = 0;
            }
            b if b.is_ascii_whitespace() => {}
            _ => has_code = true,
        }
        i += 1;
    }
    if has_code {
        out.push(sql[start..].trim());
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The index after the closing quote (or the end of the text).
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// For `$tag$ … $tag$` starting at `open`, the index after the closing tag.
fn dollar_quote_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    while j < bytes.len() && bytes[j] != b'$' {
        if !(bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] >= 0x80)
            || (j == open + 1 && bytes[j].is_ascii_digit())
        {
            return None; // `$1`, a positional parameter
        }
        j += 1;
    }
    if j >= bytes.len() {
        return None;
    }
    let tag = &bytes[open..=j];
    let body = j + 1;
    let rest = &bytes[body..];
    match rest.windows(tag.len()).position(|w| w == tag) {
        Some(p) => Some(body + p + tag.len()),
        None => Some(bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        assert_eq!(
            statements("select 1; select 2;"),
            vec!["select 1", "select 2"]
        );
        assert_eq!(
            statements("select ';' ; select \"a;b\" from t -- x;y\n; select 3"),
            vec!["select ';'", "select \"a;b\" from t -- x;y", "select 3"]
        );
        assert_eq!(
            statements("select 'it''s;'; select E'\\';'; select 1"),
            vec!["select 'it''s;'", "select E'\\';'", "select 1"]
        );
        assert_eq!(
            statements("do $$ begin perform 1; end $$; select $1"),
            vec!["do $$ begin perform 1; end $$", "select $1"]
        );
        assert_eq!(
            statements("select $fn$ a; $x$ b $fn$; select 2"),
            vec!["select $fn$ a; $x$ b $fn$", "select 2"]
        );
        assert_eq!(
            statements("/* a; /* nested; */ b; */ select 1; ; -- tail;"),
            vec!["/* a; /* nested; */ b; */ select 1"]
        );
    }

    #[test]
    fn keeps_trailing_sqlcommenter_tags_with_their_statement() {
        assert_eq!(
            statements("select 1 /*step='browse'*/; select 2"),
            vec!["select 1 /*step='browse'*/", "select 2"]
        );
    }

    #[test]
    fn empty_and_comment_only_text_has_no_statements() {
        assert!(statements("").is_empty());
        assert!(statements(" ; ;\n-- nothing\n").is_empty());
    }
}
