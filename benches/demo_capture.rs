//! The cost of in-process capture: the demo shop's shipped journey run with
//! the SQLite trace hook installed and without, in interleaved rounds.
//!
//! Run with `cargo bench --bench demo_capture`. Prints both medians and their
//! ratio, and exits with status 1 when capture costs 1.3× or more. The journey
//! includes registration's password hash, which capture does not touch; the
//! ratio over the three SQL-only steps (browse, add_to_cart, checkout) is
//! printed too, as the stricter figure.

use std::process::ExitCode;
use std::time::Duration;

use flowaudit::demo::{self, DemoRun, DemoSettings};

const WARMUP_ROUNDS: usize = 10;
const ROUNDS: usize = 150;
const MAX_RATIO: f64 = 1.3;

fn journey(capture: bool) -> DemoRun {
    let settings = DemoSettings {
        capture,
        ..DemoSettings::default()
    };
    match demo::run(&settings) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("demo_capture: the demo failed: {e}");
            std::process::exit(2);
        }
    }
}

/// Time of the steps after registration.
fn sql_steps(run: &DemoRun) -> Duration {
    run.step_times
        .iter()
        .filter(|(name, _)| *name != "register")
        .map(|(_, t)| *t)
        .sum()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn main() -> ExitCode {
    for _ in 0..WARMUP_ROUNDS {
        journey(true);
        journey(false);
    }
    let mut with = Vec::with_capacity(ROUNDS);
    let mut without = Vec::with_capacity(ROUNDS);
    let mut with_sql = Vec::with_capacity(ROUNDS);
    let mut without_sql = Vec::with_capacity(ROUNDS);
    let mut statements = 0;
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always runs on a warm cache.
        let (a, b) = if round % 2 == 0 {
            let a = journey(true);
            (a, journey(false))
        } else {
            let b = journey(false);
            (journey(true), b)
        };
        statements = a.events.len();
        with.push(a.journey_time);
        without.push(b.journey_time);
        with_sql.push(sql_steps(&a));
        without_sql.push(sql_steps(&b));
    }
    let (with, without) = (median(&mut with), median(&mut without));
    let (with_sql, without_sql) = (median(&mut with_sql), median(&mut without_sql));
    let ratio = with.as_secs_f64() / without.as_secs_f64();
    let ratio_sql = with_sql.as_secs_f64() / without_sql.as_secs_f64();
    let per_statement_us =
        (with.as_secs_f64() - without.as_secs_f64()) * 1e6 / statements.max(1) as f64;
    println!("demo journey (shipped): {statements} statements, {ROUNDS} interleaved rounds");
    println!(
        "journey        median with capture {:>8.3} ms, without {:>8.3} ms, ratio {ratio:.3}x",
        with.as_secs_f64() * 1e3,
        without.as_secs_f64() * 1e3,
    );
    println!(
        "SQL-only steps median with capture {:>8.3} ms, without {:>8.3} ms, ratio {ratio_sql:.3}x",
        with_sql.as_secs_f64() * 1e3,
        without_sql.as_secs_f64() * 1e3,
    );
    println!("capture cost: {per_statement_us:.1} µs per statement");
    if ratio < MAX_RATIO {
        println!("PASS: capture overhead {ratio:.3}x < {MAX_RATIO}x");
        ExitCode::SUCCESS
    } else {
        println!("FAIL: capture overhead {ratio:.3}x >= {MAX_RATIO}x");
        ExitCode::FAILURE
    }
}
