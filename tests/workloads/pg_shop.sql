-- A shop's journey for PostgreSQL, run with `psql -X -f` (one connection).
-- Markers name the flow and steps; one statement carries sqlcommenter tags.
-- It has an N+1 (browse: a prepared lookup per product), a repeated query
-- (cart), a multi-line statement, NULL and quoted parameters, and a failed
-- statement inside a transaction (checkout). Expected, per step (statements,
-- queries): setup 4/4, browse 8/8, cart 3/3, cart_lookup 1/1, checkout 4/2;
-- findings: n-plus-one in browse, repeated-query in cart, non-atomic-write in
-- setup (two tables written in autocommit).
SET flowaudit.flow = 'shop';
SET flowaudit.step = 'setup';
CREATE TABLE products (id int PRIMARY KEY, name text);
CREATE TABLE inventory (product_id int, stock int, note text);
INSERT INTO products SELECT g, 'product ' || g FROM generate_series(1, 6) g;
INSERT INTO inventory SELECT g, g * 10, NULL FROM generate_series(1, 6) g;
SET flowaudit.step = 'browse';
SELECT id, name FROM products ORDER BY id;
PREPARE stock(int) AS SELECT stock FROM inventory WHERE product_id = $1;
EXECUTE stock(1);
EXECUTE stock(2);
EXECUTE stock(3);
EXECUTE stock(4);
EXECUTE stock(5);
EXECUTE stock(6);
SET flowaudit.step = 'cart';
SELECT name
  FROM products
 WHERE id = 2 /*step='cart_lookup'*/;
SELECT name FROM products WHERE id = 3;
SELECT name FROM products WHERE id = 3;
PREPARE note(text, text) AS SELECT $1::text || coalesce($2, '-');
EXECUTE note('it''s', NULL);
SET flowaudit.step = 'checkout';
BEGIN;
UPDATE inventory SET stock = stock - 1 WHERE product_id = 2;
SELECT * FROM no_such_table;
ROLLBACK;
