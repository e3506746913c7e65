"""A checkout through pymysql with its default autocommit off (issue 13,
defect 5): pymysql sends SET AUTOCOMMIT = 0 at connect, and the writes run in
one transaction until conn.commit().

Usage: pymysql_checkout.py DATABASE once|each
  once: several writes, then one commit (atomic);
  each: a commit after every write (not atomic).
"""

import sys

import pymysql

db, mode = sys.argv[1], sys.argv[2]
conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=db)
assert not conn.get_autocommit(), "pymysql's default is autocommit off"
with conn.cursor() as cur:
    cur.execute("SET @flowaudit_flow = %s", (f"checkout_{mode}",))
    cur.execute("SET @flowaudit_step = 'checkout'")
    cur.execute("INSERT INTO orders (user_id, total_cents) VALUES (%s, %s)", (1, 5920))
    order = cur.lastrowid
    if mode == "each":
        conn.commit()
    for product, quantity in ((7, 2), (19, 2)):
        cur.execute(
            "INSERT INTO order_items (order_id, product_id, quantity) VALUES (%s, %s, %s)",
            (order, product, quantity),
        )
        if mode == "each":
            conn.commit()
        cur.execute(
            "UPDATE inventory SET stock = stock - %s WHERE product_id = %s AND stock >= %s",
            (quantity, product, quantity),
        )
        if mode == "each":
            conn.commit()
    conn.commit()
conn.close()
