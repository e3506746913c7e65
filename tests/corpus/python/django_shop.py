"""The shop's journey on the Django 5 ORM (PostgreSQL backend, psycopg 3).

Part of flowaudit's client corpus (tests/corpus/README.md has the contract):
register -> browse -> add_to_cart -> checkout, in a `shipped` variant with the
planted defects and a `fixed` variant without them. One file: settings come
from settings.configure() and the models, `managed = False` over the tables
tests/workloads/shop_pg/schema.sql creates, are declared here.

Django runs in autocommit, its default: outside `transaction.atomic()` every
statement commits on its own. The shipped checkout has no atomic block; the
fixed variant wraps add_to_cart's writes and the whole checkout in one.
get_or_create() opens an atomic block of its own around its INSERT (a
transaction in autocommit, a savepoint inside another atomic block).

Counter: django.test.utils.CaptureQueriesContext on the default connection,
per step. Since Django 4.2 its log also holds the transaction control Django
issues itself: "BEGIN" when an atomic block turns autocommit off (psycopg then
sends BEGIN before the next statement), "COMMIT" and "ROLLBACK" when it ends;
savepoints are ordinary executed statements. The counts therefore include
transaction control; bulk_create() is one INSERT with several VALUES rows, one
entry. Connection set-up is not logged: Django sends SELECT set_config('TimeZone',
'UTC', false) on each new connection whose server time zone is not literally
UTC (PostgreSQL's Debian default reports Etc/UTC). DJANGO_SHOP_LOG=1 prints
what the counter captured, per step, on stderr.

Markers: a second database alias, "markers", on the same database; its
connection is autocommit and its statements are not captured.
"""

import argparse
import os
import sys
from urllib.parse import unquote, urlsplit

import django
from django.apps import AppConfig
from django.conf import settings


class ShopConfig(AppConfig):
    # This script is the app: Django learns reverse relations (the
    # select_related("inventory") of the fixed browse) only from the models of
    # installed apps.
    name = "__main__"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"


def database_settings(url):
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


settings.configure(
    DEBUG=False,
    USE_TZ=True,
    TIME_ZONE="UTC",
    INSTALLED_APPS=["__main__.ShopConfig"],
    DATABASES={
        "default": database_settings(os.environ["DATABASE_URL"]),
        "markers": database_settings(os.environ["DATABASE_URL"]),
    },
)
django.setup()

import json  # noqa: E402

from django.db import connection, connections, models, transaction  # noqa: E402
from django.db.models import F  # noqa: E402
from django.db.models.functions import Now  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

EMAIL = "corpus@example.com"
CART_LINES = [(7, 2), (19, 2)]  # (product id, quantity)
STEPS = ("register", "browse", "add_to_cart", "checkout")


class User(models.Model):
    email = models.TextField(unique=True)
    full_name = models.TextField()
    password_hash = models.TextField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "users"


class Category(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.TextField(unique=True)

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "categories"


class Product(models.Model):
    id = models.BigIntegerField(primary_key=True)
    category = models.ForeignKey(Category, models.PROTECT, related_name="products")
    name = models.TextField()
    price_cents = models.BigIntegerField()

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "products"


class Inventory(models.Model):
    product = models.OneToOneField(Product, models.PROTECT, primary_key=True, related_name="inventory")
    stock = models.BigIntegerField()
    seeded_stock = models.BigIntegerField()

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "inventory"


class Cart(models.Model):
    user = models.OneToOneField(User, models.CASCADE, related_name="cart")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "carts"


class CartItem(models.Model):
    cart = models.ForeignKey(Cart, models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, models.PROTECT)
    quantity = models.BigIntegerField()

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "cart_items"


class Order(models.Model):
    user = models.ForeignKey(User, models.PROTECT, related_name="orders")
    status = models.TextField()
    total_cents = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "orders"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, models.PROTECT)
    quantity = models.BigIntegerField()
    unit_price_cents = models.BigIntegerField()

    class Meta:
        app_label = "shop"
        managed = False
        db_table = "order_items"


class OutOfStock(Exception):
    pass


# --- register (the same in both variants) -----------------------------------


def register():
    user, _ = User.objects.get_or_create(
        email=EMAIL, defaults={"full_name": "Corpus Shopper", "password_hash": "not-a-real-hash"}
    )
    return user.pk


# --- shipped: the planted defects -------------------------------------------


def browse_shipped():
    # p.inventory is a reverse one-to-one: one query per product.
    return [(p.pk, p.name, p.price_cents, p.inventory.stock) for p in Product.objects.order_by("id")]


def add_line_shipped(cart, user_id, product_id, quantity):
    # Each call looks up the current user again, as a request handler would.
    User.objects.get(pk=user_id)
    product = Product.objects.get(pk=product_id)
    return CartItem.objects.create(cart=cart, product=product, quantity=quantity)


def add_to_cart_shipped(user_id):
    cart, _ = Cart.objects.get_or_create(user_id=user_id)
    for product_id, quantity in CART_LINES:
        add_line_shipped(cart, user_id, product_id, quantity)


def checkout_shipped(user_id):
    cart = Cart.objects.get(user_id=user_id)
    lines = list(cart.items.select_related("product").order_by("id"))
    if not lines:
        raise RuntimeError("the cart is empty")
    order = Order.objects.create(
        user_id=user_id,
        status="pending",
        total_cents=sum(line.quantity * line.product.price_cents for line in lines),
    )
    for line in lines:
        OrderItem.objects.create(
            order=order, product=line.product, quantity=line.quantity, unit_price_cents=line.product.price_cents
        )
        inv = Inventory.objects.get(pk=line.product_id)
        if inv.stock < line.quantity:
            raise OutOfStock(f"product {line.product_id}: {inv.stock} left, {line.quantity} wanted")
        inv.stock -= line.quantity
        inv.save()
    cart.items.all().delete()
    return order.pk


# --- fixed ------------------------------------------------------------------


def browse_fixed():
    products = Product.objects.select_related("inventory").order_by("id")
    return [(p.pk, p.name, p.price_cents, p.inventory.stock) for p in products]


def add_to_cart_fixed(user_id):
    user = User.objects.get(pk=user_id)
    with transaction.atomic():
        cart, _ = Cart.objects.get_or_create(user=user)
        wanted = dict(CART_LINES)
        products = Product.objects.in_bulk(list(wanted))
        if len(products) != len(wanted):
            raise LookupError(f"no product {sorted(set(wanted) - set(products))}")
        CartItem.objects.bulk_create(
            CartItem(cart=cart, product=products[pid], quantity=qty) for pid, qty in CART_LINES
        )


def checkout_fixed(user_id):
    with transaction.atomic():
        cart = Cart.objects.get(user_id=user_id)
        lines = list(cart.items.select_related("product").order_by("id"))
        if not lines:
            raise RuntimeError("the cart is empty")
        order = Order.objects.create(
            user_id=user_id,
            status="pending",
            total_cents=sum(line.quantity * line.product.price_cents for line in lines),
        )
        OrderItem.objects.bulk_create(
            OrderItem(order=order, product=line.product, quantity=line.quantity,
                      unit_price_cents=line.product.price_cents)
            for line in lines
        )
        for line in lines:
            updated = Inventory.objects.filter(pk=line.product_id, stock__gte=line.quantity).update(
                stock=F("stock") - line.quantity
            )
            if not updated:
                raise OutOfStock(f"product {line.product_id}: fewer than {line.quantity} left")
        cart.items.all().delete()
    return order.pk


# --- the run ----------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("shipped", "fixed"), required=True)
    parser.add_argument("--counts", required=True, help="write the counter's per-step counts here (JSON)")
    args = parser.parse_args()

    markers = connections["markers"].cursor()
    counts = {}

    def run_step(name, fn, *fn_args):
        markers.execute(f"SET flowaudit.step = '{name}'")
        with CaptureQueriesContext(connection) as captured:
            try:
                return fn(*fn_args)
            finally:
                counts[name] = len(captured.captured_queries)
                if os.environ.get("DJANGO_SHOP_LOG"):
                    for query in captured.captured_queries:
                        print(f"  [{name}] {query['sql']}", file=sys.stderr)

    shipped = args.variant == "shipped"
    status = 0
    try:
        markers.execute("SET flowaudit.flow = 'shop'")
        user_id = run_step("register", register)
        listing = run_step("browse", browse_shipped if shipped else browse_fixed)
        assert len(listing) == 24, listing
        run_step("add_to_cart", add_to_cart_shipped if shipped else add_to_cart_fixed, user_id)
        order_id = run_step("checkout", checkout_shipped if shipped else checkout_fixed, user_id)
        print(f"django_shop ({args.variant}): order {order_id} placed for user {user_id}")
    except Exception as exc:  # the contract: non-zero with a message
        print(f"django_shop ({args.variant}): {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    finally:
        markers.close()
        connections.close_all()
        with open(args.counts, "w") as out:
            json.dump(
                {
                    "stack": "django",
                    "variant": args.variant,
                    "counter": "CaptureQueriesContext",
                    "steps": {name: counts[name] for name in STEPS if name in counts},
                },
                out,
            )
            out.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
