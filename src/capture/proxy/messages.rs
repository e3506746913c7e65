//! The bodies of the protocol messages the observer reads. Every parser takes
//! a body as the frame decoder gives it and returns `None` when the body does
//! not have the message's shape: the relay has already forwarded it, the
//! observer only counts it as undecoded.
//!
//! Names and texts are borrowed from the body where it is valid UTF-8: the
//! observer reads several messages per statement, and an allocation for each
//! name was a measurable share of the relay's time.

use std::borrow::Cow;

/// Reads a message body field by field.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// A NUL-terminated string (lossy UTF-8: the observer never fails on text).
    pub fn cstr(&mut self) -> Option<Cow<'a, str>> {
        let end = self.bytes.iter().position(|&b| b == 0)?;
        let text = String::from_utf8_lossy(&self.bytes[..end]);
        self.bytes = &self.bytes[end + 1..];
        Some(text)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    pub fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.i32().map(|v| v as u32)
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    /// The text up to its NUL, or to the end of a body that was cut.
    pub fn rest_text(&mut self) -> String {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = &[];
        text
    }

    /// A count field: a non-negative int16.
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.i16()?).ok()
    }
}

/// `P`: Parse.
#[derive(Debug, PartialEq, Eq)]
pub struct Parse {
    pub statement: String,
    pub sql: String,
    pub param_types: Vec<u32>,
}

/// The start of a Parse whose body was cut (see [`super::frame::OVERSIZED_PREFIX`]):
/// the statement name and the start of its SQL, with no parameter types
/// when the SQL runs past the cut.
pub fn parse_prefix(body: &[u8]) -> Option<Parse> {
    let mut r = Reader::new(body);
    let statement = r.cstr()?.into_owned();
    Some(Parse {
        statement,
        sql: r.rest_text(),
        param_types: Vec::new(),
    })
}

pub fn parse(body: &[u8]) -> Option<Parse> {
    let mut r = Reader::new(body);
    let statement = r.cstr()?.into_owned();
    let sql = r.cstr()?.into_owned();
    let n = r.count()?;
    let param_types = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
    Some(Parse {
        statement,
        sql,
        param_types,
    })
}

/// `B`: Bind. Values stay raw until the observer knows their types.
#[derive(Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: Cow<'a, str>,
    pub statement: Cow<'a, str>,
    /// The format codes as sent, two bytes each: none (all text), one (for
    /// every parameter) or one per parameter.
    formats: &'a [u8],
    pub values: Vec<Option<&'a [u8]>>,
    /// When the body was cut ([`bind_prefix`]): what of the values is missing.
    pub cut: Option<BindCut>,
}

/// The values of a Bind whose body was cut.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct BindCut {
    /// The bytes missing from the last value of `values`, when the cut is
    /// inside it.
    pub missing: Option<usize>,
    /// The values after those in `values`, not seen at all.
    pub unseen: usize,
}

impl Bind<'_> {
    /// Whether parameter `i` is sent in binary format.
    pub fn binary(&self, i: usize) -> bool {
        let code = |k: usize| self.formats.get(2 * k..2 * k + 2) == Some(&[0, 1][..]);
        match self.formats.len() / 2 {
            0 => false,
            1 => code(0),
            _ => code(i),
        }
    }
}

pub fn bind(body: &[u8]) -> Option<Bind<'_>> {
    read_bind(body, false)
}

/// The start of a Bind whose body was cut (see
/// [`super::frame::OVERSIZED_PREFIX`]): its names and formats, the values
/// up to the cut, the start of the value it cuts, and how many follow.
pub fn bind_prefix(body: &[u8]) -> Option<Bind<'_>> {
    read_bind(body, true)
}

fn read_bind(body: &[u8], cut: bool) -> Option<Bind<'_>> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let format_count = r.count()?;
    let formats = r.take(2 * format_count)?;
    let n = r.count()?;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let Some(len) = r.i32() else {
            return cut.then_some(Bind {
                portal,
                statement,
                formats,
                values,
                cut: Some(BindCut {
                    missing: None,
                    unseen: n - i,
                }),
            });
        };
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        match r.take(len) {
            Some(value) => values.push(Some(value)),
            None if cut => {
                let kept = r.take(r.bytes.len()).unwrap_or_default();
                values.push(Some(kept));
                return Some(Bind {
                    portal,
                    statement,
                    formats,
                    values,
                    cut: Some(BindCut {
                        missing: Some(len - kept.len()),
                        unseen: n - i - 1,
                    }),
                });
            }
            None => return None,
        }
    }
    Some(Bind {
        portal,
        statement,
        formats,
        values,
        cut: None,
    })
}

/// `E`: Execute (portal name; the row limit does not matter to the observer).
pub fn execute(body: &[u8]) -> Option<Cow<'_, str>> {
    Reader::new(body).cstr()
}

/// `C` (client): Close, and `D` (client): Describe: a kind byte (`S`tatement
/// or `P`ortal) and a name.
pub fn target(body: &[u8]) -> Option<(u8, Cow<'_, str>)> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    Some((kind, r.cstr()?))
}

/// `Q`: Query.
pub fn query(body: &[u8]) -> Option<Cow<'_, str>> {
    Reader::new(body).cstr()
}

/// The start of a Query whose body was cut.
pub fn query_prefix(body: &[u8]) -> String {
    Reader::new(body).rest_text()
}

/// `C` (server): CommandComplete's tag, e.g. `INSERT 0 3`, `SELECT 20`.
pub fn command_complete(body: &[u8]) -> Option<Cow<'_, str>> {
    Reader::new(body).cstr()
}

/// The row count a command tag carries: the last number of `SELECT n`,
/// `INSERT oid n`, `UPDATE n`, `DELETE n`, `MERGE n`, `COPY n`, `FETCH n`,
/// `MOVE n`; `None` for tags without one (`BEGIN`, `CREATE TABLE`).
pub fn rows_of_tag(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    let command = words.next()?;
    if !matches!(
        command,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE"
    ) {
        return None;
    }
    words.next_back()?.parse().ok()
}

/// `E` (server): ErrorResponse, and `N`: NoticeResponse: the SQLSTATE (`C`) and
/// message (`M`) fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub code: String,
    pub message: String,
}

pub fn error_fields(body: &[u8]) -> Option<ErrorFields> {
    let mut r = Reader::new(body);
    let mut out = ErrorFields::default();
    loop {
        match r.u8()? {
            0 => return Some(out),
            b'C' => out.code = r.cstr()?.into_owned(),
            b'M' => out.message = r.cstr()?.into_owned(),
            _ => {
                r.cstr()?;
            }
        }
    }
}

/// `Z`: ReadyForQuery's transaction status byte (`I`, `T` or `E`).
pub fn ready_for_query(body: &[u8]) -> Option<u8> {
    Reader::new(body).u8()
}

/// `S` (server): ParameterStatus, a name and a value.
pub fn parameter_status(body: &[u8]) -> Option<(String, String)> {
    let mut r = Reader::new(body);
    Some((r.cstr()?.into_owned(), r.cstr()?.into_owned()))
}

/// `t`: ParameterDescription, the parameter type OIDs of a statement.
pub fn parameter_description(body: &[u8]) -> Option<Vec<u32>> {
    let mut r = Reader::new(body);
    let n = r.count()?;
    (0..n).map(|_| r.u32()).collect()
}

/// Builds an ErrorResponse (`E`) frame with severity FATAL, for the errors the
/// proxy itself answers (an unreachable upstream).
pub fn fatal_error(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_reads_formats_and_nulls() {
        let mut body = b"p1\0s1\0".to_vec();
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"42");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let b = bind(&body).expect("valid bind");
        assert_eq!(b.portal, "p1");
        assert_eq!(b.statement, "s1");
        assert!(!b.binary(0));
        assert!(b.binary(1));
        assert_eq!(b.values, vec![Some(&b"42"[..]), None]);
        assert!(
            bind(&body[..body.len() - 5]).is_none(),
            "a cut bind is refused"
        );
    }

    #[test]
    fn one_format_code_applies_to_every_parameter_and_none_means_text() {
        let body = |formats: &[i16]| {
            let mut body = b"\0\0".to_vec();
            body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
            for f in formats {
                body.extend_from_slice(&f.to_be_bytes());
            }
            body.extend_from_slice(&2i16.to_be_bytes());
            for _ in 0..2 {
                body.extend_from_slice(&1i32.to_be_bytes());
                body.push(b'1');
            }
            body.extend_from_slice(&0i16.to_be_bytes());
            body
        };
        let all_binary = body(&[1]);
        let b = bind(&all_binary).expect("valid bind");
        assert!(b.binary(0) && b.binary(1));
        let all_text = body(&[]);
        let b = bind(&all_text).expect("valid bind");
        assert!(!b.binary(0) && !b.binary(1));
        let cut = body(&[1, 0]);
        let b = bind(&cut[..5]).map(|b| b.values.len());
        assert_eq!(b, None, "format codes cut short are refused");
    }

    /// Issue 13, defect 2: a Bind cut inside a value keeps the values
    /// before it, the start of that one, and counts those after it.
    #[test]
    fn a_cut_bind_keeps_what_it_can() {
        let mut body = b"\0s1\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(b'7');
        body.extend_from_slice(&1000i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        assert!(bind(&body).is_none());
        let b = bind_prefix(&body).expect("the start of a bind");
        assert_eq!(b.statement, "s1");
        assert_eq!(b.values, vec![Some(&b"7"[..]), Some(&b"abc"[..])]);
        assert_eq!(
            b.cut,
            Some(BindCut {
                missing: Some(997),
                unseen: 1
            })
        );
        let b = bind_prefix(&body[..body.len() - 5]).expect("cut before a length");
        assert_eq!(b.values, vec![Some(&b"7"[..])]);
        assert_eq!(
            b.cut,
            Some(BindCut {
                missing: None,
                unseen: 2
            })
        );
    }

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(rows_of_tag("SELECT 20"), Some(20));
        assert_eq!(rows_of_tag("INSERT 0 3"), Some(3));
        assert_eq!(rows_of_tag("UPDATE 0"), Some(0));
        assert_eq!(rows_of_tag("COPY 7"), Some(7));
        assert_eq!(rows_of_tag("BEGIN"), None);
        assert_eq!(rows_of_tag("CREATE TABLE"), None);
    }

    #[test]
    fn error_fields_are_read_and_built() {
        let frame = fatal_error("08001", "upstream refused");
        let fields = error_fields(&frame[5..]).expect("valid error");
        assert_eq!(fields.code, "08001");
        assert_eq!(fields.message, "upstream refused");
    }
}
