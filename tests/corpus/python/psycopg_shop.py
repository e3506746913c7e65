"""The shop's journey on psycopg 3, the way a plain-driver application writes it.

Usage: python psycopg_shop.py --variant shipped|fixed --counts FILE
with the database in DATABASE_URL (postgres://...). See tests/corpus/README.md.

psycopg is used as it comes: server-side binding with %s placeholders, the
connection in its default mode (autocommit off, so the first statement of a
unit of work opens a transaction with an implicit BEGIN and conn.commit() ends
it), statements prepared by psycopg itself once they have run prepare_threshold
(5) times. The application's own counter is a cursor subclass that counts each
execute()/executemany() call per step: one executemany() is one call, however
many rows it sends (psycopg runs it as a pipeline of one Bind/Execute a row).
Transaction control (the implicit BEGIN, commit(), conn.transaction()) and the
step markers are not counted.

shipped plants the contract's defects: an N+1 stock lookup per product in
browse, the user looked up again for every cart line, and a checkout that
commits after each write and writes a stock it read and computed. fixed runs
browse as one join, looks the user and cart up once, and checks out in one
transaction with guarded stock updates.

On the wire, beyond the counter: psycopg's implicit BEGIN before the first
statement of each transaction and a COMMIT per commit() (or at the end of
conn.transaction()); one Bind/Execute per row of each executemany(), so the
server runs one statement more than the counter in shipped checkout (the cart
lines deleted one by one) and in fixed add_to_cart and checkout (two lines
inserted). Per step (register, browse, add_to_cart, checkout) the server runs
2, 25, 8, 10 statements besides BEGIN/COMMIT in shipped and 2, 1, 6, 7 in
fixed. The 24 stock lookups of shipped browse switch to a named prepared
statement (_pg3_0) after psycopg's prepare_threshold: Parse, then Bind/Execute
of the name.
"""

import argparse
import collections
import hashlib
import json
import os
import sys

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row

EMAIL = "corpus@example.com"
CART = [(7, 2), (19, 2)]


class Counter:
    """Statements the application ran, per step (markers excluded)."""

    def __init__(self):
        self.step = None
        self.steps = collections.OrderedDict()

    def begin(self, step):
        self.step = step
        self.steps.setdefault(step, 0)

    def hit(self):
        if self.step is not None:
            self.steps[self.step] += 1


COUNTER = Counter()


class CountingCursor(psycopg.Cursor):
    """The application's query wrapper: every cursor it opens counts."""

    def execute(self, query, params=None, **kwargs):
        COUNTER.hit()
        return super().execute(query, params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        COUNTER.hit()
        return super().executemany(query, params_seq, **kwargs)


class OutOfStock(Exception):
    pass


def connect():
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("psycopg_shop: DATABASE_URL is not set")
    return psycopg.connect(url, cursor_factory=CountingCursor, row_factory=namedtuple_row)


def mark(conn, name, value):
    """Send a flowaudit marker. A SET sent in psycopg's implicit transaction
    would belong to that transaction (and be undone by a rollback), so the
    markers go out in autocommit, between the steps' transactions, on a plain
    cursor that the application's counter does not see."""
    conn.autocommit = True
    try:
        psycopg.Cursor(conn).execute(
            sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value))
        )
    finally:
        conn.autocommit = False


def step(conn, name):
    mark(conn, "flowaudit.step", name)
    COUNTER.begin(name)


def password_hash(password):
    salt = b"corpus"
    return "pbkdf2_sha256$1000$corpus$" + hashlib.pbkdf2_hmac(
        "sha256", password.encode(), salt, 1000
    ).hex()


# -- register -----------------------------------------------------------------


def register(conn):
    cur = conn.cursor()
    row = cur.execute("SELECT id FROM users WHERE email = %s", (EMAIL,)).fetchone()
    if row is not None:
        raise RuntimeError(f"{EMAIL} is already registered")
    cur.execute(
        "INSERT INTO users (email, full_name, password_hash) VALUES (%s, %s, %s) RETURNING id",
        (EMAIL, "Corpus Shopper", password_hash("correct horse")),
    )
    user_id = cur.fetchone().id
    conn.commit()
    return user_id


# -- browse -------------------------------------------------------------------


def browse_shipped(conn):
    cur = conn.cursor()
    products = cur.execute("SELECT id, name, price_cents FROM products ORDER BY id").fetchall()
    listing = []
    for product in products:
        # One lookup per product: the N+1.
        stock = cur.execute(
            "SELECT stock FROM inventory WHERE product_id = %s", (product.id,)
        ).fetchone()
        listing.append((product.id, product.name, product.price_cents, stock.stock))
    conn.commit()
    return listing


def browse_fixed(conn):
    cur = conn.cursor()
    listing = cur.execute(
        "SELECT p.id, p.name, p.price_cents, i.stock"
        " FROM products p JOIN inventory i ON i.product_id = p.id"
        " ORDER BY p.id"
    ).fetchall()
    conn.commit()
    return listing


# -- add_to_cart --------------------------------------------------------------


def cart_for(cur, user_id):
    """Get or create the user's cart."""
    row = cur.execute("SELECT id FROM carts WHERE user_id = %s", (user_id,)).fetchone()
    if row is not None:
        return row.id
    return cur.execute(
        "INSERT INTO carts (user_id) VALUES (%s) RETURNING id", (user_id,)
    ).fetchone().id


def add_to_cart_shipped(conn, user_id):
    cur = conn.cursor()
    cart_id = cart_for(cur, user_id)
    for product_id, quantity in CART:
        # The "add a line" handler loads the current user again for each line.
        user = cur.execute(
            "SELECT id, email FROM users WHERE id = %s", (user_id,)
        ).fetchone()
        product = cur.execute(
            "SELECT id, price_cents FROM products WHERE id = %s", (product_id,)
        ).fetchone()
        if user is None or product is None:
            raise RuntimeError(f"cannot add product {product_id} for user {user_id}")
        cur.execute(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (%s, %s, %s)",
            (cart_id, product.id, quantity),
        )
    conn.commit()
    return cart_id


def add_to_cart_fixed(conn, user_id):
    cur = conn.cursor()
    user = cur.execute("SELECT id, email FROM users WHERE id = %s", (user_id,)).fetchone()
    if user is None:
        raise RuntimeError(f"no user {user_id}")
    cart_id = cart_for(cur, user.id)
    wanted = dict(CART)
    found = cur.execute(
        "SELECT id FROM products WHERE id = ANY(%s)", (list(wanted),)
    ).fetchall()
    if len(found) != len(wanted):
        raise RuntimeError("unknown product in the cart")
    with conn.pipeline():
        cur.executemany(
            "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (%s, %s, %s)",
            [(cart_id, product_id, quantity) for product_id, quantity in CART],
        )
    conn.commit()
    return cart_id


# -- checkout -----------------------------------------------------------------

PRICED_LINES = (
    "SELECT c.id AS cart_id, ci.product_id, ci.quantity, p.price_cents"
    " FROM carts c"
    " JOIN cart_items ci ON ci.cart_id = c.id"
    " JOIN products p ON p.id = ci.product_id"
    " WHERE c.user_id = %s"
    " ORDER BY ci.product_id"
)


def checkout_shipped(conn, user_id):
    cur = conn.cursor()
    lines = cur.execute(PRICED_LINES, (user_id,)).fetchall()
    if not lines:
        raise RuntimeError("the cart is empty")
    total = sum(line.quantity * line.price_cents for line in lines)
    order_id = cur.execute(
        "INSERT INTO orders (user_id, status, total_cents) VALUES (%s, 'pending', %s) RETURNING id",
        (user_id, total),
    ).fetchone().id
    conn.commit()
    for line in lines:
        cur.execute(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
            " VALUES (%s, %s, %s, %s)",
            (order_id, line.product_id, line.quantity, line.price_cents),
        )
        conn.commit()
        stock = cur.execute(
            "SELECT stock FROM inventory WHERE product_id = %s", (line.product_id,)
        ).fetchone().stock
        if stock < line.quantity:
            raise OutOfStock(f"product {line.product_id}: {stock} left, {line.quantity} wanted")
        cur.execute(
            "UPDATE inventory SET stock = %s WHERE product_id = %s",
            (stock - line.quantity, line.product_id),
        )
        conn.commit()
    # Remove the lines that were ordered from the cart.
    cur.executemany(
        "DELETE FROM cart_items WHERE cart_id = %s AND product_id = %s",
        [(line.cart_id, line.product_id) for line in lines],
    )
    conn.commit()
    return order_id


def checkout_fixed(conn, user_id):
    with conn.transaction():
        cur = conn.cursor()
        lines = cur.execute(PRICED_LINES, (user_id,)).fetchall()
        if not lines:
            raise RuntimeError("the cart is empty")
        total = sum(line.quantity * line.price_cents for line in lines)
        order_id = cur.execute(
            "INSERT INTO orders (user_id, status, total_cents)"
            " VALUES (%s, 'pending', %s) RETURNING id",
            (user_id, total),
        ).fetchone().id
        with conn.pipeline():
            cur.executemany(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
                " VALUES (%s, %s, %s, %s)",
                [(order_id, l.product_id, l.quantity, l.price_cents) for l in lines],
            )
            updates = [
                conn.execute(
                    "UPDATE inventory SET stock = stock - %s"
                    " WHERE product_id = %s AND stock >= %s",
                    (line.quantity, line.product_id, line.quantity),
                )
                for line in lines
            ]
            conn.execute("DELETE FROM cart_items WHERE cart_id = %s", (lines[0].cart_id,))
        for line, update in zip(lines, updates):
            if update.rowcount != 1:
                # Leaving the transaction block with an exception rolls it back.
                raise OutOfStock(f"product {line.product_id}: not enough stock")
    return order_id


# -- the journey --------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, metavar="FILE")
    args = parser.parse_args()
    shipped = args.variant == "shipped"

    try:
        with connect() as conn:
            mark(conn, "flowaudit.flow", "shop")
            step(conn, "register")
            user_id = register(conn)
            step(conn, "browse")
            (browse_shipped if shipped else browse_fixed)(conn)
            step(conn, "add_to_cart")
            (add_to_cart_shipped if shipped else add_to_cart_fixed)(conn, user_id)
            step(conn, "checkout")
            order_id = (checkout_shipped if shipped else checkout_fixed)(conn, user_id)
    except (psycopg.Error, RuntimeError, OutOfStock) as error:
        print(f"psycopg_shop: the journey failed: {error}", file=sys.stderr)
        return 1
    finally:
        with open(args.counts, "w") as out:
            json.dump(
                {
                    "stack": "psycopg",
                    "variant": args.variant,
                    "counter": "wrapper",
                    "steps": COUNTER.steps,
                },
                out,
            )
            out.write("\n")
    print(f"psycopg_shop: order {order_id} placed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
