#!/usr/bin/env node
// The shop's journey (tests/corpus/README.md) on node-postgres (`pg`), written
// the way an Express-style handler written against a `pg.Pool` is written:
// parameterised queries ($1, extended protocol), named prepared statements for
// the hot lookups, BEGIN/COMMIT/ROLLBACK on a client checked out of the pool.
//
//   node pg_shop.js --variant shipped|fixed --counts FILE   (DATABASE_URL=postgres://…)
//
// Markers: the journey checks one client out of the pool and runs every step,
// and its markers, on it (as a per-request or per-job client is used). With
// `pool.query()` each statement would go to whichever connection is idle, so a
// marker sent on one connection would not be the latest marker of the others;
// on one checked-out client the markers and the statements of each step are in
// order on one connection, which is what the contract asks of a plain driver.
//
// Counter: `db.query()` below, the application's wrapper around the client's
// query(); it counts every call (BEGIN, COMMIT and ROLLBACK are query() calls
// with pg), not the markers, which go to the client directly.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { Pool } = require('pg');

const EMAIL = 'corpus@example.com';
const CART = [
    { productId: 7, quantity: 2 },
    { productId: 19, quantity: 2 },
];
const STEPS = ['register', 'browse', 'add_to_cart', 'checkout'];

function hashPassword(password) {
    const salt = crypto.randomBytes(16);
    const hash = crypto.scryptSync(password, salt, 32);
    return `scrypt$${salt.toString('hex')}$${hash.toString('hex')}`;
}

// The application's query wrapper: counts per step, then hands the call on.
class Db {
    constructor(client, counts) {
        this.client = client;
        this.counts = counts;
        this.step = null;
    }

    query(textOrConfig, values) {
        this.counts[this.step] = (this.counts[this.step] ?? 0) + 1;
        return this.client.query(textOrConfig, values);
    }

    async transaction(work) {
        await this.query('BEGIN');
        try {
            const result = await work();
            await this.query('COMMIT');
            return result;
        } catch (err) {
            await this.query('ROLLBACK');
            throw err;
        }
    }
}

// --- register (both variants) -------------------------------------------------

async function register(db) {
    const existing = await db.query('SELECT id FROM users WHERE email = $1', [EMAIL]);
    if (existing.rowCount > 0) {
        throw new Error(`${EMAIL} is already registered`);
    }
    const { rows } = await db.query(
        'INSERT INTO users (email, full_name, password_hash) VALUES ($1, $2, $3) RETURNING id',
        [EMAIL, 'Corpus Shopper', hashPassword('correct horse battery staple')],
    );
    return rows[0].id;
}

// --- browse -------------------------------------------------------------------

const STOCK_BY_PRODUCT = 'SELECT stock FROM inventory WHERE product_id = $1';

async function browseShipped(db) {
    const { rows: products } = await db.query(
        'SELECT id, name, price_cents FROM products ORDER BY id',
    );
    for (const product of products) {
        // Planted: one stock lookup per product (N+1).
        const { rows } = await db.query({
            name: 'stock_by_product',
            text: STOCK_BY_PRODUCT,
            values: [product.id],
        });
        product.stock = Number(rows[0].stock);
    }
    return products;
}

async function browseFixed(db) {
    const { rows } = await db.query(
        `SELECT p.id, p.name, p.price_cents, i.stock
           FROM products p
           JOIN inventory i ON i.product_id = p.id
          ORDER BY p.id`,
    );
    return rows;
}

// --- add_to_cart --------------------------------------------------------------

const USER_BY_ID = 'SELECT id, email, full_name FROM users WHERE id = $1';

async function findOrCreateCart(db, userId) {
    const found = await db.query('SELECT id FROM carts WHERE user_id = $1', [userId]);
    if (found.rowCount > 0) {
        return found.rows[0].id;
    }
    const { rows } = await db.query('INSERT INTO carts (user_id) VALUES ($1) RETURNING id', [userId]);
    return rows[0].id;
}

const INSERT_CART_LINE = `INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3)
    ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity`;

async function addToCartShipped(db, userId) {
    const cartId = await findOrCreateCart(db, userId);
    for (const line of CART) {
        // Planted: the user is looked up again for every line.
        const user = await db.query({ name: 'user_by_id', text: USER_BY_ID, values: [userId] });
        if (user.rowCount === 0) {
            throw new Error(`no user ${userId}`);
        }
        const product = await db.query('SELECT id, price_cents FROM products WHERE id = $1', [line.productId]);
        if (product.rowCount === 0) {
            throw new Error(`no product ${line.productId}`);
        }
        await db.query(INSERT_CART_LINE, [cartId, line.productId, line.quantity]);
    }
    return cartId;
}

async function addToCartFixed(db, userId) {
    const user = await db.query({ name: 'user_by_id', text: USER_BY_ID, values: [userId] });
    if (user.rowCount === 0) {
        throw new Error(`no user ${userId}`);
    }
    return db.transaction(async () => {
        const cartId = await findOrCreateCart(db, userId);
        const ids = CART.map((line) => line.productId);
        const { rows: products } = await db.query('SELECT id FROM products WHERE id = ANY($1)', [ids]);
        if (products.length !== ids.length) {
            throw new Error(`unknown products among ${ids}`);
        }
        for (const line of CART) {
            await db.query(INSERT_CART_LINE, [cartId, line.productId, line.quantity]);
        }
        return cartId;
    });
}

// --- checkout -----------------------------------------------------------------

const PRICED_LINES = `SELECT ci.product_id, ci.quantity, p.price_cents
                        FROM cart_items ci
                        JOIN products p ON p.id = ci.product_id
                       WHERE ci.cart_id = $1
                       ORDER BY ci.product_id`;
const INSERT_ORDER = `INSERT INTO orders (user_id, status, total_cents) VALUES ($1, 'pending', $2) RETURNING id`;
const INSERT_ORDER_ITEM = `INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
                           VALUES ($1, $2, $3, $4)`;

function total(lines) {
    return lines.reduce((sum, line) => sum + Number(line.quantity) * Number(line.price_cents), 0);
}

async function checkoutShipped(db, userId, cartId) {
    const { rows: lines } = await db.query(PRICED_LINES, [cartId]);
    if (lines.length === 0) {
        throw new Error('the cart is empty');
    }
    // Planted: every write autocommits on its own (non-atomic checkout).
    const { rows } = await db.query(INSERT_ORDER, [userId, total(lines)]);
    const orderId = rows[0].id;
    for (const line of lines) {
        await db.query(INSERT_ORDER_ITEM, [orderId, line.product_id, line.quantity, line.price_cents]);
        // Planted: read the stock, compute the new value here, write it back.
        const stock = await db.query({ name: 'stock_by_product', text: STOCK_BY_PRODUCT, values: [line.product_id] });
        const left = Number(stock.rows[0].stock) - Number(line.quantity);
        if (left < 0) {
            throw new Error(`product ${line.product_id} is out of stock`);
        }
        await db.query('UPDATE inventory SET stock = $1 WHERE product_id = $2', [left, line.product_id]);
    }
    await db.query('DELETE FROM cart_items WHERE cart_id = $1', [cartId]);
    return orderId;
}

async function checkoutFixed(db, userId, cartId) {
    return db.transaction(async () => {
        const { rows: lines } = await db.query(PRICED_LINES, [cartId]);
        if (lines.length === 0) {
            throw new Error('the cart is empty');
        }
        const { rows } = await db.query(INSERT_ORDER, [userId, total(lines)]);
        const orderId = rows[0].id;
        for (const line of lines) {
            await db.query(INSERT_ORDER_ITEM, [orderId, line.product_id, line.quantity, line.price_cents]);
            const taken = await db.query(
                'UPDATE inventory SET stock = stock - $1 WHERE product_id = $2 AND stock >= $1',
                [line.quantity, line.product_id],
            );
            if (taken.rowCount !== 1) {
                throw new Error(`product ${line.product_id} is out of stock`);
            }
        }
        await db.query('DELETE FROM cart_items WHERE cart_id = $1', [cartId]);
        return orderId;
    });
}

// --- the journey --------------------------------------------------------------

// `aroundStep(name, work)` runs each step; otel_shop.js passes one that
// makes the step a request of its own (a trace), as a web framework's
// instrumentation would.
async function journey(client, variant, counts, aroundStep = (name, work) => work()) {
    const db = new Db(client, counts);
    const shipped = variant === 'shipped';
    const step = (name, work) =>
        aroundStep(name, async () => {
            await client.query(`SET flowaudit.step = '${name}'`);
            db.step = name;
            counts[name] = 0;
            return work();
        });

    await client.query(`SET flowaudit.flow = 'shop'`);
    const userId = await step('register', () => register(db));
    const products = await step('browse', () => (shipped ? browseShipped(db) : browseFixed(db)));
    if (products.length !== 24) {
        throw new Error(`expected 24 products, browsed ${products.length}`);
    }
    const cartId = await step('add_to_cart', () => (shipped ? addToCartShipped(db, userId) : addToCartFixed(db, userId)));
    const orderId = await step('checkout', () => (shipped ? checkoutShipped(db, userId, cartId) : checkoutFixed(db, userId, cartId)));
    return orderId;
}

async function main({ aroundStep, argv } = {}) {
    const { values: args } = parseArgs({
        args: argv,
        options: { variant: { type: 'string' }, counts: { type: 'string' } },
    });
    if (!['shipped', 'fixed'].includes(args.variant) || !args.counts) {
        console.error('usage: node pg_shop.js --variant shipped|fixed --counts FILE');
        return 2;
    }
    if (!process.env.DATABASE_URL) {
        console.error('pg_shop: DATABASE_URL is not set');
        return 2;
    }

    const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
    const counts = {};
    let status = 0;
    try {
        const client = await pool.connect();
        try {
            const orderId = await journey(client, args.variant, counts, aroundStep);
            console.log(`pg_shop (${args.variant}): order ${orderId} placed`);
        } finally {
            client.release();
        }
    } catch (err) {
        console.error(`pg_shop (${args.variant}): checkout failed: ${err.message}`);
        status = 1;
    } finally {
        await pool.end();
        const steps = Object.fromEntries(STEPS.filter((s) => s in counts).map((s) => [s, counts[s]]));
        fs.writeFileSync(
            args.counts,
            `${JSON.stringify({ stack: 'pg', variant: args.variant, counter: 'wrapper', steps })}\n`,
        );
    }
    return status;
}

module.exports = { main };

if (require.main === module) {
    main().then((status) => {
        process.exitCode = status;
    });
}
