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

pub mod auth;
pub mod cart;
pub mod db;
pub mod orders;
pub mod products;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capture::sqlite::Capture;
use crate::fault::{FaultInjector, FaultSpec};
use crate::invariants::{InvariantError, InvariantRunner, Invariants};
use crate::model::{Event, Finding};

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
    /// The order, unless the journey stopped before it was placed.
    pub order: Option<orders::Order>,
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
    runtime.block_on(run_async(settings))
}

async fn run_async(settings: &DemoSettings) -> Result<DemoRun> {
    let capture = settings.capture.then(Capture::new);
    let mut db = Db::open(settings.db.as_deref(), capture.as_ref()).await?;
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
    let outcome = journey(&db, &mut steps, settings.fixed, &items, &mut listed).await;
    let journey_time = started.elapsed();
    let (order, failure) = match outcome {
        Ok(order) => (Some(order), None),
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
