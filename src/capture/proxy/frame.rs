//! Framing of the PostgreSQL protocol 3.0 byte stream (protocol docs, "Message
//! Formats"). After the startup packet every message is a 1-byte tag and a
//! big-endian int32 length that counts itself but not the tag.
//!
//! Written by hand rather than taken from a crate: the relay forwards the bytes
//! it reads untouched and only *observes* a copy, so it needs a decoder that
//! accepts arbitrary chunk boundaries, never buffers the bulk of a result set
//! (DataRow, CopyData), and never fails on a frame it does not understand. The
//! crates that speak the protocol (tokio-postgres' codec, pgwire) own the stream
//! and decode every message into their own types instead.

/// How many bytes of one message the observer keeps at most. Larger messages of
/// an observed kind (a Query with a megabyte of SQL) are still forwarded whole;
/// the observer sees them as truncated.
pub const MAX_OBSERVED: usize = 16 * 1024 * 1024;

/// What the observer keeps of a message longer than [`MAX_OBSERVED`]: its
/// start, enough for the names, the start of the SQL and of the values
/// (issue 13, defect 2). The length field says how long it is, so the copy
/// stops here rather than at 16 MB, and the rest is only counted.
pub const OVERSIZED_PREFIX: usize = 64 * 1024;

/// One whole message as the observer sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    /// The body without tag and length; empty when the kind is skipped.
    pub body: &'a [u8],
    /// The body's length as the length field gave it.
    pub len: usize,
    /// The body was not kept whole (a skipped kind, or longer than [`MAX_OBSERVED`]).
    pub truncated: bool,
}

/// Cuts a byte stream into frames, whatever the chunk boundaries.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes of the message being assembled (header first).
    partial: Vec<u8>,
    /// Tag and body length of the message in progress, once its header is known.
    current: Option<(u8, usize)>,
    /// Body bytes still to come of the message in progress.
    remaining: usize,
    /// Whether the message in progress is kept (false: counted, not copied).
    keeping: bool,
    /// Bytes of the message in progress kept at most.
    limit: usize,
    /// Kinds whose bodies the observer does not need.
    skip: fn(u8) -> bool,
    /// The stream no longer makes sense (a negative length): stop observing.
    lost: bool,
    /// Bodies kept at most (see [`MAX_OBSERVED`]).
    max: usize,
    /// With [`FrameDecoder::feed_relaying`]: the message in progress is held
    /// whole before it goes on (false: it goes on piece by piece).
    held: bool,
}

impl FrameDecoder {
    /// A decoder that keeps the bodies of every kind except those `skip` names.
    pub fn new(skip: fn(u8) -> bool) -> Self {
        FrameDecoder {
            partial: Vec::new(),
            current: None,
            remaining: 0,
            keeping: false,
            limit: 0,
            skip,
            lost: false,
            max: MAX_OBSERVED,
            held: false,
        }
    }

    /// True once a malformed length made the stream undecodable: bytes are
    /// still forwarded, nothing more is observed.
    pub fn lost_sync(&self) -> bool {
        self.lost
    }

    /// Feeds the next chunk of the stream; calls `on_frame` for every message
    /// that this chunk completes, in order.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        while !chunk.is_empty() && !self.lost {
            let Some((tag, len)) = self.current else {
                // Assembling the 5-byte header.
                let need = 5 - self.partial.len();
                let take = need.min(chunk.len());
                self.partial.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.partial.len() < 5 {
                    return;
                }
                let tag = self.partial[0];
                let raw = i32::from_be_bytes([
                    self.partial[1],
                    self.partial[2],
                    self.partial[3],
                    self.partial[4],
                ]);
                self.partial.clear();
                if raw < 4 {
                    self.lost = true;
                    return;
                }
                let len = raw as usize - 4;
                self.current = Some((tag, len));
                self.remaining = len;
                self.keeping = !(self.skip)(tag);
                self.limit = if len <= self.max {
                    len
                } else {
                    OVERSIZED_PREFIX.min(self.max)
                };
                if self.keeping && len <= self.max {
                    // A whole body inside this chunk needs no copy.
                    if self.partial.is_empty() && chunk.len() >= len {
                        on_frame(Frame {
                            tag,
                            body: &chunk[..len],
                            len,
                            truncated: false,
                        });
                        chunk = &chunk[len..];
                        self.current = None;
                        continue;
                    }
                    self.partial.reserve(len.min(64 * 1024));
                }
                if len == 0 {
                    on_frame(Frame {
                        tag,
                        body: &[],
                        len: 0,
                        truncated: !self.keeping,
                    });
                    self.current = None;
                }
                continue;
            };
            let take = self.remaining.min(chunk.len());
            if self.keeping && self.partial.len() < self.limit {
                let room = self.limit - self.partial.len();
                self.partial.extend_from_slice(&chunk[..take.min(room)]);
            }
            chunk = &chunk[take..];
            self.remaining -= take;
            if self.remaining == 0 {
                let truncated = !self.keeping || len > self.max;
                let body = if self.keeping {
                    &self.partial[..]
                } else {
                    &[][..]
                };
                on_frame(Frame {
                    tag,
                    body,
                    len,
                    truncated,
                });
                self.partial.clear();
                if self.partial.capacity() > 1024 * 1024 {
                    self.partial = Vec::new();
                }
                self.current = None;
            }
        }
    }
}

impl FrameDecoder {
    /// Feeds the next chunk of a stream that the relay forwards message by
    /// message (fault injection), appending to `out` what goes on. A message
    /// the observer keeps whole is held until it is complete and handed to
    /// `on_frame`, which appends it (or what replaces it) to `out`. The
    /// others, rows, COPY data and messages longer than [`MAX_OBSERVED`],
    /// go to `out` piece by piece as they arrive, only their start kept for
    /// the observer; `on_frame` sees them `truncated` at their end and
    /// appends nothing. A 200 MB row was held whole before (issue 15, item 7).
    pub fn feed_relaying(
        &mut self,
        mut chunk: &[u8],
        out: &mut Vec<u8>,
        mut on_frame: impl FnMut(Frame<'_>, &mut Vec<u8>),
    ) {
        while !chunk.is_empty() {
            if self.lost {
                // Not a stream of messages any more: bytes go on as they came.
                out.extend_from_slice(chunk);
                return;
            }
            let Some((tag, len)) = self.current else {
                let need = 5 - self.partial.len();
                let take = need.min(chunk.len());
                self.partial.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.partial.len() < 5 {
                    return;
                }
                let tag = self.partial[0];
                let raw = i32::from_be_bytes([
                    self.partial[1],
                    self.partial[2],
                    self.partial[3],
                    self.partial[4],
                ]);
                if raw < 4 {
                    self.lost = true;
                    out.extend_from_slice(&self.partial);
                    self.partial.clear();
                    continue;
                }
                let len = raw as usize - 4;
                self.keeping = !(self.skip)(tag);
                self.held = self.keeping && len <= self.max;
                self.limit = match (self.held, self.keeping) {
                    (true, _) => len,
                    (false, true) => OVERSIZED_PREFIX.min(len),
                    (false, false) => 0,
                };
                if !self.held {
                    out.extend_from_slice(&self.partial);
                }
                self.partial.clear();
                self.current = Some((tag, len));
                self.remaining = len;
                if self.held && chunk.len() >= len {
                    // A whole body inside this chunk needs no copy.
                    on_frame(
                        Frame {
                            tag,
                            body: &chunk[..len],
                            len,
                            truncated: false,
                        },
                        out,
                    );
                    chunk = &chunk[len..];
                    self.current = None;
                    continue;
                }
                if len == 0 {
                    on_frame(
                        Frame {
                            tag,
                            body: &[],
                            len: 0,
                            truncated: true,
                        },
                        out,
                    );
                    self.current = None;
                    continue;
                }
                self.partial.reserve(self.limit.min(64 * 1024));
                continue;
            };
            let take = self.remaining.min(chunk.len());
            let piece = &chunk[..take];
            if !self.held {
                out.extend_from_slice(piece);
            }
            if self.partial.len() < self.limit {
                let room = self.limit - self.partial.len();
                self.partial.extend_from_slice(&piece[..take.min(room)]);
            }
            chunk = &chunk[take..];
            self.remaining -= take;
            if self.remaining == 0 {
                on_frame(
                    Frame {
                        tag,
                        body: &self.partial,
                        len,
                        truncated: !self.held,
                    },
                    out,
                );
                self.partial.clear();
                if self.partial.capacity() > 1024 * 1024 {
                    self.partial = Vec::new();
                }
                self.current = None;
            }
        }
    }
}

/// Server messages whose bodies the observer does not read: result rows and
/// COPY data, the bulk of the traffic, authentication requests (a SCRAM
/// exchange's salt, nonces and server signature are enough to test password
/// guesses offline) and BackendKeyData (the key that cancels the session's
/// queries; issue 15).
pub fn skip_server(tag: u8) -> bool {
    matches!(tag, b'D' | b'd' | b'R' | b'K')
}

/// Client messages whose bodies the observer does not read: COPY data, and
/// the answers to authentication (PasswordMessage, SASLInitialResponse,
/// SASLResponse, GSSResponse: all `p`), which are forwarded and never
/// copied (issue 15).
pub fn skip_client(tag: u8) -> bool {
    matches!(tag, b'd' | b'p')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn decode_all(stream: &[u8], cuts: &[usize]) -> Vec<(u8, Vec<u8>, bool)> {
        let mut decoder = FrameDecoder::new(skip_server);
        let mut seen = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(start, stream.len());
            decoder.feed(&stream[start..cut], |f| {
                seen.push((f.tag, f.body.to_vec(), f.truncated))
            });
            start = cut;
        }
        seen
    }

    #[test]
    fn whole_and_split_frames_decode_alike() {
        let mut stream = frame(b'Q', b"select 1\0");
        stream.extend(frame(b'D', b"\0\x01\0\0\0\x011"));
        stream.extend(frame(b'Z', b"I"));
        stream.extend(frame(b'S', b""));
        let whole = decode_all(&stream, &[]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0], (b'Q', b"select 1\0".to_vec(), false));
        assert_eq!(
            whole[1],
            (b'D', vec![], true),
            "rows are counted, not copied"
        );
        assert_eq!(whole[3], (b'S', vec![], false));
        for cut in 0..stream.len() {
            assert_eq!(decode_all(&stream, &[cut]), whole, "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(decode_all(&stream, &every_byte), whole);
    }

    #[test]
    fn a_negative_length_stops_observing_without_panicking() {
        let mut stream = vec![b'Q', 0xff, 0xff, 0xff, 0xff];
        stream.extend(frame(b'Z', b"I"));
        let mut decoder = FrameDecoder::new(skip_server);
        let mut seen = 0;
        decoder.feed(&stream, |_| seen += 1);
        assert!(decoder.lost_sync());
        assert_eq!(seen, 0);
    }

    /// Issue 13, defect 2: of a message over the limit only its start is
    /// copied, and the message after it is whole.
    #[test]
    fn an_oversized_body_is_reported_truncated_with_its_start() {
        let mut body = b"select '".to_vec();
        body.resize(MAX_OBSERVED + 10, b'x');
        let mut stream = frame(b'Q', &body);
        stream.extend(frame(b'S', b""));
        let seen = decode_all(&stream, &[7, 1000, MAX_OBSERVED]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.len(), OVERSIZED_PREFIX);
        assert!(seen[0].1.starts_with(b"select 'x"));
        assert!(seen[0].2);
        assert_eq!(seen[1], (b'S', vec![], false));
    }

    /// What `feed_relaying` sends on when every message kept whole goes on
    /// as it came: the stream must come out unchanged.
    fn relay_all(decoder: &mut FrameDecoder, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(start, stream.len());
            decoder.feed_relaying(&stream[start..cut], &mut out, |f, out| {
                if !f.truncated {
                    out.push(f.tag);
                    out.extend_from_slice(&(f.len as i32 + 4).to_be_bytes());
                    out.extend_from_slice(f.body);
                }
            });
            start = cut;
        }
        out
    }

    /// Issue 15, item 7: relaying message by message, a row goes on piece
    /// by piece as it arrives, never held, and what the observer reads is
    /// held until it is whole.
    #[test]
    fn relaying_passes_rows_on_in_pieces_and_holds_what_is_observed() {
        let row = frame(b'D', &vec![b'x'; 1_000_000]);
        let mut decoder = FrameDecoder::new(skip_server);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for piece in row.chunks(64 * 1024) {
            let before = out.len();
            decoder.feed_relaying(piece, &mut out, |f, _| {
                seen.push((f.tag, f.len, f.truncated))
            });
            assert_eq!(out.len() - before, piece.len(), "the piece went on at once");
            assert!(
                decoder.partial.capacity() < 1024,
                "nothing of the row is kept"
            );
        }
        assert_eq!(out, row);
        assert_eq!(seen, vec![(b'D', 1_000_000, true)]);
        let command = frame(b'C', b"SELECT 1\0");
        let mut out = Vec::new();
        decoder.feed_relaying(&command[..4], &mut out, |_, _| {});
        assert!(out.is_empty(), "a message observed waits until it is whole");
        assert_eq!(relay_all(&mut decoder, &command[4..], &[2]), command);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn encode(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
            let mut out = Vec::new();
            for (tag, body) in frames {
                out.push(*tag);
                out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
                out.extend_from_slice(body);
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Arbitrary bytes in arbitrary chunks: never a panic, and every
            /// frame reported is within what was fed.
            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                cuts in proptest::collection::vec(any::<usize>(), 0..16),
            ) {
                let mut decoder = FrameDecoder::new(skip_server);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
                cuts.sort_unstable();
                let mut start = 0;
                let mut total = 0;
                for cut in cuts.into_iter().chain(std::iter::once(bytes.len())) {
                    decoder.feed(&bytes[start..cut], |f| total += 5 + f.len);
                    start = cut;
                }
                prop_assert!(total <= bytes.len());
            }

            /// Relayed message by message, valid frames in arbitrary chunks
            /// come out as they went in; arbitrary bytes come out as a
            /// prefix of what went in (a message unfinished at the end
            /// waits for the rest).
            #[test]
            fn relaying_changes_nothing(
                frames in proptest::collection::vec(
                    (prop_oneof![Just(b'Q'), Just(b'D'), Just(b'd'), Just(b'Z'), any::<u8>()],
                     proptest::collection::vec(any::<u8>(), 0..300)),
                    0..20),
                junk in proptest::collection::vec(any::<u8>(), 0..64),
                cuts in proptest::collection::vec(any::<usize>(), 0..32),
            ) {
                let mut stream = encode(&frames);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
                cuts.sort_unstable();
                let mut decoder = FrameDecoder::new(skip_server);
                prop_assert_eq!(super::relay_all(&mut decoder, &stream, &cuts), stream.clone());
                stream.extend(junk);
                let mut decoder = FrameDecoder::new(skip_server);
                let out = super::relay_all(&mut decoder, &stream, &cuts);
                prop_assert!(stream.starts_with(&out));
            }

            /// Valid frames split at arbitrary points decode to exactly the
            /// frames that were sent: the decoder never loses sync.
            #[test]
            fn valid_frames_survive_any_split(
                frames in proptest::collection::vec(
                    (prop_oneof![Just(b'Q'), Just(b'D'), Just(b'C'), Just(b'Z'), any::<u8>()],
                     proptest::collection::vec(any::<u8>(), 0..300)),
                    0..40),
                cuts in proptest::collection::vec(any::<usize>(), 0..64),
            ) {
                let stream = encode(&frames);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
                cuts.sort_unstable();
                let mut decoder = FrameDecoder::new(skip_server);
                let mut seen = Vec::new();
                let mut start = 0;
                for cut in cuts.into_iter().chain(std::iter::once(stream.len())) {
                    decoder.feed(&stream[start..cut], |f| seen.push((f.tag, f.body.to_vec(), f.len)));
                    start = cut;
                }
                prop_assert!(!decoder.lost_sync());
                prop_assert_eq!(seen.len(), frames.len());
                for ((tag, body, len), (sent_tag, sent_body)) in seen.iter().zip(&frames) {
                    prop_assert_eq!(tag, sent_tag);
                    prop_assert_eq!(*len, sent_body.len());
                    if skip_server(*tag) {
                        prop_assert!(body.is_empty());
                    } else {
                        prop_assert_eq!(body, sent_body);
                    }
                }
            }
        }
    }
}
