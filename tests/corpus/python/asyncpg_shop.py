"""The shop's journey on asyncpg, the way a plain-driver application writes it.

Usage: python asyncpg_shop.py --variant shipped|fixed --counts FILE
with the database in DATABASE_URL (postgres://...). See tests/corpus/README.md.

asyncpg is used as it comes: $1 placeholders, every statement with arguments
prepared (named, cached) and run over the binary protocol, no implicit
transactions (each statement commits on its own unless it runs inside
`async with conn.transaction()`). fetchrow() and fetchval() ask for one row
(Execute with a row limit), a cursor reads its portal in chunks.

The application's own counter is the Db wrapper below: each fetch(),
fetchrow(), fetchval(), execute(), executemany() and each cursor opened counts
one, per step. A cursor's further fetches, an executemany()'s rows,
transaction control and the step markers are not counted.

shipped plants the contract's defects: an N+1 stock lookup per product in
browse (the product list read through a cursor in chunks), the user looked up
again for every cart line, and a checkout whose writes each commit on their
own and that writes a stock it read and computed. fixed runs browse as one
join, looks the user and cart up once, and checks out in one transaction with
guarded stock updates.

On the wire, beyond the counter: one Bind/Execute per row of each
executemany() (one statement more in shipped checkout and in fixed add_to_cart
and checkout); BEGIN/COMMIT of the conn.transaction() blocks (shipped browse,
fixed add_to_cart and checkout); the cursor's chunks are three Executes of one
portal (10, 10 and 4 rows; the first two end in PortalSuspended, as does
every fetchrow() and fetchval() that finds a row); and, the first time a
statement takes a bigint[] (fixed add_to_cart), asyncpg's type introspection:
three statements of its own (JIT switched off, the typeinfo query, JIT
restored). Per step the server runs 2, 25, 8, 10 statements besides
BEGIN/COMMIT in shipped and 2, 1, 9, 7 in fixed.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import sys

import asyncpg

EMAIL = "corpus@example.com"
CART = [(7, 2), (19, 2)]
PAGE = 10


class OutOfStock(Exception):
    pass


class Db:
    """The application's wrapper around its asyncpg connection: the query
    calls it uses, each counted for the current step."""

    def __init__(self, conn):
        self.conn = conn
        self.step = None
        self.steps = collections.OrderedDict()

    def _hit(self):
        if self.step is not None:
            self.steps[self.step] += 1

    async def mark(self, name, value):
        # Markers are session settings, sent as they are (simple query), not counted.
        await self.conn.execute(f"SET {name} = '{value}'")

    async def begin_step(self, name):
        await self.mark("flowaudit.step", name)
        self.step = name
        self.steps.setdefault(name, 0)

    def transaction(self):
        return self.conn.transaction()

    async def fetch(self, query, *args):
        self._hit()
        return await self.conn.fetch(query, *args)

    async def fetchrow(self, query, *args):
        self._hit()
        return await self.conn.fetchrow(query, *args)

    async def fetchval(self, query, *args):
        self._hit()
        return await self.conn.fetchval(query, *args)

    async def execute(self, query, *args):
        self._hit()
        return await self.conn.execute(query, *args)

    async def executemany(self, query, args):
        self._hit()
        return await self.conn.executemany(query, args)

    async def cursor(self, query, *args):
        self._hit()
        return await self.conn.cursor(query, *args)


def password_hash(password):
    return "pbkdf2_sha256$1000$corpus$" + hashlib.pbkdf2_hmac(
        "sha256", password.encode(), b"corpus", 1000
    ).hex()


# -- register -----------------------------------------------------------------


async def register(db):
    if await db.fetchval("SELECT id FROM users WHERE email = $1", EMAIL) is not None:
        raise RuntimeError(f"{EMAIL} is already registered")
    return await db.fetchval(
        "INSERT INTO users (email, full_name, password_hash) VALUES ($1, $2, $3) RETURNING id",
        EMAIL,
        "Corpus Shopper",
        password_hash("correct horse"),
    )


# -- browse -------------------------------------------------------------------


async def browse_shipped(db):
    listing = []
    # A cursor needs a transaction; the catalogue is read a page at a time.
    async with db.transaction():
        cur = await db.cursor("SELECT id, name, price_cents FROM products ORDER BY id")
        while page := await cur.fetch(PAGE):
            for product in page:
                # One lookup per product: the N+1.
                row = await db.fetchrow(
                    "SELECT stock FROM inventory WHERE product_id = $1", product["id"]
                )
                listing.append((product["id"], product["name"], product["price_cents"], row["stock"]))
    return listing


async def browse_fixed(db):
    return await db.fetch(
        "SELECT p.id, p.name, p.price_cents, i.stock"
        " FROM products p JOIN inventory i ON i.product_id = p.id"
        " ORDER BY p.id"
    )


# -- add_to_cart --------------------------------------------------------------


async def cart_for(db, user_id):
    """Get or create the user's cart."""
    cart_id = await db.fetchval("SELECT id FROM carts WHERE user_id = $1", user_id)
    if cart_id is None:
        cart_id = await db.fetchval(
            "INSERT INTO carts (user_id) VALUES ($1) RETURNING id", user_id
        )
    return cart_id


async def add_to_cart_shipped(db, user_id):
    cart_id = await cart_for(db, user_id)
    for product_id, quantity in CART:
        # The "add a line" handler loads the current user again for each line.
        user = await db.fetchrow("SELECT id, email FROM users WHERE id = $1", user_id)
        product = await db.fetchrow(
            "SELECT id, price_cents FROM products WHERE id = $1", product_id
        )
        if user is None or product is None:
            raise RuntimeError(f"cannot add product {product_id} for user {user_id}")
        await db.execute(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3)",
            cart_id,
            product["id"],
            quantity,
        )
    return cart_id


async def add_to_cart_fixed(db, user_id):
    user = await db.fetchrow("SELECT id, email FROM users WHERE id = $1", user_id)
    if user is None:
        raise RuntimeError(f"no user {user_id}")
    wanted = dict(CART)
    async with db.transaction():
        cart_id = await cart_for(db, user["id"])
        found = await db.fetch(
            "SELECT id FROM products WHERE id = ANY($1::bigint[])", list(wanted)
        )
        if len(found) != len(wanted):
            raise RuntimeError("unknown product in the cart")
        await db.executemany(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3)",
            [(cart_id, product_id, quantity) for product_id, quantity in CART],
        )
    return cart_id


# -- checkout -----------------------------------------------------------------

PRICED_LINES = (
    "SELECT c.id AS cart_id, ci.product_id, ci.quantity, p.price_cents"
    " FROM carts c"
    " JOIN cart_items ci ON ci.cart_id = c.id"
    " JOIN products p ON p.id = ci.product_id"
    " WHERE c.user_id = $1"
    " ORDER BY ci.product_id"
)


async def checkout_shipped(db, user_id):
    lines = await db.fetch(PRICED_LINES, user_id)
    if not lines:
        raise RuntimeError("the cart is empty")
    total = sum(line["quantity"] * line["price_cents"] for line in lines)
    order_id = await db.fetchval(
        "INSERT INTO orders (user_id, status, total_cents) VALUES ($1, 'pending', $2) RETURNING id",
        user_id,
        total,
    )
    for line in lines:
        await db.execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
            " VALUES ($1, $2, $3, $4)",
            order_id,
            line["product_id"],
            line["quantity"],
            line["price_cents"],
        )
        stock = await db.fetchval(
            "SELECT stock FROM inventory WHERE product_id = $1", line["product_id"]
        )
        if stock < line["quantity"]:
            raise OutOfStock(f"product {line['product_id']}: {stock} left, {line['quantity']} wanted")
        await db.execute(
            "UPDATE inventory SET stock = $1 WHERE product_id = $2",
            stock - line["quantity"],
            line["product_id"],
        )
    # Remove the lines that were ordered from the cart.
    await db.executemany(
        "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2",
        [(line["cart_id"], line["product_id"]) for line in lines],
    )
    return order_id


async def checkout_fixed(db, user_id):
    async with db.transaction():
        lines = await db.fetch(PRICED_LINES, user_id)
        if not lines:
            raise RuntimeError("the cart is empty")
        total = sum(line["quantity"] * line["price_cents"] for line in lines)
        order_id = await db.fetchval(
            "INSERT INTO orders (user_id, status, total_cents)"
            " VALUES ($1, 'pending', $2) RETURNING id",
            user_id,
            total,
        )
        await db.executemany(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
            " VALUES ($1, $2, $3, $4)",
            [(order_id, l["product_id"], l["quantity"], l["price_cents"]) for l in lines],
        )
        for line in lines:
            status = await db.execute(
                "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2 AND stock >= $1",
                line["quantity"],
                line["product_id"],
            )
            if status != "UPDATE 1":
                # Leaving the transaction block with an exception rolls it back.
                raise OutOfStock(f"product {line['product_id']}: not enough stock")
        await db.execute("DELETE FROM cart_items WHERE cart_id = $1", lines[0]["cart_id"])
    return order_id


# -- the journey --------------------------------------------------------------


async def journey(db, shipped):
    await db.mark("flowaudit.flow", "shop")
    await db.begin_step("register")
    user_id = await register(db)
    await db.begin_step("browse")
    await (browse_shipped if shipped else browse_fixed)(db)
    await db.begin_step("add_to_cart")
    await (add_to_cart_shipped if shipped else add_to_cart_fixed)(db, user_id)
    await db.begin_step("checkout")
    return await (checkout_shipped if shipped else checkout_fixed)(db, user_id)


async def run(args):
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("asyncpg_shop: DATABASE_URL is not set", file=sys.stderr)
        return 1
    db = None
    try:
        conn = await asyncpg.connect(url)
        db = Db(conn)
        try:
            order_id = await journey(db, args.variant == "shipped")
        finally:
            await conn.close()
    except (asyncpg.PostgresError, OSError, RuntimeError, OutOfStock) as error:
        print(f"asyncpg_shop: the journey failed: {error}", file=sys.stderr)
        return 1
    finally:
        with open(args.counts, "w") as out:
            json.dump(
                {
                    "stack": "asyncpg",
                    "variant": args.variant,
                    "counter": "wrapper",
                    "steps": db.steps if db else {},
                },
                out,
            )
            out.write("\n")
    print(f"asyncpg_shop: order {order_id} placed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, metavar="FILE")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
