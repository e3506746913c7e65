#!/usr/bin/env node
// The shop's journey (tests/corpus/README.md) on MariaDB with `mysql2/promise`,
// written as a mysql2 application writes it: `execute()` (server-side prepared
// statements, which mysql2 prepares once per connection and caches) for the
// lookups, `query()` (client-side interpolation) for the writes and the rest,
// `beginTransaction()`/`commit()`/`rollback()` where the fixed variant needs a
// transaction. mysql2 connections are in autocommit unless told otherwise, so
// the shipped variant's writes each commit on their own.
//
//   node mysql2_shop.js --variant shipped|fixed --counts FILE   (DATABASE_URL=mysql://…)
//
// Markers: the journey checks one connection out of the pool and runs every
// step, and its markers (`SET @flowaudit_step = '…'`), on it, as the contract
// asks of a plain driver.
//
// Counter: `Db` below, the application's wrapper around the connection's
// execute() and query(); it counts every call to them. The markers and the
// transaction control (beginTransaction/commit/rollback, which mysql2 sends
// as START TRANSACTION, COMMIT and ROLLBACK) do not go through it.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const mysql = require('mysql2/promise');

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

// The application's database wrapper: counts per step, then hands the call on.
class Db {
    constructor(conn, counts) {
        this.conn = conn;
        this.counts = counts;
        this.step = null;
    }

    count() {
        this.counts[this.step] = (this.counts[this.step] ?? 0) + 1;
    }

    execute(sql, values) {
        this.count();
        return this.conn.execute(sql, values);
    }

    query(sql, values) {
        this.count();
        return this.conn.query(sql, values);
    }

    async transaction(work) {
        await this.conn.beginTransaction();
        try {
            const result = await work();
            await this.conn.commit();
            return result;
        } catch (err) {
            await this.conn.rollback();
            throw err;
        }
    }
}

// --- register (both variants) -------------------------------------------------

async function register(db) {
    const [existing] = await db.execute('SELECT id FROM users WHERE email = ?', [EMAIL]);
    if (existing.length > 0) {
        throw new Error(`${EMAIL} is already registered`);
    }
    const [result] = await db.query('INSERT INTO users (email, full_name, password_hash) VALUES (?, ?, ?)', [
        EMAIL,
        'Corpus Shopper',
        hashPassword('correct horse battery staple'),
    ]);
    return result.insertId;
}

// --- browse -------------------------------------------------------------------

async function browseShipped(db) {
    const [products] = await db.query('SELECT id, name, price_cents FROM products ORDER BY id');
    for (const product of products) {
        // Planted: one stock lookup per product (N+1).
        const [rows] = await db.execute('SELECT stock FROM inventory WHERE product_id = ?', [product.id]);
        product.stock = Number(rows[0].stock);
    }
    return products;
}

async function browseFixed(db) {
    const [rows] = await db.query(
        `SELECT p.id, p.name, p.price_cents, i.stock
           FROM products p
           JOIN inventory i ON i.product_id = p.id
          ORDER BY p.id`,
    );
    return rows;
}

// --- add_to_cart --------------------------------------------------------------

const USER_BY_ID = 'SELECT id, email, full_name FROM users WHERE id = ?';

async function findOrCreateCart(db, userId) {
    const [carts] = await db.execute('SELECT id FROM carts WHERE user_id = ?', [userId]);
    if (carts.length > 0) {
        return carts[0].id;
    }
    const [result] = await db.query('INSERT INTO carts (user_id) VALUES (?)', [userId]);
    return result.insertId;
}

async function addToCartShipped(db, userId) {
    const cartId = await findOrCreateCart(db, userId);
    for (const line of CART) {
        // Planted: the user is looked up again for every line.
        const [users] = await db.execute(USER_BY_ID, [userId]);
        if (users.length === 0) {
            throw new Error(`no user ${userId}`);
        }
        const [products] = await db.execute('SELECT id, price_cents FROM products WHERE id = ?', [line.productId]);
        if (products.length === 0) {
            throw new Error(`no product ${line.productId}`);
        }
        await db.query(
            `INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (?, ?, ?)
             ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)`,
            [cartId, line.productId, line.quantity],
        );
    }
    return cartId;
}

async function addToCartFixed(db, userId) {
    const [users] = await db.execute(USER_BY_ID, [userId]);
    if (users.length === 0) {
        throw new Error(`no user ${userId}`);
    }
    return db.transaction(async () => {
        const cartId = await findOrCreateCart(db, users[0].id);
        const ids = CART.map((line) => line.productId);
        const [products] = await db.execute(
            `SELECT id FROM products WHERE id IN (${ids.map(() => '?').join(', ')})`,
            ids,
        );
        if (products.length !== ids.length) {
            throw new Error(`unknown products among ${ids}`);
        }
        await db.query(
            `INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ?
             ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)`,
            [CART.map((line) => [cartId, line.productId, line.quantity])],
        );
        return cartId;
    });
}

// --- checkout -----------------------------------------------------------------

const PRICED_LINES = `SELECT ci.product_id, ci.quantity, p.price_cents
                        FROM cart_items ci
                        JOIN products p ON p.id = ci.product_id
                       WHERE ci.cart_id = ?
                       ORDER BY ci.product_id`;
const INSERT_ORDER = `INSERT INTO orders (user_id, status, total_cents) VALUES (?, 'pending', ?)`;

function total(lines) {
    return lines.reduce((sum, line) => sum + Number(line.quantity) * Number(line.price_cents), 0);
}

async function checkoutShipped(db, userId, cartId) {
    const [lines] = await db.execute(PRICED_LINES, [cartId]);
    if (lines.length === 0) {
        throw new Error('the cart is empty');
    }
    // Planted: every write autocommits on its own (non-atomic checkout).
    const [order] = await db.query(INSERT_ORDER, [userId, total(lines)]);
    for (const line of lines) {
        await db.query(
            'INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES (?, ?, ?, ?)',
            [order.insertId, line.product_id, line.quantity, line.price_cents],
        );
        // Planted: read the stock, compute the new value here, write it back.
        const [stock] = await db.execute('SELECT stock FROM inventory WHERE product_id = ?', [line.product_id]);
        const left = Number(stock[0].stock) - Number(line.quantity);
        if (left < 0) {
            throw new Error(`product ${line.product_id} is out of stock`);
        }
        await db.query('UPDATE inventory SET stock = ? WHERE product_id = ?', [left, line.product_id]);
    }
    await db.query('DELETE FROM cart_items WHERE cart_id = ?', [cartId]);
    return order.insertId;
}

async function checkoutFixed(db, userId, cartId) {
    return db.transaction(async () => {
        const [lines] = await db.execute(PRICED_LINES, [cartId]);
        if (lines.length === 0) {
            throw new Error('the cart is empty');
        }
        const [order] = await db.query(INSERT_ORDER, [userId, total(lines)]);
        await db.query('INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) VALUES ?', [
            lines.map((line) => [order.insertId, line.product_id, line.quantity, line.price_cents]),
        ]);
        for (const line of lines) {
            const [taken] = await db.query(
                'UPDATE inventory SET stock = stock - ? WHERE product_id = ? AND stock >= ?',
                [line.quantity, line.product_id, line.quantity],
            );
            if (taken.affectedRows !== 1) {
                throw new Error(`product ${line.product_id} is out of stock`);
            }
        }
        await db.query('DELETE FROM cart_items WHERE cart_id = ?', [cartId]);
        return order.insertId;
    });
}

// --- the journey --------------------------------------------------------------

// `aroundStep(name, work)` runs each step; otel_shop.js passes one that makes
// the step a request of its own (a trace), as a web framework's
// instrumentation would.
async function journey(conn, variant, counts, aroundStep = (name, work) => work()) {
    const db = new Db(conn, counts);
    const shipped = variant === 'shipped';
    const step = (name, work) =>
        aroundStep(name, async () => {
            await conn.query(`SET @flowaudit_step = '${name}'`);
            db.step = name;
            counts[name] = 0;
            return work();
        });

    await conn.query(`SET @flowaudit_flow = 'shop'`);
    const userId = await step('register', () => register(db));
    const products = await step('browse', () => (shipped ? browseShipped(db) : browseFixed(db)));
    if (products.length !== 24) {
        throw new Error(`expected 24 products, browsed ${products.length}`);
    }
    const cartId = await step('add_to_cart', () => (shipped ? addToCartShipped(db, userId) : addToCartFixed(db, userId)));
    return step('checkout', () => (shipped ? checkoutShipped(db, userId, cartId) : checkoutFixed(db, userId, cartId)));
}

async function main({ aroundStep, argv } = {}) {
    const { values: args } = parseArgs({
        args: argv,
        options: { variant: { type: 'string' }, counts: { type: 'string' } },
    });
    if (!['shipped', 'fixed'].includes(args.variant) || !args.counts) {
        console.error('usage: node mysql2_shop.js --variant shipped|fixed --counts FILE');
        return 2;
    }
    if (!process.env.DATABASE_URL) {
        console.error('mysql2_shop: DATABASE_URL is not set');
        return 2;
    }

    const pool = mysql.createPool({ uri: process.env.DATABASE_URL, connectionLimit: 5 });
    const counts = {};
    let status = 0;
    try {
        const conn = await pool.getConnection();
        try {
            const orderId = await journey(conn, args.variant, counts, aroundStep);
            console.log(`mysql2_shop (${args.variant}): order ${orderId} placed`);
        } finally {
            conn.release();
        }
    } catch (err) {
        console.error(`mysql2_shop (${args.variant}): checkout failed: ${err.message}`);
        status = 1;
    } finally {
        await pool.end();
        const steps = Object.fromEntries(STEPS.filter((s) => s in counts).map((s) => [s, counts[s]]));
        fs.writeFileSync(
            args.counts,
            `${JSON.stringify({ stack: 'mysql2', variant: args.variant, counter: 'wrapper', steps })}\n`,
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
