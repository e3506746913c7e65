//! Reading lines with a bound on what one line may cost (issue 15, item 10).
//!
//! `BufRead::read_until` grows its buffer to the whole line, so a file without
//! newlines (or a small gzip bomb that inflates to one) cost its whole size in
//! memory, and more. Here a line is scanned with `fill_buf` and `memchr`: at
//! most `max` bytes of it are kept, the rest is skipped up to its newline
//! without being held, and the caller learns that the line was cut. Nothing is
//! allocated by a size the input announces: the buffer grows with the bytes
//! actually read, up to `max`.

use std::io::{self, BufRead};

/// The longest line (and the longest statement made of several lines) the
/// readers hold: well above the longest statements applications send (bulk
/// INSERTs of a few MB), and small enough that a hostile file costs tens of
/// MB, not gigabytes. A longer line is reported as not understood with its
/// `file:line`, and reading goes on at the next line.
pub const MAX_LINE: usize = 16 << 20;

/// [`MAX_LINE`] as messages name it.
pub fn limit_text(max: usize) -> String {
    if max >= 1 << 20 && max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else if max >= 1 << 10 && max.is_multiple_of(1 << 10) {
        format!("{} KiB", max >> 10)
    } else {
        format!("{max} bytes")
    }
}

/// How a line read by [`read_line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineEnd {
    /// The line ended with a newline; `false` for a last line without one.
    pub newline: bool,
    /// The line was longer than the bound: the buffer holds its first bytes
    /// only, and the rest of it was skipped.
    pub cut: bool,
}

/// Reads the next line into `buf` (cleared first), without its `\n` or
/// `\r\n`, keeping at most `max` bytes of it. `None` at the end of the input.
pub fn read_line<R: BufRead + ?Sized>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<LineEnd>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(LineEnd {
                newline: false,
                cut,
            }));
        }
        any = true;
        let (content, used, newline) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, i + 1, true),
            None => (chunk.len(), chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if content > room {
            cut = true;
        }
        let keep = content.min(room);
        if keep > 0 {
            grow(buf, keep, max);
            buf.extend_from_slice(&chunk[..keep]);
        }
        input.consume(used);
        if newline {
            if !cut && buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(LineEnd { newline: true, cut }));
        }
    }
}

/// Makes room for `more` bytes, doubling as `Vec` does but never past `max`,
/// so that a line at the bound costs the bound, not twice it.
fn grow(buf: &mut Vec<u8>, more: usize, max: usize) {
    let need = buf.len() + more;
    if need > buf.capacity() {
        let target = (buf.capacity() * 2).min(max).max(need);
        buf.reserve_exact(target - buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize, chunk: usize) -> Vec<(String, LineEnd)> {
        let mut r = io::BufReader::with_capacity(chunk, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(end) = read_line(&mut r, &mut buf, max).expect("in memory") {
            assert!(buf.len() <= max && buf.capacity() <= max.max(8));
            out.push((String::from_utf8_lossy(&buf).into_owned(), end));
        }
        out
    }

    const WHOLE: LineEnd = LineEnd {
        newline: true,
        cut: false,
    };

    #[test]
    fn lines_whole_cut_and_last() {
        for chunk in [1, 3, 64] {
            let got = lines(b"ab\r\n\nabcdefgh\nxy", 4, chunk);
            assert_eq!(
                got,
                [
                    ("ab".to_owned(), WHOLE),
                    (String::new(), WHOLE),
                    (
                        "abcd".to_owned(),
                        LineEnd {
                            newline: true,
                            cut: true
                        }
                    ),
                    (
                        "xy".to_owned(),
                        LineEnd {
                            newline: false,
                            cut: false
                        }
                    ),
                ],
                "chunk {chunk}"
            );
        }
        assert_eq!(lines(b"", 4, 8), []);
        assert_eq!(lines(b"abcd\n", 4, 8), [("abcd".to_owned(), WHOLE)]);
    }

    #[test]
    fn limits_are_named_in_their_unit() {
        assert_eq!(limit_text(MAX_LINE), "16 MiB");
        assert_eq!(limit_text(64 << 10), "64 KiB");
        assert_eq!(limit_text(100), "100 bytes");
    }
}
