//! The parameters of COM_STMT_EXECUTE in text form, as the trace records
//! them (MySQL internals, "COM_STMT_EXECUTE" and "Binary Protocol Value";
//! MariaDB's "COM_STMT_EXECUTE"): a NULL bitmap, the new-params-bound flag
//! and the types when it is set (else the types of the statement's previous
//! execution), then each value that is neither NULL nor sent before with
//! COM_STMT_SEND_LONG_DATA, laid out by its type.
//!
//! Integers, floats, dates and times are decoded; decimals, strings, JSON
//! and enums are the text they are; blobs, bits and geometries are shown as
//! `0x…` hex, MySQL's own literal form. Values are cut as the PostgreSQL
//! proxy cuts them (`proxy::values`): [`MAX_VALUE_TEXT`] of one,
//! [`MAX_PARAMS_TEXT`] of all.

use foldhash::HashMap;

use super::messages::Reader;
use crate::capture::proxy::{MAX_PARAMS_TEXT, MAX_VALUE_TEXT, mark_cut};

/// Column types (`enum_field_types`).
mod kind {
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const BIT: u8 = 0x10;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const GEOMETRY: u8 = 0xff;
}

/// The text of a value the execute did not carry whole.
const CUT: &str = "…[truncated]";

/// A parameter's type as the client declared it: the type byte and whether
/// the value is unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamType {
    pub kind: u8,
    pub unsigned: bool,
}

/// Decodes the parameters of an execute. `body` is the payload after the
/// statement id, flags and iteration count; `count` the statement's number
/// of parameters; `types` the types of its previous execution, replaced
/// when the client sends new ones; `long` the values sent before with
/// COM_STMT_SEND_LONG_DATA, by parameter. `truncated`: the observer kept
/// only the start of the payload. `None` when the payload does not read as
/// an execute of `count` parameters.
pub fn params(
    body: &[u8],
    count: usize,
    types: &mut Vec<ParamType>,
    long: &HashMap<u16, Vec<u8>>,
    truncated: bool,
) -> Option<Vec<Option<String>>> {
    if count == 0 {
        return Some(Vec::new());
    }
    let mut r = Reader::new(body);
    let nulls = r.take(count.div_ceil(8))?;
    if r.u8()? == 1 {
        let mut bound = Vec::with_capacity(count);
        for _ in 0..count {
            let t = r.take(2)?;
            bound.push(ParamType {
                kind: t[0],
                unsigned: t[1] & 0x80 != 0,
            });
        }
        *types = bound;
    }
    let mut out = Vec::with_capacity(count.min(4096));
    let mut room = MAX_PARAMS_TEXT;
    for i in 0..count {
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            out.push(None);
            continue;
        }
        let t = types.get(i).copied().unwrap_or(ParamType {
            kind: 0xfd,
            unsigned: false,
        });
        let mut text = match long.get(&(i as u16)) {
            Some(bytes) => bytes_text(t.kind, bytes),
            None if t.kind == kind::NULL => {
                out.push(None);
                continue;
            }
            None => match value(&mut r, t) {
                Some(text) => text,
                None if truncated => CUT.to_owned(),
                None => return None,
            },
        };
        let limit = MAX_VALUE_TEXT.min(room);
        if text.len() > limit {
            let mut end = limit;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let missing = text.len() - end;
            text.truncate(end);
            mark_cut(&mut text, Some(missing));
        }
        room = room.saturating_sub(text.len());
        out.push(Some(text));
    }
    Some(out)
}

/// One value, read from where `r` stands.
fn value(r: &mut Reader<'_>, t: ParamType) -> Option<String> {
    let int = |bytes: &[u8], signed: bool| -> String {
        let mut v = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        if signed {
            let shift = 64 - 8 * bytes.len() as u32;
            (((v << shift) as i64) >> shift).to_string()
        } else {
            v.to_string()
        }
    };
    Some(match t.kind {
        kind::TINY => int(r.take(1)?, !t.unsigned),
        kind::SHORT | kind::YEAR => int(r.take(2)?, !t.unsigned),
        kind::LONG | kind::INT24 => int(r.take(4)?, !t.unsigned),
        kind::LONGLONG => int(r.take(8)?, !t.unsigned),
        kind::FLOAT => f32::from_le_bytes(r.take(4)?.try_into().ok()?).to_string(),
        kind::DOUBLE => f64::from_le_bytes(r.take(8)?.try_into().ok()?).to_string(),
        kind::DATE | kind::DATETIME | kind::TIMESTAMP => {
            let n = usize::from(r.u8()?);
            datetime(r.take(n)?, t.kind == kind::DATE)?
        }
        kind::TIME => {
            let n = usize::from(r.u8()?);
            time(r.take(n)?)?
        }
        _ => bytes_text(t.kind, r.lenenc_bytes()?),
    })
}

/// A value sent as bytes: hex for the binary types, text otherwise (hex
/// too when it is not UTF-8).
fn bytes_text(kind: u8, bytes: &[u8]) -> String {
    let binary = matches!(
        kind,
        kind::BIT
            | kind::TINY_BLOB
            | kind::MEDIUM_BLOB
            | kind::LONG_BLOB
            | kind::BLOB
            | kind::GEOMETRY
    );
    match std::str::from_utf8(bytes) {
        Ok(text) if !binary => text.to_owned(),
        _ => hex(bytes),
    }
}

/// `0x` and two hex digits a byte, as much as one value keeps.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let shown = &bytes[..bytes.len().min(MAX_VALUE_TEXT / 2)];
    let mut out = String::with_capacity(2 + 2 * shown.len());
    out.push_str("0x");
    for b in shown {
        let _ = write!(out, "{b:02x}");
    }
    if shown.len() < bytes.len() {
        mark_cut(&mut out, Some(2 * (bytes.len() - shown.len())));
    }
    out
}

/// A DATE, DATETIME or TIMESTAMP of 0, 4, 7 or 11 bytes.
fn datetime(v: &[u8], date_only: bool) -> Option<String> {
    let mut r = Reader::new(v);
    let (year, month, day) = match v.len() {
        0 => (0, 0, 0),
        4 | 7 | 11 => (r.u16()?, r.u8()?, r.u8()?),
        _ => return None,
    };
    let date = format!("{year:04}-{month:02}-{day:02}");
    if date_only {
        return Some(date);
    }
    let (h, m, s) = if v.len() >= 7 {
        (r.u8()?, r.u8()?, r.u8()?)
    } else {
        (0, 0, 0)
    };
    let mut out = format!("{date} {h:02}:{m:02}:{s:02}");
    if v.len() == 11 {
        out.push_str(&format!(".{:06}", r.u32()?));
    }
    Some(out)
}

/// A TIME of 0, 8 or 12 bytes: sign, days, hours, minutes, seconds,
/// microseconds.
fn time(v: &[u8]) -> Option<String> {
    if v.is_empty() {
        return Some("00:00:00".into());
    }
    if !matches!(v.len(), 8 | 12) {
        return None;
    }
    let mut r = Reader::new(v);
    let negative = r.u8()? == 1;
    let days = r.u32()?;
    let (h, m, s) = (r.u8()?, r.u8()?, r.u8()?);
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut out = format!(
        "{}{hours:02}:{m:02}:{s:02}",
        if negative { "-" } else { "" }
    );
    if v.len() == 12 {
        out.push_str(&format!(".{:06}", r.u32()?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn types(kinds: &[(u8, bool)]) -> Vec<u8> {
        kinds
            .iter()
            .flat_map(|&(k, u)| [k, if u { 0x80 } else { 0 }])
            .collect()
    }

    #[test]
    fn values_of_every_common_type() {
        let kinds = [
            (kind::LONGLONG, false),
            (kind::TINY, true),
            (kind::SHORT, false),
            (kind::DOUBLE, false),
            (0xf6, false), // NEWDECIMAL
            (0xfd, false), // VAR_STRING
            (kind::NULL, false),
            (kind::BLOB, false),
            (kind::DATETIME, false),
            (kind::DATE, false),
            (kind::TIME, false),
            (kind::LONG, false),
        ];
        let mut body = vec![0b0100_0000, 0b0000_0000, 1];
        body.extend(types(&kinds));
        body.extend_from_slice(&(-7i64).to_le_bytes());
        body.push(200);
        body.extend_from_slice(&(-2i16).to_le_bytes());
        body.extend_from_slice(&2.5f64.to_le_bytes());
        body.extend_from_slice(b"\x0589.00");
        body.extend_from_slice(b"\x06caf\xc3\xa9s");
        body.extend_from_slice(b"\x03\x00\xff\x10");
        body.extend_from_slice(&[11, 0xea, 0x07, 11, 30, 13, 5, 9, 0x40, 0xe2, 0x01, 0]);
        body.extend_from_slice(&[4, 0xea, 0x07, 2, 1]);
        body.extend_from_slice(&[8, 1, 1, 0, 0, 0, 2, 3, 4]);
        body.extend_from_slice(&(-5i32).to_le_bytes());
        let mut t = Vec::new();
        let got = params(&body, kinds.len(), &mut t, &HashMap::default(), false).expect("decodes");
        let want: Vec<Option<&str>> = vec![
            Some("-7"),
            Some("200"),
            Some("-2"),
            Some("2.5"),
            Some("89.00"),
            Some("cafés"),
            None,
            Some("0x00ff10"),
            Some("2026-11-30 13:05:09.123456"),
            Some("2026-02-01"),
            Some("-26:03:04"),
            Some("-5"),
        ];
        assert_eq!(
            got,
            want.iter().map(|v| v.map(String::from)).collect::<Vec<_>>()
        );
        assert_eq!(t.len(), kinds.len(), "types kept for the next execute");
        // The next execute, without new types, reuses them.
        let mut again = vec![0xff, 0x0f, 0];
        again.extend_from_slice(&[]);
        let got = params(&again, kinds.len(), &mut t, &HashMap::default(), false);
        assert_eq!(got.map(|v| v.iter().all(Option::is_none)), Some(true));
    }

    #[test]
    fn nulls_long_data_and_cut_values() {
        let mut body = vec![0b01, 1];
        body.extend(types(&[(0xfd, false), (kind::BLOB, false)]));
        let mut long = HashMap::default();
        long.insert(1u16, vec![0xde, 0xad]);
        let got = params(&body, 2, &mut Vec::new(), &long, false).expect("decodes");
        assert_eq!(got, vec![None, Some("0xdead".into())]);
        // A value longer than the observer kept.
        let mut body = vec![0, 1];
        body.extend(types(&[(0xfd, false)]));
        body.extend_from_slice(&[0xfc, 0x10, 0x27]);
        body.extend_from_slice(&[b'x'; 100]);
        let got = params(&body, 1, &mut Vec::new(), &HashMap::default(), true).expect("decodes");
        assert_eq!(got, vec![Some(CUT.into())]);
        assert_eq!(
            params(&body, 1, &mut Vec::new(), &HashMap::default(), false),
            None
        );
        // A long text is cut to the value's limit.
        let mut body = vec![0, 1];
        body.extend(types(&[(0xfd, false)]));
        body.extend_from_slice(&[0xfc, 0x88, 0x13]);
        body.extend_from_slice(&[b'y'; 5000]);
        let got = params(&body, 1, &mut Vec::new(), &HashMap::default(), false).expect("decodes");
        let text = got[0].as_deref().expect("a value");
        assert!(
            text.ends_with("…[truncated 904 bytes]"),
            "{}",
            &text[4000..]
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            count in 0usize..20,
            truncated in any::<bool>(),
        ) {
            let mut t = Vec::new();
            let _ = params(&body, count, &mut t, &HashMap::default(), truncated);
        }
    }
}
