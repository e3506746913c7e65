//! Throughput of `fingerprint` against `sqlparser` parsing, on a generated ORM-style corpus.
//!
//! Run with `cargo bench --bench fingerprint`. Exits with status 1 when a target is missed:
//! fingerprinting must be at least 5x faster than a PostgreSQL-dialect parse and handle at
//! least 500,000 statements per second on one core.
//!
//! Both are timed in the thread's CPU time, not wall time, so that other processes on a
//! loaded machine delay the run without changing its figures; each figure is the median of
//! interleaved rounds.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flowaudit::fingerprint::fingerprint;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

const STATEMENTS: usize = 2_000;
const WARMUP_ROUNDS: usize = 2;
const ROUNDS: usize = 15;
/// Passes of the corpus per timed round, so that a round is long next to the clock's
/// granularity.
const PASSES_PER_ROUND: u32 = 5;
const MIN_RATIO: f64 = 5.0;
const MIN_STATEMENTS_PER_SEC: f64 = 500_000.0;
const MIN_LEN: usize = 200;
const MAX_LEN: usize = 1_500;

fn main() -> ExitCode {
    let corpus = build_corpus();
    describe(&corpus);
    let clock = Clock::pick();
    println!("clock: {}", clock.describe());
    let (fp, parse) = measure(&corpus, clock);

    let n = corpus.len() as f64;
    let fp_rate = n / fp.as_secs_f64();
    let ratio = parse.as_secs_f64() / fp.as_secs_f64();
    let ratio_ok = ratio >= MIN_RATIO;
    let rate_ok = fp_rate >= MIN_STATEMENTS_PER_SEC;
    println!(
        "fingerprint: median {:.2} ms per pass = {} statements/s (one core)",
        ms(fp),
        thousands(fp_rate)
    );
    println!(
        "sqlparser:   median {:.2} ms per pass = {} statements/s",
        ms(parse),
        thousands(n / parse.as_secs_f64())
    );
    println!(
        "ratio: fingerprint is {ratio:.1}x faster than sqlparser parse (target >= {MIN_RATIO}x)   {}",
        verdict(ratio_ok)
    );
    println!(
        "throughput target >= {} statements/s: {}",
        thousands(MIN_STATEMENTS_PER_SEC),
        verdict(rate_ok)
    );
    if ratio_ok && rate_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn describe(corpus: &[String]) {
    let bytes: usize = corpus.iter().map(String::len).sum();
    let parsed = corpus
        .iter()
        .filter(|sql| Parser::parse_sql(&PostgreSqlDialect {}, sql).is_ok())
        .count();
    println!(
        "corpus: {} statements, {:.2} MB, sqlparser parsed {} of them",
        corpus.len(),
        bytes as f64 / 1e6,
        parsed
    );
    let shortest = corpus.iter().map(String::len).min().unwrap_or(0);
    let longest = corpus.iter().map(String::len).max().unwrap_or(0);
    println!(
        "statement sizes: {shortest} to {longest} bytes, {} on average; the {} that fail to parse \
         (MySQL backticks, %s and ? placeholders under the PostgreSQL dialect) are timed too",
        bytes / corpus.len().max(1),
        corpus.len() - parsed
    );
}

/// What the rounds are timed with.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// CPU time of this thread: what the work cost, whatever else the machine runs.
    ThreadCpu,
    /// Wall time, where the thread's CPU time cannot be read.
    Wall,
}

impl Clock {
    fn pick() -> Clock {
        if thread_cpu_time().is_some() {
            Clock::ThreadCpu
        } else {
            Clock::Wall
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Clock::ThreadCpu => "CPU time of the benchmark thread (/proc/thread-self/schedstat)",
            Clock::Wall => "wall time (the thread's CPU time is not readable here)",
        }
    }

    /// Runs `work` and returns the time it took on this clock.
    fn time(self, mut work: impl FnMut()) -> Duration {
        match self {
            Clock::ThreadCpu => {
                let start = thread_cpu_time().unwrap_or_default();
                work();
                thread_cpu_time().unwrap_or_default().saturating_sub(start)
            }
            Clock::Wall => {
                let start = Instant::now();
                work();
                start.elapsed()
            }
        }
    }
}

/// Nanoseconds this thread has spent on a CPU: the first field of
/// `/proc/thread-self/schedstat` (Linux). Read from procfs by hand because the lints deny
/// `unsafe` (so no direct `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`) and the `nix` built for
/// flowaudit lacks its `time` feature. The kernel brings a running thread's figure up to
/// date only when it enters the scheduler, so yield first: the value is then exact to the
/// call rather than to the last timer tick.
fn thread_cpu_time() -> Option<Duration> {
    std::thread::yield_now();
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Median time of one pass of `fingerprint` and of `sqlparser` over the corpus, measured in
/// interleaved rounds so that both see the same machine conditions.
fn measure(corpus: &[String], clock: Clock) -> (Duration, Duration) {
    for _ in 0..WARMUP_ROUNDS {
        fingerprint_pass(corpus);
        parse_pass(corpus);
    }
    let mut fp_times = Vec::with_capacity(ROUNDS);
    let mut parse_times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let fp = clock.time(|| (0..PASSES_PER_ROUND).for_each(|_| fingerprint_pass(corpus)));
        fp_times.push(fp / PASSES_PER_ROUND);
        let parse = clock.time(|| (0..PASSES_PER_ROUND).for_each(|_| parse_pass(corpus)));
        parse_times.push(parse / PASSES_PER_ROUND);
    }
    (median(&mut fp_times), median(&mut parse_times))
}

fn fingerprint_pass(corpus: &[String]) {
    for sql in corpus {
        black_box(fingerprint(black_box(sql)));
    }
}

fn parse_pass(corpus: &[String]) {
    for sql in corpus {
        // Failed parses count too: the error path is the cost of trying.
        let _ = black_box(Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)));
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// `246000.4` → `"246,000"`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------------

/// A 64-bit LCG: deterministic, so every run measures the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.range(0, items.len() - 1)]
    }

    fn uuid(&mut self) -> String {
        let hex = |rng: &mut Rng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(b"0123456789abcdef"[rng.range(0, 15)]))
                .collect()
        };
        format!(
            "{}-{}-{}-{}-{}",
            hex(self, 8),
            hex(self, 4),
            hex(self, 4),
            hex(self, 4),
            hex(self, 12)
        )
    }

    fn word(&mut self) -> String {
        const SYLLABLES: &[&str] = &["ka", "lo", "mi", "ne", "ru", "ta", "vo", "xe", "zu", "pa"];
        (0..self.range(2, 5))
            .map(|_| self.pick(SYLLABLES))
            .collect()
    }
}

struct Table {
    name: &'static str,
    alias: &'static str,
    columns: &'static [&'static str],
}

#[rustfmt::skip]
const TABLES: &[Table] = &[
    Table {
        name: "users",
        alias: "u",
        columns: &[
            "id", "email", "name", "created_at", "updated_at", "status", "account_id",
            "last_login_at", "locale", "time_zone", "avatar_url", "is_staff", "deleted_at",
        ],
    },
    Table {
        name: "orders",
        alias: "o",
        columns: &[
            "id", "user_id", "total_cents", "currency", "state", "placed_at",
            "shipping_address_id", "billing_address_id", "coupon_code", "notes", "updated_at",
        ],
    },
    Table {
        name: "order_items",
        alias: "oi",
        columns: &[
            "id", "order_id", "product_id", "quantity", "unit_price_cents", "discount_cents",
            "tax_cents", "created_at",
        ],
    },
    Table {
        name: "products",
        alias: "p",
        columns: &[
            "id", "sku", "title", "description", "price_cents", "stock", "category_id", "active",
            "weight_grams", "created_at", "updated_at",
        ],
    },
    Table {
        name: "categories",
        alias: "c",
        columns: &["id", "parent_id", "name", "slug", "position", "created_at", "updated_at"],
    },
    Table {
        name: "accounts",
        alias: "a",
        columns: &[
            "id", "name", "plan", "billing_email", "trial_ends_at", "created_at", "updated_at",
            "country", "vat_number",
        ],
    },
];

/// Foreign keys used for joins: `(child, fk column, parent)`, indices into `TABLES`.
const JOINS: &[(usize, &str, usize)] = &[
    (1, "user_id", 0),
    (2, "order_id", 1),
    (2, "product_id", 3),
    (3, "category_id", 4),
    (0, "account_id", 5),
];

type Template = fn(&mut Rng) -> String;

const TEMPLATES: &[Template] = &[
    django_get,
    django_in,
    sqlalchemy_get,
    sqlalchemy_in,
    activerecord_find,
    activerecord_in,
    hibernate_find,
    hibernate_join,
    literal_point_select,
    literal_int_in,
    literal_string_in,
    insert_rows_literal,
    insert_rows_params,
    insert_on_conflict,
    mysql_on_duplicate,
    update_with_comment,
    delete_old,
    cte_report,
    join_chain,
    exists_subquery,
    json_query,
    group_by_having,
    job_queue,
    window_rank,
    case_expression,
    any_array,
    sqlite_numbered,
    interval_count,
    union_all,
    update_from,
    strings_insert,
];

fn build_corpus() -> Vec<String> {
    let mut rng = Rng(0x0000_f10a_0d17);
    let mut corpus = Vec::with_capacity(STATEMENTS);
    let mut i = 0;
    while corpus.len() < STATEMENTS {
        let template = TEMPLATES[i % TEMPLATES.len()];
        i += 1;
        let sql = template(&mut rng);
        if (MIN_LEN..=MAX_LEN).contains(&sql.len()) {
            corpus.push(sql);
        }
    }
    corpus
}

fn table(rng: &mut Rng) -> &'static Table {
    &TABLES[rng.range(0, TABLES.len() - 1)]
}

fn quoted_columns(t: &Table) -> String {
    t.columns
        .iter()
        .map(|c| format!("\"{}\".\"{}\"", t.name, c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(n: usize, mut item: impl FnMut(usize) -> String) -> String {
    (0..n).map(&mut item).collect::<Vec<_>>().join(", ")
}

fn django_get(rng: &mut Rng) -> String {
    let t = table(rng);
    format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\".\"id\" = %s LIMIT 21",
        quoted_columns(t),
        t.name,
        t.name
    )
}

fn django_in(rng: &mut Rng) -> String {
    let t = table(rng);
    let n = rng.range(1, 50);
    format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\".\"id\" IN ({})",
        quoted_columns(t),
        t.name,
        t.name,
        list(n, |_| "%s".to_string())
    )
}

fn sqlalchemy_columns(t: &Table) -> String {
    t.columns
        .iter()
        .map(|c| format!("{0}.{1} AS {0}_{1}", t.name, c))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sqlalchemy_get(rng: &mut Rng) -> String {
    let t = table(rng);
    format!(
        "SELECT {} \nFROM {} \nWHERE {}.id = %(pk_1)s \n LIMIT %(param_1)s OFFSET %(param_2)s",
        sqlalchemy_columns(t),
        t.name,
        t.name
    )
}

fn sqlalchemy_in(rng: &mut Rng) -> String {
    let t = table(rng);
    let n = rng.range(1, 30);
    format!(
        "SELECT {} \nFROM {} \nWHERE {}.id IN ({})",
        sqlalchemy_columns(t),
        t.name,
        t.name,
        list(n, |i| format!("%(id_1_{})s", i + 1))
    )
}

fn activerecord_find(rng: &mut Rng) -> String {
    let t = table(rng);
    let controller = rng.word();
    format!(
        "SELECT \"{0}\".* FROM \"{0}\" WHERE \"{0}\".\"id\" = $1 AND \"{0}\".\"{1}\" IS NOT NULL ORDER BY \"{0}\".\"id\" ASC LIMIT $2 /*application:Shop,controller:{2},action:show,db_host:primary*/",
        t.name, t.columns[1], controller
    )
}

fn activerecord_in(rng: &mut Rng) -> String {
    let t = table(rng);
    let n = rng.range(1, 50);
    format!(
        "SELECT \"{0}\".* FROM \"{0}\" WHERE \"{0}\".\"{1}\" IN ({2}) /*application:Shop,controller:{3},action:index*/",
        t.name,
        t.columns[1],
        list(n, |i| format!("${}", i + 1)),
        rng.word()
    )
}

fn hibernate_columns(t: &Table, alias: &str) -> String {
    t.columns
        .iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn hibernate_find(rng: &mut Rng) -> String {
    let t = table(rng);
    let alias = format!("{}1_0", t.alias);
    format!(
        "select {} from {} {alias} where {alias}.id=? and {alias}.{}=?",
        hibernate_columns(t, &alias),
        t.name,
        t.columns[2]
    )
}

fn hibernate_join(rng: &mut Rng) -> String {
    let &(child, fk, parent) = &JOINS[rng.range(0, JOINS.len() - 1)];
    let (c, p) = (&TABLES[child], &TABLES[parent]);
    format!(
        "select {},{} from {} c1_0 left join {} p1_0 on p1_0.id=c1_0.{fk} where c1_0.id in ({})",
        hibernate_columns(c, "c1_0"),
        hibernate_columns(p, "p1_0"),
        c.name,
        p.name,
        list(rng.range(1, 50), |_| "?".to_string())
    )
}

fn literal_point_select(rng: &mut Rng) -> String {
    let t = table(rng);
    format!(
        "SELECT {} FROM {} WHERE id = {} AND {} = '{}' LIMIT 1",
        t.columns.join(", "),
        t.name,
        rng.range(1, 10_000_000),
        t.columns[1],
        rng.word()
    )
}

fn literal_int_in(rng: &mut Rng) -> String {
    let t = table(rng);
    let n = rng.range(1, 50);
    let ids = list(n, |_| rng.range(1, 999_999).to_string());
    format!(
        "SELECT {} FROM {} WHERE {} IN ({ids}) ORDER BY id",
        t.columns.join(", "),
        t.name,
        t.columns[0]
    )
}

fn literal_string_in(rng: &mut Rng) -> String {
    let t = table(rng);
    let n = rng.range(1, 30);
    let values = list(n, |_| format!("'{}'", rng.uuid()));
    format!(
        "SELECT {} FROM {} WHERE {} IN ({values}) AND {} IS NULL",
        t.columns.join(", "),
        t.name,
        t.columns[2],
        t.columns[3]
    )
}

fn insert_rows_literal(rng: &mut Rng) -> String {
    let rows = rng.range(1, 18);
    let body = list(rows, |_| {
        format!(
            "({}, '{}', '{}@example.com', '2024-0{}-1{} 12:00:00', {})",
            rng.range(1, 99_999),
            rng.word(),
            rng.word(),
            rng.range(1, 9),
            rng.range(0, 9),
            rng.pick(&["TRUE", "FALSE", "NULL"])
        )
    });
    format!("INSERT INTO users (id, name, email, created_at, active) VALUES {body}")
}

fn insert_rows_params(rng: &mut Rng) -> String {
    let rows = rng.range(1, 40);
    let body = list(rows, |r| {
        let b = r * 5;
        format!(
            "(${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        )
    });
    format!(
        "INSERT INTO \"order_items\" (\"order_id\", \"product_id\", \"quantity\", \"unit_price_cents\", \"discount_cents\") VALUES {body} RETURNING \"id\""
    )
}

fn insert_on_conflict(rng: &mut Rng) -> String {
    format!(
        "INSERT INTO products (sku, title, price_cents, stock, category_id, active) VALUES ('{}', '{}', {}, {}, {}, true) ON CONFLICT (sku) DO UPDATE SET title = EXCLUDED.title, price_cents = EXCLUDED.price_cents, stock = products.stock + EXCLUDED.stock RETURNING id, (xmax = 0) AS inserted",
        rng.word(),
        rng.word(),
        rng.range(100, 99_999),
        rng.range(0, 500),
        rng.range(1, 40)
    )
}

fn mysql_on_duplicate(rng: &mut Rng) -> String {
    let rows = rng.range(1, 30);
    let body = list(rows, |_| {
        format!(
            "({}, '{}', {}, NOW())",
            rng.range(1, 9_999),
            rng.word(),
            rng.range(1, 100)
        )
    });
    format!(
        "INSERT INTO `inventory` (`product_id`, `warehouse`, `quantity`, `updated_at`) VALUES {body} ON DUPLICATE KEY UPDATE `quantity` = `quantity` + VALUES(`quantity`), `updated_at` = VALUES(`updated_at`)"
    )
}

fn update_with_comment(rng: &mut Rng) -> String {
    format!(
        "/*controller='{}',action='update',framework='django'*/ UPDATE \"users\" SET \"name\" = '{}', \"status\" = {}, \"updated_at\" = '2024-05-0{} 10:00:00+00:00' WHERE \"users\".\"id\" = {}",
        rng.word(),
        rng.word(),
        rng.range(0, 4),
        rng.range(1, 9),
        rng.range(1, 1_000_000)
    )
}

fn delete_old(rng: &mut Rng) -> String {
    let n = rng.range(1, 50);
    format!(
        "DELETE FROM sessions WHERE last_seen_at < now() - interval '{} days' AND user_id IN ({}) AND kind <> 'persistent' RETURNING id, user_id",
        rng.range(1, 90),
        list(n, |_| rng.range(1, 500_000).to_string())
    )
}

fn cte_report(rng: &mut Rng) -> String {
    format!(
        "WITH recent_orders AS (SELECT o.id, o.user_id, o.total_cents FROM orders o WHERE o.placed_at > now() - interval '{} days' AND o.state = '{}'), totals AS (SELECT user_id, sum(total_cents) AS spent, count(*) AS n FROM recent_orders GROUP BY user_id) SELECT u.id, u.email, t.spent, t.n FROM totals t JOIN users u ON u.id = t.user_id WHERE t.spent > {} ORDER BY t.spent DESC LIMIT {}",
        rng.range(1, 60),
        rng.pick(&["paid", "shipped", "refunded"]),
        rng.range(1_000, 100_000),
        rng.range(10, 100)
    )
}

fn join_chain(rng: &mut Rng) -> String {
    let joins = rng.range(3, 5);
    let mut sql = String::from(
        "SELECT u.id, u.email, o.id, o.total_cents, oi.quantity, p.title, c.name FROM users u",
    );
    let steps = [
        " JOIN orders o ON o.user_id = u.id",
        " JOIN order_items oi ON oi.order_id = o.id",
        " JOIN products p ON p.id = oi.product_id",
        " LEFT JOIN categories c ON c.id = p.category_id",
        " LEFT JOIN accounts a ON a.id = u.account_id",
    ];
    for step in steps.iter().take(joins) {
        sql.push_str(step);
    }
    sql.push_str(&format!(
        " WHERE u.status = {} AND o.placed_at >= '2024-01-{:02}' AND p.price_cents BETWEEN {} AND {} ORDER BY o.placed_at DESC LIMIT {} OFFSET {}",
        rng.range(0, 3),
        rng.range(1, 28),
        rng.range(0, 500),
        rng.range(500, 50_000),
        rng.range(10, 50),
        rng.range(0, 1_000)
    ));
    sql
}

fn exists_subquery(rng: &mut Rng) -> String {
    format!(
        "SELECT p.id, p.sku, p.title, p.price_cents FROM products p WHERE p.active AND EXISTS (SELECT 1 FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.product_id = p.id AND o.placed_at > '2024-0{}-01' AND o.user_id = {}) AND NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = p.category_id AND c.slug = '{}')",
        rng.range(1, 9),
        rng.range(1, 100_000),
        rng.word()
    )
}

fn json_query(rng: &mut Rng) -> String {
    format!(
        "SELECT id, payload->>'type' AS event_type, payload #>> '{{actor,id}}' AS actor_id, (payload->'meta'->>'version')::int AS version FROM events WHERE payload @> '{{\"type\": \"{}\"}}'::jsonb AND tags ?| array['{}', '{}'] AND created_at > now() - interval '{} hours' ORDER BY created_at DESC LIMIT {}",
        rng.word(),
        rng.word(),
        rng.word(),
        rng.range(1, 72),
        rng.range(10, 200)
    )
}

fn group_by_having(rng: &mut Rng) -> String {
    format!(
        "SELECT c.id, c.name, count(p.id) AS products, avg(p.price_cents)::numeric(12, 2) AS avg_price, sum(CASE WHEN p.stock = 0 THEN 1 ELSE 0 END) AS out_of_stock FROM categories c LEFT JOIN products p ON p.category_id = c.id AND p.active = true WHERE c.parent_id = {} GROUP BY c.id, c.name HAVING count(p.id) > {} ORDER BY products DESC",
        rng.range(1, 50),
        rng.range(0, 10)
    )
}

fn job_queue(rng: &mut Rng) -> String {
    format!(
        "UPDATE jobs SET state = 'running', locked_by = '{}', locked_at = now(), attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND queue = '{}' AND run_at <= now() ORDER BY priority DESC, run_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, queue, payload, attempts",
        rng.word(),
        rng.pick(&["default", "mailers", "critical", "low"])
    )
}

fn window_rank(rng: &mut Rng) -> String {
    format!(
        "SELECT * FROM (SELECT o.id, o.user_id, o.total_cents, row_number() OVER (PARTITION BY o.user_id ORDER BY o.placed_at DESC) AS rn FROM orders o WHERE o.state IN ('paid', 'shipped') AND o.total_cents > {}) ranked WHERE ranked.rn <= {}",
        rng.range(0, 10_000),
        rng.range(1, 5)
    )
}

fn case_expression(rng: &mut Rng) -> String {
    format!(
        "SELECT u.id, u.email, CASE WHEN u.last_login_at IS NULL THEN 'never' WHEN u.last_login_at < now() - interval '{} days' THEN 'dormant' ELSE 'active' END AS activity, coalesce(a.plan, 'free') AS plan FROM users u LEFT JOIN accounts a ON a.id = u.account_id WHERE u.created_at >= date '2023-0{}-01' AND u.status <> -1",
        rng.range(30, 365),
        rng.range(1, 9)
    )
}

fn any_array(rng: &mut Rng) -> String {
    let n = rng.range(1, 50);
    format!(
        "SELECT oi.id, oi.order_id, oi.product_id, oi.quantity, oi.unit_price_cents FROM order_items oi WHERE oi.order_id = ANY($1::bigint[]) AND oi.product_id = ANY(ARRAY[{}]) AND oi.quantity > $2",
        list(n, |_| rng.range(1, 99_999).to_string())
    )
}

fn sqlite_numbered(rng: &mut Rng) -> String {
    let t = table(rng);
    format!(
        "SELECT {} FROM {} WHERE {} = ?1 AND {} > ?2 ORDER BY {} DESC LIMIT ?3 OFFSET {}",
        t.columns.join(", "),
        t.name,
        t.columns[1],
        t.columns[0],
        t.columns[0],
        rng.range(0, 500)
    )
}

fn interval_count(rng: &mut Rng) -> String {
    format!(
        "SELECT date_trunc('day', o.placed_at) AS day, count(*) AS orders, sum(o.total_cents) / 100.0 AS revenue FROM orders o WHERE o.placed_at >= now() - interval '{} days' AND o.currency = '{}' AND o.total_cents % {} = 0 GROUP BY 1 ORDER BY 1",
        rng.range(7, 90),
        rng.pick(&["EUR", "USD", "GBP"]),
        rng.range(2, 10)
    )
}

fn union_all(rng: &mut Rng) -> String {
    format!(
        "(SELECT id, email AS contact, 'user' AS source FROM users WHERE created_at > '2024-0{}-01' LIMIT {}) UNION ALL (SELECT id, billing_email, 'account' FROM accounts WHERE trial_ends_at < now() + interval '{} days' LIMIT {})",
        rng.range(1, 9),
        rng.range(10, 100),
        rng.range(1, 30),
        rng.range(10, 100)
    )
}

fn update_from(rng: &mut Rng) -> String {
    format!(
        "UPDATE products AS p SET stock = p.stock - s.qty, updated_at = now() FROM (SELECT oi.product_id, sum(oi.quantity) AS qty FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE o.id = {} GROUP BY oi.product_id) AS s WHERE s.product_id = p.id AND p.stock >= s.qty",
        rng.range(1, 1_000_000)
    )
}

fn strings_insert(rng: &mut Rng) -> String {
    format!(
        "INSERT INTO audit_log (actor_id, action, detail, note, created_at) VALUES ({}, '{}', E'line one\\nline two: {}', $body$it's a \"quoted\" {} note$body$, TIMESTAMP '2024-03-0{} 08:30:00') -- written by the audit trigger",
        rng.range(1, 100_000),
        rng.pick(&["login", "logout", "update", "delete"]),
        rng.word(),
        rng.word(),
        rng.range(1, 9)
    )
}
