"""The shop's journey on PyMySQL (MariaDB), the way a plain-driver application writes it.

Usage: python pymysql_shop.py --variant shipped|fixed --counts FILE
with the database in DATABASE_URL (mysql://user[:password]@host[:port]/db).
See tests/corpus/README.md.

PyMySQL is used as it comes: autocommit off (it sends SET AUTOCOMMIT = 0 when
it connects, so InnoDB opens a transaction with the first statement and
conn.commit() ends it), %s placeholders interpolated by the client (the server
receives plain COM_QUERY text), new ids from cursor.lastrowid. Its
executemany() rewrites an INSERT ... VALUES into one multi-row INSERT; any
other statement it runs once per row.

The application's own counter is a cursor subclass that counts each
execute()/executemany() call per step: one executemany() is one call, whether
PyMySQL sends it as one multi-row INSERT or as one statement a row. commit(),
PyMySQL's own SET AUTOCOMMIT and the step markers are not counted.

shipped plants the contract's defects: an N+1 stock lookup per product in
browse, the user looked up again for every cart line, and a checkout that
commits after each write and writes a stock it read and computed. fixed runs
browse as one join, looks the user and cart up once, and checks out in one
transaction that locks the stock rows (SELECT ... FOR UPDATE) before taking
from them.

On the wire (the general query log), beyond the counter: SET NAMES utf8mb4
and SET AUTOCOMMIT = 0 when PyMySQL connects, before any marker; a COMMIT per
commit(); the shipped checkout's DELETE executemany() as one statement a row
(one more than the counter). The INSERT executemany() calls of fixed
add_to_cart and checkout are one multi-row INSERT each, as counted. Per step
the server runs 2, 25, 8, 10 statements besides COMMIT in shipped and 2, 1,
5, 7 in fixed.
"""

import argparse
import collections
import hashlib
import json
import os
import sys
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.cursors

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


class CountingCursor(pymysql.cursors.DictCursor):
    """The application's query wrapper: every cursor it opens counts.
    PyMySQL's executemany() calls execute() itself (once per row, or once per
    multi-row INSERT); those inner calls belong to the executemany()."""

    _in_many = False

    def execute(self, query, args=None):
        if not self._in_many:
            COUNTER.hit()
        return super().execute(query, args)

    def executemany(self, query, args):
        COUNTER.hit()
        self._in_many = True
        try:
            return super().executemany(query, args)
        finally:
            self._in_many = False


class OutOfStock(Exception):
    pass


def connect():
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("pymysql_shop: DATABASE_URL is not set")
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        sys.exit(f"pymysql_shop: not a mysql:// URL: {url}")
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/"),
        charset="utf8mb4",
        cursorclass=CountingCursor,
    )


def mark(conn, name, value):
    """Send a flowaudit marker (a user variable) on the application's own
    connection, on a plain cursor that the counter does not see."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(f"SET @{name} = %s", (value,))


def step(conn, name):
    mark(conn, "flowaudit_step", name)
    COUNTER.begin(name)


def password_hash(password):
    return "pbkdf2_sha256$1000$corpus$" + hashlib.pbkdf2_hmac(
        "sha256", password.encode(), b"corpus", 1000
    ).hex()


# -- register -----------------------------------------------------------------


def register(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM users WHERE email = %s", (EMAIL,))
        if cur.fetchone() is not None:
            raise RuntimeError(f"{EMAIL} is already registered")
        cur.execute(
            "INSERT INTO users (email, full_name, password_hash) VALUES (%s, %s, %s)",
            (EMAIL, "Corpus Shopper", password_hash("correct horse")),
        )
        user_id = cur.lastrowid
    conn.commit()
    return user_id


# -- browse -------------------------------------------------------------------


def browse_shipped(conn):
    listing = []
    with conn.cursor() as cur:
        cur.execute("SELECT id, name, price_cents FROM products ORDER BY id")
        for product in cur.fetchall():
            # One lookup per product: the N+1.
            cur.execute("SELECT stock FROM inventory WHERE product_id = %s", (product["id"],))
            product["stock"] = cur.fetchone()["stock"]
            listing.append(product)
    conn.commit()
    return listing


def browse_fixed(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT p.id, p.name, p.price_cents, i.stock"
            " FROM products p JOIN inventory i ON i.product_id = p.id"
            " ORDER BY p.id"
        )
        listing = cur.fetchall()
    conn.commit()
    return listing


# -- add_to_cart --------------------------------------------------------------


def cart_for(cur, user_id):
    """Get or create the user's cart."""
    cur.execute("SELECT id FROM carts WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    if row is not None:
        return row["id"]
    cur.execute("INSERT INTO carts (user_id) VALUES (%s)", (user_id,))
    return cur.lastrowid


def add_to_cart_shipped(conn, user_id):
    with conn.cursor() as cur:
        cart_id = cart_for(cur, user_id)
        for product_id, quantity in CART:
            # The "add a line" handler loads the current user again for each line.
            cur.execute("SELECT id, email FROM users WHERE id = %s", (user_id,))
            user = cur.fetchone()
            cur.execute("SELECT id, price_cents FROM products WHERE id = %s", (product_id,))
            product = cur.fetchone()
            if user is None or product is None:
                raise RuntimeError(f"cannot add product {product_id} for user {user_id}")
            cur.execute(
                "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (%s, %s, %s)",
                (cart_id, product["id"], quantity),
            )
    conn.commit()
    return cart_id


def add_to_cart_fixed(conn, user_id):
    wanted = dict(CART)
    with conn.cursor() as cur:
        cur.execute("SELECT id, email FROM users WHERE id = %s", (user_id,))
        user = cur.fetchone()
        if user is None:
            raise RuntimeError(f"no user {user_id}")
        cart_id = cart_for(cur, user["id"])
        cur.execute("SELECT id FROM products WHERE id IN %s", (tuple(wanted),))
        if len(cur.fetchall()) != len(wanted):
            raise RuntimeError("unknown product in the cart")
        # PyMySQL sends this as one multi-row INSERT.
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
    with conn.cursor() as cur:
        cur.execute(PRICED_LINES, (user_id,))
        lines = cur.fetchall()
        if not lines:
            raise RuntimeError("the cart is empty")
        total = sum(line["quantity"] * line["price_cents"] for line in lines)
        cur.execute(
            "INSERT INTO orders (user_id, status, total_cents) VALUES (%s, 'pending', %s)",
            (user_id, total),
        )
        order_id = cur.lastrowid
        conn.commit()
        for line in lines:
            cur.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
                " VALUES (%s, %s, %s, %s)",
                (order_id, line["product_id"], line["quantity"], line["price_cents"]),
            )
            conn.commit()
            cur.execute("SELECT stock FROM inventory WHERE product_id = %s", (line["product_id"],))
            stock = cur.fetchone()["stock"]
            if stock < line["quantity"]:
                raise OutOfStock(
                    f"product {line['product_id']}: {stock} left, {line['quantity']} wanted"
                )
            cur.execute(
                "UPDATE inventory SET stock = %s WHERE product_id = %s",
                (stock - line["quantity"], line["product_id"]),
            )
            conn.commit()
        # Remove the lines that were ordered from the cart (PyMySQL runs a
        # DELETE executemany() once per row).
        cur.executemany(
            "DELETE FROM cart_items WHERE cart_id = %s AND product_id = %s",
            [(line["cart_id"], line["product_id"]) for line in lines],
        )
    conn.commit()
    return order_id


def checkout_fixed(conn, user_id):
    try:
        with conn.cursor() as cur:
            cur.execute(PRICED_LINES, (user_id,))
            lines = cur.fetchall()
            if not lines:
                raise RuntimeError("the cart is empty")
            cur.execute(
                "SELECT product_id, stock FROM inventory WHERE product_id IN %s FOR UPDATE",
                (tuple(line["product_id"] for line in lines),),
            )
            stock = {row["product_id"]: row["stock"] for row in cur.fetchall()}
            for line in lines:
                if stock.get(line["product_id"], 0) < line["quantity"]:
                    raise OutOfStock(f"product {line['product_id']}: not enough stock")
            total = sum(line["quantity"] * line["price_cents"] for line in lines)
            cur.execute(
                "INSERT INTO orders (user_id, status, total_cents) VALUES (%s, 'pending', %s)",
                (user_id, total),
            )
            order_id = cur.lastrowid
            # PyMySQL sends this as one multi-row INSERT.
            cur.executemany(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)"
                " VALUES (%s, %s, %s, %s)",
                [(order_id, l["product_id"], l["quantity"], l["price_cents"]) for l in lines],
            )
            for line in lines:
                cur.execute(
                    "UPDATE inventory SET stock = stock - %s WHERE product_id = %s",
                    (line["quantity"], line["product_id"]),
                )
            cur.execute("DELETE FROM cart_items WHERE cart_id = %s", (lines[0]["cart_id"],))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return order_id


# -- the journey --------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, metavar="FILE")
    args = parser.parse_args()
    shipped = args.variant == "shipped"

    try:
        conn = connect()
        try:
            mark(conn, "flowaudit_flow", "shop")
            step(conn, "register")
            user_id = register(conn)
            step(conn, "browse")
            (browse_shipped if shipped else browse_fixed)(conn)
            step(conn, "add_to_cart")
            (add_to_cart_shipped if shipped else add_to_cart_fixed)(conn, user_id)
            step(conn, "checkout")
            order_id = (checkout_shipped if shipped else checkout_fixed)(conn, user_id)
        finally:
            conn.close()
    except (pymysql.MySQLError, RuntimeError, OutOfStock) as error:
        print(f"pymysql_shop: the journey failed: {error}", file=sys.stderr)
        return 1
    finally:
        with open(args.counts, "w") as out:
            json.dump(
                {
                    "stack": "pymysql",
                    "variant": args.variant,
                    "counter": "wrapper",
                    "steps": COUNTER.steps,
                },
                out,
            )
            out.write("\n")
    print(f"pymysql_shop: order {order_id} placed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
