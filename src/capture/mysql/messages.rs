//! The payloads the observer reads (MySQL internals, "Client/Server
//! Protocol"; MariaDB's "Clients & Connectors / Client/Server Protocol"):
//! the server's greeting, the client's handshake response (its capability
//! flags and database, never its credentials), commands, and the server's
//! OK, ERR and EOF packets. Every reader returns `None` on bytes it cannot
//! read; none of them panics.

use std::borrow::Cow;

/// Capability flags (`CLIENT_*`) the observer needs to know about.
pub mod capability {
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// MariaDB's extended capabilities (the greeting's four bytes after the
    /// filler, when the server is MariaDB): cached result-set metadata,
    /// whose result sets may leave their column definitions out.
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags (`SERVER_STATUS_*`, `SERVER_MORE_RESULTS_EXISTS`).
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const CURSOR_EXISTS: u16 = 0x40;
    pub const LAST_ROW_SENT: u16 = 0x80;
}

/// Command bytes (`COM_*`).
pub mod command {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB's COM_STMT_BULK_EXECUTE: one prepared statement, many rows
    /// of parameters.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// A cursor over a payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-encoded integer; `None` also for 0xFB (NULL) and 0xFF.
    pub fn lenenc(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let width = match first {
            0..=0xfa => return Some(u64::from(first)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let bytes = self.take(width)?;
        let mut v = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        Some(v)
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.bytes.iter().position(|&b| b == 0)?;
        let s = &self.bytes[..end];
        self.bytes = &self.bytes[end + 1..];
        Some(s)
    }
}

/// The server's greeting (Protocol::HandshakeV10), as far as the proxy
/// needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub capabilities: u32,
    pub status: u16,
    /// Offsets in the payload of the capability flags' two halves, and of
    /// MariaDB's extended capabilities when the server is MariaDB.
    lower_at: usize,
    upper_at: Option<usize>,
    mariadb_at: Option<usize>,
}

impl Greeting {
    pub fn read(payload: &[u8]) -> Option<Greeting> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return None;
        }
        r.cstr()?; // server version
        r.take(4)?; // connection id
        r.take(8)?; // auth data, part 1
        r.take(1)?; // filler
        let lower_at = payload.len() - r.rest().len();
        let lower = r.u16()?;
        if r.rest().is_empty() {
            return Some(Greeting {
                capabilities: u32::from(lower),
                status: 0,
                lower_at,
                upper_at: None,
                mariadb_at: None,
            });
        }
        r.take(1)?; // character set
        let status = r.u16()?;
        let upper_at = payload.len() - r.rest().len();
        let upper = r.u16()?;
        let capabilities = u32::from(lower) | u32::from(upper) << 16;
        r.take(1)?; // auth data length
        r.take(6)?; // filler
        // MariaDB: without CLIENT_MYSQL (bit 0) the next four bytes are its
        // extended capabilities.
        let mariadb_at = (capabilities & 1 == 0).then(|| payload.len() - r.rest().len());
        r.take(4)?;
        Some(Greeting {
            capabilities,
            status,
            lower_at,
            upper_at: Some(upper_at),
            mariadb_at,
        })
    }

    /// The greeting with the capabilities the proxy does not relay cleared:
    /// TLS (the proxy relays plain bytes it can read), compression (it
    /// reads uncompressed packets), query attributes (MySQL 8's extra
    /// fields before a statement's text) and MariaDB's cached metadata
    /// (result sets without column definitions). A client then negotiates
    /// without them, exactly as with a server that lacks them.
    pub fn relayed(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = payload.to_vec();
        let clear = |out: &mut Vec<u8>, at: usize, mask: u16| {
            let v = u16::from_le_bytes([out[at], out[at + 1]]) & !mask;
            out[at..at + 2].copy_from_slice(&v.to_le_bytes());
        };
        let lower_mask = (capability::SSL | capability::COMPRESS) as u16;
        clear(&mut out, self.lower_at, lower_mask);
        if let Some(at) = self.upper_at {
            let upper_mask =
                ((capability::ZSTD_COMPRESSION | capability::QUERY_ATTRIBUTES) >> 16) as u16;
            clear(&mut out, at, upper_mask);
        }
        if let Some(at) = self.mariadb_at {
            clear(&mut out, at, capability::MARIADB_CACHE_METADATA as u16);
        }
        out
    }
}

/// The client's HandshakeResponse41, as far as the observer reads it: the
/// capabilities it asked for and the database it named. The credentials
/// after the user name are skipped, never read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub capabilities: u32,
    /// An SSLRequest: the client wants TLS before it says anything else.
    pub wants_tls: bool,
    pub database: Option<String>,
    /// The `program_name` connection attribute, when the client sent one.
    pub program: Option<String>,
}

impl Response {
    pub fn read(payload: &[u8]) -> Option<Response> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & capability::PROTOCOL_41 == 0 {
            // Protocol 320: too old to speak the rest of the protocol read here.
            return Some(Response {
                capabilities,
                ..Response::default()
            });
        }
        r.take(4)?; // max packet size
        r.take(1)?; // character set
        r.take(23)?; // filler (MariaDB's extended capabilities in the last 4)
        if r.rest().is_empty() {
            return Some(Response {
                capabilities,
                wants_tls: capabilities & capability::SSL != 0,
                ..Response::default()
            });
        }
        r.cstr()?; // user name
        // The authentication response: skipped by its length.
        if capabilities & capability::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?;
        } else if capabilities & capability::SECURE_CONNECTION != 0 {
            let n = r.u8()?;
            r.take(usize::from(n))?;
        } else {
            r.cstr()?;
        }
        let database = if capabilities & capability::CONNECT_WITH_DB != 0 {
            r.cstr()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .filter(|d| !d.is_empty())
        } else {
            None
        };
        if capabilities & capability::PLUGIN_AUTH != 0 {
            r.cstr();
        }
        let mut program = None;
        if capabilities & capability::CONNECT_ATTRS != 0
            && let Some(attrs) = r.lenenc_bytes()
        {
            let mut a = Reader::new(attrs);
            while let (Some(key), Some(value)) = (a.lenenc_bytes(), a.lenenc_bytes()) {
                if key == b"program_name" && !value.is_empty() {
                    program = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
        Some(Response {
            capabilities,
            wants_tls: false,
            database,
            program,
        })
    }
}

/// An OK packet (header 0x00, or 0xFE where it ends a result set for a
/// client that deprecated EOF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ok {
    pub affected: u64,
    pub status: u16,
}

pub fn ok(payload: &[u8]) -> Option<Ok> {
    let mut r = Reader::new(payload);
    r.u8()?;
    let affected = r.lenenc()?;
    r.lenenc()?; // last insert id
    let status = r.u16()?;
    Some(Ok { affected, status })
}

/// Whether a packet is an EOF packet (or the OK packet that replaces it): a
/// 0xFE header in a payload shorter than a row starting with an 8-byte
/// length could be.
pub fn is_eof(payload: &[u8], len: usize) -> bool {
    payload.first() == Some(&0xfe) && len < 0xff_ffff
}

/// The status flags of an EOF packet, or of the OK packet in its place.
pub fn eof_status(payload: &[u8], len: usize, deprecate_eof: bool) -> Option<u16> {
    if deprecate_eof && len > 5 {
        return ok(payload).map(|o| o.status);
    }
    let mut r = Reader::new(payload);
    r.u8()?;
    r.u16()?; // warnings
    r.u16()
}

/// An ERR packet: error number, SQLSTATE, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

pub fn err(payload: &[u8]) -> Option<Err> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    let (sqlstate, message) = match r.rest() {
        [b'#', rest @ ..] if rest.len() >= 5 => {
            (String::from_utf8_lossy(&rest[..5]).into_owned(), &rest[5..])
        }
        rest => ("HY000".to_owned(), rest),
    };
    Some(Err {
        code,
        sqlstate,
        message: String::from_utf8_lossy(message).into_owned(),
    })
}

/// An ERR packet to send a client, with sequence id `seq`.
pub fn error_packet(seq: u8, code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut payload = vec![0xff];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    payload.extend_from_slice(sqlstate.as_bytes());
    payload.extend_from_slice(message.as_bytes());
    super::packet::encode(seq, &payload)
}

/// The text of a statement's bytes: UTF-8 where it is, lossy elsewhere.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MariaDB 10.11 greeting as the server sent it (salt bytes zeroed).
    fn mariadb_greeting() -> Vec<u8> {
        let mut g = vec![10];
        g.extend_from_slice(b"5.5.5-10.11.19-MariaDB-0+deb12u1\0");
        g.extend_from_slice(&7u32.to_le_bytes());
        g.extend_from_slice(&[0; 8]);
        g.push(0);
        g.extend_from_slice(&0xfffeu16.to_le_bytes()); // lower: SSL (0x800) set
        g.push(45);
        g.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
        g.extend_from_slice(&0x81ffu16.to_le_bytes()); // upper
        g.push(21);
        g.extend_from_slice(&[0; 6]);
        g.extend_from_slice(&0x1du32.to_le_bytes()); // MariaDB: cache metadata set
        g.extend_from_slice(&[0; 13]);
        g.extend_from_slice(b"mysql_native_password\0");
        g
    }

    #[test]
    fn the_greeting_is_relayed_without_tls_compression_and_cached_metadata() {
        let g = mariadb_greeting();
        let read = Greeting::read(&g).expect("a greeting");
        assert_ne!(read.capabilities & capability::SSL, 0);
        assert_eq!(read.status, status::AUTOCOMMIT);
        let relayed = Greeting::relayed(&read, &g);
        assert_eq!(relayed.len(), g.len());
        let again = Greeting::read(&relayed).expect("still a greeting");
        assert_eq!(again.capabilities & capability::SSL, 0);
        assert_eq!(again.capabilities & capability::COMPRESS, 0);
        assert_eq!(again.capabilities & capability::QUERY_ATTRIBUTES, 0);
        let at = again.mariadb_at.expect("MariaDB");
        assert_eq!(relayed[at] & capability::MARIADB_CACHE_METADATA as u8, 0);
        assert_eq!(relayed[at] & 1, 1, "other extended capabilities kept");
        // Nothing else changed.
        let changed = g.iter().zip(&relayed).filter(|(a, b)| a != b).count();
        assert!(changed <= 3, "{changed} bytes changed");
        assert_eq!(Greeting::read(b"\x09junk"), None);
    }

    #[test]
    fn responses_give_database_and_program_without_credentials() {
        let caps = capability::PROTOCOL_41
            | capability::SECURE_CONNECTION
            | capability::CONNECT_WITH_DB
            | capability::PLUGIN_AUTH
            | capability::CONNECT_ATTRS
            | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 1, 45]);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"app\0");
        p.push(20);
        p.extend_from_slice(&[0xaa; 20]);
        p.extend_from_slice(b"shop\0mysql_native_password\0");
        let attrs = b"\x0cprogram_name\x05mysql";
        p.push(attrs.len() as u8);
        p.extend_from_slice(attrs);
        let r = Response::read(&p).expect("a response");
        assert_eq!(r.database.as_deref(), Some("shop"));
        assert_eq!(r.program.as_deref(), Some("mysql"));
        assert!(!r.wants_tls);
        let mut ssl = (caps | capability::SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        assert!(Response::read(&ssl).expect("an SSLRequest").wants_tls);
    }

    #[test]
    fn ok_err_and_eof_packets() {
        let o = ok(&[0, 3, 0, 3, 0, 0, 0]).expect("an OK");
        assert_eq!(
            o,
            Ok {
                affected: 3,
                status: status::IN_TRANS | status::AUTOCOMMIT
            }
        );
        let e = err(b"\xff\x26\x04#23000Duplicate entry '1' for key 'PRIMARY'").expect("an ERR");
        assert_eq!((e.code, e.sqlstate.as_str()), (1062, "23000"));
        assert!(e.message.starts_with("Duplicate entry"));
        assert!(is_eof(&[0xfe, 0, 0, 2, 0], 5));
        assert_eq!(eof_status(&[0xfe, 0, 0, 2, 0], 5, false), Some(2));
        assert_eq!(
            eof_status(&[0xfe, 0, 0, 0x22, 0, 0, 0], 7, true),
            Some(0x22)
        );
        assert_eq!(Reader::new(&[0xfc, 1, 2]).lenenc(), Some(0x201));
        assert_eq!(Reader::new(&[0xfe, 1]).lenenc(), None);
    }
}
