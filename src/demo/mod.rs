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
//! each step of the journey is marked through [`Capture::step`].

pub mod auth;
pub mod cart;
pub mod db;
pub mod orders;
pub mod products;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capture::sqlite::Capture;
use crate::model::Event;

use self::db::Db;

pub const SCHEMA: &str = include_str!("../../sql/shop/schema.sql");
/// The categories.
pub const SEED: &str = include_str!("../../sql/shop/seed.sql");
/// The products, as many as its `?1` asks for.
pub const PRODUCTS: &str = include_str!("../../sql/shop/products.sql");
/// The stock of every product.
pub const INVENTORY: &str = include_str!("../../sql/shop/inventory.sql");

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
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            fixed: false,
            db: None,
            capture: true,
            products: DEFAULT_PRODUCTS,
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
    pub order: orders::Order,
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
    let db = Db::open(settings.db.as_deref(), capture.as_ref()).await?;
    db.run_script(SCHEMA).await?;
    db.run_script(SEED).await?;
    // In range, checked by `run`.
    let products = i64::try_from(settings.products).unwrap_or(i64::MAX);
    db.run_script_with(PRODUCTS, products).await?;
    db.run_script(INVENTORY).await?;
    let setup_statements = db.executed();
    let setup_events = capture.as_ref().map(Capture::take).unwrap_or_default();

    let mut steps = Steps {
        capture: capture.as_ref(),
        times: Vec::with_capacity(STEPS.len()),
        current: None,
    };
    let started = Instant::now();
    let items = cart_items(settings.products);
    let (listed, order) = journey(&db, &mut steps, settings.fixed, &items).await?;
    let journey_time = started.elapsed();
    let step_times = steps.times;
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
    })
}

/// Marks the journey's steps through the capture and times them.
struct Steps<'a> {
    capture: Option<&'a Capture>,
    times: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
}

impl Steps<'_> {
    fn start(&mut self, name: &'static str) {
        self.end();
        if let Some(c) = self.capture {
            c.step(name);
        }
        self.current = Some((name, Instant::now()));
    }

    fn end(&mut self) {
        if let Some((name, started)) = self.current.take() {
            self.times.push((name, started.elapsed()));
        }
    }
}

/// The user journey of the seed's integration test: register, browse, add two
/// products to the cart, check out.
async fn journey(
    db: &Db,
    steps: &mut Steps<'_>,
    fixed: bool,
    items: &[(i64, i64)],
) -> Result<(usize, orders::Order)> {
    if let Some(c) = steps.capture {
        c.flow(FLOW);
    }

    steps.start(STEPS[0]);
    let user = auth::register(
        db,
        &auth::NewUser {
            email: "integration@test.com",
            password: "Test123!",
            full_name: "Test User",
        },
    )
    .await?;

    steps.start(STEPS[1]);
    let catalogue = products::list_catalogue(db, fixed).await?;
    if catalogue.is_empty() {
        return Err(DemoError::Rejected("no products available".into()));
    }

    steps.start(STEPS[2]);
    if fixed {
        cart::add_items(db, user.id, items).await?;
    } else {
        for &(product_id, quantity) in items {
            cart::add_item(db, user.id, product_id, quantity).await?;
        }
    }

    steps.start(STEPS[3]);
    let order = orders::checkout(db, user.id, fixed).await?;
    steps.end();
    if order.status != "pending" {
        return Err(DemoError::Rejected(format!(
            "order status {}",
            order.status
        )));
    }
    Ok((catalogue.len(), order))
}
