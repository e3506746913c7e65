//! Secrets kept out of everything flowaudit writes or shows (issue 15):
//!
//! - passwords in SQL: `CREATE/ALTER ROLE|USER … [ENCRYPTED] PASSWORD '…'`
//!   (any quoting: `'…'`, `E'…'`, `$$…$$`, `$tag$…$tag$`), the SCRAM or md5
//!   verifier psql's `\password` sends the same way, MySQL/MariaDB
//!   `IDENTIFIED BY|AS|USING '…'`, `SET PASSWORD [FOR u] = '…'`,
//!   `PASSWORD('…')`, `MASTER_PASSWORD = '…'`, `REPLACE '…'` and
//!   `OPTIONS (password '…')`, and passwords inside connection strings in a
//!   literal (`CONNECTION 'host=… password=…'`, `dblink_connect('postgres://u:p@…')`).
//!   Each such literal becomes `'***'` ([`sql`]); the rest of the statement is
//!   kept byte for byte, so its fingerprint is the one it had (literals are
//!   `?` in a fingerprint either way) and never holds the secret.
//! - passwords in URLs and key=value DSNs shown in messages ([`url`]).
//! - bind values, as `--params keep|hash|drop` asks ([`ParamsMode`]).
//!
//! Statements enter flowaudit's model in two places, and [`event`] runs in
//! both: [`crate::audit::Audit`] (every report, whatever the source: proxy,
//! server log, trace, the demo) and [`crate::trace::TraceWriter`] (every trace
//! written: `proxy`, `run`, `demo`). The few messages that quote a statement
//! before it reaches either (a log line not understood, the statement an
//! injected fault replaced) call [`sql`] themselves.
//!
//! The scanner is a small lexer rather than a regular expression: it knows
//! where quotes, escapes (`''`, and backslashes in `E''` and MySQL strings),
//! dollar quotes and comments begin and end, so a password holding a quote, a
//! `--` or the word PASSWORD is hidden whole, and a column named `password`
//! (`SELECT password FROM users`) or `password_hash` is left alone. Where the
//! dialect is unknown (a trace without `source`), the statement is read both
//! as PostgreSQL and as MySQL and whatever either reading finds is hidden.

use std::borrow::Cow;
use std::sync::LazyLock;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::Event;

/// What a hidden literal becomes.
pub const HIDDEN_LITERAL: &str = "'***'";
/// What a hidden part of a URL, a DSN or a literal's connection string becomes.
pub const HIDDEN: &str = "***";

/// How a statement's strings are quoted, which decides where a literal ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `'…'` with `''` (standard_conforming_strings), `E'…'` with
    /// backslashes, `$tag$…$tag$`, `"…"` identifiers, nested `/* */`.
    Postgres,
    /// `'…'` and `"…"` with backslashes and doubled quotes, `` `…` ``
    /// identifiers, `#` comments, `/*! … */` read as code.
    MySql,
    /// Not known: read both ways, hide what either finds.
    Either,
}

impl Syntax {
    /// The syntax of an event's statement, from its source.
    pub fn of(event: &Event) -> Syntax {
        match event.source.as_deref() {
            Some("proxy" | "pg-log" | "sqlite" | "otlp-sqlite") => Syntax::Postgres,
            Some("mysql-log" | "mysql-proxy" | "mysql" | "mariadb" | "otlp-mysql") => Syntax::MySql,
            _ => Syntax::Either,
        }
    }

    /// The syntax of the statements in a log of this format.
    pub fn of_log(format: crate::capture::logs::LogFormat) -> Syntax {
        use crate::capture::logs::LogFormat;
        match format {
            LogFormat::PgStderr | LogFormat::PgCsv | LogFormat::PgJson => Syntax::Postgres,
            LogFormat::MysqlGeneral => Syntax::MySql,
            LogFormat::Jsonl | LogFormat::OtlpJson => Syntax::Either,
        }
    }
}

/// The statement with every password literal replaced by `'***'` (and every
/// password inside a connection-string literal by `***`); borrowed when
/// there is none, which is the cheap common case.
pub fn sql(text: &str, syntax: Syntax) -> Cow<'_, str> {
    let spans = find(text, syntax);
    if spans.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(apply(text, &spans))
    }
}

/// A URL or a key=value DSN fit for a message: the user-info password
/// (`postgres://app:***@host/db`), and the value of every password-like key
/// (`?password=***`, `password=***`, `Pwd=***;`) hidden; the rest as given.
pub fn url(text: &str) -> String {
    let mut ranges = Vec::new();
    connection_secrets(text.as_bytes(), 0, &mut ranges);
    if ranges.is_empty() {
        return text.to_owned();
    }
    let spans: Vec<Span> = ranges
        .into_iter()
        .map(|(start, end)| Span {
            start,
            end,
            secret: (start, end),
            whole: false,
        })
        .collect();
    apply(text, &spans)
}

/// What an event may show, as it enters the audit or a trace: its statement
/// with passwords hidden ([`sql`]), a password the server's error message
/// repeats hidden too, and its bind values as `params` asks. What was hidden
/// stays comparable through `hidden_values`, a keyed hash kept in memory.
pub fn event(event: &mut Event, params: ParamsMode) {
    let spans = find(&event.sql, Syntax::of(event));
    if !spans.is_empty() {
        if let Some(error) = &mut event.error {
            scrub(&mut error.message, &event.sql, &spans);
        }
        let mut mac = KEY.clone();
        for s in &spans {
            let secret = event.sql.as_bytes().get(s.secret.0..s.secret.1);
            mac.update(secret.unwrap_or_default());
            mac.update(&[0xff]);
        }
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        event.hidden_values = u64::from_le_bytes(first) | 1;
        event.sql = apply(&event.sql, &spans);
    }
    params.apply(event);
}

/// [`event`] for a borrowed event: borrowed back when nothing changes.
pub fn event_ref(original: &Event, params: ParamsMode) -> Cow<'_, Event> {
    let values_change = params != ParamsMode::Keep && original.params.is_some();
    if !values_change && !mentions_secret(original.sql.as_bytes()) {
        return Cow::Borrowed(original);
    }
    let mut copy = original.clone();
    event(&mut copy, params);
    Cow::Owned(copy)
}

/// How bind values are kept (`--params`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ParamsMode {
    /// As the application sent them.
    #[default]
    Keep,
    /// Each value as `#` and 16 hex digits of HMAC-SHA-256 under a key
    /// drawn at random for each run and never written: equal values give
    /// equal hashes, so the rules judge as with `keep` (but a bound value no
    /// longer matches the same value written as a literal), and a hash
    /// cannot be checked against a guessed value (a list of e-mail
    /// addresses) nor matched with another run's.
    Hash,
    /// Removed; the statement is marked `params_dropped`, and the rules take
    /// its values as unknown.
    Drop,
}

impl ParamsMode {
    /// Applies the mode to an event's bind values. NULL stays NULL: it is
    /// no secret, and rules tell it apart from every value.
    pub fn apply(self, event: &mut Event) {
        match self {
            ParamsMode::Keep => {}
            ParamsMode::Hash => {
                for value in event.params.iter_mut().flatten().flatten() {
                    *value = keyed_hash(value);
                }
            }
            ParamsMode::Drop => {
                if event.params.take().is_some_and(|p| !p.is_empty()) {
                    event.params_dropped = true;
                }
            }
        }
    }
}

/// The process's key for [`ParamsMode::Hash`] and for the in-memory hash of
/// hidden passwords: 32 random bytes from the operating system, drawn once,
/// kept in memory only.
static KEY: LazyLock<Hmac<Sha256>> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        // No system randomness (it does not happen on Linux): fall back on
        // the standard library's, which seeds hash maps.
        use std::hash::{BuildHasher, Hasher};
        for chunk in key.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
});

/// `#` and the first 64 bits of HMAC-SHA-256 of the value under the
/// process's key, in hex: 64 bits, so that two different values of a run
/// share a hash with a chance of about n²/2⁶⁵ (1 in 37 million for a million
/// distinct values).
pub fn keyed_hash(value: &str) -> String {
    let mut mac = KEY.clone();
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(17);
    out.push('#');
    for b in &digest[..8] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A piece of the text to hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    /// The secret itself, inside the span (a literal's content).
    secret: (usize, usize),
    /// A whole literal (becomes `'***'`), or a part of one or of a URL
    /// (becomes `***`).
    whole: bool,
}

/// Whether the text mentions a word that may introduce a secret:
/// `password`, `identified` (any case), or a URL (`://`). Every statement
/// passes here, so it is one scan for the `d`s (the last letter of both
/// words) and the `:`s.
fn mentions_secret(text: &[u8]) -> bool {
    let ends = |i: usize, word: &[u8]| {
        i + 1 >= word.len() && text[i + 1 - word.len()..=i].eq_ignore_ascii_case(word)
    };
    memchr::memchr3_iter(b'd', b'D', b':', text).any(|i| match text[i] {
        b':' => text[i + 1..].starts_with(b"//"),
        _ => ends(i, b"password") || ends(i, b"identified"),
    })
}

/// The spans to hide in a statement.
fn find(text: &str, syntax: Syntax) -> Vec<Span> {
    let mut spans = Vec::new();
    if !mentions_secret(text.as_bytes()) {
        return spans;
    }
    match syntax {
        Syntax::Postgres => scan(text.as_bytes(), false, &mut spans),
        Syntax::MySql => scan(text.as_bytes(), true, &mut spans),
        Syntax::Either => {
            scan(text.as_bytes(), false, &mut spans);
            scan(text.as_bytes(), true, &mut spans);
        }
    }
    spans
}

/// Replaces the spans (merged where they overlap) in `text`.
fn apply(text: &str, spans: &[Span]) -> String {
    let mut sorted: Vec<Span> = spans.to_vec();
    sorted.sort_by_key(|s| (s.start, s.end));
    let mut merged: Vec<Span> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match merged.last_mut() {
            Some(last) if s.start < last.end => {
                last.end = last.end.max(s.end);
                last.whole |= s.whole;
            }
            _ => merged.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in merged {
        // Spans start and end at ASCII delimiters or at the ends of a
        // value, never inside a UTF-8 sequence; `get` keeps that a bet
        // that cannot panic.
        out.push_str(text.get(at..s.start).unwrap_or_default());
        out.push_str(if s.whole { HIDDEN_LITERAL } else { HIDDEN });
        at = s.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// Hides in a server's message the secrets a statement's spans held (a
/// syntax error quotes the token it stopped at). Secrets shorter than 4
/// bytes are left: hiding every `a` would garble the message and tell as
/// much.
fn scrub(message: &mut String, sql: &str, spans: &[Span]) {
    for s in spans {
        let Some(secret) = sql.get(s.secret.0..s.secret.1) else {
            continue;
        };
        if secret.len() >= 4 && message.contains(secret) {
            *message = message.replace(secret, HIDDEN);
        }
    }
}

/// What the lexer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A keyword or an unquoted name.
    Word,
    /// A string literal of any kind; `inner` is its content.
    Str,
    /// A quoted name (`"…"` in PostgreSQL, `` `…` `` in MySQL).
    QuotedName,
    /// One byte of punctuation or an operator.
    Punct(u8),
    /// A number or a placeholder.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// A literal's content (between its quotes).
    inner: (usize, usize),
}

/// Tokens of one statement text, comments and blanks skipped.
#[derive(Debug)]
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    mysql: bool,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

impl Lexer<'_> {
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// Skips blanks and comments; false at the end.
    fn skip_trivia(&mut self) -> bool {
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return false;
            };
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'-' if self.at(self.pos + 1) == b'-'
                    && (!self.mysql || matches!(self.at(self.pos + 2), 0..=b' ')) =>
                {
                    self.skip_line();
                }
                b'#' if self.mysql => self.skip_line(),
                b'/' if self.at(self.pos + 1) == b'*' => {
                    if self.mysql && matches!(self.at(self.pos + 2), b'!' | b'M') {
                        // `/*!50700 … */` and `/*M!100100 … */`: code the server
                        // runs; read on inside (its `*/` lexes as punctuation).
                        self.pos += 2;
                        while matches!(self.at(self.pos), b'!' | b'M') {
                            self.pos += 1;
                        }
                        while self.at(self.pos).is_ascii_digit() {
                            self.pos += 1;
                        }
                    } else {
                        self.block_comment();
                    }
                }
                _ => return true,
            }
        }
    }

    fn skip_line(&mut self) {
        match memchr::memchr(b'\n', &self.s[self.pos..]) {
            Some(n) => self.pos += n + 1,
            None => self.pos = self.s.len(),
        }
    }

    /// A `/* … */` comment, nested in PostgreSQL; unterminated, it runs to
    /// the end.
    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while self.pos < self.s.len() {
            if self.at(self.pos) == b'/' && self.at(self.pos + 1) == b'*' {
                if depth == 0 || !self.mysql {
                    depth += 1;
                }
                self.pos += 2;
            } else if self.at(self.pos) == b'*' && self.at(self.pos + 1) == b'/' {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// A literal quoted with `quote` whose opening quote is at `open`;
    /// `backslash`: a backslash escapes the next byte. Unterminated, it runs
    /// to the end.
    fn quoted(
        &mut self,
        start: usize,
        open: usize,
        quote: u8,
        backslash: bool,
        kind: Kind,
    ) -> Token {
        let mut i = open + 1;
        let s = self.s;
        let (content_end, end) = loop {
            let Some(&c) = s.get(i) else {
                break (s.len(), s.len());
            };
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if s.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    break (i, i + 1);
                }
            } else {
                i += 1;
            }
        };
        let end = end.min(s.len());
        self.pos = end;
        Token {
            kind,
            start,
            end,
            inner: (open + 1, content_end.min(s.len())),
        }
    }

    /// `$tag$…$tag$` at `start` (PostgreSQL), if it is one.
    fn dollar_quoted(&mut self, start: usize) -> Option<Token> {
        let s = self.s;
        let mut i = start + 1;
        if s.get(i).is_some_and(|&b| is_word_start(b)) {
            while s.get(i).is_some_and(|&b| is_word_byte(b) && b != b'$') {
                i += 1;
            }
        }
        if s.get(i) != Some(&b'$') {
            return None;
        }
        let delimiter = &s[start..=i];
        let body = i + 1;
        let (content_end, end) = match memchr::memmem::find(&s[body..], delimiter) {
            Some(n) => (body + n, body + n + delimiter.len()),
            None => (s.len(), s.len()),
        };
        self.pos = end;
        Some(Token {
            kind: Kind::Str,
            start,
            end,
            inner: (body, content_end),
        })
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_trivia() {
            return None;
        }
        let start = self.pos;
        let s = self.s;
        let c = s[start];
        let token = match c {
            b'\'' => self.quoted(start, start, b'\'', self.mysql, Kind::Str),
            b'"' if self.mysql => self.quoted(start, start, b'"', true, Kind::Str),
            b'"' => self.quoted(start, start, b'"', false, Kind::QuotedName),
            b'`' if self.mysql => self.quoted(start, start, b'`', false, Kind::QuotedName),
            b'$' if !self.mysql => {
                if let Some(t) = self.dollar_quoted(start) {
                    t
                } else {
                    let mut i = start + 1;
                    while s.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                    self.pos = i;
                    let kind = if i > start + 1 {
                        Kind::Other
                    } else {
                        Kind::Punct(b'$')
                    };
                    Token {
                        kind,
                        start,
                        end: i,
                        inner: (i, i),
                    }
                }
            }
            _ if is_word_start(c) || (self.mysql && c == b'$') => {
                let mut i = start;
                while s.get(i).is_some_and(|&b| is_word_byte(b)) {
                    i += 1;
                }
                let word = &s[start..i];
                let next = s.get(i).copied();
                let prefix = |w: &[u8]| word.eq_ignore_ascii_case(w);
                if next == Some(b'\'') && !self.mysql && prefix(b"e") {
                    self.quoted(start, i, b'\'', true, Kind::Str)
                } else if next == Some(b'\'')
                    && (prefix(b"n")
                        || prefix(b"b")
                        || prefix(b"x")
                        || (self.mysql && word[0] == b'_'))
                {
                    self.quoted(start, i, b'\'', self.mysql, Kind::Str)
                } else if !self.mysql
                    && prefix(b"u")
                    && s.get(i) == Some(&b'&')
                    && s.get(i + 1) == Some(&b'\'')
                {
                    self.quoted(start, i + 1, b'\'', false, Kind::Str)
                } else {
                    self.pos = i;
                    Token {
                        kind: Kind::Word,
                        start,
                        end: i,
                        inner: (start, i),
                    }
                }
            }
            b'0'..=b'9' => {
                let mut i = start;
                while s
                    .get(i)
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                {
                    i += 1;
                }
                self.pos = i;
                Token {
                    kind: Kind::Other,
                    start,
                    end: i,
                    inner: (i, i),
                }
            }
            _ => {
                self.pos = start + 1;
                Token {
                    kind: Kind::Punct(c),
                    start,
                    end: start + 1,
                    inner: (start + 1, start + 1),
                }
            }
        };
        Some(token)
    }
}

/// What the scanner waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// After a PASSWORD word: the secret, maybe after `FOR user`, `=` or `(`.
    AfterPassword,
    /// After `FOR` in `SET PASSWORD FOR user@host =`: the user's tokens
    /// (at most this many more) up to the `=`.
    ForUser(u8),
    /// After BY, AS or USING of an IDENTIFIED clause, or REPLACE: the
    /// secret, if the next token is a literal.
    Next,
    /// A secret literal was just hidden: a literal right after it continues
    /// it (`'abc'\n'def'` is one string in both dialects).
    Continued,
}

fn is_password_word(word: &[u8]) -> bool {
    const PASSWORD: &[u8] = b"password";
    const SUFFIX: &[u8] = b"_password";
    word.eq_ignore_ascii_case(PASSWORD)
        || (word.len() > SUFFIX.len()
            && word[word.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
}

/// Finds the secret literals of a statement read one way.
fn scan(s: &[u8], mysql: bool, spans: &mut Vec<Span>) {
    let lexer = Lexer { s, pos: 0, mysql };
    let mut expect = Expect::Nothing;
    // The statement has an IDENTIFIED clause: its BY, AS and USING
    // introduce secrets. It has hidden a password: a REPLACE 'current'
    // after it is one too (MySQL's `SET PASSWORD = 'new' REPLACE 'old'`).
    let (mut identified, mut hid_password) = (false, false);
    for tok in lexer {
        if tok.kind == Kind::Punct(b';') {
            expect = Expect::Nothing;
            (identified, hid_password) = (false, false);
            continue;
        }
        match expect {
            Expect::Continued if tok.kind == Kind::Str => {
                if let Some(last) = spans.last_mut() {
                    last.end = tok.end;
                }
                spans.push(whole(&tok));
                continue;
            }
            Expect::AfterPassword | Expect::Next if tok.kind == Kind::Str => {
                spans.push(whole(&tok));
                hid_password |= expect == Expect::AfterPassword;
                expect = Expect::Continued;
                continue;
            }
            Expect::AfterPassword if matches!(tok.kind, Kind::Punct(b'=' | b'(')) => continue,
            Expect::AfterPassword
                if tok.kind == Kind::Word && s[tok.start..tok.end].eq_ignore_ascii_case(b"for") =>
            {
                expect = Expect::ForUser(8);
                continue;
            }
            Expect::ForUser(left) => {
                expect = match (tok.kind, left) {
                    (Kind::Punct(b'='), _) => Expect::AfterPassword,
                    (_, 0) => Expect::Nothing,
                    _ => Expect::ForUser(left - 1),
                };
                if expect != Expect::Nothing {
                    continue;
                }
            }
            _ => expect = Expect::Nothing,
        }
        match tok.kind {
            Kind::Word => {
                let word = &s[tok.start..tok.end];
                let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
                if is_password_word(word) {
                    expect = Expect::AfterPassword;
                } else if is(b"identified") {
                    identified = true;
                } else if (identified && (is(b"by") || is(b"as") || is(b"using")))
                    || ((identified || hid_password) && is(b"replace"))
                {
                    expect = Expect::Next;
                }
            }
            Kind::Str => {
                // A connection string in a literal: `CONNECTION 'host=…
                // password=…'`, `dblink_connect('postgres://u:p@…')`.
                let (a, b) = tok.inner;
                let mut ranges = Vec::new();
                connection_secrets(&s[a..b], a, &mut ranges);
                spans.extend(ranges.into_iter().map(|(start, end)| Span {
                    start,
                    end,
                    secret: (start, end),
                    whole: false,
                }));
            }
            _ => {}
        }
    }
}

/// A whole literal to hide.
fn whole(tok: &Token) -> Span {
    Span {
        start: tok.start,
        end: tok.end,
        secret: tok.inner,
        whole: true,
    }
}

/// Appends the ranges (offset by `base`) of the secrets in a URL or a
/// key=value connection string: a URL's user-info password, and the value of
/// every key whose name says password (`password`, `sslpassword`,
/// `db_password`, `passwd`, `pwd`, `pass`).
fn connection_secrets(s: &[u8], base: usize, out: &mut Vec<(usize, usize)>) {
    // URLs: scheme://user:password@host…
    let mut from = 0;
    while let Some(n) = memchr::memmem::find(&s[from..], b"://") {
        let after = from + n + 3;
        let word_end = s[after..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(s.len(), |p| after + p);
        let authority_end = s[after..word_end]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(word_end, |p| after + p);
        let at = memchr::memrchr(b'@', &s[after..authority_end])
            .map(|p| after + p)
            .or_else(|| {
                // An `@` past the authority: a password holding `/`, `?` or
                // `#` unencoded makes the URL unreadable to every client;
                // hide up to the last `@` rather than show part of it.
                let last = memchr::memrchr(b'@', &s[after..word_end]).map(|p| after + p)?;
                let scheme_start = s[..from + n]
                    .iter()
                    .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')))
                    .map_or(0, |p| p + 1);
                let whole = std::str::from_utf8(&s[scheme_start..word_end]).ok();
                match whole.map(url::Url::parse) {
                    Some(Ok(_)) => None,
                    _ => Some(last),
                }
            });
        if let Some(at) = at
            && let Some(colon) = memchr::memchr(b':', &s[after..at])
        {
            let start = after + colon + 1;
            if start < at {
                out.push((base + start, base + at));
            }
        }
        from = after;
    }
    // key=value pairs: libpq DSNs (`password=x`, `password = 'a b'`), URL
    // queries (`?password=x&…`), ODBC (`Pwd=x;`).
    for eq in memchr::memchr_iter(b'=', s) {
        let mut k_end = eq;
        while k_end > 0 && s[k_end - 1] == b' ' {
            k_end -= 1;
        }
        let mut k_start = k_end;
        while k_start > 0
            && (s[k_start - 1].is_ascii_alphanumeric()
                || matches!(s[k_start - 1], b'_' | b'-' | b'.'))
        {
            k_start -= 1;
        }
        let before = k_start.checked_sub(1).map(|i| s[i]);
        let separators: &[u8] = match before {
            None => b"",
            Some(b'?' | b'&') => b"&#",
            Some(b';') => b";",
            Some(b)
                if b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b'\'' | b'"' | b'{') =>
            {
                b""
            }
            Some(_) => continue,
        };
        if !is_secret_key(&s[k_start..k_end]) {
            continue;
        }
        let mut v = eq + 1;
        while s.get(v) == Some(&b' ') {
            v += 1;
        }
        let end = value_end(s, v, separators);
        if end > v {
            out.push((base + v, base + end));
        }
    }
}

fn is_secret_key(key: &[u8]) -> bool {
    const PASSWORD: &[u8] = b"password";
    (key.len() >= PASSWORD.len()
        && key[key.len() - PASSWORD.len()..].eq_ignore_ascii_case(PASSWORD))
        || [&b"passwd"[..], b"pwd", b"pass"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
}

/// Where a DSN value starting at `v` ends: after its quoted part if it
/// starts with one (`'…'` with backslash escapes, or `''…''` as written
/// inside an SQL literal), then at a blank or one of `separators` (`&` in a
/// URL's query, `;` in an ODBC string), a backslash escaping the next byte
/// as in libpq. Hidden to there, a value hidden once reads the same again.
fn value_end(s: &[u8], v: usize, separators: &[u8]) -> usize {
    let mut i = v;
    if s[v..].starts_with(b"''") && s.get(v + 2).is_some_and(|&b| b != b'\'') {
        i = memchr::memmem::find(&s[v + 2..], b"''").map_or(s.len(), |n| v + 2 + n + 2);
    } else if s.get(v) == Some(&b'\'') {
        i = v + 1;
        while let Some(&c) = s.get(i) {
            i += match c {
                b'\\' => 2,
                b'\'' => break,
                _ => 1,
            };
        }
        i += 1;
    }
    while let Some(&c) = s.get(i) {
        if c.is_ascii_whitespace() || separators.contains(&c) {
            break;
        }
        i += if c == b'\\' { 2 } else { 1 };
    }
    i.min(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> String {
        sql(text, Syntax::Postgres).into_owned()
    }

    fn my(text: &str) -> String {
        sql(text, Syntax::MySql).into_owned()
    }

    /// [`event`] on an owned event.
    fn shown(mut e: Event, params: ParamsMode) -> Event {
        event(&mut e, params);
        e
    }

    fn either(text: &str) -> String {
        sql(text, Syntax::Either).into_owned()
    }

    #[test]
    fn postgres_role_passwords_in_every_quoting() {
        for (given, shown) in [
            (
                "CREATE ROLE app LOGIN PASSWORD 'hunter2'",
                "CREATE ROLE app LOGIN PASSWORD '***'",
            ),
            (
                "create user app with encrypted password 'hunter2' valid until 'infinity'",
                "create user app with encrypted password '***' valid until 'infinity'",
            ),
            (
                "ALTER ROLE app PASSWORD 'it''s -- /* not */ a comment'",
                "ALTER ROLE app PASSWORD '***'",
            ),
            (
                "ALTER ROLE app PASSWORD $$hun'ter2$$",
                "ALTER ROLE app PASSWORD '***'",
            ),
            (
                "ALTER ROLE app PASSWORD $pw$a $$ b$pw$ LOGIN",
                "ALTER ROLE app PASSWORD '***' LOGIN",
            ),
            (
                "ALTER ROLE app PASSWORD E'hun\\'ter2'",
                "ALTER ROLE app PASSWORD '***'",
            ),
            (
                "ALTER ROLE app PASSWORD e'a\\\\' LOGIN",
                "ALTER ROLE app PASSWORD '***' LOGIN",
            ),
            (
                "ALTER ROLE app PASSWORD U&'hunter2'",
                "ALTER ROLE app PASSWORD '***'",
            ),
            (
                "ALTER ROLE app /* why */ PASSWORD -- next line\n 'hunter2'",
                "ALTER ROLE app /* why */ PASSWORD -- next line\n '***'",
            ),
            // Adjacent literals on separate lines are one string.
            (
                "ALTER ROLE app PASSWORD 'hun'\n'ter2' LOGIN",
                "ALTER ROLE app PASSWORD '***' LOGIN",
            ),
            (
                "CREATE USER MAPPING FOR app SERVER remote OPTIONS (user 'app', password 'hunter2')",
                "CREATE USER MAPPING FOR app SERVER remote OPTIONS (user 'app', password '***')",
            ),
            // Two statements, each with its own.
            (
                "CREATE ROLE a PASSWORD 'one1'; CREATE ROLE b PASSWORD 'two2'",
                "CREATE ROLE a PASSWORD '***'; CREATE ROLE b PASSWORD '***'",
            ),
        ] {
            assert_eq!(pg(given), shown, "{given}");
            assert_eq!(either(given), shown, "{given}");
        }
    }

    /// What psql's `\password` sends: the SCRAM verifier (or md5 hash) it
    /// computed, which is as good as the password to log in elsewhere.
    #[test]
    fn the_verifier_psql_sends_for_backslash_password() {
        let scram = "ALTER USER app PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$\
                     c3RvcmVka2V5:c2VydmVya2V5'";
        assert_eq!(pg(scram), "ALTER USER app PASSWORD '***'");
        assert_eq!(
            pg("ALTER USER \"App\" PASSWORD 'md5f8c1b2a6b5e3d4c2a1f0e9d8c7b6a5f4'"),
            "ALTER USER \"App\" PASSWORD '***'"
        );
    }

    #[test]
    fn mysql_and_mariadb_forms() {
        for (given, shown) in [
            (
                "CREATE USER 'app'@'%' IDENTIFIED BY 'hunter2'",
                "CREATE USER 'app'@'%' IDENTIFIED BY '***'",
            ),
            (
                "CREATE USER app@localhost IDENTIFIED BY \"hun\\\"ter2\"",
                "CREATE USER app@localhost IDENTIFIED BY '***'",
            ),
            (
                "ALTER USER app IDENTIFIED BY 'it\\'s' REPLACE 'old-one' RETAIN CURRENT PASSWORD",
                "ALTER USER app IDENTIFIED BY '***' REPLACE '***' RETAIN CURRENT PASSWORD",
            ),
            (
                "ALTER USER app IDENTIFIED WITH mysql_native_password BY 'hunter2'",
                "ALTER USER app IDENTIFIED WITH mysql_native_password BY '***'",
            ),
            (
                "CREATE USER app IDENTIFIED WITH caching_sha2_password AS '$A$005$abc'",
                "CREATE USER app IDENTIFIED WITH caching_sha2_password AS '***'",
            ),
            (
                "CREATE USER app IDENTIFIED VIA ed25519 USING PASSWORD('hunter2')",
                "CREATE USER app IDENTIFIED VIA ed25519 USING PASSWORD('***')",
            ),
            (
                "CREATE USER app IDENTIFIED BY PASSWORD '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19'",
                "CREATE USER app IDENTIFIED BY PASSWORD '***'",
            ),
            (
                "GRANT ALL ON shop.* TO 'app'@'%' IDENTIFIED BY _utf8mb4'hunter2'",
                "GRANT ALL ON shop.* TO 'app'@'%' IDENTIFIED BY '***'",
            ),
            ("SET PASSWORD = 'hunter2'", "SET PASSWORD = '***'"),
            (
                "SET PASSWORD FOR 'app'@'localhost' = PASSWORD('hunter2')",
                "SET PASSWORD FOR 'app'@'localhost' = PASSWORD('***')",
            ),
            (
                "SET PASSWORD FOR app = OLD_PASSWORD('hunter2')",
                "SET PASSWORD FOR app = OLD_PASSWORD('***')",
            ),
            (
                "SET PASSWORD = 'new-one' REPLACE 'old-one'",
                "SET PASSWORD = '***' REPLACE '***'",
            ),
            (
                "CHANGE MASTER TO MASTER_HOST='db', MASTER_PASSWORD='hunter2'",
                "CHANGE MASTER TO MASTER_HOST='db', MASTER_PASSWORD='***'",
            ),
            (
                "/*!80000 ALTER USER app IDENTIFIED BY 'hunter2' */",
                "/*!80000 ALTER USER app IDENTIFIED BY '***' */",
            ),
            (
                "# a comment\nCREATE USER app IDENTIFIED BY 'hunter2'",
                "# a comment\nCREATE USER app IDENTIFIED BY '***'",
            ),
        ] {
            assert_eq!(my(given), shown, "{given}");
            assert!(!either(given).contains("hunter2"), "{given}");
        }
    }

    /// A backslash escapes in MySQL and in PostgreSQL's `E''`, not in a
    /// PostgreSQL `''`: read the wrong way, the rest of a password shows.
    #[test]
    fn backslashes_end_literals_as_each_dialect_says() {
        let mysql = "CREATE USER a IDENTIFIED BY 'x\\' hunter2 ' ";
        assert_eq!(my(mysql), "CREATE USER a IDENTIFIED BY '***' ");
        let postgres = "CREATE ROLE a PASSWORD 'ends\\'; CREATE ROLE b PASSWORD 'hunter2'";
        assert_eq!(
            pg(postgres),
            "CREATE ROLE a PASSWORD '***'; CREATE ROLE b PASSWORD '***'"
        );
        // Not knowing which, both readings are hidden.
        assert!(!either(mysql).contains("hunter2"));
        assert!(!either(postgres).contains("hunter2"));
    }

    #[test]
    fn connection_strings_inside_literals() {
        assert_eq!(
            pg(
                "CREATE SUBSCRIPTION s CONNECTION 'host=db password=hunter2 dbname=shop' \
                PUBLICATION p"
            ),
            "CREATE SUBSCRIPTION s CONNECTION 'host=db password=*** dbname=shop' PUBLICATION p"
        );
        assert_eq!(
            pg("SELECT dblink_connect('postgresql://app:hunter2@db/shop')"),
            "SELECT dblink_connect('postgresql://app:***@db/shop')"
        );
        assert_eq!(
            pg("SELECT dblink_connect('host=db password=''a b'' user=x')"),
            "SELECT dblink_connect('host=db password=*** user=x')"
        );
    }

    /// Columns, settings and functions that only look like passwords.
    #[test]
    fn what_is_no_password_is_left_alone() {
        for text in [
            "SELECT password FROM users WHERE id = $1",
            "SELECT id, password, email FROM users WHERE email = 'a@b.c'",
            "UPDATE users SET password_hash = $1 WHERE id = $2",
            "UPDATE users SET password = $1 WHERE id = $2",
            "INSERT INTO users (email, password) VALUES ('a@b.c', $1)",
            "SELECT password AS pw FROM users ORDER BY 'x'",
            "SET password_encryption = 'scram-sha-256'",
            "ALTER ROLE app PASSWORD NULL",
            "ALTER USER app PASSWORD EXPIRE INTERVAL 90 DAY",
            "SELECT 'password' AS label, 'hunter2' AS other",
            "SELECT data->>'password' FROM t WHERE k = 'v'",
            "-- PASSWORD 'x' in a comment is not code\nSELECT 1",
            "SELECT replace(password, 'a', 'b') FROM users",
            "SELECT * FROM users WHERE identified = true AND name = 'bob'",
            "SELECT 1",
            "",
        ] {
            assert_eq!(pg(text), text);
            assert_eq!(my(text), text);
            assert_eq!(either(text), text);
            assert!(matches!(sql(text, Syntax::Either), Cow::Borrowed(_)));
        }
    }

    /// A literal assigned to or compared with a column named password is a
    /// password all the same.
    #[test]
    fn literals_given_to_a_password_column_are_hidden() {
        assert_eq!(
            pg("UPDATE users SET password = 'hunter2' WHERE id = 1"),
            "UPDATE users SET password = '***' WHERE id = 1"
        );
        assert_eq!(
            pg("SELECT id FROM users WHERE u.password = 'hunter2'"),
            "SELECT id FROM users WHERE u.password = '***'"
        );
    }

    /// Baselines store fingerprint hashes: a statement's fingerprint is the
    /// same before and after (a literal is `?` either way), also for a trace
    /// an older flowaudit wrote in clear, and holds no secret.
    #[test]
    fn fingerprints_stay_what_they_were_and_hold_no_secret() {
        for text in [
            "CREATE ROLE app LOGIN PASSWORD 'hunter2'",
            "ALTER ROLE app PASSWORD $$hunter2$$",
            "ALTER ROLE app PASSWORD E'hunter2\\''",
            "ALTER USER app PASSWORD 'SCRAM-SHA-256$4096:aGVsbG8=$a2V5:c2Vydg=='",
        ] {
            let before = crate::fingerprint::fingerprint(text);
            let after = crate::fingerprint::fingerprint(&pg(text));
            assert_eq!(before.text, after.text, "{text}");
            assert_eq!(before.hash, after.hash, "{text}");
            assert!(!after.text.contains("hunter2"), "{}", after.text);
        }
        for text in [
            "CREATE USER 'app'@'%' IDENTIFIED BY 'hunter2'",
            "SET PASSWORD FOR 'app'@'%' = PASSWORD('hunter2')",
        ] {
            let before = crate::fingerprint::fingerprint(text);
            let after = crate::fingerprint::fingerprint(&my(text));
            assert_eq!(before.hash, after.hash, "{text}");
            assert!(!after.text.contains("hunter2"), "{}", after.text);
        }
    }

    #[test]
    fn an_event_loses_its_password_also_from_the_servers_message() {
        let e = Event {
            sql: "ALTER ROLE app PASSWORD 'hunter2' LOGIN FOO".into(),
            source: Some("proxy".into()),
            error: Some(crate::model::SqlError {
                code: "42601".into(),
                message: "syntax error at or near \"FOO\" after 'hunter2'".into(),
            }),
            params: Some(vec![Some("x".into())]),
            ..Event::default()
        };
        let shown = shown(e.clone(), ParamsMode::Keep);
        assert_eq!(shown.sql, "ALTER ROLE app PASSWORD '***' LOGIN FOO");
        assert_eq!(
            shown.error.map(|e| e.message).as_deref(),
            Some("syntax error at or near \"FOO\" after '***'")
        );
        assert_eq!(shown.params, e.params);
        let plain = Event {
            sql: "SELECT 1".into(),
            ..Event::default()
        };
        assert!(matches!(
            event_ref(&plain, ParamsMode::Hash),
            Cow::Borrowed(_)
        ));
        assert!(matches!(event_ref(&e, ParamsMode::Keep), Cow::Owned(_)));
    }

    #[test]
    fn bind_values_kept_hashed_or_dropped() {
        let e = Event {
            sql: "SELECT * FROM users WHERE email = $1 AND token = $2 AND x = $3".into(),
            params: Some(vec![
                Some("ann@example.com".into()),
                None,
                Some("ann@example.com".into()),
            ]),
            ..Event::default()
        };
        assert_eq!(shown(e.clone(), ParamsMode::Keep), e);

        let hashed = shown(e.clone(), ParamsMode::Hash);
        let p = hashed.params.expect("params");
        let h = p[0].as_deref().expect("a value");
        assert_eq!(h.len(), 17);
        assert!(h.starts_with('#') && h[1..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(p[0], p[2], "equal values, equal hashes");
        assert_eq!(p[1], None, "NULL stays NULL");
        assert_ne!(keyed_hash("ann@example.com"), keyed_hash("bob@example.com"));
        assert!(!hashed.params_dropped);

        let dropped = shown(e, ParamsMode::Drop);
        assert_eq!(dropped.params, None);
        assert!(dropped.params_dropped);
        let none = shown(Event::default(), ParamsMode::Drop);
        assert!(!none.params_dropped, "nothing to drop, nothing marked");
    }

    /// The key is the process's own: no fixed key would give the same hash
    /// (what a dictionary of e-mail addresses would be checked against).
    #[test]
    fn hashes_use_a_key_of_the_process() {
        use sha2::Digest;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let unkeyed = hex(&Sha256::digest(b"ann@example.com"));
        let zero_key = {
            let mut mac = Hmac::<Sha256>::new_from_slice(&[0u8; 32]).expect("key");
            mac.update(b"ann@example.com");
            hex(&mac.finalize().into_bytes())
        };
        let ours = keyed_hash("ann@example.com");
        assert!(!unkeyed.starts_with(&ours[1..]));
        assert!(!zero_key.starts_with(&ours[1..]));
        assert_eq!(ours, keyed_hash("ann@example.com"));
    }

    #[test]
    fn urls_and_dsns_lose_their_passwords() {
        for (given, shown) in [
            (
                "postgres://app:s3cret@db.example:5432/shop?sslmode=require",
                "postgres://app:***@db.example:5432/shop?sslmode=require",
            ),
            ("mysql://root@127.0.0.1/x", "mysql://root@127.0.0.1/x"),
            ("sqlite://shop.db", "sqlite://shop.db"),
            ("sqlite:shop.db", "sqlite:shop.db"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://db.example/shop?user=app&password=s3cret&sslmode=disable",
                "postgres://db.example/shop?user=app&password=***&sslmode=disable",
            ),
            (
                "postgresql://db/shop?sslpassword=s3cret",
                "postgresql://db/shop?sslpassword=***",
            ),
            (
                "mysql://db/shop?user=me@corp&password=s3cret",
                "mysql://db/shop?user=me@corp&password=***",
            ),
            (
                "host=db port=5432 user=app password=s3cret dbname=shop",
                "host=db port=5432 user=app password=*** dbname=shop",
            ),
            (
                "host=db password = 'it\\'s s3cret' dbname=shop",
                "host=db password = *** dbname=shop",
            ),
            (
                "Server=db;Uid=app;Pwd=s3cret;Database=shop",
                "Server=db;Uid=app;Pwd=***;Database=shop",
            ),
            // Unencoded `/` or `?` in a password: no client reads such a
            // URL, but it is shown without the password all the same.
            ("postgres://app:pa/ss@db/shop", "postgres://app:***@db/shop"),
            ("postgres://app:pa?ss@db/shop", "postgres://app:***@db/shop"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// A password as each dialect writes it in a literal, with its
        /// quotes and backslashes escaped.
        fn quoted(password: &str, syntax: Syntax, dollar: bool) -> String {
            match syntax {
                Syntax::MySql => {
                    format!("'{}'", password.replace('\\', "\\\\").replace('\'', "\\'"))
                }
                _ if dollar && !password.contains("$pw$") => format!("$pw${password}$pw$"),
                _ => format!("'{}'", password.replace('\'', "''")),
            }
        }

        fn syntax() -> impl Strategy<Value = Syntax> {
            prop_oneof![
                Just(Syntax::Postgres),
                Just(Syntax::MySql),
                Just(Syntax::Either)
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any text at all: no panic, and redacting again changes
            /// nothing: every literal a PASSWORD (or IDENTIFIED BY, …)
            /// introduces is `'***'` already.
            #[test]
            fn never_panics_and_leaves_no_password_literal(
                text in "(?s)(.|PASSWORD |IDENTIFIED BY |'|\\$\\$|E'|\\\\|--|/\\*|\\*/|;|=|\\(){0,60}",
                syntax in syntax(),
            ) {
                let once = sql(&text, syntax).into_owned();
                let twice = sql(&once, syntax).into_owned();
                if syntax != Syntax::Either {
                    prop_assert_eq!(&twice, &once);
                }
                let mut spans = Vec::new();
                if syntax != Syntax::Either {
                    scan(once.as_bytes(), syntax == Syntax::MySql, &mut spans);
                    for s in spans {
                        let hidden = &once[s.start..s.end];
                        prop_assert!(hidden == HIDDEN_LITERAL || hidden == HIDDEN, "{hidden:?} in {once:?}");
                    }
                }
                let _ = url(&text);
            }

            /// A password of any characters in a URL (percent-encoded, as
            /// a URL must have it) or a DSN (quoted and escaped) is never
            /// shown, and hiding twice is hiding once.
            #[test]
            fn no_password_survives_in_urls_and_dsns(
                password in "[a-zA-Z0-9 '\\\\@:/?&=#%;]{0,12}[A-Z]{6}",
                form in 0usize..4,
                garbage in "(?s).{0,40}",
            ) {
                let encoded: String = percent_encoding::utf8_percent_encode(
                    &password,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string();
                let text = match form {
                    0 => format!("postgres://app:{encoded}@db:5432/shop?sslmode=disable"),
                    1 => format!("mysql://db/shop?user=app&password={encoded}&ssl=1"),
                    2 => format!(
                        "host=db password='{}' dbname=shop",
                        password.replace('\\', "\\\\").replace('\'', "\\'")
                    ),
                    _ => format!("Server=db;Pwd={encoded};Database=shop"),
                };
                let shown = url(&text);
                let secret = &password[password.len() - 6..];
                prop_assert!(!shown.contains(secret), "{text:?} → {shown:?}");
                prop_assert_eq!(url(&shown), shown.clone());
                prop_assert!(shown.contains("db"), "{shown:?}");
                let again = url(&garbage);
                prop_assert_eq!(url(&again), again);
            }

            /// A password of any characters, in any of the statements that
            /// carry one, never survives; the text around it does.
            #[test]
            fn no_password_survives(
                password in "[a-zA-Z0-9 '\\\\$;*/#-]{0,12}[A-Z]{6}",
                form in 0usize..6,
                syntax in syntax(),
                dollar in any::<bool>(),
                tail in prop_oneof![Just(""), Just(" LOGIN"), Just("; SELECT 1"), Just(" -- done")],
            ) {
                let lexing = if syntax == Syntax::Either { Syntax::Postgres } else { syntax };
                let literal = quoted(&password, lexing, dollar);
                let text = match form {
                    0 => format!("CREATE ROLE app PASSWORD {literal}{tail}"),
                    1 => format!("ALTER USER app WITH ENCRYPTED PASSWORD {literal}{tail}"),
                    2 => format!("CREATE USER 'app'@'%' IDENTIFIED BY {literal}{tail}"),
                    3 => format!("SET PASSWORD FOR 'app'@'%' = PASSWORD({literal}){tail}"),
                    4 => format!("ALTER USER app IDENTIFIED WITH p AS {literal}{tail}"),
                    _ => format!("SET PASSWORD = {literal}{tail}"),
                };
                let shown = sql(&text, syntax).into_owned();
                let secret = &password[password.len() - 6..];
                prop_assert!(!shown.contains(secret), "{text:?} → {shown:?}");
                prop_assert!(shown.contains("'***'"), "{shown:?}");
                if syntax != Syntax::Either {
                    prop_assert!(shown.ends_with(tail), "{shown:?}");
                }
            }
        }
    }
}
