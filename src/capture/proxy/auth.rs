//! The authentication exchange, relayed message by message before the relay
//! proper starts.
//!
//! Until the server says AuthenticationOk, a client may only answer its
//! authentication requests (PasswordMessage, SASLInitialResponse,
//! SASLResponse, GSSResponse: tag `p`), and PostgreSQL reads each answer
//! with a limit of PG_MAX_AUTH_TOKEN_LENGTH, 65535 bytes
//! (src/include/libpq/auth.h, recv_password_packet in
//! src/backend/libpq/auth.c). The proxy applies the same limit before a
//! byte of the message goes on: a client announcing a 2 GB password message
//! is answered "invalid message length" (08P01) and closed, and nothing
//! holds its bytes meanwhile (issue 15, item 7).
//!
//! Both directions are read one message at a time, a header and then the
//! body in pieces, so that the exchange ends exactly after AuthenticationOk
//! on the server's side and at the end of a message on the client's: the
//! relay's decoders start at message boundaries. Nothing here is observed:
//! the observer has no use for authentication (and must not see passwords).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::messages;

/// The largest message a client may send before it is authenticated, its
/// length field included (PG_MAX_AUTH_TOKEN_LENGTH).
pub const MAX_AUTH_MESSAGE: u32 = 65_535;

/// How the exchange ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Auth {
    /// The server accepted the client: relay from here on.
    Accepted,
    /// One side closed (a failed login ends so); the other was told.
    Closed,
}

/// Where a side's stream is: inside the header or the body of a message.
#[derive(Debug, Default)]
struct Cursor {
    head: [u8; 5],
    /// Header bytes read of the message in progress.
    have: usize,
    /// Body bytes still to come.
    remaining: usize,
    /// The body's first bytes (AuthenticationOk is `R` with a zero code).
    code: [u8; 4],
    /// Body bytes read so far.
    read: usize,
}

/// What a chunk did to a [`Cursor`].
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A header is complete: tag and length field.
    Header(u8, u32),
    /// A message is complete: its tag and code (the body's first 4 bytes).
    Done(u8, [u8; 4]),
    More,
}

impl Cursor {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// How many bytes to read next: never past the message in progress.
    fn want(&self, room: usize) -> usize {
        if self.have < 5 {
            5 - self.have
        } else {
            self.remaining.min(room)
        }
    }

    /// Takes `chunk`, which is at most [`Cursor::want`] bytes long.
    fn advance(&mut self, chunk: &[u8]) -> Step {
        if self.have < 5 {
            self.head[self.have..self.have + chunk.len()].copy_from_slice(chunk);
            self.have += chunk.len();
            if self.have < 5 {
                return Step::More;
            }
            let len = u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
            self.remaining = (len as usize).saturating_sub(4);
            self.read = 0;
            // With an empty body, `finish_if_done` then reports its end.
            return Step::Header(self.head[0], len);
        }
        for &b in chunk {
            if self.read < 4 {
                self.code[self.read] = b;
            }
            self.read += 1;
        }
        self.remaining -= chunk.len();
        self.finish_if_done()
    }

    /// After a header with an empty body, or a body's last piece.
    fn finish_if_done(&mut self) -> Step {
        if self.have == 5 && self.remaining == 0 {
            self.have = 0;
            let code = if self.read >= 4 { self.code } else { [0xff; 4] };
            return Step::Done(self.head[0], code);
        }
        Step::More
    }
}

/// Relays the authentication exchange until the server accepts the client
/// or either side closes. The error says why the connection ended.
pub async fn authenticate(client: &mut TcpStream, server: &mut TcpStream) -> Result<Auth, String> {
    let (mut from_client, mut from_server) = (Cursor::default(), Cursor::default());
    let (mut client_buf, mut server_buf) = ([0u8; 8192], [0u8; 8192]);
    // What goes on, written once a message is whole or 8 KiB of it came:
    // a header and its body in one write, not two.
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut accepted = false;
    loop {
        if accepted && from_client.at_boundary() {
            return Ok(Auth::Accepted);
        }
        let want_client = from_client.want(client_buf.len());
        let want_server = from_server.want(server_buf.len());
        tokio::select! {
            read = client.read(&mut client_buf[..want_client]) => {
                let n = read.map_err(|e| format!("closed during authentication: {e}"))?;
                if n == 0 {
                    let _ = server.shutdown().await;
                    return Ok(Auth::Closed);
                }
                let chunk = &client_buf[..n];
                let mut step = from_client.advance(chunk);
                if let Step::Header(tag, len) = step {
                    if !(4..=MAX_AUTH_MESSAGE).contains(&len) {
                        let frame = messages::fatal_error(
                            "08P01",
                            &format!(
                                "flowaudit: invalid message length {len} during authentication \
                                 (at most {MAX_AUTH_MESSAGE} bytes)"
                            ),
                        );
                        let _ = client.write_all(&frame).await;
                        let _ = client.shutdown().await;
                        return Err(format!(
                            "invalid message length {len} (message type {:?}) during \
                             authentication: closed",
                            char::from(tag)
                        ));
                    }
                    step = from_client.finish_if_done();
                }
                to_server.extend_from_slice(chunk);
                if matches!(step, Step::Done(..)) || to_server.len() >= client_buf.len() {
                    server
                        .write_all(&to_server)
                        .await
                        .map_err(|e| format!("the server closed during authentication: {e}"))?;
                    to_server.clear();
                }
            }
            read = server.read(&mut server_buf[..want_server]), if !accepted => {
                let n = read.map_err(|e| format!("the server closed during authentication: {e}"))?;
                if n == 0 {
                    let _ = client.shutdown().await;
                    return Ok(Auth::Closed);
                }
                let chunk = &server_buf[..n];
                let mut step = from_server.advance(chunk);
                if let Step::Header(_, len) = step {
                    if len < 4 {
                        return Err(format!("the server sent a message of length {len}"));
                    }
                    step = from_server.finish_if_done();
                }
                to_client.extend_from_slice(chunk);
                if matches!(step, Step::Done(..)) || to_client.len() >= server_buf.len() {
                    client
                        .write_all(&to_client)
                        .await
                        .map_err(|e| format!("closed during authentication: {e}"))?;
                    to_client.clear();
                }
                // AuthenticationOk: `R`, Int32(8), Int32(0).
                if step == Step::Done(b'R', [0; 4]) {
                    accepted = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Feeds `stream` a byte at a time as the relay would read it.
    fn steps(stream: &[u8]) -> Vec<Step> {
        let mut cursor = Cursor::default();
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = cursor.want(3).min(rest.len());
            let mut step = cursor.advance(&rest[..n]);
            if let Step::Header(..) = step {
                out.push(step);
                step = cursor.finish_if_done();
            }
            if step != Step::More {
                out.push(step);
            }
            rest = &rest[n..];
        }
        assert!(cursor.at_boundary());
        out
    }

    #[test]
    fn messages_are_followed_through_any_reads() {
        let mut stream = frame(b'R', &10u32.to_be_bytes());
        stream.extend(frame(b'R', &0u32.to_be_bytes()));
        stream.extend(frame(b'S', b""));
        assert_eq!(
            steps(&stream),
            vec![
                Step::Header(b'R', 8),
                Step::Done(b'R', [0, 0, 0, 10]),
                Step::Header(b'R', 8),
                Step::Done(b'R', [0; 4]),
                Step::Header(b'S', 4),
                Step::Done(b'S', [0xff; 4]),
            ]
        );
    }
}
