//! The bundled shop on embedded SQLite, and the user journey `flowaudit demo`
//! audits: register → browse → add_to_cart → checkout.
//!
//! The shop is written as application code is: sqlx on SQLite, one module per
//! domain ([`auth`], [`products`], [`cart`], [`orders`]), schema and seed data
//! in `sql/shop/`, foreign keys enforced. As shipped it has the defects real
//! code has: the catalogue loads each product's category and stock one row at
//! a time, adding to the cart looks the user up again for every item, and
//! checkout writes without a transaction and computes the new stock in the
//! application. [`DemoSettings::fixed`] runs the corrected code paths.
//!
//! The catalogue holds [`DemoSettings::products`] products (24 by default, 1
//! to [`MAX_PRODUCTS`]), inserted by one set-based statement whatever their
//! number (`sql/shop/products.sql`); the rest of the journey stays the same.
//! Traced at two sizes, the journey goes to `flowaudit compare`, which proves
//! by scale that the shipped catalogue's lookups are N+1s: their count grows
//! with the products, every other statement's stays the same.
//!
//! Every statement is captured in-process by [`crate::capture::sqlite`], and
//! each step of the journey is marked through [`Capture::step`]. After each
//! step the data invariants of the rule files run on the shop's database
//! ([`crate::invariants`]; the shop's own are in `rules/shop.toml`, built in
//! as [`SHOP_RULES`]). [`DemoSettings::fault`] makes one statement fail on
//! purpose ([`crate::fault`]): the journey then stops at that step, and the
//! report shows what the failure left behind.
//!
//! [`DemoSettings::race`] races the checkout (`flowaudit demo --race
//! checkout`, issue 19): as many customers as the race has instances
//! register, one of them browses, each puts the same products in a cart of
//! their own, one after another, and then all of them check out at once,
//! each on a connection of its own, on a database file in WAL mode. The
//! capture drives the race's [`Scheduler`]: a customer's write of a stock
//! row it read without a lock waits until the other customers have read
//! that row too, so that the shipped checkout loses updates every time, and
//! the fixed one shows that it does not. Only the checkout races: the demo
//! runs the other steps one customer at a time ([`RACE_STEPS`]).

pub mod auth;
pub mod cart;
pub mod db;
pub mod orders;
pub mod products;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::sqlite::Capture;
use crate::fault::{FaultInjector, FaultSpec};
use crate::invariants::{InvariantError, InvariantRunner, Invariants};
use crate::model::{Event, Finding};
use crate::race::{RaceSpec, RaceSummary, Scheduler};

use self::db::Db;

pub const SCHEMA: &str = include_str!("../../sql/shop/schema.sql");
/// The categories.
pub const SEED: &str = include_str!("../../sql/shop/seed.sql");
/// The products, as many as its `?1` asks for.
pub const PRODUCTS: &str = include_str!("../../sql/shop/products.sql");
/// The stock of every product.
pub const INVENTORY: &str = include_str!("../../sql/shop/inventory.sql");

/// The shop's rule file: its data invariants. The demo always loads it (a
/// `./rules/shop.toml` of the same invariants replaces them by name).
pub const SHOP_RULES: &str = include_str!("../../rules/shop.toml");
pub const SHOP_RULES_PATH: &str = "rules/shop.toml";

/// The catalogue's size unless told otherwise: the 24 named products.
pub const DEFAULT_PRODUCTS: usize = 24;
/// The largest catalogue the demo makes (the shipped browse step runs two
/// statements per product).
pub const MAX_PRODUCTS: usize = 10_000;

/// The flow name the journey's events carry.
pub const FLOW: &str = "shop";
/// The journey's steps, in order.
pub const STEPS: [&str; 4] = ["register", "browse", "add_to_cart", "checkout"];
/// What the shopper puts in the cart: (product id, quantity). Every catalogue
/// of 4 or more products holds both (see `sql/shop/products.sql`).
pub const CART: [(i64, i64); 2] = [(7, 2), (19, 2)];
/// The steps the demo runs in several customers at once, which `--race` can
/// name: the others run one customer at a time.
pub const RACE_STEPS: [&str; 1] = ["checkout"];

/// What the shopper puts in the cart from a catalogue of `products`: always
/// two additions, so that the cart's steps run the same statements whatever
/// the catalogue's size. Below 4 products the catalogue holds products 1, 7
/// and 13, in that order: the shopper takes the last two there are, or
/// product 1 twice.
pub fn cart_items(products: usize) -> [(i64, i64); 2] {
    const FIRST_DEALT: [i64; 3] = [1, 7, 13];
    match products {
        0 | 1 => [(1, 2), (1, 2)],
        2 | 3 => [
            (FIRST_DEALT[products - 2], 2),
            (FIRST_DEALT[products - 1], 2),
        ],
        _ => CART,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("password hashing: {0}")]
    Password(String),
    #[error("the shop refused: {0}")]
    Rejected(String),
    #[error("the catalogue holds 1 to {MAX_PRODUCTS} products, not {0}")]
    Products(usize),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Invariant(#[from] InvariantError),
    #[error(
        "the demo cannot race step {step}: {why}; the step it can race: {}",
        RACE_STEPS.join(", ")
    )]
    RaceStep { step: String, why: &'static str },
    #[error("--race and --inject-fault cannot be combined: the demo races without faults")]
    RaceWithFault,
    #[error("cannot create the race's database file: {0}")]
    RaceDatabase(#[source] std::io::Error),
}

pub type Result<T, E = DemoError> = std::result::Result<T, E>;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Run the corrected code paths instead of the shipped ones.
    pub fixed: bool,
    /// Keep the database in this file; default in memory.
    pub db: Option<PathBuf>,
    /// Capture the statements (the benchmark turns it off to measure the cost).
    pub capture: bool,
    /// Products in the catalogue, 1 to [`MAX_PRODUCTS`]: the browse step's
    /// N+1 grows with it.
    pub products: usize,
    /// A statement to fail on purpose.
    pub fault: Option<FaultSpec>,
    /// The invariants to check after each step (none: no checks).
    pub invariants: Invariants,
    /// Race this step in as many customers as it says (see the module
    /// documentation); only a step of [`RACE_STEPS`].
    pub race: Option<RaceSpec>,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            fixed: false,
            db: None,
            capture: true,
            products: DEFAULT_PRODUCTS,
            fault: None,
            invariants: Invariants::default(),
            race: None,
        }
    }
}

/// What a run of the demo did.
#[derive(Debug)]
pub struct DemoRun {
    /// The journey's statements as captured, in order (empty without capture).
    pub events: Vec<Event>,
    /// The statements that created and seeded the database, as captured.
    pub setup_events: Vec<Event>,
    /// Statements the shop itself counted running during the journey.
    pub journey_statements: u64,
    /// Statements the shop itself counted running during setup.
    pub setup_statements: u64,
    /// Wall time of the journey, setup excluded.
    pub journey_time: Duration,
    /// Wall time of each step of the journey, in order.
    pub step_times: Vec<(&'static str, Duration)>,
    /// Products the catalogue page listed.
    pub listed: usize,
    /// The order, unless the journey stopped before it was placed (in a
    /// race: the first customer's, if the shop took it).
    pub order: Option<orders::Order>,
    /// In a race: each customer's checkout, by customer number (1 to N): the
    /// order, or why the shop refused it (out of stock, say).
    pub checkouts: Vec<(u64, Result<orders::Order, String>)>,
    /// In a race: what the race did.
    pub race: Option<RaceSummary>,
    /// Findings of the invariants checked after the steps.
    pub invariant_findings: Vec<Finding>,
    /// The injected fault, when it happened: the step it stopped and the
    /// error the shop got.
    pub failure: Option<(String, String)>,
}

/// Runs the shop's journey on a fresh database and returns what it captured.
pub fn run(settings: &DemoSettings) -> Result<DemoRun> {
    if !(1..=MAX_PRODUCTS).contains(&settings.products) {
        return Err(DemoError::Products(settings.products));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    match &settings.race {
        Some(spec) => {
            check_race(spec, settings)?;
            runtime.block_on(run_race(settings, spec))
        }
        None => runtime.block_on(run_async(settings)),
    }
}

/// Whether the demo can race `spec`'s step with these settings.
fn check_race(spec: &RaceSpec, settings: &DemoSettings) -> Result<()> {
    if settings.fault.is_some() {
        return Err(DemoError::RaceWithFault);
    }
    if !RACE_STEPS.contains(&spec.step.as_str()) {
        let why = if STEPS.contains(&spec.step.as_str()) {
            "it runs that step one customer at a time, never two at once"
        } else {
            "its journey has no such step (register, browse, add_to_cart, checkout)"
        };
        return Err(DemoError::RaceStep {
            step: spec.step.clone(),
            why,
        });
    }
    Ok(())
}

async fn run_async(settings: &DemoSettings) -> Result<DemoRun> {
    let capture = settings.capture.then(Capture::new);
    let db = Db::open(settings.db.as_deref(), capture.as_ref()).await?;
    journey_run(settings, db, capture, None).await
}

/// How long a customer's statement runs before the scheduler takes it for
/// a lock wait. The shop's held writes hold no lock (a write is held at its
/// first opcode, in autocommit, before it takes one), so no hold can wait
/// for a lock here; but SQLite shows a lock wait only as time, and on a busy
/// machine a statement can take the scheduler's default
/// ([`crate::race::LOCK_WAIT`]), which would end holds early and lose fewer
/// updates than the race forces. A second is beyond any statement of the
/// shop, well within sqlx's 5 s busy timeout.
const RACE_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The race (see the module documentation): the database is `--db` or a
/// file in a temporary directory (removed afterwards), in WAL mode.
async fn run_race(settings: &DemoSettings, spec: &RaceSpec) -> Result<DemoRun> {
    let scheduler = Arc::new(Scheduler::new(spec.clone()).with_lock_wait(RACE_LOCK_WAIT));
    let capture = settings.capture.then(|| Capture::racing(scheduler.clone()));
    let (dir, path) = match &settings.db {
        Some(path) => (None, path.clone()),
        None => {
            let dir = tempfile::tempdir().map_err(DemoError::RaceDatabase)?;
            let path = dir.path().join("shop.db");
            (Some(dir), path)
        }
    };
    let db = Db::open_racing(&path, capture.as_ref()).await?;
    let race = Race {
        scheduler,
        customers: spec.instances,
    };
    let run = journey_run(settings, db, capture, Some(&race)).await?;
    // The connections have closed; the directory may go.
    drop(dir);
    Ok(run)
}

/// The customers of a race and its scheduler.
struct Race {
    scheduler: Arc<Scheduler>,
    customers: usize,
}

/// Sets the shop up on `db`, runs the journey (or the race's), checks the
/// invariants, and closes the database.
async fn journey_run(
    settings: &DemoSettings,
    mut db: Db,
    capture: Option<Capture>,
    race: Option<&Race>,
) -> Result<DemoRun> {
    db.run_script(SCHEMA).await?;
    db.run_script(SEED).await?;
    // In range, checked by `run`.
    let products = i64::try_from(settings.products).unwrap_or(i64::MAX);
    db.run_script_with(PRODUCTS, products).await?;
    db.run_script(INVENTORY).await?;
    let setup_statements = db.executed();
    let setup_events = capture.as_ref().map(Capture::take).unwrap_or_default();
    if let Some(spec) = &settings.fault {
        db.inject_fault(FaultInjector::new(spec.clone()));
    }
    let runner = if settings.invariants.is_empty() {
        None
    } else {
        Some(
            InvariantRunner::connect(
                db.invariants_url(),
                settings.invariants.clone(),
                crate::invariants::DEFAULT_TIMEOUT,
            )
            .await?,
        )
    };

    let mut steps = Steps {
        capture: capture.as_ref(),
        db: &db,
        runner: runner.as_ref(),
        findings: Vec::new(),
        times: Vec::with_capacity(STEPS.len()),
        current: None,
    };
    let started = Instant::now();
    let items = cart_items(settings.products);
    let mut listed = 0;
    let mut checkouts = Vec::new();
    let outcome = match race {
        None => journey(&db, &mut steps, settings.fixed, &items, &mut listed)
            .await
            .map(Some),
        Some(race) => race_journey(
            &db,
            race.customers,
            &mut steps,
            settings.fixed,
            &items,
            &mut listed,
        )
        .await
        .map(|done| {
            checkouts = done;
            checkouts.iter().find_map(|(_, c)| c.as_ref().ok().cloned())
        }),
    };
    let journey_time = started.elapsed();
    let (order, failure) = match outcome {
        Ok(None) => (None, None),
        Ok(Some(order)) => (Some(order), None),
        // The injected fault stops the journey at its step; that step's
        // invariants still run, on what it left behind.
        Err(e) if db.fault_fired() => {
            let step = steps.current.map(|(name, _)| name).unwrap_or_default();
            (None, Some((step.to_owned(), e.to_string())))
        }
        Err(e) => return Err(e),
    };
    steps.end().await?;
    let step_times = std::mem::take(&mut steps.times);
    let mut invariant_findings = std::mem::take(&mut steps.findings);
    if let Some(runner) = runner {
        invariant_findings.extend(runner.at_end().await?);
        runner.close().await;
    }
    db.close().await;

    Ok(DemoRun {
        events: capture.as_ref().map(Capture::take).unwrap_or_default(),
        setup_events,
        journey_statements: db.executed() - setup_statements,
        setup_statements,
        journey_time,
        step_times,
        listed,
        order,
        checkouts,
        race: race.map(|r| r.scheduler.summary()),
        invariant_findings,
        failure,
    })
}

/// Marks the journey's steps through the capture, times them, and checks the
/// invariants after each.
struct Steps<'a> {
    capture: Option<&'a Capture>,
    db: &'a Db,
    runner: Option<&'a InvariantRunner>,
    findings: Vec<Finding>,
    times: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
}

impl Steps<'_> {
    async fn start(&mut self, name: &'static str) -> Result<()> {
        self.end().await?;
        if let Some(c) = self.capture {
            c.step(name);
        }
        self.db.set_step(name);
        self.current = Some((name, Instant::now()));
        Ok(())
    }

    async fn end(&mut self) -> Result<()> {
        if let Some((name, started)) = self.current.take() {
            self.times.push((name, started.elapsed()));
            if let Some(runner) = self.runner {
                self.findings.extend(runner.after_step(FLOW, name).await?);
            }
        }
        Ok(())
    }
}

/// The user journey of the seed's integration test: register, browse, add two
/// products to the cart, check out.
async fn journey(
    db: &Db,
    steps: &mut Steps<'_>,
    fixed: bool,
    items: &[(i64, i64)],
    listed: &mut usize,
) -> Result<orders::Order> {
    if let Some(c) = steps.capture {
        c.flow(FLOW);
    }

    steps.start(STEPS[0]).await?;
    let user = auth::register(
        db,
        &auth::NewUser {
            email: "integration@test.com",
            password: "Test123!",
            full_name: "Test User",
        },
    )
    .await?;

    steps.start(STEPS[1]).await?;
    let catalogue = products::list_catalogue(db, fixed).await?;
    if catalogue.is_empty() {
        return Err(DemoError::Rejected("no products available".into()));
    }
    *listed = catalogue.len();

    steps.start(STEPS[2]).await?;
    if fixed {
        cart::add_items(db, user.id, items).await?;
    } else {
        for &(product_id, quantity) in items {
            cart::add_item(db, user.id, product_id, quantity).await?;
        }
    }

    steps.start(STEPS[3]).await?;
    let order = orders::checkout(db, user.id, fixed).await?;
    if order.status != "pending" {
        return Err(DemoError::Rejected(format!(
            "order status {}",
            order.status
        )));
    }
    Ok(order)
}

/// The race's journey: `customers` customers register, the first browses,
/// each fills a cart of their own with the same `items`, one after another;
/// then all check out at once, each on a connection of its own. Returns
/// each customer's checkout: the shop refusing one (out of stock) is an
/// outcome of the race, not a failure of the demo.
async fn race_journey(
    db: &Db,
    customers: usize,
    steps: &mut Steps<'_>,
    fixed: bool,
    items: &[(i64, i64)],
    listed: &mut usize,
) -> Result<Vec<(u64, Result<orders::Order, String>)>> {
    if let Some(c) = steps.capture {
        c.flow(FLOW);
    }
    let mut shoppers = Vec::with_capacity(customers);
    for n in (1..).take(customers) {
        shoppers.push((n, db.customer(n).await?));
    }

    steps.start(STEPS[0]).await?;
    let mut users = Vec::with_capacity(customers);
    for (n, shop) in &shoppers {
        let email = format!("customer{n}@test.com");
        let name = format!("Customer {n}");
        let new = auth::NewUser {
            email: &email,
            password: "Test123!",
            full_name: &name,
        };
        users.push(auth::register(shop, &new).await?);
    }

    steps.start(STEPS[1]).await?;
    if let Some((_, shop)) = shoppers.first() {
        let catalogue = products::list_catalogue(shop, fixed).await?;
        if catalogue.is_empty() {
            return Err(DemoError::Rejected("no products available".into()));
        }
        *listed = catalogue.len();
    }

    steps.start(STEPS[2]).await?;
    for ((_, shop), user) in shoppers.iter().zip(&users) {
        if fixed {
            cart::add_items(shop, user.id, items).await?;
        } else {
            for &(product_id, quantity) in items {
                cart::add_item(shop, user.id, product_id, quantity).await?;
            }
        }
    }

    steps.start(STEPS[3]).await?;
    // All at once: each future runs its statements on its customer's own
    // connection (sqlx's worker thread), so the checkouts meet in the
    // database, and the scheduler holds a write there while the others go on.
    let done = futures_util::future::join_all(
        shoppers
            .iter()
            .zip(&users)
            .map(|((_, shop), user)| orders::checkout(shop, user.id, fixed)),
    )
    .await;
    let mut checkouts = Vec::with_capacity(customers);
    for ((n, _), outcome) in shoppers.iter().zip(done) {
        checkouts.push((
            *n,
            match outcome {
                Ok(order) => Ok(order),
                Err(DemoError::Rejected(why)) => Err(why),
                Err(e) => return Err(e),
            },
        ));
    }
    for (_, shop) in &shoppers {
        shop.close().await;
    }
    Ok(checkouts)
}
