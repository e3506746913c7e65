"""The shop's journey on SQLAlchemy 2 (ORM, declarative mappings) over psycopg 3.

Part of flowaudit's client corpus (tests/corpus/README.md has the contract):
register -> browse -> add_to_cart -> checkout, in a `shipped` variant with the
planted defects and a `fixed` variant without them.

The code is ordinary SQLAlchemy: one Session per request (step) with its
defaults (autobegin, expire_on_commit=True, autoflush, lazy relationship
loads). Expect the traffic such code makes: after a commit, reading an
attribute reloads the expired object in a new autobegun transaction that
Session.close() rolls back; a flush sends pending INSERTs before the next
query.

Counter: the engine's `before_cursor_execute` event, per step. It fires once
per cursor.execute() or cursor.executemany() call, so an executemany of two
rows counts once although psycopg sends two INSERTs; BEGIN, COMMIT and
ROLLBACK are DBAPI connection calls, not cursor executions, and are not
counted. The dialect's first-connect housekeeping (version, schema, string
settings) runs without events and is not counted either: it happens on the
marker connection, before the first marker.

Markers: a connection of the same engine, checked out once, in AUTOCOMMIT and
kept open for the run; its statements are left out of the counter.

What the wire shows beyond the counter: the executemany as two INSERTs of one
prepared statement (psycopg pipelines it); psycopg prepares a query on its 5th
execution (the lazy loads) and for any executemany, and after a ROLLBACK on a
connection holding prepared statements it sends DEALLOCATE ALL.
"""

import argparse
import json
import os
import sys
from typing import Optional

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
)

# Racing instances (`flowaudit run --race checkout --race-instances N` sets
# FLOWAUDIT_INSTANCE=1..N) buy the same products, each as a user of its own,
# and so with a cart of its own; without it, the corpus's one user.
INSTANCE = os.environ.get("FLOWAUDIT_INSTANCE")
EMAIL = f"corpus+{INSTANCE}@example.com" if INSTANCE else "corpus@example.com"
CART_LINES = [(7, 2), (19, 2)]  # (product id, quantity)
STEPS = ("register", "browse", "add_to_cart", "checkout")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(Text, unique=True)
    full_name: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at = mapped_column(DateTime(timezone=True), server_default=func.now())
    cart: Mapped[Optional["Cart"]] = relationship(back_populates="user")


class Category(Base):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    name: Mapped[str] = mapped_column(Text)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    category: Mapped[Category] = relationship()
    inventory: Mapped["Inventory"] = relationship(back_populates="product")


class Inventory(Base):
    __tablename__ = "inventory"
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    stock: Mapped[int] = mapped_column(BigInteger)
    seeded_stock: Mapped[int] = mapped_column(BigInteger)
    product: Mapped[Product] = relationship(back_populates="inventory")


class Cart(Base):
    __tablename__ = "carts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    created_at = mapped_column(DateTime(timezone=True), server_default=func.now())
    user: Mapped[User] = relationship(back_populates="cart")
    items: Mapped[list["CartItem"]] = relationship(back_populates="cart")


class CartItem(Base):
    __tablename__ = "cart_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    cart: Mapped[Cart] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(Text)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    created_at = mapped_column(DateTime(timezone=True), server_default=func.now())
    items: Mapped[list["OrderItem"]] = relationship(back_populates="order")


class OrderItem(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    order: Mapped[Order] = relationship(back_populates="items")


class OutOfStock(Exception):
    pass


# --- register (the same in both variants) -----------------------------------


def register(engine):
    with Session(engine) as session:
        user = session.scalars(select(User).where(User.email == EMAIL)).one_or_none()
        if user is None:
            user = User(email=EMAIL, full_name="Corpus Shopper", password_hash="not-a-real-hash")
            session.add(user)
            session.commit()
        # The commit expired the user: this reloads it (a new transaction that
        # close() rolls back). Ordinary ORM code does this all the time.
        return user.id


# --- shipped: the planted defects -------------------------------------------


def browse_shipped(engine):
    with Session(engine) as session:
        products = session.scalars(select(Product).order_by(Product.id)).all()
        # Product.inventory is a lazy relationship: one SELECT per product.
        return [(p.id, p.name, p.price_cents, p.inventory.stock) for p in products]


def add_line_shipped(session, cart, user_id, product_id, quantity):
    # Each call looks up the current user again, as a request handler would.
    user = session.scalars(select(User).where(User.id == user_id)).one()
    product = session.get(Product, product_id)
    if product is None:
        raise LookupError(f"no product {product_id}")
    session.add(CartItem(cart=cart, product=product, quantity=quantity))
    session.flush()
    return user


def add_to_cart_shipped(engine, user_id):
    with Session(engine) as session:
        cart = session.scalars(select(Cart).where(Cart.user_id == user_id)).one_or_none()
        if cart is None:
            cart = Cart(user_id=user_id)
            session.add(cart)
        for product_id, quantity in CART_LINES:
            add_line_shipped(session, cart, user_id, product_id, quantity)
        # One commit for the request (tests/corpus/README.md).
        session.commit()


def checkout_shipped(engine, user_id):
    with Session(engine) as session:
        cart = session.scalars(select(Cart).where(Cart.user_id == user_id)).one()
        cart_id = cart.id
        lines = session.execute(
            select(CartItem.product_id, CartItem.quantity, Product.price_cents)
            .join(CartItem.product)
            .where(CartItem.cart_id == cart_id)
            .order_by(CartItem.id)
        ).all()
        if not lines:
            raise RuntimeError("the cart is empty")
        total = sum(quantity * price for _, quantity, price in lines)
        order = Order(user_id=user_id, status="pending", total_cents=total)
        session.add(order)
        session.commit()
        order_id = order.id  # reloads the expired order
        for product_id, quantity, price in lines:
            session.add(
                OrderItem(order_id=order_id, product_id=product_id, quantity=quantity, unit_price_cents=price)
            )
            session.commit()
            inv = session.get(Inventory, product_id)
            if inv.stock < quantity:
                raise OutOfStock(f"product {product_id}: {inv.stock} left, {quantity} wanted")
            inv.stock -= quantity
            session.commit()
        session.execute(delete(CartItem).where(CartItem.cart_id == cart_id))
        session.commit()
        return order_id


# --- fixed ------------------------------------------------------------------


def browse_fixed(engine):
    with Session(engine) as session:
        products = session.scalars(
            select(Product).options(joinedload(Product.inventory)).order_by(Product.id)
        ).all()
        return [(p.id, p.name, p.price_cents, p.inventory.stock) for p in products]


def add_to_cart_fixed(engine, user_id):
    with Session(engine) as session, session.begin():
        user = session.scalars(select(User).where(User.id == user_id)).one()
        cart = user.cart  # a lazy load
        if cart is None:
            cart = user.cart = Cart()
            session.flush()
        wanted = dict(CART_LINES)
        found = set(session.scalars(select(Product.id).where(Product.id.in_(wanted))))
        if found != set(wanted):
            raise LookupError(f"no product {sorted(set(wanted) - found)}")
        session.execute(
            insert(CartItem),
            [{"cart_id": cart.id, "product_id": pid, "quantity": qty} for pid, qty in CART_LINES],
        )


def checkout_fixed(engine, user_id):
    with Session(engine) as session:
        with session.begin():
            cart = session.scalars(select(Cart).where(Cart.user_id == user_id)).one()
            lines = session.execute(
                select(CartItem.product_id, CartItem.quantity, Product.price_cents)
                .join(CartItem.product)
                .where(CartItem.cart_id == cart.id)
                .order_by(CartItem.id)
            ).all()
            if not lines:
                raise RuntimeError("the cart is empty")
            order = Order(
                user_id=user_id,
                status="pending",
                total_cents=sum(quantity * price for _, quantity, price in lines),
                items=[
                    OrderItem(product_id=pid, quantity=qty, unit_price_cents=price)
                    for pid, qty, price in lines
                ],
            )
            session.add(order)
            session.flush()
            for product_id, quantity, _ in lines:
                result = session.execute(
                    update(Inventory)
                    .where(Inventory.product_id == product_id, Inventory.stock >= quantity)
                    .values(stock=Inventory.stock - quantity)
                )
                if result.rowcount != 1:
                    raise OutOfStock(f"product {product_id}: fewer than {quantity} left")
            session.execute(delete(CartItem).where(CartItem.cart_id == cart.id))
        # Committed; the order is expired and reading its id reloads it.
        return order.id


# --- the run ----------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, help="write the counter's per-step counts here (JSON)")
    args = parser.parse_args()

    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql+psycopg")
    engine = create_engine(url)

    counts = {}
    current = {"step": None}

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if conn.info.get("flowaudit_markers") or current["step"] is None:
            return
        counts[current["step"]] = counts.get(current["step"], 0) + 1

    markers = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    markers.info["flowaudit_markers"] = True

    def step(name):
        markers.exec_driver_sql(f"SET flowaudit.step = '{name}'")
        current["step"] = name
        counts.setdefault(name, 0)

    shipped = args.variant == "shipped"
    status = 0
    try:
        markers.exec_driver_sql("SET flowaudit.flow = 'shop'")
        step("register")
        user_id = register(engine)
        step("browse")
        listing = (browse_shipped if shipped else browse_fixed)(engine)
        assert len(listing) == 24, listing
        step("add_to_cart")
        (add_to_cart_shipped if shipped else add_to_cart_fixed)(engine, user_id)
        step("checkout")
        order_id = (checkout_shipped if shipped else checkout_fixed)(engine, user_id)
        current["step"] = None
        print(f"sqlalchemy_shop ({args.variant}): order {order_id} placed for user {user_id}")
    except Exception as exc:  # the contract: non-zero with a message
        print(f"sqlalchemy_shop ({args.variant}): {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    finally:
        markers.close()
        engine.dispose()
        with open(args.counts, "w") as out:
            json.dump(
                {
                    "stack": "sqlalchemy",
                    "variant": args.variant,
                    "counter": "before_cursor_execute",
                    "steps": {name: counts[name] for name in STEPS if name in counts},
                },
                out,
            )
            out.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
