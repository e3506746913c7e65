//! Statement fingerprints: one normalised text per *shape* of SQL statement.
//!
//! flowaudit groups the statements an application executes by their fingerprint, so that
//! `SELECT * FROM users WHERE id = 1` and `select * from users where id = 2` count as the
//! same query run twice (a likely N+1), while `... WHERE id IN (1, 2)` is a different query
//! (the batched fix). [`fingerprint`] computes that text with a hand-written single-pass
//! tokenizer rather than a SQL parser: it must accept every dialect and also SQL that no
//! parser understands (vendor extensions, truncated log lines), and it must be cheap enough
//! to run on every captured statement. [`tables`] is the one helper that does parse, with
//! `sqlparser`, and is allowed to give up.
//!
//! # What a fingerprint's text is
//!
//! The text is the statement's tokens re-rendered under these rules:
//!
//! * **Comments are removed**: `-- …` to the end of the line and `/* … */`, which may nest
//!   as in PostgreSQL. Sqlcommenter tags (`/*controller='x'*/`) and MySQL's `/*! … */`
//!   therefore disappear too. `#` is *not* a comment (it is an operator in PostgreSQL, e.g.
//!   `#>`), so MySQL `# …` comments are kept as tokens. An unterminated `/*` comment runs to
//!   the end of the input.
//! * **Literals become `?`**: numbers (`42`, `3.14`, `.5`, `1e10`, `0x1F`, `1_000`),
//!   strings `'…'` (with `''` escapes), `E'…'` (with backslash escapes), `B'…'`, `X'…'`,
//!   `N'…'`, `U&'…'`, and dollar-quoted strings `$$…$$` / `$tag$…$tag$`. A `-` or `+`
//!   written directly before a number is part of the literal when it is unary, that is when
//!   the previous token is not an operand (an operator, `(`, `,`, a keyword, or nothing):
//!   `x - 1` → `x - ?` but `x = -1` → `x = ?` and `limit -1` → `limit ?`. An unterminated
//!   string or dollar-quoted string runs to the end of the input and becomes one `?`.
//! * **Placeholders become `?`**: `$1`, `?`, `?1` (SQLite), `:name` (but `::type` is a cast
//!   and stays), `%s` and `%(name)s`. MySQL `@var` and `@@var` stay identifiers.
//! * **`NULL`, `TRUE` and `FALSE` become `?`** only where they are values: after `(`, `,`,
//!   `=`, `<>`, `!=`, `[`, or the keywords `then`, `else`, `select`, `values`. Elsewhere
//!   (`is null`, `not null`, `default null`, `is true`) they stay, because there they are part
//!   of the statement's meaning.
//! * **Typed literals keep their type**: `'1'::int` → `?::int`, `interval '1 day'` →
//!   `interval ?`, `date '2020-01-01'` → `date ?`, `CAST('1' AS int)` → `cast(? as int)`.
//! * **Case is folded**: unquoted keywords and identifiers are lowercased (ASCII only).
//!   Quoted identifiers `"…"` and `` `…` `` are kept verbatim, except that one whose content
//!   is a plain lowercase identifier (`[a-z_][a-z0-9_$]*`) loses its quotes, so Django's
//!   `"app_model"."col"` and hand-written `app_model.col` agree, and so do MySQL's
//!   `` `users` `` and `users`. `"Users"` keeps its quotes (it is a different name from
//!   `users`), and so does a quoted name that is a PostgreSQL reserved word (`"order"`,
//!   `"user"`), because unquoted it would read as that keyword. Non-reserved keywords lose
//!   their quotes like any name (`"position"` → `position`), as they may be written unquoted.
//! * **Whitespace is folded**: tokens are joined by one space, except: none after `(` and
//!   `[`; none before `)`, `]`, `,`, `;` and `[`; none around `.`, `::` and `:`; one after
//!   `,`. A `(` directly after a function name (any identifier, or a function-like keyword
//!   such as `cast`, `coalesce`, `any`) is attached to it (`count(*)`, `= any(?)`), while a
//!   `(` after other keywords (`in (`, `values (`, `exists (`) or after the table name of
//!   `insert into t (…)` / `create table t (…)` is preceded by a space. Trailing `;` and
//!   whitespace are removed; empty statements (`;;`) are dropped; multiple statements keep
//!   their separators: `select 1; select 2` → `select ?; select ?`.
//! * **Lists collapse**, so that a list's length does not change the fingerprint: the
//!   parenthesised list after `IN` / `NOT IN`, the elements of `ARRAY[…]` (at every
//!   nesting level), and the rows of `VALUES (…), (…), …` collapse to their first
//!   element/row *when all of them normalise to identical text*: `id IN (1, 2, 3)` →
//!   `id in (?)`, `VALUES (1,'a'),(2,'b')` → `values (?, ?)`, `ARRAY[1,2,3]` → `array[?]`,
//!   `(a,b) IN ((1,2),(3,4))` → `(a, b) in ((?, ?))`. Lists whose elements differ
//!   (`in (1, x)`) are kept whole. Inner lists collapse before outer ones are compared.
//!   `x = ?` and `x IN (?)` stay different fingerprints: that difference is what separates
//!   an N+1 from its fix. `= ANY($1)` stays `= any(?)`.
//!
//! The text is deterministic: identical input gives byte-identical output on every run and
//! platform. It is meant for grouping and display, not for execution.
//!
//! # Limitations
//!
//! * Plain `'…'` strings follow standard SQL (PostgreSQL with `standard_conforming_strings`,
//!   SQLite): a backslash does not escape the quote. MySQL's statements are fingerprinted
//!   with [`fingerprint_mysql`], where `\'` inside a string is an escaped quote as MySQL
//!   reads it by default, so that `'O\'Brien'` (which PyMySQL and mysql2 send for
//!   `O'Brien`) is one value. A MySQL server run with `NO_BACKSLASH_ESCAPES` reads `'a\'`
//!   as a whole string; its statements may then fingerprint apart.
//! * MySQL double-quoted strings (`WHERE name = "bob"` without `ANSI_QUOTES`) are read as
//!   quoted identifiers, so the value stays in the fingerprint.
//! * MySQL `#` comments are not removed (see above).
//! * `?` is always a placeholder, except in `?|` and `?&`, which are PostgreSQL JSON
//!   operators. The PostgreSQL `?` (key exists) operator renders as `?` as well, which is
//!   harmless for grouping.
//! * `:name` directly after an operand (`arr[lo:hi]`) is an array slice, not a placeholder.
//! * Keywords are recognised from a fixed list; a column named like a keyword in that list
//!   (e.g. `key`) may change the spacing before a following `(` or whether a `-` after it
//!   is read as unary.
//! * The kind of a multi-statement string is the kind of its first statement, except that
//!   driver housekeeping is skipped when anything but housekeeping or `SET`/`RESET` follows
//!   it (see [`StatementKind::Housekeeping`]).
//! * [`tables`] only sees what `sqlparser` parses: statements with `%s` / `%(name)s`
//!   placeholders (psycopg, Django, SQLAlchemy) do not parse and give `None`; substitute the
//!   placeholders first to get their tables. Quoted names are lowercased too (`"Users"` →
//!   `users`). Any unqualified name that matches a CTE name of the statement is taken for
//!   that CTE, even outside the CTE's scope, and table-valued functions in `FROM` (e.g.
//!   `generate_series`) are reported as relations, as `sqlparser` reports them.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, Visit, Visitor, visit_relations};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// What kind of statement this is, from its leading keyword(s) (after comments, leading
/// parentheses, and for WITH: the verb of the main statement after the CTEs).
///
/// `EXPLAIN …` is classified as [`StatementKind::Select`], whatever it explains: it returns a
/// plan rather than changing data (even `EXPLAIN ANALYZE` of a write is reported as a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE`, `EXPLAIN`, and `WITH … SELECT`.
    Select,
    /// `INSERT`, `REPLACE`, `UPSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `COMMENT`, `GRANT`, `REVOKE`, `RENAME`.
    Ddl,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`,
    /// `ABORT`.
    TransactionControl,
    /// `SET` (including `SET TRANSACTION …`), `SHOW`, `RESET`.
    Set,
    /// A driver's or pool's session clean-up, which the application's code never asked
    /// for (issue 13, defect 8): `DEALLOCATE [PREPARE] name|ALL` (psycopg after a
    /// rollback), `DISCARD ALL|PLANS|SEQUENCES|TEMP` (pgbouncer, pgpool), `CLOSE ALL`,
    /// `UNLISTEN`, and `SELECT pg_advisory_unlock_all()` as the whole statement, with the
    /// `DO` block asyncpg's pool reset wraps its `UNLISTEN *` in. A string of several
    /// statements is housekeeping when all of them are (or are `RESET`/`SET`): asyncpg
    /// sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` as one.
    /// `CLOSE name` is not: it closes a cursor the application declared and fetched from,
    /// and stays with that work as [`StatementKind::Other`].
    Housekeeping,
    /// Everything else: `COPY`, `CALL`, `DO`, `PRAGMA`, `LISTEN`, `VACUUM`, `PREPARE`,
    /// `EXECUTE`, `CLOSE name`, an empty string, …
    Other,
}

impl StatementKind {
    /// Stable lowercase name, for reports and baselines.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Ddl => "ddl",
            StatementKind::TransactionControl => "transaction",
            StatementKind::Set => "set",
            StatementKind::Housekeeping => "housekeeping",
            StatementKind::Other => "other",
        }
    }

    /// True for statements that are not what a framework's query counter counts:
    /// transaction control, session settings and driver housekeeping. Reports count them
    /// in `statements` but not in `queries`, and the repetition rules do not judge them.
    pub fn is_bookkeeping(self) -> bool {
        matches!(
            self,
            StatementKind::TransactionControl | StatementKind::Set | StatementKind::Housekeeping
        )
    }

    /// True for statements that change rows: `Insert`, `Update`, `Delete`, `Merge`.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
                | StatementKind::Merge
        )
    }
}

/// The fingerprint of one SQL string. See the [module documentation](self) for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The normalised text.
    pub text: String,
    /// `xxh3_64` of `text`'s bytes: stable across runs and platforms, so baselines may store it.
    pub hash: u64,
    /// The statement's kind.
    pub kind: StatementKind,
    /// A stable hash of the literal values that were replaced by `?`, in order (placeholders
    /// are not values). 0 when there were none, never 0 otherwise. Two runs of the same
    /// fingerprint with different literals get different `values`.
    pub values: u64,
}

/// Computes the fingerprint of `sql`. Never fails and never panics: any input, including
/// truncated or non-SQL text, gets a deterministic fingerprint. Each thread keeps a small
/// scratch buffer between calls.
pub fn fingerprint(sql: &str) -> Fingerprint {
    fingerprint_in(sql, false)
}

/// [`fingerprint`] of a statement MySQL or MariaDB ran: a backslash inside a `'…'` string
/// escapes the next character, as the server reads it by default.
pub fn fingerprint_mysql(sql: &str) -> Fingerprint {
    fingerprint_in(sql, true)
}

fn fingerprint_in(sql: &str, backslash: bool) -> Fingerprint {
    let reused = SCRATCH.try_with(|scratch| {
        scratch
            .try_borrow_mut()
            .ok()
            .map(|mut scratch| fingerprint_with(sql, backslash, &mut scratch))
    });
    // Without the thread's buffers (during thread teardown), use fresh ones.
    match reused {
        Ok(Some(fp)) => fp,
        _ => fingerprint_with(sql, backslash, &mut Scratch::default()),
    }
}

/// Whether `sql` has a bind placeholder (`$1`, `?`, `%s`, `%(name)s`, `:name`, as
/// [`fingerprint`] reads them): its values were sent apart from its text.
pub fn has_placeholder(sql: &str) -> bool {
    let mut toks = Vec::new();
    lex(sql, false, &mut toks);
    toks.iter().any(|t| t.kind == TokKind::Placeholder)
}

/// Buffers reused from one call to the next on the same thread: allocating them afresh was
/// a measurable share of the cost of a short statement.
///
/// The text is rendered into `out` and then copied into a `String` of its exact length, so
/// the buffer sized for the input is allocated once per thread, and the returned text holds
/// only its own length (usually much less than the input's: comments go, lists collapse).
#[derive(Default)]
struct Scratch {
    toks: Vec<Tok>,
    stack: Vec<Ctx>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            toks: Vec::new(),
            stack: Vec::new(),
            out: Vec::new(),
        })
    };
}

/// Buffers above this many tokens are released after use rather than kept for the thread.
const SCRATCH_KEEP_TOKENS: usize = 1 << 16;
/// The same for the output buffer, in bytes.
const SCRATCH_KEEP_BYTES: usize = 1 << 20;

fn fingerprint_with(sql: &str, backslash: bool, scratch: &mut Scratch) -> Fingerprint {
    lex(sql, backslash, &mut scratch.toks);
    let (text, values) =
        Renderer::new(sql, &scratch.toks, &mut scratch.stack, &mut scratch.out).render();
    let kind = statement_kind(sql, &scratch.toks);
    if scratch.toks.capacity() > SCRATCH_KEEP_TOKENS || scratch.out.capacity() > SCRATCH_KEEP_BYTES
    {
        *scratch = Scratch::default();
    }
    Fingerprint {
        hash: xxh3_64(text.as_bytes()),
        kind,
        values,
        text,
    }
}

/// Tables touched, via sqlparser (PostgreSQL dialect, then MySQL, then SQLite, then
/// generic; the first that parses wins), collected with [`visit_relations`], lowercased
/// (unquoted form, parts joined with `.`), sorted and deduplicated. Names defined by `WITH`
/// are not tables and are left out. `None` when no dialect parses `sql`.
pub fn tables(sql: &str) -> Option<Vec<String>> {
    let dialects: [&dyn Dialect; 4] = [
        &PostgreSqlDialect {},
        &MySqlDialect {},
        &SQLiteDialect {},
        &GenericDialect {},
    ];
    let statements = dialects
        .iter()
        .find_map(|dialect| Parser::parse_sql(*dialect, sql).ok())?;

    let mut ctes = CteNames::default();
    let _ = statements.visit(&mut ctes);

    let mut names = BTreeSet::new();
    let _ = visit_relations(&statements, |relation: &ObjectName| {
        let is_cte = relation.0.len() == 1 && ctes.0.contains(&relation_name(relation));
        if !is_cte {
            names.insert(relation_name(relation));
        }
        ControlFlow::<()>::Continue(())
    });
    Some(names.into_iter().collect())
}

fn relation_name(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
            ObjectNamePart::Function(_) => part.to_string().to_ascii_lowercase(),
        })
        .collect();
    parts.join(".")
}

/// Collects the names that `WITH` clauses define anywhere in a statement.
#[derive(Default)]
struct CteNames(BTreeSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum TokKind {
    /// Unquoted identifier or keyword (also `@var`).
    Word,
    /// `"…"` or `` `…` `` identifier.
    Quoted,
    /// A value that renders as `?` and feeds [`Fingerprint::values`].
    Literal,
    /// A bind parameter that renders as `?`.
    Placeholder,
    /// A run of operator characters (`=`, `<>`, `->>`, `||`, `*`, …).
    Op,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Dot,
    /// `::`
    Cast,
    /// A lone `:` (array slices).
    Colon,
    /// Any other single ASCII character (`{`, `\`, a stray `$`, …).
    Other,
}

const TOK_KINDS: [TokKind; 15] = [
    TokKind::Word,
    TokKind::Quoted,
    TokKind::Literal,
    TokKind::Placeholder,
    TokKind::Op,
    TokKind::LParen,
    TokKind::RParen,
    TokKind::LBracket,
    TokKind::RBracket,
    TokKind::Comma,
    TokKind::Semi,
    TokKind::Dot,
    TokKind::Cast,
    TokKind::Colon,
    TokKind::Other,
];

/// Whether a space separates two adjacent tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    No,
    Yes,
    /// Before `(`: depends on what precedes it (a function name or a keyword).
    BeforeParen,
}

const fn spacing(prev: TokKind, cur: TokKind) -> Space {
    use TokKind::*;
    match (prev, cur) {
        // A comma writes its own trailing space.
        (LParen | LBracket | Dot | Cast | Colon | Comma, _) => Space::No,
        (_, RParen | RBracket | Comma | Semi | Dot | Cast | Colon | LBracket) => Space::No,
        (_, LParen) => Space::BeforeParen,
        _ => Space::Yes,
    }
}

/// `spacing` for every pair of kinds, indexed by `TokKind as usize`: one load per token.
/// Row [`NO_PREV`] is for the first token, which has nothing to be separated from.
static SPACING: [[Space; 15]; 16] = spacing_table();

/// The row of [`SPACING`] used before any token has been written.
const NO_PREV: usize = 15;

const fn spacing_table() -> [[Space; 15]; 16] {
    let mut table = [[Space::No; 15]; 16];
    let mut p = 0;
    while p < 15 {
        let mut c = 0;
        while c < 15 {
            table[TOK_KINDS[p] as usize][TOK_KINDS[c] as usize] =
                spacing(TOK_KINDS[p], TOK_KINDS[c]);
            c += 1;
        }
        p += 1;
    }
    table
}

/// What the normaliser needs to know about a word. Most words are [`Kw::None`] (identifiers
/// and function names); the rest decide spacing, unary minus, `NULL` handling and collapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    None,
    /// A keyword after which an expression may start; a `(` after it gets a space.
    Plain,
    /// A keyword that is followed by a table/CTE name and maybe its column list.
    NameIntro,
    /// A keyword written like a function call: `cast(`, `coalesce(`.
    FuncLike,
    /// `any`, `all`, `some`: function-like after an operator, plain otherwise (`union all`).
    Quantifier,
    /// `end` closes an expression, so it is an operand (`case … end - 1`).
    End,
    In,
    Array,
    Values,
    Select,
    Then,
    Else,
    Null,
    True,
    False,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: TokKind,
    start: usize,
    end: usize,
}

impl Tok {
    /// An operand is something a following `-` would be subtracted from, and after which
    /// `:name` is a slice bound rather than a placeholder.
    fn is_operand(&self, src: &[u8]) -> bool {
        match self.kind {
            TokKind::Word => matches!(self.kw(src), Kw::None | Kw::End),
            TokKind::Quoted
            | TokKind::Literal
            | TokKind::Placeholder
            | TokKind::RParen
            | TokKind::RBracket => true,
            _ => false,
        }
    }

    fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }

    fn bytes<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        src.get(self.start..self.end).unwrap_or_default()
    }

    /// What kind of keyword this is, if it is a word. Looked up on demand rather than while
    /// lexing: only words before `(`, `[`, `-`, `:`, `NULL` and the like need it.
    fn kw(&self, src: &[u8]) -> Kw {
        if self.kind != TokKind::Word {
            return Kw::None;
        }
        // A dotted name is one token; like its last part, `t.any` ends in a keyword.
        let word = self.bytes(src);
        let last = word.rsplit(|&b| b == b'.').next().unwrap_or(word);
        classify(last)
    }

    fn is_word(&self, src: &[u8], kw: Kw) -> bool {
        self.kind == TokKind::Word && self.kw(src) == kw
    }
}

const KEYWORDS: &[(&str, Kw)] = &[
    ("in", Kw::In),
    ("array", Kw::Array),
    ("values", Kw::Values),
    ("select", Kw::Select),
    ("then", Kw::Then),
    ("else", Kw::Else),
    ("null", Kw::Null),
    ("true", Kw::True),
    ("false", Kw::False),
    ("end", Kw::End),
    ("any", Kw::Quantifier),
    ("all", Kw::Quantifier),
    ("some", Kw::Quantifier),
    ("into", Kw::NameIntro),
    ("table", Kw::NameIntro),
    ("references", Kw::NameIntro),
    ("exists", Kw::NameIntro),
    ("copy", Kw::NameIntro),
    ("with", Kw::NameIntro),
    ("recursive", Kw::NameIntro),
    ("view", Kw::NameIntro),
    ("cast", Kw::FuncLike),
    ("coalesce", Kw::FuncLike),
    ("nullif", Kw::FuncLike),
    ("greatest", Kw::FuncLike),
    ("least", Kw::FuncLike),
    ("extract", Kw::FuncLike),
    ("position", Kw::FuncLike),
    ("substring", Kw::FuncLike),
    ("trim", Kw::FuncLike),
    ("overlay", Kw::FuncLike),
    ("convert", Kw::FuncLike),
    ("left", Kw::FuncLike),
    ("right", Kw::FuncLike),
    ("replace", Kw::FuncLike),
    ("row", Kw::FuncLike),
    ("if", Kw::FuncLike),
];

/// Keywords that only matter as "not an identifier": an expression may follow them.
const PLAIN_KEYWORDS: &[&str] = &[
    "from",
    "where",
    "and",
    "or",
    "not",
    "is",
    "like",
    "ilike",
    "between",
    "set",
    "on",
    "having",
    "as",
    "limit",
    "offset",
    "when",
    "case",
    "by",
    "order",
    "group",
    "join",
    "inner",
    "full",
    "outer",
    "cross",
    "natural",
    "using",
    "union",
    "intersect",
    "except",
    "distinct",
    "returning",
    "insert",
    "update",
    "delete",
    "merge",
    "interval",
    "default",
    "fetch",
    "first",
    "next",
    "rows",
    "only",
    "over",
    "partition",
    "filter",
    "within",
    "window",
    "lateral",
    "escape",
    "similar",
    "to",
    "do",
    "nothing",
    "conflict",
    "duplicate",
    "key",
    "primary",
    "foreign",
    "unique",
    "check",
    "constraint",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "revoke",
    "asc",
    "desc",
    "nulls",
    "last",
    "collate",
    "for",
    "share",
    "nowait",
    "skip",
    "locked",
    "of",
    "return",
    "begin",
    "commit",
    "rollback",
    "start",
    "transaction",
    "savepoint",
    "release",
    "abort",
    "show",
    "reset",
    "explain",
    "analyze",
    "call",
    "execute",
    "prepare",
    "deallocate",
    "listen",
    "notify",
    "vacuum",
    "pragma",
    "upsert",
    "matched",
    "top",
    "regexp",
    "rlike",
    "glob",
    "xor",
    "div",
];

const KEYWORD_SLOTS: usize = 512;
const KEYWORD_MAX_LEN: usize = 11;

/// A hash of a word's length and first, second and last letters (case-insensitively):
/// constant time whatever the word's length, and enough to spread ~150 keywords.
fn keyword_slot(word: &[u8]) -> usize {
    let at = |i: Option<&u8>| u32::from(i.copied().unwrap_or(0) | 0x20);
    let key =
        (word.len() as u32) | at(word.first()) << 8 | at(word.get(1)) << 16 | at(word.last()) << 24;
    (key.wrapping_mul(0x9E37_79B1) >> 23) as usize % KEYWORD_SLOTS
}

struct KeywordTable {
    /// 1 + index into `words`, or 0 for an empty slot; one byte per slot keeps the table in
    /// L1 cache, and most identifiers are rejected by a single load from it.
    slots: [u8; KEYWORD_SLOTS],
    words: Vec<(&'static str, Kw)>,
}

/// Open-addressing table of all keywords, built once: classifying runs for every word of
/// every statement, so it must not be a linear scan or a long `match`.
fn keyword_table() -> &'static KeywordTable {
    static TABLE: OnceLock<KeywordTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let plain = PLAIN_KEYWORDS.iter().map(|w| (*w, Kw::Plain));
        let words: Vec<(&'static str, Kw)> = KEYWORDS.iter().copied().chain(plain).collect();
        let slots = keyword_slots(words.iter().map(|(word, _)| *word));
        KeywordTable { slots, words }
    })
}

/// The slots of an open-addressing table of `words`: 1 + the word's index, 0 when empty.
fn keyword_slots<'a>(words: impl Iterator<Item = &'a str>) -> [u8; KEYWORD_SLOTS] {
    let mut slots = [0u8; KEYWORD_SLOTS];
    for (index, word) in words.enumerate() {
        let mut slot = keyword_slot(word.as_bytes());
        while slots.get(slot).is_some_and(|&s| s != 0) {
            slot = (slot + 1) % KEYWORD_SLOTS;
        }
        if let (Some(entry), Ok(value)) = (slots.get_mut(slot), u8::try_from(index + 1)) {
            *entry = value;
        }
    }
    slots
}

/// `NULL`, `TRUE` or `FALSE`, case-insensitively.
fn is_value_keyword(word: &[u8]) -> bool {
    word.eq_ignore_ascii_case(b"null")
        || word.eq_ignore_ascii_case(b"true")
        || word.eq_ignore_ascii_case(b"false")
}

/// Classifies a word (case-insensitively) as one of the keywords the normaliser reacts to.
fn classify(word: &[u8]) -> Kw {
    if !(2..=KEYWORD_MAX_LEN).contains(&word.len()) {
        return Kw::None;
    }
    let table = keyword_table();
    let mut slot = keyword_slot(word);
    loop {
        let index = match table.slots.get(slot) {
            Some(&s) if s != 0 => usize::from(s) - 1,
            _ => return Kw::None,
        };
        if let Some((keyword, kw)) = table.words.get(index)
            && keyword.as_bytes().eq_ignore_ascii_case(word)
        {
            return *kw;
        }
        slot = (slot + 1) % KEYWORD_SLOTS;
    }
}

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

const IDENT_START: u8 = 1;
const IDENT_CHAR: u8 = 2;
const OP_CHAR: u8 = 4;
const SPACE: u8 = 8;

/// Byte classes, looked up rather than computed: the lexer asks for every byte.
static CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            class |= IDENT_START | IDENT_CHAR;
        }
        if b.is_ascii_digit() || b == b'$' {
            class |= IDENT_CHAR;
        }
        if matches!(
            b,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
        ) {
            class |= OP_CHAR;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            class |= SPACE;
        }
        table[i] = class;
        i += 1;
    }
    table
}

fn has_class(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

fn is_ident_start(b: u8) -> bool {
    has_class(b, IDENT_START)
}

fn is_ident_char(b: u8) -> bool {
    has_class(b, IDENT_CHAR)
}

fn is_op_char(b: u8) -> bool {
    has_class(b, OP_CHAR)
}

/// The number of leading identifier bytes (`[A-Za-z0-9_$]` or non-ASCII) in `bytes`.
///
/// Words are most of a statement, so this looks at eight bytes at a time (SWAR): most words
/// end inside the first chunk, without a per-byte loop and its hard-to-predict exit.
fn ident_len(bytes: &[u8]) -> usize {
    let mut n = 0;
    while let Some(chunk) = bytes.get(n..n + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let stops = non_ident_bytes(u64::from_le_bytes(word));
        if stops != 0 {
            return n + (stops.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    let rest = bytes.get(n..).unwrap_or_default();
    n + rest.iter().take_while(|&&b| is_ident_char(b)).count()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// For each byte of `x` (all of whose bytes are below 0x80), sets the high bit iff the byte is
/// in `lo..=hi`. `x + (0x80 - lo)` sets the high bit iff the byte is >= lo, and
/// `x + (0x7f - hi)` sets it iff it is > hi; neither sum carries into the next byte.
fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    let ge_lo = x + ONES * u64::from(0x80 - lo);
    let gt_hi = x + ONES * u64::from(0x7f - hi);
    ge_lo & !gt_hi & HIGH
}

/// `w` with its ASCII capitals lowercased; bytes >= 0x80 are left alone.
fn lowercase8(w: u64) -> u64 {
    let upper = in_range(w & !HIGH, b'A', b'Z') & !w;
    // 0x80 >> 2 is 0x20, the bit that separates `A` from `a`.
    w | (upper >> 2)
}

/// Appends `src[start..end]` to `out` with ASCII letters lowercased, eight bytes at a time
/// (SWAR), as words are most of the output. Each step loads eight bytes straight from `src`, also past `end` where `src`
/// has them, and cuts the surplus off the output again: copying a short tail into a buffer
/// first costs a `memcpy` call and a stalled load, more than the loop it replaces.
fn push_lowercase(out: &mut Vec<u8>, src: &[u8], start: usize, end: usize) {
    let mut at = start;
    while at < end {
        let Some(chunk) = src.get(at..at + 8) else {
            let rest = src.get(at..end).unwrap_or_default();
            out.extend(rest.iter().map(u8::to_ascii_lowercase));
            return;
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let len = out.len() + (end - at).min(8);
        out.extend_from_slice(&lowercase8(u64::from_le_bytes(word)).to_le_bytes());
        out.truncate(len);
        at += 8;
    }
}

/// Sets the high bit of each byte of `w` that is not an identifier byte.
fn non_ident_bytes(w: u64) -> u64 {
    let low7 = w & !HIGH;
    // `| 0x20` folds A-Z onto a-z and maps no other byte into a-z.
    let letter = in_range(low7 | (ONES * 0x20), b'a', b'z');
    let digit = in_range(low7, b'0', b'9');
    let underscore = in_range(low7, b'_', b'_');
    let dollar = in_range(low7, b'$', b'$');
    let non_ascii = w & HIGH;
    !(letter | digit | underscore | dollar | non_ascii) & HIGH
}

/// Splits `sql` into tokens. Every token boundary falls on an ASCII byte or the end of the
/// input, so every token is a valid `str` slice; all non-ASCII bytes belong to words,
/// strings, quoted identifiers or comments.
fn lex(sql: &str, backslash: bool, toks: &mut Vec<Tok>) {
    toks.clear();
    toks.reserve(sql.len() / 3 + 8);
    let mut lexer = Lexer {
        src: sql.as_bytes(),
        text: sql,
        pos: 0,
        backslash,
        toks,
    };
    lexer.run();
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    /// A backslash escapes the next byte inside `'…'` (MySQL's default).
    backslash: bool,
    toks: &'a mut Vec<Tok>,
}

impl Lexer<'_> {
    /// The byte at `pos + ahead`, or 0 past the end (0 never starts or continues a token).
    fn peek(&self, ahead: usize) -> u8 {
        self.src.get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn push(&mut self, kind: TokKind, start: usize) {
        self.toks.push(Tok {
            kind,
            start,
            end: self.pos,
        });
    }

    /// Advances past the bytes of `class`.
    fn skip_class(&mut self, class: u8) {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().take_while(|&&b| has_class(b, class)).count();
    }

    fn prev_is_operand(&self) -> bool {
        self.toks.last().is_some_and(|t| t.is_operand(self.src))
    }

    fn run(&mut self) {
        loop {
            // Whitespace between tokens is skipped here rather than dispatched as if it were
            // a token of its own: one branch less to mispredict per token.
            if has_class(self.peek(0), SPACE) {
                self.skip_class(SPACE);
            }
            if self.pos >= self.src.len() {
                return;
            }
            let start = self.pos;
            let b = self.peek(0);
            // Words are most of any statement: test for them before the rest.
            if has_class(b, IDENT_START) {
                self.word(start);
                continue;
            }
            match b {
                b'-' if self.peek(1) == b'-' => self.line_comment(),
                b'/' if self.peek(1) == b'*' => self.block_comment(),
                b'\'' => {
                    self.quoted_body(b'\'', self.backslash);
                    self.push(TokKind::Literal, start);
                }
                b'"' | b'`' => {
                    self.quoted_body(self.peek(0), false);
                    self.push(TokKind::Quoted, start);
                }
                b'0'..=b'9' => self.number(start),
                b'.' if self.peek(1).is_ascii_digit() && !self.prev_is_operand() => {
                    self.number(start)
                }
                b'-' | b'+' if self.signed_number_follows() => {
                    self.pos += 1;
                    self.number(start);
                }
                b'(' => self.single(TokKind::LParen),
                b')' => self.single(TokKind::RParen),
                b'[' => self.single(TokKind::LBracket),
                b']' => self.single(TokKind::RBracket),
                b',' => self.single(TokKind::Comma),
                b';' => self.single(TokKind::Semi),
                b'.' => self.single(TokKind::Dot),
                b':' => self.colon(start),
                b'$' => self.dollar(start),
                b'?' => self.question(start),
                b'%' if self.percent_placeholder_len() > 0 => {
                    self.pos += self.percent_placeholder_len();
                    self.push(TokKind::Placeholder, start);
                }
                b'@' if is_ident_start(self.peek(1)) || self.peek(1) == b'@' => {
                    self.pos += 1;
                    while self.peek(0) == b'@' {
                        self.pos += 1;
                    }
                    self.word(start);
                }
                b if is_op_char(b) => self.operator(start),
                _ => self.single(TokKind::Other),
            }
        }
    }

    fn single(&mut self, kind: TokKind) {
        let start = self.pos;
        self.pos += 1;
        self.push(kind, start);
    }

    fn line_comment(&mut self) {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        self.pos += memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    }

    /// PostgreSQL nests block comments; an unterminated one swallows the rest of the input,
    /// as the server would refuse the statement anyway.
    fn block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1usize;
        while self.pos < self.src.len() {
            // Only a `*` or a `/` can open or close a comment: jump to the next one
            // (sqlcommenter tags make these comments long, and every ORM statement has one).
            let rest = self.src.get(self.pos..).unwrap_or_default();
            let Some(next) = memchr::memchr2(b'*', b'/', rest) else {
                self.pos = self.src.len();
                return;
            };
            self.pos += next;
            match (self.peek(0), self.peek(1)) {
                (b'*', b'/') => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                (b'/', b'*') => {
                    self.pos += 2;
                    depth += 1;
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Consumes a quoted run starting at the opening `quote`; a doubled quote is an escaped
    /// quote, and with `backslash` so is `\'`. Unterminated runs end at the end of input.
    fn quoted_body(&mut self, quote: u8, backslash: bool) {
        self.pos += 1;
        loop {
            let rest = self.src.get(self.pos..).unwrap_or_default();
            let stop = if backslash {
                memchr::memchr2(quote, b'\\', rest)
            } else {
                memchr::memchr(quote, rest)
            };
            let Some(offset) = stop else {
                self.pos = self.src.len();
                return;
            };
            self.pos += offset;
            if self.peek(0) == quote && self.peek(1) != quote {
                self.pos += 1;
                return;
            }
            // A doubled quote or a backslash escape: skip both bytes.
            self.pos += 2;
        }
    }

    fn signed_number_follows(&self) -> bool {
        let digit_next = self.peek(1).is_ascii_digit()
            || (self.peek(1) == b'.' && self.peek(2).is_ascii_digit());
        digit_next && !self.prev_is_operand()
    }

    fn digits(&mut self, radix_digit: fn(u8) -> bool) {
        while radix_digit(self.peek(0)) || (self.peek(0) == b'_' && radix_digit(self.peek(1))) {
            self.pos += 1;
        }
    }

    /// A number starting at `self.pos` (the literal itself starts at `start`, which may be a
    /// sign). Digits running straight into letters make an identifier instead, as MySQL
    /// allows names such as `1st_table`.
    fn number(&mut self, start: usize) {
        let digits_start = self.pos;
        if self.peek(0) == b'0'
            && matches!(self.peek(1), b'x' | b'X')
            && self.peek(2).is_ascii_hexdigit()
        {
            self.pos += 2;
            self.digits(|b| b.is_ascii_hexdigit());
        } else if self.peek(0) == b'0'
            && matches!(self.peek(1), b'b' | b'B')
            && matches!(self.peek(2), b'0' | b'1')
        {
            self.pos += 2;
            self.digits(|b| matches!(b, b'0' | b'1'));
        } else {
            self.digits(|b| b.is_ascii_digit());
            let mut fractional = false;
            if self.peek(0) == b'.' && self.peek(1) != b'.' {
                self.pos += 1;
                fractional = true;
                self.digits(|b| b.is_ascii_digit());
            }
            let exp_digit = match self.peek(1) {
                b'+' | b'-' => self.peek(2),
                other => other,
            };
            if matches!(self.peek(0), b'e' | b'E') && exp_digit.is_ascii_digit() {
                self.pos += if self.peek(1).is_ascii_digit() { 1 } else { 2 };
                self.digits(|b| b.is_ascii_digit());
            } else if !fractional && start == digits_start && is_ident_char(self.peek(0)) {
                self.word(start);
                return;
            }
        }
        self.push(TokKind::Literal, start);
    }

    /// A word, or a prefixed string literal (`E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`), or a
    /// `NULL`/`TRUE`/`FALSE` that stands for a value.
    fn word(&mut self, start: usize) {
        self.pos += ident_len(self.src.get(self.pos..).unwrap_or_default());
        if self.pos - start == 1 {
            let prefix = self
                .src
                .get(start)
                .copied()
                .unwrap_or(0)
                .to_ascii_lowercase();
            if self.peek(0) == b'\'' && matches!(prefix, b'e' | b'b' | b'x' | b'n') {
                self.quoted_body(b'\'', prefix == b'e');
                self.push(TokKind::Literal, start);
                return;
            }
            if prefix == b'u' && self.peek(0) == b'&' && self.peek(1) == b'\'' {
                self.pos += 1;
                self.quoted_body(b'\'', false);
                self.push(TokKind::Literal, start);
                return;
            }
        }
        // `alias.column` renders exactly as its three tokens would, and ORM SQL is full of
        // them: as one token it is dispatched once instead of three times.
        while self.peek(0) == b'.' && is_ident_start(self.peek(1)) {
            let part = self.pos + 1;
            let len = ident_len(self.src.get(part..).unwrap_or_default());
            if self.string_prefix_at(part, len) {
                break;
            }
            self.pos = part + len;
        }
        let word = self.src.get(start..self.pos).unwrap_or_default();
        if is_value_keyword(word) && self.prev_takes_value() {
            self.push(TokKind::Literal, start);
        } else {
            self.push(TokKind::Word, start);
        }
    }

    /// Whether the `len`-byte word at `at` is the prefix of a string (`E'…'`, `U&'…'`, …).
    fn string_prefix_at(&self, at: usize, len: usize) -> bool {
        let byte = |i: usize| self.src.get(i).copied().unwrap_or(0);
        let prefix = byte(at).to_ascii_lowercase();
        let next = byte(at + 1);
        len == 1
            && ((next == b'\'' && matches!(prefix, b'e' | b'b' | b'x' | b'n'))
                || (prefix == b'u' && next == b'&' && byte(at + 2) == b'\''))
    }

    /// Whether a `NULL`/`TRUE`/`FALSE` here is a value rather than part of `IS NULL`,
    /// `NOT NULL`, `DEFAULT NULL` and the like.
    fn prev_takes_value(&self) -> bool {
        let Some(prev) = self.toks.last() else {
            return false;
        };
        match prev.kind {
            TokKind::LParen | TokKind::Comma | TokKind::LBracket => true,
            TokKind::Op => matches!(prev.text(self.text), "=" | "<>" | "!="),
            TokKind::Word => matches!(
                prev.kw(self.src),
                Kw::Then | Kw::Else | Kw::Select | Kw::Values
            ),
            _ => false,
        }
    }

    fn colon(&mut self, start: usize) {
        let next = self.peek(1);
        if next == b':' {
            self.pos += 2;
            self.push(TokKind::Cast, start);
        } else if next == b'=' {
            self.pos += 2;
            self.push(TokKind::Op, start);
        } else if (is_ident_start(next) || next.is_ascii_digit()) && !self.prev_is_operand() {
            self.pos += 1;
            while is_ident_char(self.peek(0)) {
                self.pos += 1;
            }
            self.push(TokKind::Placeholder, start);
        } else {
            self.single(TokKind::Colon);
        }
    }

    /// `$1` placeholders and `$$…$$` / `$tag$…$tag$` strings; any other `$` is a lone token.
    fn dollar(&mut self, start: usize) {
        if self.peek(1).is_ascii_digit() {
            self.pos += 1;
            while self.peek(0).is_ascii_digit() {
                self.pos += 1;
            }
            self.push(TokKind::Placeholder, start);
            return;
        }
        let mut tag_end = self.pos + 1;
        if is_ident_start(self.src.get(tag_end).copied().unwrap_or(0)) {
            while self
                .src
                .get(tag_end)
                .is_some_and(|&b| is_ident_char(b) && b != b'$')
            {
                tag_end += 1;
            }
        }
        if self.src.get(tag_end) != Some(&b'$') {
            self.single(TokKind::Other);
            return;
        }
        let delimiter = self.text.get(start..=tag_end).unwrap_or("$$");
        let body_start = tag_end + 1;
        self.pos = match self
            .text
            .get(body_start..)
            .and_then(|rest| rest.find(delimiter))
        {
            Some(offset) => body_start + offset + delimiter.len(),
            None => self.src.len(),
        };
        self.push(TokKind::Literal, start);
    }

    /// `?` and `?NNN` are placeholders; `?|` and `?&` are PostgreSQL JSON operators unless
    /// they are a placeholder followed by `||` / `&&`.
    fn question(&mut self, start: usize) {
        let (next, after) = (self.peek(1), self.peek(2));
        if (next == b'|' || next == b'&') && after != next {
            self.pos += 2;
            self.push(TokKind::Op, start);
            return;
        }
        self.pos += 1;
        while self.peek(0).is_ascii_digit() {
            self.pos += 1;
        }
        self.push(TokKind::Placeholder, start);
    }

    /// Length of a `%s` or `%(name)s` placeholder at `self.pos`, or 0.
    fn percent_placeholder_len(&self) -> usize {
        match self.peek(1) {
            b's' if !is_ident_char(self.peek(2)) => 2,
            b'(' => {
                let mut len = 2;
                while is_ident_char(self.peek(len)) {
                    len += 1;
                }
                if self.peek(len) == b')' && self.peek(len + 1) == b's' {
                    len + 2
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// A run of operator characters, cut the way PostgreSQL cuts it: never across `--` or
    /// `/*`, and without a trailing `+`/`-` unless the run contains one of `~!@#%^&|`, so
    /// that `=-1` is `=` followed by the literal `-1`.
    fn operator(&mut self, start: usize) {
        self.pos += 1;
        while is_op_char(self.peek(0)) {
            let (b, next) = (self.peek(0), self.peek(1));
            let comment = (b == b'-' && next == b'-') || (b == b'/' && next == b'*');
            if comment || (b == b'%' && self.percent_placeholder_len() > 0) {
                break;
            }
            self.pos += 1;
        }
        let run = self.src.get(start..self.pos).unwrap_or_default();
        let keeps_sign = run
            .iter()
            .any(|b| matches!(b, b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|'));
        if !keeps_sign {
            while self.pos - start > 1
                && matches!(self.src.get(self.pos - 1), Some(b'+') | Some(b'-'))
            {
                self.pos -= 1;
            }
        }
        self.push(TokKind::Op, start);
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CtxKind {
    Paren,
    Bracket,
    /// The rows of a `VALUES` list; they are separated by commas outside any bracket.
    Rows,
}

/// An open bracket (or `VALUES` row list) during rendering. For collapsible lists it tracks
/// where in the output the first element is, so that later elements can be compared to it.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    kind: CtxKind,
    collapsible: bool,
    first_start: usize,
    /// End of the first element in the output, once a separator has been seen.
    first_end: Option<usize>,
    current_start: usize,
    all_same: bool,
}

impl Ctx {
    fn new(kind: CtxKind, collapsible: bool, at: usize) -> Ctx {
        Ctx {
            kind,
            collapsible,
            first_start: at,
            first_end: None,
            current_start: at,
            all_same: true,
        }
    }
}

/// Renders into bytes rather than a `String`: tokens are copied whole and every token
/// boundary is an ASCII byte, so the output is valid UTF-8 without per-slice char-boundary
/// checks (checked once at the end).
struct Renderer<'a> {
    src: &'a [u8],
    toks: &'a [Tok],
    out: &'a mut Vec<u8>,
    stack: &'a mut Vec<Ctx>,
    /// Index and kind of the last token written (the kind as a row of [`SPACING`], with
    /// [`NO_PREV`] before the first token).
    prev: Option<usize>,
    prev_kind: usize,
    /// Chained hash of the literals seen so far.
    values: Option<u64>,
}

impl<'a> Renderer<'a> {
    fn new(src: &'a str, toks: &'a [Tok], stack: &'a mut Vec<Ctx>, out: &'a mut Vec<u8>) -> Self {
        stack.clear();
        out.clear();
        out.reserve(src.len());
        Renderer {
            src: src.as_bytes(),
            toks,
            out,
            stack,
            prev: None,
            prev_kind: NO_PREV,
            values: None,
        }
    }

    /// Returns the text and the hash of the literal values.
    fn render(mut self) -> (String, u64) {
        let mut i = 0;
        while let Some(&tok) = self.toks.get(i) {
            i = self.token(i, tok);
        }
        while self.out.last().is_some_and(|&b| b == b' ' || b == b';') {
            self.out.pop();
        }
        let text = match std::str::from_utf8(self.out) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(self.out).into_owned(),
        };
        let values = match self.values {
            None => 0,
            Some(0) => 1,
            Some(hash) => hash,
        };
        (text, values)
    }

    /// Chaining the seed makes the result depend on every literal and on their order.
    fn add_value(&mut self, tok: Tok) {
        let seed = self.values.unwrap_or(0);
        self.values = Some(xxh3_64_with_seed(tok.bytes(self.src), seed));
    }

    fn set_prev(&mut self, i: usize) {
        self.prev = Some(i);
        self.prev_kind = self.toks.get(i).map_or(NO_PREV, |t| t.kind as usize);
    }

    fn prev_tok(&self) -> Option<Tok> {
        self.prev.and_then(|p| self.toks.get(p)).copied()
    }

    /// Writes token `i` and returns the index of the next token to write.
    fn token(&mut self, i: usize, tok: Tok) -> usize {
        match tok.kind {
            TokKind::Semi => {
                // Separate statements; brackets left open by malformed SQL end here.
                if self.prev_tok().is_some_and(|p| p.kind != TokKind::Semi) {
                    self.stack.clear();
                    self.write(i, b";");
                }
            }
            TokKind::LParen => self.open(i, CtxKind::Paren, b"("),
            TokKind::LBracket => self.open(i, CtxKind::Bracket, b"["),
            TokKind::RParen => return self.close(i, CtxKind::Paren, b")"),
            TokKind::RBracket => return self.close(i, CtxKind::Bracket, b"]"),
            TokKind::Comma => self.comma(i),
            TokKind::Literal => {
                self.add_value(tok);
                self.write_byte(i, b'?');
            }
            TokKind::Placeholder => self.write_byte(i, b'?'),
            TokKind::Word => self.word(i, tok),
            TokKind::Quoted => self.quoted(i, tok),
            _ => self.write(i, tok.bytes(self.src)),
        }
        i + 1
    }

    fn write(&mut self, i: usize, text: &[u8]) {
        self.separate(i);
        self.out.extend_from_slice(text);
        self.set_prev(i);
    }

    /// [`Renderer::write`] of a one-byte text.
    fn write_byte(&mut self, i: usize, byte: u8) {
        self.separate(i);
        self.out.push(byte);
        self.set_prev(i);
    }

    fn word(&mut self, i: usize, tok: Tok) {
        self.separate(i);
        push_lowercase(self.out, self.src, tok.start, tok.end);
        self.set_prev(i);
    }

    fn quoted(&mut self, i: usize, tok: Tok) {
        let text = tok.bytes(self.src);
        let inner = text
            .get(1..text.len().saturating_sub(1))
            .unwrap_or_default();
        let closed = text.len() >= 2 && text.first() == text.last();
        if closed && is_plain_lowercase_ident(inner) && !is_reserved(inner) {
            self.write(i, inner);
        } else {
            self.write(i, text);
        }
    }

    /// Writes the space that belongs before token `i`, if any.
    #[inline]
    fn separate(&mut self, i: usize) {
        let Some(cur) = self.toks.get(i) else {
            return;
        };
        let space = match SPACING[self.prev_kind][cur.kind as usize] {
            Space::No => false,
            Space::Yes => true,
            Space::BeforeParen => {
                let prev_kw = self.prev_tok().map_or(Kw::None, |p| p.kw(self.src));
                self.space_before_paren(prev_kw)
            }
        };
        if space {
            self.out.push(b' ');
        }
    }

    /// Function calls keep their `(` attached; keywords and `insert into t (…)` do not.
    /// `prev_kw` is the keyword of the previous token, which the caller has looked up.
    fn space_before_paren(&self, prev_kw: Kw) -> bool {
        let Some(p) = self.prev else {
            return false;
        };
        let Some(prev) = self.toks.get(p) else {
            return false;
        };
        match (prev.kind, prev_kw) {
            (TokKind::Word, Kw::None) | (TokKind::Quoted, _) => self.name_follows_intro(p),
            (TokKind::Word, Kw::FuncLike | Kw::Array) => false,
            // `union all (…)` versus `= any(…)`, and MySQL's `= values(col)`.
            (TokKind::Word, Kw::Quantifier | Kw::Values) => !p
                .checked_sub(1)
                .and_then(|q| self.toks.get(q))
                .is_some_and(|t| t.kind == TokKind::Op),
            _ => true,
        }
    }

    /// Whether the (possibly dotted) name ending at token `p` follows `into`, `table`, … .
    fn name_follows_intro(&self, mut p: usize) -> bool {
        let is_name = |t: &Tok| matches!(t.kind, TokKind::Word | TokKind::Quoted);
        while p >= 2
            && self.toks.get(p - 1).is_some_and(|t| t.kind == TokKind::Dot)
            && self.toks.get(p - 2).is_some_and(is_name)
        {
            p -= 2;
        }
        p.checked_sub(1)
            .and_then(|q| self.toks.get(q))
            .is_some_and(|t| t.is_word(self.src, Kw::NameIntro))
    }

    fn open(&mut self, i: usize, kind: CtxKind, text: &[u8]) {
        let prev = self.prev_tok();
        // Looked up once for the three questions below (`kw` is `None` for a non-word).
        let prev_kw = prev.map_or(Kw::None, |p| p.kw(self.src));
        let collapsible = match kind {
            CtxKind::Paren => prev_kw == Kw::In && !self.starts_subquery(i + 1),
            _ => {
                prev_kw == Kw::Array
                    || prev.is_some_and(|p| {
                        matches!(p.kind, TokKind::LBracket | TokKind::Comma)
                            && self
                                .stack
                                .last()
                                .is_some_and(|c| c.kind == CtxKind::Bracket && c.collapsible)
                    })
            }
        };
        let space = match self
            .toks
            .get(i)
            .map(|t| SPACING[self.prev_kind][t.kind as usize])
        {
            Some(Space::Yes) => true,
            Some(Space::BeforeParen) => self.space_before_paren(prev_kw),
            Some(Space::No) | None => false,
        };
        if space {
            self.out.push(b' ');
        }
        if kind == CtxKind::Paren && prev_kw == Kw::Values {
            self.stack
                .push(Ctx::new(CtxKind::Rows, true, self.out.len()));
        }
        self.out.extend_from_slice(text);
        self.set_prev(i);
        self.stack.push(Ctx::new(kind, collapsible, self.out.len()));
    }

    fn starts_subquery(&self, i: usize) -> bool {
        self.toks.get(i).is_some_and(|t| {
            t.kind == TokKind::Word && {
                let word = t.bytes(self.src);
                word.eq_ignore_ascii_case(b"select") || word.eq_ignore_ascii_case(b"with")
            }
        })
    }

    fn comma(&mut self, i: usize) {
        match self.stack.last_mut() {
            Some(ctx) if ctx.collapsible => {
                end_element(ctx, self.out);
                self.out.extend_from_slice(b", ");
                ctx.current_start = self.out.len();
            }
            _ => self.out.extend_from_slice(b", "),
        }
        self.set_prev(i);
    }

    fn close(&mut self, i: usize, kind: CtxKind, text: &[u8]) -> usize {
        if self.stack.last().is_some_and(|c| c.kind == kind)
            && let Some(ctx) = self.stack.pop()
        {
            self.finish_list(ctx);
        }
        self.write(i, text);
        if self.stack.last().is_some_and(|c| c.kind == CtxKind::Rows) {
            return self.after_row(i);
        }
        i + 1
    }

    /// After a `VALUES` row: either another row follows (`, (`), or the row list ends.
    fn after_row(&mut self, i: usize) -> usize {
        let comma = self
            .toks
            .get(i + 1)
            .is_some_and(|t| t.kind == TokKind::Comma);
        let paren = self
            .toks
            .get(i + 2)
            .is_some_and(|t| t.kind == TokKind::LParen);
        if comma && paren {
            if let Some(ctx) = self.stack.last_mut() {
                end_element(ctx, self.out);
                self.out.extend_from_slice(b", ");
                ctx.current_start = self.out.len();
            }
            self.set_prev(i + 1);
            return i + 2;
        }
        if let Some(ctx) = self.stack.pop() {
            self.finish_list(ctx);
        }
        i + 1
    }

    /// Keeps only the first element of a collapsible list whose elements all rendered alike.
    fn finish_list(&mut self, mut ctx: Ctx) {
        if !ctx.collapsible {
            return;
        }
        if let Some(first_end) = ctx.first_end {
            end_element(&mut ctx, self.out);
            if ctx.all_same {
                self.out.truncate(first_end);
            }
        }
    }
}

/// Records the end of the list element that runs from `ctx.current_start` to the end of `out`.
fn end_element(ctx: &mut Ctx, out: &[u8]) {
    match ctx.first_end {
        None => ctx.first_end = Some(out.len()),
        Some(first_end) if ctx.all_same => {
            ctx.all_same = match (
                out.get(ctx.current_start..),
                out.get(ctx.first_start..first_end),
            ) {
                (Some(current), Some(first)) => same_bytes(current, first),
                (current, first) => current == first,
            };
        }
        Some(_) => {}
    }
}

/// `a == b`, without a call to `memcmp` for the short elements (`?`, `?, ?`) that collapsible
/// lists are made of: it is made once per element of every list.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// PostgreSQL's reserved words, sorted. A quoted identifier spelled like one of them keeps
/// its quotes: unquoted it would read as the keyword (`"order"`, `"user"`).
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
    "column", "concurrently", "constraint", "create", "cross", "current_catalog",
    "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
    "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having",
    "ilike", "in", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral",
    "leading", "left", "like", "limit", "localtime", "localtimestamp", "natural", "not",
    "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps", "placing",
    "primary", "references", "returning", "right", "select", "session_user", "similar", "some",
    "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true",
    "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window",
    "with",
];

/// Looked up in a hash table like [`classify`]'s: every quoted name of every statement asks,
/// and a binary search costs several string comparisons each time.
fn is_reserved(word: &[u8]) -> bool {
    static SLOTS: OnceLock<[u8; KEYWORD_SLOTS]> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| keyword_slots(RESERVED.iter().copied()));
    let mut slot = keyword_slot(word);
    loop {
        let index = match slots.get(slot) {
            Some(&s) if s != 0 => usize::from(s) - 1,
            _ => return false,
        };
        if RESERVED.get(index).is_some_and(|r| r.as_bytes() == word) {
            return true;
        }
        slot = (slot + 1) % KEYWORD_SLOTS;
    }
}

fn is_plain_lowercase_ident(s: &[u8]) -> bool {
    let mut bytes = s.iter().copied();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
}

// ---------------------------------------------------------------------------------------
// Statement kind
// ---------------------------------------------------------------------------------------

fn statement_kind(src: &str, toks: &[Tok]) -> StatementKind {
    let end = |toks: &[Tok]| {
        toks.iter()
            .position(|t| t.kind == TokKind::Semi)
            .unwrap_or(toks.len())
    };
    let first = end(toks);
    let kind = one_statement_kind(src, &toks[..first]);
    if kind != StatementKind::Housekeeping {
        return kind;
    }
    // Housekeeping only when nothing else follows it: a pool's reset string, not an
    // application's query sent behind one.
    let mut rest = toks.get(first + 1..).unwrap_or_default();
    while !rest.is_empty() {
        let n = end(rest);
        if n > 0 {
            match one_statement_kind(src, &rest[..n]) {
                StatementKind::Housekeeping | StatementKind::Set => {}
                other => return other,
            }
        }
        rest = rest.get(n + 1..).unwrap_or_default();
    }
    StatementKind::Housekeeping
}

fn one_statement_kind(src: &str, toks: &[Tok]) -> StatementKind {
    let Some(first) = toks.iter().position(|t| t.kind != TokKind::LParen) else {
        return StatementKind::Other;
    };
    let word = |i: usize| {
        toks.get(i)
            .filter(|t| t.kind == TokKind::Word)
            .map(|t| t.text(src))
    };
    let Some(verb) = word(first) else {
        return StatementKind::Other;
    };
    if verb.eq_ignore_ascii_case("with") {
        return main_verb_after_ctes(src, toks, first + 1);
    }
    if verb.eq_ignore_ascii_case("start") {
        let transaction = word(first + 1).is_some_and(|w| w.eq_ignore_ascii_case("transaction"));
        return if transaction {
            StatementKind::TransactionControl
        } else {
            StatementKind::Other
        };
    }
    let kind = verb_kind(verb).unwrap_or(StatementKind::Other);
    if matches!(kind, StatementKind::Select | StatementKind::Other) && housekeeping(src, toks) {
        return StatementKind::Housekeeping;
    }
    if kind == StatementKind::Select && only_set_config(src, &toks[first..]) {
        return StatementKind::Set;
    }
    kind
}

/// `SELECT set_config('TimeZone', 'UTC', false)` and the like, alone: the
/// function form of SET, which Django sends on every new connection and
/// pg_dump and poolers use; a session setting, not a query (issue 13).
fn only_set_config(src: &str, toks: &[Tok]) -> bool {
    let mut depth = 0usize;
    let mut calls = 0;
    for (i, t) in toks.iter().enumerate().skip(1) {
        match t.kind {
            TokKind::LParen => depth += 1,
            TokKind::RParen => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            TokKind::Comma | TokKind::Dot => {}
            TokKind::Word => {
                let w = t.text(src);
                let w = w
                    .get(..11)
                    .filter(|p| p.eq_ignore_ascii_case("pg_catalog."))
                    .map_or(w, |_| &w[11..]);
                if w.eq_ignore_ascii_case("set_config") {
                    calls += 1;
                } else if w.eq_ignore_ascii_case("pg_catalog") {
                } else if w.eq_ignore_ascii_case("as") {
                    // `AS alias`: the alias is the next word.
                } else if !toks.get(i - 1).is_some_and(|p| {
                    p.kind == TokKind::Word && p.text(src).eq_ignore_ascii_case("as")
                }) {
                    return false;
                }
            }
            TokKind::Quoted => {}
            _ => return false,
        }
    }
    calls > 0
}

/// The body of the `DO` block in asyncpg's pool reset (asyncpg/connection.py,
/// `_get_reset_query`), words joined by one space, lower case.
const ASYNCPG_UNLISTEN: &str = "begin perform * from pg_listening_channels() limit 1; if found \
                                then unlisten *; end if; end;";

/// Whether one statement (no `;`) is a driver's or pool's session clean-up; see
/// [`StatementKind::Housekeeping`]. Called only for statements whose verb is not one of
/// the known kinds' or is SELECT, so it costs nothing on ordinary DML.
fn housekeeping(src: &str, toks: &[Tok]) -> bool {
    let is = |i: usize, w: &str| {
        toks.get(i)
            .is_some_and(|t| t.kind == TokKind::Word && t.text(src).eq_ignore_ascii_case(w))
    };
    let kind = |i: usize, k: TokKind| toks.get(i).is_some_and(|t| t.kind == k);
    // DEALLOCATE [PREPARE] { name | ALL }; DISCARD { ALL | PLANS | SEQUENCES | TEMP[ORARY] };
    // UNLISTEN { channel | * }.
    if is(0, "deallocate") || is(0, "discard") || is(0, "unlisten") {
        return true;
    }
    // CLOSE { name | ALL }: only ALL is a reset.
    if is(0, "close") {
        return toks.len() == 2 && is(1, "all");
    }
    if is(0, "select") {
        return toks.len() == 4
            && is(1, "pg_advisory_unlock_all")
            && kind(2, TokKind::LParen)
            && kind(3, TokKind::RParen);
    }
    if is(0, "do") && toks.len() == 2 && kind(1, TokKind::Literal) {
        return dollar_body(toks[1].text(src)).is_some_and(|body| {
            let folded: Vec<String> = body
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            folded.join(" ") == ASYNCPG_UNLISTEN
        });
    }
    false
}

/// The text inside a dollar-quoted string `$tag$…$tag$`.
fn dollar_body(literal: &str) -> Option<&str> {
    let rest = literal.strip_prefix('$')?;
    let tag_end = rest.find('$')?;
    let tag = &literal[..tag_end + 2];
    literal.get(tag.len()..)?.strip_suffix(tag)
}

fn verb_kind(word: &str) -> Option<StatementKind> {
    const VERBS: &[(&str, StatementKind)] = &[
        ("select", StatementKind::Select),
        ("values", StatementKind::Select),
        ("table", StatementKind::Select),
        ("explain", StatementKind::Select),
        ("insert", StatementKind::Insert),
        ("replace", StatementKind::Insert),
        ("upsert", StatementKind::Insert),
        ("update", StatementKind::Update),
        ("delete", StatementKind::Delete),
        ("merge", StatementKind::Merge),
        ("create", StatementKind::Ddl),
        ("alter", StatementKind::Ddl),
        ("drop", StatementKind::Ddl),
        ("truncate", StatementKind::Ddl),
        ("comment", StatementKind::Ddl),
        ("grant", StatementKind::Ddl),
        ("revoke", StatementKind::Ddl),
        ("rename", StatementKind::Ddl),
        ("begin", StatementKind::TransactionControl),
        ("commit", StatementKind::TransactionControl),
        ("end", StatementKind::TransactionControl),
        ("rollback", StatementKind::TransactionControl),
        ("savepoint", StatementKind::TransactionControl),
        ("release", StatementKind::TransactionControl),
        ("abort", StatementKind::TransactionControl),
        ("set", StatementKind::Set),
        ("show", StatementKind::Set),
        ("reset", StatementKind::Set),
    ];
    VERBS
        .iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|&(_, kind)| kind)
}

/// The main statement of `WITH a AS (…), b AS (…) <verb> …` is the first data verb outside
/// the CTE bodies; `… ) (SELECT …)` puts it in parentheses.
fn main_verb_after_ctes(src: &str, toks: &[Tok], from: usize) -> StatementKind {
    let mut depth = 0usize;
    let mut prev_kind = TokKind::Word;
    for (i, tok) in toks.iter().enumerate().skip(from) {
        match tok.kind {
            TokKind::LParen if depth == 0 && prev_kind == TokKind::RParen => {
                return toks
                    .iter()
                    .skip(i)
                    .find(|t| t.kind != TokKind::LParen)
                    .and_then(|t| data_verb(t.text(src)))
                    .unwrap_or(StatementKind::Other);
            }
            TokKind::LParen => depth += 1,
            TokKind::RParen => depth = depth.saturating_sub(1),
            TokKind::Semi if depth == 0 => break,
            TokKind::Word if depth == 0 => {
                if let Some(kind) = data_verb(tok.text(src)) {
                    return kind;
                }
            }
            _ => {}
        }
        prev_kind = tok.kind;
    }
    StatementKind::Other
}

/// A verb that can be the main statement of a `WITH`.
fn data_verb(word: &str) -> Option<StatementKind> {
    if word.eq_ignore_ascii_case("explain") {
        return None;
    }
    verb_kind(word).filter(|kind| *kind == StatementKind::Select || kind.is_write())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL reads `\'` in a string as a quote (PyMySQL and mysql2 escape so);
    /// standard SQL, PostgreSQL and SQLite read the backslash as itself.
    #[test]
    fn mysql_backslash_escapes_stay_inside_the_string() {
        let plain = "select id from orders where customer = 'Smith' and id > 1";
        for escaped in [
            r"select id from orders where customer = 'O\'Brien' and id > 1",
            r"select id from orders where customer = 'back\\slash' and id > 1",
            r"select id from orders where customer = 'a\'b\\c\'' and id > 1",
        ] {
            let (a, b) = (fingerprint_mysql(escaped), fingerprint_mysql(plain));
            assert_eq!(a.text, b.text, "{escaped}");
            assert_eq!(a.hash, b.hash);
            assert_ne!(a.values, b.values, "other values: {escaped}");
        }
        assert_eq!(
            fingerprint_mysql(plain).text,
            "select id from orders where customer = ? and id > ?"
        );
        // PostgreSQL's standard strings: 'a\' is the whole literal.
        assert_eq!(
            fingerprint(r"select 'a\' as x, 1").text,
            fingerprint("select 'b' as x, 1").text
        );
        assert_ne!(
            fingerprint_mysql(r"select 'a\' as x, 1").text,
            fingerprint_mysql("select 'b' as x, 1").text,
            "MySQL reads 'a\\' as unterminated"
        );
    }

    #[test]
    fn ident_len_agrees_with_the_byte_classes() {
        let reference = |bytes: &[u8]| bytes.iter().take_while(|&&b| is_ident_char(b)).count();
        for stop in 0..=255u8 {
            for at in 0..20 {
                let mut buf = [b'a'; 20];
                buf[at] = stop;
                for len in at..=buf.len() {
                    let slice = &buf[..len];
                    assert_eq!(ident_len(slice), reference(slice), "byte {stop:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn every_keyword_is_found_in_any_case() {
        let plain = PLAIN_KEYWORDS.iter().map(|w| (*w, Kw::Plain));
        let all: Vec<(&str, Kw)> = KEYWORDS.iter().copied().chain(plain).collect();
        assert!(all.len() < 255, "slots store 1 + index in a byte");
        for (word, kw) in all {
            assert!(word.len() <= KEYWORD_MAX_LEN, "{word}");
            assert_eq!(classify(word.as_bytes()), kw, "{word}");
            assert_eq!(classify(word.to_ascii_uppercase().as_bytes()), kw, "{word}");
        }
        for word in [
            "users",
            "id",
            "user_id",
            "u1_0",
            "selects",
            "x",
            "",
            "transactions",
        ] {
            assert_eq!(classify(word.as_bytes()), Kw::None, "{word}");
        }
    }

    #[test]
    fn spacing_table_matches_spacing() {
        for prev in TOK_KINDS {
            for cur in TOK_KINDS {
                assert_eq!(SPACING[prev as usize][cur as usize], spacing(prev, cur));
            }
        }
    }

    #[test]
    fn push_lowercase_agrees_with_to_ascii_lowercase() {
        // Every byte value, at every offset of a chunk, with and without bytes after the end.
        for byte in 0..=255u8 {
            for len in 1..20 {
                let mut src = vec![b'Q'; len + 9];
                src[len / 2] = byte;
                for tail in [0, 9] {
                    let src = &src[..len + tail];
                    let mut out = b"x".to_vec();
                    push_lowercase(&mut out, src, 0, len);
                    let mut expected = b"x".to_vec();
                    expected.extend(src[..len].iter().map(u8::to_ascii_lowercase));
                    assert_eq!(out, expected, "byte {byte:#x}, length {len}, tail {tail}");
                }
            }
        }
    }

    #[test]
    fn same_bytes_is_equality() {
        let texts: [&[u8]; 6] = [b"", b"?", b"?, ?", b"(?, ?)", &[b'?'; 17], &[b'?'; 40]];
        for a in texts {
            for b in texts {
                assert_eq!(same_bytes(a, b), a == b);
            }
        }
        assert!(!same_bytes(b"?, ?x", b"?, ?y"));
        assert!(!same_bytes(&[b'a'; 30], &[b'b'; 30]));
    }

    #[test]
    fn every_reserved_word_is_found_and_nothing_else() {
        for word in RESERVED {
            assert!(is_reserved(word.as_bytes()), "{word}");
            assert!(!is_reserved(word.to_ascii_uppercase().as_bytes()), "{word}");
            assert!(!is_reserved(format!("{word}_").as_bytes()), "{word}");
        }
        for word in ["users", "id", "position", "", "x", "orders", "usera"] {
            assert!(!is_reserved(word.as_bytes()), "{word}");
        }
    }

    #[test]
    fn reserved_words_are_sorted() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
        assert!(is_reserved(b"order") && is_reserved(b"user") && !is_reserved(b"position"));
    }
}
