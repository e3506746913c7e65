//! The cost of `flowaudit schema` on a large PostgreSQL schema: 1,000
//! generated tables (999 declared foreign keys, half of them indexed, 333
//! implied `tNNNN_id` columns with orphan rows to search), introspected and
//! linted in full, a few times.
//!
//! Run with `cargo bench --bench schema_review` (PostgreSQL at
//! 127.0.0.1:5432, or FLOWAUDIT_BENCH_PG=postgres://…/db for the server to
//! create the scratch database on). Prints each run, the median and its
//! ratio to the 5 s target, and exits with status 1 when the median is over.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use flowaudit::rules::RuleConfig;
use flowaudit::schema::{ReviewOptions, review};
use sqlx::{Connection, Executor};

const TABLES: usize = 1000;
const RUNS: usize = 5;
const TARGET: Duration = Duration::from_secs(5);

/// The generated schema: table i refers to table i-1 (declared, indexed when
/// i is even) and, when i is a multiple of 3, names table i-2 in a column
/// with no constraint (implied); each table holds a few rows, one of them an
/// orphan of the implied relationship.
fn schema_sql() -> String {
    let mut sql = String::new();
    for i in 0..TABLES {
        sql.push_str(&format!(
            "CREATE TABLE t{i:04} (id bigint PRIMARY KEY, name text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now()"
        ));
        if i > 0 {
            sql.push_str(&format!(
                ", t{:04}_id bigint REFERENCES t{:04} (id)",
                i - 1,
                i - 1
            ));
        }
        if i >= 2 && i % 3 == 0 {
            sql.push_str(&format!(", t{:04}_id bigint", i - 2));
        }
        sql.push_str(");\n");
        if i > 0 && i % 2 == 0 {
            sql.push_str(&format!("CREATE INDEX ON t{i:04} (t{:04}_id);\n", i - 1));
        }
        let parent = if i > 0 {
            format!(", t{:04}_id", i - 1)
        } else {
            String::new()
        };
        let implied = if i >= 2 && i % 3 == 0 {
            format!(", t{:04}_id", i - 2)
        } else {
            String::new()
        };
        let values = |id: u32, orphan: bool| {
            let mut v = format!("({id}, 'row {id}'");
            if i > 0 {
                v.push_str(&format!(", {id}"));
            }
            if i >= 2 && i % 3 == 0 {
                v.push_str(if orphan { ", 999999" } else { ", 1" });
            }
            v.push(')');
            v
        };
        sql.push_str(&format!(
            "INSERT INTO t{i:04} (id, name{parent}{implied}) VALUES {}, {}, {};\n",
            values(1, false),
            values(2, false),
            values(3, true)
        ));
    }
    sql
}

fn main() -> ExitCode {
    let admin = std::env::var("FLOWAUDIT_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_owned();
    let name = format!("flowaudit_bench_{}", std::process::id());
    let url = format!("{base}/{name}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let setup = runtime.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin).await?;
        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        let mut db = sqlx::PgConnection::connect(&url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(schema_sql()))
            .execute(&mut db)
            .await?;
        db.execute("ANALYZE").await?;
        db.close().await
    });
    if let Err(e) = setup {
        eprintln!("schema_review: cannot set up the scratch database on {admin}: {e}");
        return ExitCode::from(2);
    }

    let config = RuleConfig::builtin().expect("the built-in rules load");
    let mut times = Vec::new();
    let mut last = None;
    for run in 1..=RUNS {
        let start = Instant::now();
        let result = review(&url, &ReviewOptions::default(), &config);
        let took = start.elapsed();
        match result {
            Ok(r) => {
                println!(
                    "run {run}: {:.3} s ({} tables, {} relationships, {} findings)",
                    took.as_secs_f64(),
                    r.reviewed.len(),
                    r.relationships.len(),
                    r.findings.len()
                );
                last = Some(r);
            }
            Err(e) => {
                eprintln!("schema_review: the review failed: {e}");
                break;
            }
        }
        times.push(took);
    }
    runtime.block_on(async {
        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
            let _ = c
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    });
    let Some(review) = last.filter(|_| times.len() == RUNS) else {
        return ExitCode::from(2);
    };
    assert_eq!(
        review.reviewed.len(),
        TABLES,
        "every generated table is reviewed"
    );
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!(
        "introspect + lint {TABLES} tables: median {:.3} s of {RUNS} runs, {:.2}× the {} s target",
        median.as_secs_f64(),
        median.as_secs_f64() / TARGET.as_secs_f64(),
        TARGET.as_secs()
    );
    if median < TARGET {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
