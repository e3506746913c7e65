//! Bind values in their text form, as the trace records them. Text-format
//! values are the text the client sent; binary ones are decoded for the common
//! types (PostgreSQL's `*send` functions define the layouts) and shown as
//! `\x…` hex otherwise, the form PostgreSQL itself prints bytea in.

/// Type OIDs from `pg_type` (stable across PostgreSQL versions).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// One bind value as text. `type_oid` 0 means the client left the type to the
/// server; a binary value of unknown type is shown as hex.
pub fn render(type_oid: u32, binary: bool, value: &[u8]) -> String {
    if !binary {
        return String::from_utf8_lossy(value).into_owned();
    }
    decode_binary(type_oid, value).unwrap_or_else(|| hex(value))
}

/// The start of a bind value the observer did not keep whole (issue 13,
/// defect 2): text, also of a binary text type cut inside a character,
/// stays text; other binary values are shown as hex.
pub fn render_prefix(type_oid: u32, binary: bool, prefix: &[u8]) -> String {
    let text_type = matches!(
        type_oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON | 0
    );
    if !binary || text_type {
        return String::from_utf8_lossy(prefix).into_owned();
    }
    hex(prefix)
}

fn decode_binary(type_oid: u32, v: &[u8]) -> Option<String> {
    Some(match type_oid {
        oid::BOOL => match v {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return None,
        },
        oid::INT2 => i16::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::INT4 => i32::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::OID => u32::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::INT8 => i64::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::FLOAT4 => f32::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::FLOAT8 => f64::from_be_bytes(v.try_into().ok()?).to_string(),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => {
            String::from_utf8(v.to_vec()).ok()?
        }
        // jsonb's binary form is a version byte (1) and the JSON text.
        oid::JSONB => match v.split_first() {
            Some((1, text)) => String::from_utf8(text.to_vec()).ok()?,
            _ => return None,
        },
        oid::UUID => uuid(v)?,
        oid::DATE => {
            let days = i32::from_be_bytes(v.try_into().ok()?);
            crate::date::Date::from_days(i64::from(days) + PG_EPOCH_DAYS).to_string()
        }
        oid::TIMESTAMP => timestamp(i64::from_be_bytes(v.try_into().ok()?))?,
        oid::TIMESTAMPTZ => timestamp(i64::from_be_bytes(v.try_into().ok()?))? + "+00",
        oid::NUMERIC => numeric(v)?,
        oid::BYTEA => return None,
        _ => return None,
    })
}

fn hex(v: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * v.len());
    out.push_str("\\x");
    for b in v {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn uuid(v: &[u8]) -> Option<String> {
    if v.len() != 16 {
        return None;
    }
    let h = hex(v);
    let h = &h[2..];
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Microseconds since 2000-01-01 00:00:00, as `YYYY-MM-DD HH:MM:SS[.ffffff]`.
fn timestamp(micros: i64) -> Option<String> {
    // ±infinity are i64::MAX / i64::MIN.
    if micros == i64::MAX {
        return Some("infinity".into());
    }
    if micros == i64::MIN {
        return Some("-infinity".into());
    }
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let date = crate::date::Date::from_days(days + PG_EPOCH_DAYS);
    let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
    let mut out = format!(
        "{date} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    Some(out)
}

/// numeric's binary form: ndigits, weight, sign, dscale (int16 each), then
/// ndigits base-10000 digits; the value is Σ digit[i] · 10000^(weight − i).
fn numeric(v: &[u8]) -> Option<String> {
    let mut r = super::messages::Reader::new(v);
    let ndigits = usize::try_from(r.i16()?).ok()?;
    let weight = i32::from(r.i16()?);
    let sign = r.i16()? as u16;
    let dscale = usize::try_from(r.i16()?).ok()?;
    let digits = (0..ndigits)
        .map(|_| r.i16())
        .collect::<Option<Vec<i16>>>()?;
    if digits.iter().any(|d| !(0..10_000).contains(d)) {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    // Integer part: groups 0..=weight.
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                out.push_str(&digit(i).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn binary_values_of_the_common_types() {
        assert_eq!(render(oid::INT4, true, &42i32.to_be_bytes()), "42");
        assert_eq!(render(oid::INT8, true, &(-7i64).to_be_bytes()), "-7");
        assert_eq!(render(oid::INT2, true, &3i16.to_be_bytes()), "3");
        assert_eq!(render(oid::FLOAT8, true, &1.5f64.to_be_bytes()), "1.5");
        assert_eq!(render(oid::BOOL, true, &[1]), "true");
        assert_eq!(render(oid::TEXT, true, b"caf\xc3\xa9"), "café");
        assert_eq!(
            render(oid::UUID, true, &[0x12; 16]),
            "12121212-1212-1212-1212-121212121212"
        );
        // 2026-11-25 14:50:44.5 is 848,933,444.5 s after 2000-01-01.
        let micros: i64 = 848_933_444_500_000;
        assert_eq!(
            render(oid::TIMESTAMP, true, &micros.to_be_bytes()),
            "2026-11-25 14:50:44.5"
        );
        assert_eq!(render(oid::DATE, true, &0i32.to_be_bytes()), "2000-01-01");
    }

    #[test]
    fn numeric_in_base_10000() {
        // 12345.678 = [1, 2345, 6780] weight 1, dscale 3.
        let v = numeric_bytes(1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(render(oid::NUMERIC, true, &v), "12345.678");
        // -0.05 = [500] weight -1, dscale 2.
        let v = numeric_bytes(-1, 0x4000, 2, &[500]);
        assert_eq!(render(oid::NUMERIC, true, &v), "-0.05");
        // 20000 = [2] weight 1, dscale 0.
        let v = numeric_bytes(1, 0, 0, &[2]);
        assert_eq!(render(oid::NUMERIC, true, &v), "20000");
        assert_eq!(
            render(oid::NUMERIC, true, &numeric_bytes(0, 0xC000, 0, &[])),
            "NaN"
        );
    }

    #[test]
    fn unknown_or_malformed_binary_is_hex() {
        assert_eq!(render(600, true, &[0xde, 0xad]), "\\xdead");
        assert_eq!(render(oid::INT4, true, &[1, 2]), "\\x0102");
        assert_eq!(render(oid::INT4, false, b"17"), "17");
    }
}
