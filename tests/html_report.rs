//! `--format html` from the commands that write it (issue 18): the page is
//! one file that loads nothing, with each step's timeline and findings. The
//! browser's view of the same pages (console, network, clicks) is checked by
//! tests/browser/check_report.js, which .ci/run runs in headless Chromium.

mod support;

use assert_cmd::Command;
use support::pg;

fn flowaudit() -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    cmd
}

fn html_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().stdout.clone();
    let page = String::from_utf8(out).expect("utf-8 output");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.trim_end().ends_with("</html>"));
    // An SVG's namespace is a name, not an address anything loads.
    let loaded = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for outside in ["http://", "https://", "<link", " src=", "@import"] {
        assert!(!loaded.contains(outside), "{outside} in the page");
    }
    page
}

#[test]
fn analyze_writes_a_timeline_per_step_and_links_findings() {
    let page = html_of(
        flowaudit().args(["analyze", "checkout.jsonl", "--format", "html"]),
        1,
    );
    let steps = page.matches("<section class=\"step\"").count();
    let timelines = page.matches("<figure class=\"timeline\"").count();
    assert!(steps >= 2, "{steps} steps");
    assert_eq!(steps, timelines, "each step has its timeline");
    assert!(page.contains("n-plus-one"));
    // Every finding shown with a button marks some statement of the timeline.
    let marked: std::collections::BTreeSet<usize> = regex::Regex::new(r#"data-f="([0-9 ]+)""#)
        .expect("regex")
        .captures_iter(&page)
        .flat_map(|c| {
            c[1].split(' ')
                .map(|n| n.parse::<usize>().expect("a number"))
                .collect::<Vec<_>>()
        })
        .collect();
    let buttons: Vec<usize> = regex::Regex::new(r#"class="show" data-finding="([0-9]+)""#)
        .expect("regex")
        .captures_iter(&page)
        .map(|c| c[1].parse().expect("a number"))
        .collect();
    assert!(!buttons.is_empty());
    for n in &buttons {
        assert!(marked.contains(n), "finding {n} marks nothing: {marked:?}");
    }
}

#[test]
fn the_demo_writes_html_with_real_times() {
    let page = html_of(flowaudit().args(["demo", "--format", "html"]), 0);
    for step in ["register", "browse", "add_to_cart", "checkout"] {
        assert!(
            page.contains(&format!("<span class=\"sep\">›</span> {step}</h3>")),
            "{step}"
        );
    }
    // The SQLite capture stamps times: the axis is in time, not in order.
    assert!(!page.contains("in the order they ran"));
    assert!(page.contains(" µs</text>") || page.contains(" ms</text>"));
    assert!(page.contains("N+1 ×24"));
}

#[test]
fn compare_draws_the_growth() {
    let page = html_of(
        flowaudit().args([
            "compare",
            "scale/loop-8.jsonl",
            "scale/loop-24.jsonl",
            "--format",
            "html",
        ]),
        1,
    );
    assert!(page.contains("<svg class=\"growth\""));
    assert!(
        page.contains("class=\"line grew\" data-f=\"0\""),
        "the N+1's line"
    );
    assert!(page.contains("8 → 24 (N+1)"));
    // The banner lookups ran 10 times at both sizes: a flat line, no finding.
    assert!(page.contains("class=\"line flat\""));
    assert!(page.contains("10 → 10"));
}

#[test]
fn an_empty_trace_is_a_page_that_says_so() {
    let page = html_of(
        flowaudit().args([
            "analyze",
            "empty.jsonl",
            "--allow-empty",
            "--format",
            "html",
        ]),
        0,
    );
    assert!(page.contains("No statements were captured."));
}

/// A run through the PostgreSQL proxy: two psql sessions at once (two
/// lanes), an N+1 in one, a transaction whose insert fails and rolls back in
/// the other; times from the proxy's clock.
#[test]
fn run_through_the_proxy_draws_connections_and_a_rolled_back_transaction() {
    if !pg::available("flowaudit run --format html") {
        return;
    }
    let db = pg::TestDb::new("html");
    db.direct("create table products(id int primary key, name text)");
    db.direct("create table stock(product_id int primary key, qty int)");
    db.direct("insert into products select g, 'p' || g from generate_series(1, 6) g");
    db.direct("insert into stock select g, 10 from generate_series(1, 6) g");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut browse = String::from(
        "SET flowaudit.flow = 'shop';\nSET flowaudit.step = 'browse';\n\
         select id, name from products order by id;\n",
    );
    for id in 1..=6 {
        browse.push_str(&format!("select qty from stock where product_id = {id};\n"));
    }
    let checkout = "SET flowaudit.flow = 'shop';\nSET flowaudit.step = 'checkout';\nBEGIN;\n\
                    update stock set qty = qty - 1 where product_id = 1;\n\
                    insert into stock values (1, 5);\nROLLBACK;\n";
    std::fs::write(dir.path().join("browse.sql"), browse).expect("script");
    std::fs::write(dir.path().join("checkout.sql"), checkout).expect("script");
    let report = dir.path().join("report.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowaudit"))
        .args([
            "run",
            "--skip-invariants",
            "--upstream",
            &db.url(pg::PG_ADDR),
        ])
        .args(["--format", "html", "--output"])
        .arg(&report)
        .args(["--", "sh", "-c"])
        .arg(
            "psql -X -q -o /dev/null \"$DATABASE_URL\" -f browse.sql & \
             psql -X -q -o /dev/null \"$DATABASE_URL\" -f checkout.sql 2>/dev/null; wait",
        )
        .current_dir(dir.path())
        .output()
        .expect("flowaudit run");
    assert_eq!(out.status.code(), Some(1), "{}", pg::text(&out));
    let page = std::fs::read_to_string(&report).expect("the report");
    assert!(page.contains("<code>proxy</code>"), "the capture source");
    assert!(page.contains("<dt>Capture</dt>"));
    let browse_at = page
        .find("<span class=\"sep\">›</span> browse</h3>")
        .expect("browse");
    let checkout_at = page
        .find("<span class=\"sep\">›</span> checkout</h3>")
        .expect("checkout");
    let (browse, checkout) = if browse_at < checkout_at {
        (&page[browse_at..checkout_at], &page[checkout_at..])
    } else {
        (&page[browse_at..], &page[checkout_at..browse_at])
    };
    // The proxy stamps every statement: a time axis, not an order.
    assert!(!browse.contains("in the order they ran"));
    assert!(browse.contains("N+1 ×6"), "{browse}");
    assert_eq!(browse.matches("class=\"st\" ").count(), 7, "{browse}");
    assert!(
        checkout.contains("class=\"band rolled-back\""),
        "{checkout}"
    );
    assert!(checkout.contains("class=\"st failed\""), "{checkout}");
    assert!(checkout.contains("failed: 23505"), "the SQLSTATE on hover");
    // Each step ran on its own session: a lane named by its connection.
    assert!(browse.contains(">conn ") && checkout.contains(">conn "));
}

/// `schema --format html` on the demo shop: the ER diagram inline, every
/// table a box; the shop has no findings, and the page says so. The
/// PostgreSQL fixture's findings are checked in tests/schema.rs.
#[test]
fn schema_draws_the_er_diagram() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shop.db");
    flowaudit().args(["demo", "--db"]).arg(&db).assert().code(0);
    let url = format!("sqlite://{}", db.display());
    let page = html_of(flowaudit().args(["schema", &url, "--format", "html"]), 0);
    assert!(page.contains("<figure class=\"er\" id=\"er\">"));
    assert_eq!(
        page.matches("class=\"er-table\"").count(),
        8,
        "the shop's tables"
    );
    assert_eq!(
        page.matches("<g class=\"er-edge\"").count(),
        8,
        "its foreign keys"
    );
    assert!(page.contains("No findings."));
}
