#!/usr/bin/env node
// The shop's journey (tests/corpus/README.md) on the Knex query builder
// (client 'pg', its own pool), written as a Knex application writes it:
// builder chains, `.first()`, `.returning('id')`, a multi-row `.insert([...])`,
// `knex.transaction(async trx => ...)` and a guarded `.decrement()`.
//
//   node knex_shop.js --variant shipped|fixed --counts FILE   (DATABASE_URL=postgres://…)
//
// Markers: Knex's pool hands each query the connection of its choosing, so the
// markers go on a separate autocommit connection, a plain `pg` Client, as a
// test harness driving the application would send them.
//
// Counter: Knex's own `query` event, counted per step. Knex emits it for every
// statement it runs, its transactions' `BEGIN;` and `COMMIT;` included, but not
// for the `select version();` its pg dialect runs on each new connection.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const createKnex = require('knex');
const pg = require('pg');

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

// --- register (both variants) -------------------------------------------------

async function register(knex) {
    const existing = await knex('users').where({ email: EMAIL }).first('id');
    if (existing) {
        throw new Error(`${EMAIL} is already registered`);
    }
    const [user] = await knex('users')
        .insert({
            email: EMAIL,
            full_name: 'Corpus Shopper',
            password_hash: hashPassword('correct horse battery staple'),
        })
        .returning('id');
    return user.id;
}

// --- browse -------------------------------------------------------------------

async function browseShipped(knex) {
    const products = await knex('products').select('id', 'name', 'price_cents').orderBy('id');
    for (const product of products) {
        // Planted: one stock lookup per product (N+1).
        const row = await knex('inventory').where({ product_id: product.id }).first('stock');
        product.stock = Number(row.stock);
    }
    return products;
}

async function browseFixed(knex) {
    return knex('products as p')
        .join('inventory as i', 'i.product_id', 'p.id')
        .select('p.id', 'p.name', 'p.price_cents', 'i.stock')
        .orderBy('p.id');
}

// --- add_to_cart --------------------------------------------------------------

async function findOrCreateCart(db, userId) {
    const cart = await db('carts').where({ user_id: userId }).first('id');
    if (cart) {
        return cart.id;
    }
    const [created] = await db('carts').insert({ user_id: userId }).returning('id');
    return created.id;
}

async function addToCartShipped(knex, userId) {
    const cartId = await findOrCreateCart(knex, userId);
    for (const line of CART) {
        // Planted: the user is looked up again for every line.
        const user = await knex('users').where({ id: userId }).first('id', 'email', 'full_name');
        if (!user) {
            throw new Error(`no user ${userId}`);
        }
        const product = await knex('products').where({ id: line.productId }).first('id', 'price_cents');
        if (!product) {
            throw new Error(`no product ${line.productId}`);
        }
        await knex('cart_items').insert({ cart_id: cartId, product_id: line.productId, quantity: line.quantity });
    }
    return cartId;
}

async function addToCartFixed(knex, userId) {
    const user = await knex('users').where({ id: userId }).first('id', 'email', 'full_name');
    if (!user) {
        throw new Error(`no user ${userId}`);
    }
    return knex.transaction(async (trx) => {
        const cartId = await findOrCreateCart(trx, user.id);
        const ids = CART.map((line) => line.productId);
        const products = await trx('products').whereIn('id', ids).select('id');
        if (products.length !== ids.length) {
            throw new Error(`unknown products among ${ids}`);
        }
        await trx('cart_items').insert(
            CART.map((line) => ({ cart_id: cartId, product_id: line.productId, quantity: line.quantity })),
        );
        return cartId;
    });
}

// --- checkout -----------------------------------------------------------------

function pricedLines(db, cartId) {
    return db('cart_items as ci')
        .join('products as p', 'p.id', 'ci.product_id')
        .where('ci.cart_id', cartId)
        .select('ci.product_id', 'ci.quantity', 'p.price_cents')
        .orderBy('ci.product_id');
}

function total(lines) {
    return lines.reduce((sum, line) => sum + Number(line.quantity) * Number(line.price_cents), 0);
}

async function checkoutShipped(knex, userId, cartId) {
    const lines = await pricedLines(knex, cartId);
    if (lines.length === 0) {
        throw new Error('the cart is empty');
    }
    // Planted: every write autocommits on its own (non-atomic checkout).
    const [order] = await knex('orders')
        .insert({ user_id: userId, status: 'pending', total_cents: total(lines) })
        .returning('id');
    for (const line of lines) {
        await knex('order_items').insert({
            order_id: order.id,
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents: line.price_cents,
        });
        // Planted: read the stock, compute the new value here, write it back.
        const inventory = await knex('inventory').where({ product_id: line.product_id }).first('stock');
        const left = Number(inventory.stock) - Number(line.quantity);
        if (left < 0) {
            throw new Error(`product ${line.product_id} is out of stock`);
        }
        await knex('inventory').where({ product_id: line.product_id }).update({ stock: left });
    }
    await knex('cart_items').where({ cart_id: cartId }).del();
    return order.id;
}

async function checkoutFixed(knex, userId, cartId) {
    return knex.transaction(async (trx) => {
        const lines = await pricedLines(trx, cartId);
        if (lines.length === 0) {
            throw new Error('the cart is empty');
        }
        const [order] = await trx('orders')
            .insert({ user_id: userId, status: 'pending', total_cents: total(lines) })
            .returning('id');
        await trx('order_items').insert(
            lines.map((line) => ({
                order_id: order.id,
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price_cents: line.price_cents,
            })),
        );
        for (const line of lines) {
            const taken = await trx('inventory')
                .where({ product_id: line.product_id })
                .andWhere('stock', '>=', line.quantity)
                .decrement('stock', line.quantity);
            if (taken !== 1) {
                throw new Error(`product ${line.product_id} is out of stock`);
            }
        }
        await trx('cart_items').where({ cart_id: cartId }).del();
        return order.id;
    });
}

// --- the journey --------------------------------------------------------------

async function journey(knex, markers, variant, counts) {
    const shipped = variant === 'shipped';
    let current = null;
    knex.on('query', () => {
        counts[current] = (counts[current] ?? 0) + 1;
    });
    const step = async (name, work) => {
        await markers.query(`SET flowaudit.step = '${name}'`);
        current = name;
        counts[name] = 0;
        return work();
    };

    await markers.query(`SET flowaudit.flow = 'shop'`);
    const userId = await step('register', () => register(knex));
    const products = await step('browse', () => (shipped ? browseShipped(knex) : browseFixed(knex)));
    if (products.length !== 24) {
        throw new Error(`expected 24 products, browsed ${products.length}`);
    }
    const cartId = await step('add_to_cart', () => (shipped ? addToCartShipped(knex, userId) : addToCartFixed(knex, userId)));
    return step('checkout', () => (shipped ? checkoutShipped(knex, userId, cartId) : checkoutFixed(knex, userId, cartId)));
}

async function main() {
    const { values: args } = parseArgs({
        options: { variant: { type: 'string' }, counts: { type: 'string' } },
    });
    if (!['shipped', 'fixed'].includes(args.variant) || !args.counts) {
        console.error('usage: node knex_shop.js --variant shipped|fixed --counts FILE');
        return 2;
    }
    if (!process.env.DATABASE_URL) {
        console.error('knex_shop: DATABASE_URL is not set');
        return 2;
    }

    const knex = createKnex({ client: 'pg', connection: process.env.DATABASE_URL });
    const markers = new pg.Client({ connectionString: process.env.DATABASE_URL });
    const counts = {};
    let status = 0;
    try {
        await markers.connect();
        const orderId = await journey(knex, markers, args.variant, counts);
        console.log(`knex_shop (${args.variant}): order ${orderId} placed`);
    } catch (err) {
        console.error(`knex_shop (${args.variant}): checkout failed: ${err.message}`);
        status = 1;
    } finally {
        await markers.end().catch(() => {});
        await knex.destroy();
        const steps = Object.fromEntries(STEPS.filter((s) => s in counts).map((s) => [s, counts[s]]));
        fs.writeFileSync(
            args.counts,
            `${JSON.stringify({ stack: 'knex', variant: args.variant, counter: 'knex query event', steps })}\n`,
        );
    }
    return status;
}

main().then((status) => {
    process.exitCode = status;
});
