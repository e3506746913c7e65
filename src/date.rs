//! Calendar dates for `expires = "YYYY-MM-DD"` in rule files: parsed by hand
//! (proleptic Gregorian, UTC), since nothing else in flowaudit needs a date
//! library.

use std::time::{SystemTime, UNIX_EPOCH};

/// A day, ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Parses `YYYY-MM-DD`, refusing days that do not exist (2026-02-30).
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let s = &text[r];
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        let year = i32::try_from(num(0..4)?).ok()?;
        let month = u8::try_from(num(5..7)?).ok()?;
        let day = u8::try_from(num(8..10)?).ok()?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Today in UTC, from the system clock.
    pub fn today() -> Date {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Date::from_days((secs / 86_400) as i64)
    }

    /// The date `days` after 1970-01-01 (H. Hinnant, "chrono-compatible
    /// low-level date algorithms", civil_from_days).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, written digit by digit: the proxy and
/// the SQLite capture format one for every statement.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let date = Date::from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    let mut out = String::with_capacity(27);
    push_digits(&mut out, u64::try_from(date.year).unwrap_or(0), 4);
    out.push('-');
    push_digits(&mut out, u64::from(date.month), 2);
    out.push('-');
    push_digits(&mut out, u64::from(date.day), 2);
    out.push('T');
    push_digits(&mut out, rest / 3600, 2);
    out.push(':');
    push_digits(&mut out, rest / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, rest % 60, 2);
    out.push('.');
    push_digits(&mut out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
    out
}

fn push_digits(out: &mut String, value: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u64.pow(i) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::Date;

    #[test]
    fn times_are_rfc3339_utc_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let t = UNIX_EPOCH + Duration::new(1_795_618_244, 500_000_000);
        assert_eq!(super::rfc3339(t), "2026-11-25T14:50:44.500000Z");
        assert_eq!(super::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn parses_and_refuses() {
        let d = Date::parse("2026-11-25").expect("valid");
        assert_eq!((d.year, d.month, d.day), (2026, 11, 25));
        assert_eq!(d.to_string(), "2026-11-25");
        assert!(Date::parse("2024-02-29").is_some());
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-11-25",
            "2026-11-25T00",
            "abcd-ef-gh",
            "2026-00-10",
            "2026-+1-10",
        ] {
            assert!(Date::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn days_since_the_epoch() {
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_days(20_417).to_string(), "2025-11-25");
        assert_eq!(Date::from_days(11_016).to_string(), "2000-02-29");
        assert!(Date::today() > Date::parse("2025-01-01").expect("valid"));
    }
}
