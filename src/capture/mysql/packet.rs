//! Framing of the MySQL client/server protocol byte stream (MySQL internals,
//! "MySQL Packets"): every packet is a 3-byte little-endian payload length, a
//! 1-byte sequence id, then the payload. A payload of 2^24 − 1 bytes or more
//! is sent as several packets: each full one (exactly 0xFFFFFF bytes) is
//! followed by the next, the last one shorter (possibly empty).
//!
//! Written by hand rather than taken from a crate, for the reasons the
//! PostgreSQL framing gives (`proxy::frame`): the relay forwards the bytes it
//! reads untouched and only observes a copy, so the decoder must accept any
//! chunk boundaries, never buffer the bulk of a result set or of a file sent
//! with `LOAD DATA LOCAL INFILE`, and never fail on bytes it does not
//! understand. The crates that speak the protocol (mysql_async, sqlx's
//! MySQL driver, opensrv-mysql) own the stream and decode it into their
//! own types instead.

/// Longest payload of one physical packet; a packet this long continues in
/// the next one.
pub const MAX_PACKET: usize = 0xFF_FFFF;

/// How many bytes of one logical payload the observer keeps at most. A
/// statement longer than this still goes on whole; the observer sees its
/// start, marked as cut.
pub const MAX_OBSERVED: usize = 16 * 1024 * 1024;

/// One logical packet (continuations joined) as the observer sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The sequence id of its first physical packet.
    pub seq: u8,
    /// The payload, or its first bytes when it was longer than kept.
    pub payload: &'a [u8],
    /// The whole payload's length.
    pub len: usize,
    /// Not all of it was kept.
    pub truncated: bool,
}

/// How much of a payload to keep, from its first byte: the observer reads
/// the start of a row or a file block, and all of a statement.
pub type Keep = fn(first: u8) -> usize;

/// Cuts a byte stream into logical packets, whatever the chunk boundaries.
#[derive(Debug)]
pub struct PacketDecoder {
    /// Header bytes of the physical packet in progress, until all four came.
    header: [u8; 4],
    header_len: usize,
    /// Payload bytes still to come of the physical packet in progress.
    remaining: usize,
    /// The logical packet in progress: its sequence id, its length so far,
    /// whether a physical packet of it is still to come.
    seq: u8,
    len: usize,
    continued: bool,
    /// Kept bytes of the logical packet in progress.
    kept: Vec<u8>,
    /// Bytes of it kept at most; decided by `keep` from its first byte.
    limit: Option<usize>,
    keep: Keep,
    /// With [`PacketDecoder::feed_discarding`], every payload is counted, not
    /// kept (the blocks of a file the client sends).
    discarding: bool,
}

impl PacketDecoder {
    pub fn new(keep: Keep) -> Self {
        PacketDecoder {
            header: [0; 4],
            header_len: 0,
            remaining: 0,
            seq: 0,
            len: 0,
            continued: false,
            kept: Vec::new(),
            limit: None,
            keep,
            discarding: false,
        }
    }

    /// Whether the decoder is between logical packets.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0 && !self.continued
    }

    /// Feeds the next bytes of the stream; `on_packet` sees every logical
    /// packet completed by them, in order.
    pub fn feed(&mut self, chunk: &[u8], on_packet: impl FnMut(Packet<'_>)) {
        self.discarding = false;
        self.feed_inner(chunk, on_packet);
    }

    /// As [`PacketDecoder::feed`], keeping none of the payloads.
    pub fn feed_discarding(&mut self, chunk: &[u8], on_packet: impl FnMut(Packet<'_>)) {
        self.discarding = true;
        self.feed_inner(chunk, on_packet);
    }

    fn feed_inner(&mut self, mut chunk: &[u8], mut on_packet: impl FnMut(Packet<'_>)) {
        while !chunk.is_empty() || (self.header_len == 4 && self.remaining == 0) {
            if self.header_len < 4 {
                let take = (4 - self.header_len).min(chunk.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&chunk[..take]);
                self.header_len += take;
                chunk = &chunk[take..];
                if self.header_len < 4 {
                    return;
                }
                let physical = usize::from(self.header[0])
                    | usize::from(self.header[1]) << 8
                    | usize::from(self.header[2]) << 16;
                if !self.continued {
                    self.seq = self.header[3];
                    self.len = 0;
                    self.kept.clear();
                    self.limit = None;
                }
                self.remaining = physical;
                self.continued = physical == MAX_PACKET;
            }
            let take = self.remaining.min(chunk.len());
            if take > 0 {
                let limit = match self.limit {
                    Some(limit) => limit,
                    None => {
                        let limit = if self.discarding {
                            0
                        } else {
                            (self.keep)(chunk[0]).min(MAX_OBSERVED)
                        };
                        self.limit = Some(limit);
                        limit
                    }
                };
                let room = limit.saturating_sub(self.kept.len()).min(take);
                self.kept.extend_from_slice(&chunk[..room]);
                self.len += take;
                self.remaining -= take;
                chunk = &chunk[take..];
            }
            if self.remaining > 0 {
                return;
            }
            // The physical packet is complete.
            self.header_len = 0;
            if !self.continued {
                on_packet(Packet {
                    seq: self.seq,
                    payload: &self.kept,
                    len: self.len,
                    truncated: self.kept.len() < self.len,
                });
                if self.kept.capacity() > 1024 * 1024 {
                    // A 16 MB statement kept once is not kept for good.
                    self.kept = Vec::new();
                }
            }
        }
    }
}

/// A packet's bytes: header and payload, split into physical packets when
/// it is longer than one may be. For what the proxy itself sends (an error
/// to a client, the statement that makes a fault).
pub fn encode(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PACKET);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        seq = seq.wrapping_add(1);
        if n < MAX_PACKET {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(_: u8) -> usize {
        usize::MAX
    }

    fn collect(decoder: &mut PacketDecoder, chunks: &[&[u8]]) -> Vec<(u8, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, |p| out.push((p.seq, p.payload.to_vec(), p.len)));
        }
        out
    }

    #[test]
    fn packets_are_cut_at_any_boundary() {
        let mut bytes = encode(0, b"\x03select 1");
        bytes.extend(encode(1, b""));
        bytes.extend(encode(7, b"\x0e"));
        let whole = collect(&mut PacketDecoder::new(all), &[&bytes]);
        assert_eq!(
            whole,
            vec![
                (0, b"\x03select 1".to_vec(), 9),
                (1, Vec::new(), 0),
                (7, vec![0x0e], 1)
            ]
        );
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(collect(&mut PacketDecoder::new(all), &[a, b]), whole);
        }
    }

    #[test]
    fn long_payloads_are_joined_and_kept_to_the_limit() {
        let payload: Vec<u8> = (0..MAX_PACKET + 10).map(|i| (i % 251) as u8).collect();
        let bytes = encode(3, &payload);
        assert_eq!(bytes.len(), payload.len() + 8, "two physical packets");
        let mut d = PacketDecoder::new(|_| 100);
        let mut seen = Vec::new();
        for chunk in bytes.chunks(65_536) {
            d.feed(chunk, |p| {
                seen.push((p.seq, p.payload.to_vec(), p.len, p.truncated));
            });
        }
        assert_eq!(
            seen,
            vec![(3, payload[..100].to_vec(), payload.len(), true)]
        );
        assert!(d.at_boundary());
        // Exactly 0xFFFFFF bytes: an empty packet ends it.
        let exact = encode(0, &payload[..MAX_PACKET]);
        assert_eq!(exact.len(), MAX_PACKET + 8);
        let mut d = PacketDecoder::new(|_| 0);
        let mut lens = Vec::new();
        d.feed(&exact, |p| lens.push(p.len));
        assert_eq!(lens, vec![MAX_PACKET]);
    }

    #[test]
    fn discarding_keeps_nothing() {
        let mut d = PacketDecoder::new(all);
        let mut seen = Vec::new();
        d.feed_discarding(&encode(2, b"1,2,3\n"), |p| {
            seen.push((p.payload.len(), p.len));
        });
        assert_eq!(seen, vec![(0, 6)]);
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_chunks_decode_alike(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let whole = collect(&mut PacketDecoder::new(|b| usize::from(b) % 17), &[&bytes]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts {
                chunks.push(&bytes[from..c]);
                from = c;
            }
            chunks.push(&bytes[from..]);
            let pieces = collect(&mut PacketDecoder::new(|b| usize::from(b) % 17), &chunks);
            prop_assert_eq!(whole, pieces);
        }
    }
}
